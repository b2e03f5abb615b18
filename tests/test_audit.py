"""The audit: attacks flag an overfit model and not a model that never saw the members; metrics; canaries."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dpsd_lite.audit import (FPR_LEVELS, attack_metrics, audit_model, canary_exposure, claim, clopper_pearson,
                             epsilon_lower_bound, format_audit, format_canaries, lira_attack, loss_attack,
                             plant_canaries, train_classifier, train_shadow_models)
from dpsd_lite.errors import DpsdError
from dpsd_lite.models import Student


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """These models are tiny: one thread is as fast, and far faster when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mia_case(digits):
    """Random members (60 private records), non-members (150 held-out), and two targets."""
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(digits.y_private), generator=g)
    mem, other = perm[:60], perm[60:360]
    out = torch.randperm(len(digits.y_heldout), generator=g)[:150]
    torch.manual_seed(0)
    overfit = train_classifier(Student(digits.image_shape, 10), digits.x_private[mem], digits.y_private[mem],
                               epochs=150, batch_size=16, seed=0)  # deliberately overfit
    never = train_classifier(Student(digits.image_shape, 10), digits.x_private[other], digits.y_private[other],
                             epochs=30, batch_size=32, seed=1)
    shadows = train_shadow_models(digits.x_heldout[out], digits.y_heldout[out], num_shadows=4, epochs=30, seed=0)
    return dict(x_in=digits.x_private[mem], y_in=digits.y_private[mem], x_out=digits.x_heldout[out],
                y_out=digits.y_heldout[out], overfit=overfit, never=never, shadows=shadows)


@pytest.mark.parametrize("attack", ["loss", "lira"])
def test_overfit_model_is_flagged_and_unseen_model_is_not(mia_case, attack):
    c = mia_case
    run = {"loss": lambda m: loss_attack(m, c["x_in"], c["y_in"], c["x_out"], c["y_out"], n_boot=200),
           "lira": lambda m: lira_attack(m, c["shadows"], c["x_in"], c["y_in"], c["x_out"], c["y_out"], n_boot=200)}[attack]
    leaky, clean = run(c["overfit"]), run(c["never"])
    assert leaky.auc > 0.65 and leaky.auc_ci[0] > 0.58, leaky.summary()
    assert leaky.epsilon_lower_bound > 0
    assert clean.auc_ci[0] <= 0.5 <= clean.auc_ci[1] and abs(clean.auc - 0.5) < 0.08, clean.summary()
    assert clean.epsilon_lower_bound < 0.5


def test_auc_and_tpr_at_fpr_against_sklearn_and_by_hand():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(1, 1, 400), rng.normal(0, 1, 1000)
    m = attack_metrics(s_in, s_out, n_boot=50)
    assert m["auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(400), np.zeros(1000)], np.r_[s_in, s_out]))
    lo, hi = m["auc_ci"]
    assert lo < m["auc"] < hi
    # TPR at FPR 1%: threshold at the 11th largest of 1000 non-member scores (10 false positives allowed)
    thr = np.sort(s_out)[::-1][10]
    assert m["tpr_at_fpr"][0.01]["tpr"] == pytest.approx(np.mean(s_in > thr))
    assert all(m["tpr_at_fpr"][f]["resolvable"] for f in FPR_LEVELS)
    assert not attack_metrics(s_in[:50], s_out[:300], n_boot=10)["tpr_at_fpr"][0.001]["resolvable"]


def test_clopper_pearson_and_epsilon_lower_bound():
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.187086, abs=1e-5) and hi == pytest.approx(0.812914, abs=1e-5)
    # a perfect attack on n records bounds eps from below, but never beyond what n records can show
    perfect = epsilon_lower_bound(np.ones(500), np.zeros(500), delta=1e-5)
    assert 2.0 < perfect["epsilon_lower_bound"] < math.log(250)
    same = np.random.default_rng(1).normal(size=(2, 500))
    assert epsilon_lower_bound(same[0], same[1])["epsilon_lower_bound"] < 0.5


def test_audit_model_reports_both_attacks_beside_the_claim(digits, mia_case):
    res = audit_model(mia_case["never"], digits, target="never-saw", claimed=claim(3.0, 1e-5, "record"),
                      shadows=None, n_boot=20, n_members=100)
    assert [r.attack for r in res] == ["loss"]
    with pytest.raises(DpsdError):  # LiRA needs the non-members to be the shadows' pool
        audit_model(mia_case["never"], digits, shadows=mia_case["shadows"], n_boot=5)
    text = format_audit(res)
    assert "eps=3, delta=1e-05, per record" in text and "lower bound" in text and "never a proof" in text
    row = res[0].summary()
    assert row["claimed_epsilon"] == 3.0 and row["claimed_delta"] == 1e-5 and row["n_members"] == 100


