"""The audit: attacks flag an overfit model and not a model that never saw the members; metrics; canaries.

The fixed-split attacks (loss, LiRA) give descriptive figures only; the valid
ε lower bound (the one-run audit) is tested in ``test_one_run_audit.py``.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dpsd_lite.audit import (FPR_LEVELS, ShadowModels, Study, StudySettings, attack_metrics, audit_model,
                             canary_exposure, claim, clopper_pearson, format_audit, format_canaries, format_study,
                             lira_attack, lira_out_mask, loss_attack, plant_canaries, plant_one_run_canaries,
                             pooled_epsilon_statistic, train_classifier, train_shadow_models)
from dpsd_lite.errors import DpsdError
from dpsd_lite.models import Student


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


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
    assert leaky.pooled_epsilon > 0  # descriptive: members were not randomised, so no bound is claimed
    assert clean.auc_ci[0] <= 0.5 <= clean.auc_ci[1] and abs(clean.auc - 0.5) < 0.08, clean.summary()
    assert clean.pooled_epsilon < 0.5
    assert leaky.epsilon_lower_bound is None and clean.epsilon_lower_bound is None


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


def test_clopper_pearson_and_the_pooled_statistic():
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.187086, abs=1e-5) and hi == pytest.approx(0.812914, abs=1e-5)
    # perfect separation of n records gives a large value, never beyond what n records can show; it is
    # labelled descriptive (records of one model with fixed membership are not independent trials)
    perfect = pooled_epsilon_statistic(np.ones(500), np.zeros(500), delta=1e-5)
    assert 2.0 < perfect["epsilon"] < math.log(250) and perfect["is_lower_bound"] is False
    assert "descriptive" in perfect["method"]
    same = np.random.default_rng(1).normal(size=(2, 500))
    assert pooled_epsilon_statistic(same[0], same[1])["epsilon"] < 0.5


def test_audit_model_reports_both_attacks_beside_the_claim(digits, mia_case):
    res = audit_model(mia_case["never"], digits, target="never-saw", claimed=claim(3.0, 1e-5, "record"),
                      shadows=None, n_boot=20, n_members=100)
    assert [r.attack for r in res] == ["loss"]
    with pytest.raises(DpsdError):  # LiRA needs the non-members to be the shadows' pool
        audit_model(mia_case["never"], digits, shadows=mia_case["shadows"], n_boot=5)
    text = format_audit(res)
    assert "eps=3, delta=1e-05, per record" in text and "lower bound" in text and "never a proof" in text
    # no randomised membership here: the table must not present any figure as a bound
    assert "NOT a lower bound" in text and "no eps lower bound" in text and "must satisfy" not in text
    row = res[0].summary()
    assert row["claimed_epsilon"] == 3.0 and row["claimed_delta"] == 1e-5 and row["n_members"] == 100
    assert row["eps_lower_bound"] is None and row["eps_pooled_descriptive"] is not None


def test_shadow_models_come_in_complementary_pairs(digits):
    sh = train_shadow_models(digits.x_heldout[:40], digits.y_heldout[:40], num_shadows=2, epochs=1)
    assert sh.in_mask.shape == (2, 40) and torch.equal(sh.in_mask[0], ~sh.in_mask[1])
    with pytest.raises(DpsdError):
        train_shadow_models(digits.x_heldout[:40], digits.y_heldout[:40], num_shadows=3)


def test_lira_scores_members_and_nonmembers_with_equally_many_shadows(mia_case):
    """Every record, member or not, is compared with exactly S/2 shadows that never saw it."""
    sh = mia_case["shadows"]  # 4 shadows on 150 pool records
    out = lira_out_mask(sh, n_members=60, seed=0)
    assert out.shape == (4, 210)
    assert (out.sum(0) == 2).all()  # the same count on both sides
    assert torch.equal(out[:, 60:], ~sh.in_mask)  # a pool record: the shadows it was out for
    assert torch.equal(out[0::2, :60], ~out[1::2, :60])  # a member: one shadow of each pair
    assert 0.3 < out[0, :60].float().mean() < 0.7  # which one is drawn at random
    c = mia_case
    res = lira_attack(c["never"], sh, c["x_in"], c["y_in"], c["x_out"], c["y_out"], n_boot=5)
    assert res.metrics["shadows_per_record"] == 2
    unpaired = ShadowModels(sh.models, torch.stack([sh.in_mask[0], sh.in_mask[2]]), sh.epochs)
    with pytest.raises(DpsdError):
        lira_out_mask(unpaired, 60)


def test_audit_model_adds_the_one_run_bound_when_canaries_are_planted(digits, mia_case):
    cs = plant_one_run_canaries(digits, 40, "mislabeled", seed=0, membership_seed=3)
    memoriser = Lookup(cs.data.x_private, cs.data.y_private)  # trained on the copy: memorises the kept canaries
    res = audit_model(memoriser, digits, target="memoriser", claimed=claim(1.0, 1e-5, "record"), n_boot=10,
                      n_members=100, canaries=cs)
    assert [r.attack for r in res] == ["loss", "one-run"]
    one_run = res[1]
    assert one_run.epsilon_lower_bound > 0.5 and one_run.pooled_epsilon is None
    assert one_run.summary()["eps_lower_bound"] == one_run.epsilon_lower_bound
    text = format_audit(res)
    assert "must satisfy" in text and "Steinke, Nasr & Jagielski 2023" in text and "NOT a lower bound" in text
    assert text.count("must satisfy") == 1  # only where the framework's assumptions hold


def test_study_table_prints_the_one_run_bound_and_flags_a_contradicted_claim():
    def row(model, unit, eps, lb):
        r = {"model": model, "mode": "dpsgd", "epsilon_target": eps, "epsilon": eps, "delta": 1e-5, "unit": unit,
             "record_claim": claim(eps, 1e-5, unit), "heldout_accuracy": 0.9, "loss_auc": 0.5,
             "loss_auc_ci": (0.45, 0.55), "eps_lower_bound": lb, "canary_rate": 0.1, "control_rate": 0.1}
        if lb is not None:
            r["one_run"] = {"m": 100, "r": 50, "v": 40, "k_plus": 25, "k_minus": 25, "level": 0.0125,
                            "confidence": 0.95, "delta": 1e-5, "variant": "best of 4 (k+, k-) pairs"}
        return r

    exposure = {"n": 48, "n_control": 52}
    study = Study([row("dpsgd eps=1", "record", 1.0, 0.4), row("dpsgd eps=0.5", "record", 0.5, 1.2)], [],
                  [exposure], StudySettings(), "digits")
    text = format_study(study)
    assert " 0.40 " in text and "1.20!" in text  # '!' : a bound above the record-level claim
    assert "must satisfy" in text and "secret coin flip" in text and "48 canaries kept" in text
    none = format_study(Study([row("teacher", "none", math.inf, None)], [], [], StudySettings(canaries=0), "digits"))
    assert "eps LB: none" in none and "must satisfy" not in none


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
    from dpsd_lite.mechanisms import EnsembleVote
    from dpsd_lite.report import ensemble_privacy_report

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