def test_shadow_models_come_in_complementary_pairs(digits):
    sh = train_shadow_models(digits.x_heldout[:40], digits.y_heldout[:40], num_shadows=2, epochs=1)
    assert sh.in_mask.shape == (2, 40) and torch.equal(sh.in_mask[0], ~sh.in_mask[1])
    with pytest.raises(DpsdError):
        train_shadow_models(digits.x_heldout[:40], digits.y_heldout[:40], num_shadows=3)


class Lookup(nn.Module):
    """A perfect memoriser: answers the label of the nearest stored image."""

    def __init__(self, x, y, k=10):
        super().__init__()
        self.x, self.y, self.k, self.w = x.flatten(1), y, k, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        nearest = torch.cdist(x.flatten(1), self.x).argmin(1)
        return nn.functional.one_hot(self.y[nearest], self.k).float() * 10 + 0 * self.w


def test_canaries_are_planted_in_a_copy_and_counted(digits):
    cs = plant_canaries(digits, num_canaries=12, seed=0)
    assert len(cs) == 12 and cs.data.name != digits.name
    changed = (cs.data.y_private != digits.y_private).nonzero().flatten()
    assert torch.equal(changed, cs.canary_index)  # only the canaries changed...
    assert (cs.canary_labels != cs.true_labels).all() and (cs.control_labels != cs.control_true).all()
    assert torch.equal(digits.y_private[cs.canary_index], cs.true_labels)  # ...in the copy, not the original
    memoriser = Lookup(cs.data.x_private, cs.data.y_private)
    hit = canary_exposure(memoriser, cs, target="memoriser")
    assert hit["canary_hits"] == 12 and hit["control_hits"] <= 2 and hit["p_value"] < 1e-3
    clean = canary_exposure(Lookup(digits.x_private, digits.y_private), cs, target="clean")
    assert clean["canary_hits"] <= 2 and clean["p_value"] > 0.05
    assert clean["canary_true_label_rate"] > 0.8
    text = format_canaries([hit, clean])
    assert "12/12" in text and "memoriser" in text
    with pytest.raises(DpsdError):
        plant_canaries(digits, num_canaries=0)


def test_claims_keep_the_unit_per_query_reports_make_no_record_claim(tiny_run):
    from dpsd_lite.ensemble import EnsembleVote, ensemble_privacy_report

    from dpsd_lite.audit import claimed_from_privacy

    per_query = claimed_from_privacy(tiny_run.privacy)  # rr at eps=2 per teacher answer
    assert per_query["epsilon"] == math.inf and per_query["delta"] is None
    assert "none at the record level" in per_query["unit"] and "per teacher answer" in per_query["unit"]
    mech = EnsembleVote(epsilon=2.0, delta=1e-5, max_queries=10)
    mech.release(torch.ones(10, 10))
    record = claimed_from_privacy(ensemble_privacy_report(mech))
    assert record["unit"] == "record" and record["delta"] == 1e-5 and 0 < record["epsilon"] <= 2.0
    assert claimed_from_privacy({"private": False, "epsilon": math.inf})["epsilon"] == math.inf


def test_roc_plot_is_log_log_and_utility_plot_marks_units(mia_case):
    from dpsd_lite.audit import plot_privacy_utility, plot_roc

    c = mia_case
    res = loss_attack(c["overfit"], c["x_in"], c["y_in"], c["x_out"], c["y_out"], target="overfit", n_boot=10)
    ax = plot_roc([res]).axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    rows = [{"model": "teacher", "mode": "teacher", "epsilon_target": math.inf, "unit": "none", "heldout_accuracy": 0.9},
            *({"model": f"{m} {e}", "mode": m, "epsilon_target": e, "unit": u, "heldout_accuracy": 0.5}
              for m, u in (("rr", "teacher answer"), ("dpsgd", "record")) for e in (1.0, 10.0))]
    legend = [t.get_text() for t in plot_privacy_utility(rows).axes[0].get_legend().get_texts()]
    assert "rr (per teacher answer)" in legend and "dpsgd (per record)" in legend


def test_cli_audit_of_a_saved_run(tiny_run, tmp_path, capsys):
    from dpsd_lite.cli import main
    from dpsd_lite.runs import save_run

    path = save_run(tiny_run, str(tmp_path / "run"))
    code = main(["audit", path, "--shadows", "2", "--shadow-epochs", "2", "--bootstrap", "20", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "student (rr)" in out and "teacher" in out and "lira-offline" in out
    assert "none at the record level (eps=2, delta=0 per teacher answer)" in out
    assert "never a proof of privacy" in out
    assert main(["audit", str(tmp_path / "missing")]) == 2
    assert "dpsd-lite: error:" in capsys.readouterr().err
