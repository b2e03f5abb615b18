"""The one-run audit (Steinke, Nasr & Jagielski 2023): its arithmetic, its validity and its power.

Statistical tests run on simulated scores (fast, seeded): with no leakage the
bound is 0 in at least 95% of trials; with a clear leak it is clearly
positive; against mechanisms whose ε is known (randomized response on the
membership bits, Gaussian-noised scores) it exceeds the true ε in at most a
(1 − confidence) share of trials. One test trains a tiny classifier on
``digits`` with mislabeled canaries.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.optimize import brentq
from scipy.stats import binom, norm

from dpsd_lite.audit import (OneRunCanaries, draw_membership, format_audit, one_run_attack, one_run_audit,
                             one_run_epsilon_from_counts, one_run_epsilon_lower_bound, one_run_exposure,
                             one_run_guess_grid, one_run_guesses, one_run_p_value, plant_one_run_canaries)
from dpsd_lite.errors import DpsdError

TRIALS = 200


# ---------------------------------------------------------------------------- the arithmetic

def _brute_force_p_value(m, r, v, eps, delta):
    """Corollary 5.4 term by term, with exact integer binomial coefficients (no scipy)."""
    q = math.exp(eps) / (1 + math.exp(eps))
    f = lambda u: 1.0 if u <= 0 else math.fsum(math.comb(r, w) * q ** w * (1 - q) ** (r - w) for w in range(u, r + 1))
    alpha = max((f(v - i) - f(v)) / i for i in range(1, m + 1))  # i over 1..m, as the corollary states
    return min(1.0, f(v) + 2 * m * delta * alpha)


@pytest.mark.parametrize("m, r, v, eps, delta", [
    (100, 100, 75, math.log(3), 0.0), (100, 100, 75, 0.7, 1e-4), (1000, 100, 75, 0.5, 1e-4),
    (50, 20, 20, 2.0, 1e-5), (60, 30, 12, 0.0, 1e-3), (40, 40, 0, 1.0, 1e-2), (300, 64, 50, 1.3, 1e-3),
])
def test_p_value_matches_a_brute_force_sum_and_scipy(m, r, v, eps, delta):
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(_brute_force_p_value(m, r, v, eps, delta),
                                                                 rel=1e-9, abs=1e-12)
    if delta == 0:  # then it is just the binomial upper tail
        q = math.exp(eps) / (1 + math.exp(eps))
        assert one_run_p_value(m, r, v, eps, 0.0) == pytest.approx(float(binom.sf(v - 1, r, q)), rel=1e-12)


def test_epsilon_from_counts_reproduces_the_papers_values_and_a_closed_form():
    # Steinke, Nasr & Jagielski (arXiv 2305.08846 v1), Appendix D and Section 7 (3 decimals printed there)
    assert one_run_p_value(100, 100, 75, math.log(3), 0.0) == pytest.approx(0.553, abs=1e-3)
    assert one_run_epsilon_from_counts(100, 100, 75, 0.0, 0.95) == pytest.approx(0.702, abs=1e-3)
    assert one_run_epsilon_from_counts(100, 100, 75, 1e-4, 0.95) == pytest.approx(0.699, abs=1e-3)
    assert one_run_epsilon_from_counts(1000, 100, 75, 1e-4, 0.95) == pytest.approx(0.673, abs=1e-3)
    assert one_run_epsilon_from_counts(100_000, 1510, 1439, 1e-5, 0.95) == pytest.approx(2.675, abs=1e-3)
    # δ = 0 and every guess right: the p-value is q^r, so ε = ln(a / (1 − a)) with a = β^(1/r)
    for r in (5, 16, 100):
        a = 0.05 ** (1 / r)
        assert one_run_epsilon_from_counts(r, r, r, 0.0, 0.95) == pytest.approx(math.log(a / (1 - a)), abs=1e-5)
    # the bound's p-value is at most β, and a hair more ε is rejected no longer
    e = one_run_epsilon_from_counts(500, 200, 160, 1e-5, 0.9)
    assert one_run_p_value(500, 200, 160, e, 1e-5) <= 0.1 < one_run_p_value(500, 200, 160, e + 1e-3, 1e-5)
    # chance-level guessing, or no guesses at all, proves nothing
    assert one_run_epsilon_from_counts(200, 100, 50, 1e-5) == 0.0
    assert one_run_epsilon_from_counts(200, 0, 0, 1e-5) == 0.0
    with pytest.raises(DpsdError):
        one_run_p_value(10, 20, 5, 1.0, 0.0)  # r > m


def test_guesses_take_the_extremes_and_the_grid_depends_on_m_only():
    s = np.array([0.3, 2.0, -1.0, 2.0, 0.0, -5.0])
    assert one_run_guesses(s, 2, 1).tolist() == [0, 1, 0, 1, 0, -1]
    assert one_run_guesses(s, 1, 2).tolist() == [0, 1, -1, 0, 0, -1]  # tie at 2.0: the first position wins
    assert one_run_guesses(s, 0, 0).tolist() == [0] * 6
    with pytest.raises(DpsdError):
        one_run_guesses(s, 4, 3)
    assert one_run_guess_grid(200) == [(10, 10), (25, 25), (50, 50), (100, 100)]
    inc = np.array([1, 1, 0, 1, 0, 0], bool)
    fixed = one_run_epsilon_lower_bound(s, inc, 1e-5, 0.95, k_plus=2, k_minus=1)
    assert (fixed["r"], fixed["v"], fixed["level"]) == (3, 3, pytest.approx(0.05))
    assert "fixed in advance" in fixed["variant"]
    grid = one_run_epsilon_lower_bound(np.r_[s, s], np.r_[inc, inc])
    assert grid["level"] == pytest.approx(0.05 / len(one_run_guess_grid(12))) and "union bound" in grid["variant"]
    with pytest.raises(DpsdError):
        one_run_epsilon_lower_bound(s, inc, k_plus=2)  # both or neither
    with pytest.raises(DpsdError):
        one_run_epsilon_lower_bound(s, inc[:5])


# ---------------------------------------------------------------------------- validity and power, simulated

@pytest.mark.parametrize("k", [None, 100])
def test_no_leak_gives_zero_in_at_least_95_percent_of_trials(k):
    """Scores of included and left-out canaries from one distribution: nothing to find."""
    rng = np.random.default_rng(0)
    zeros = 0
    for _ in range(TRIALS):
        included = rng.random(200) < 0.5
        scores = rng.normal(size=200)
        zeros += one_run_epsilon_lower_bound(scores, included, 1e-5, 0.95, k, k)["epsilon_lower_bound"] == 0
    assert zeros >= 0.95 * TRIALS, f"bound 0 in only {zeros}/{TRIALS} no-leak trials"


def test_clear_separation_gives_a_clearly_positive_bound():
    rng = np.random.default_rng(1)
    included = rng.random(200) < 0.5
    scores = np.where(included, rng.normal(4, 1, 200), rng.normal(0, 1, 200))
    out = one_run_epsilon_lower_bound(scores, included, 1e-5, 0.95)
    assert out["epsilon_lower_bound"] > 2.0, out
    assert out["v"] >= out["r"] - 2


def _rr_scores(included, eps, rng):
    """Randomized response on each membership bit: ε-DP with respect to each canary's inclusion."""
    keep = rng.random(len(included)) < math.exp(eps) / (1 + math.exp(eps))
    return np.where(keep, included, ~included).astype(float)


@pytest.mark.parametrize("eps, confidence", [(1.0, 0.95), (1.0, 0.75), (2.0, 0.95)])
def test_randomized_response_at_known_epsilon_is_exceeded_at_most_at_the_stated_rate(eps, confidence):
    """Guessing on every canary, the audit is nearly tight here: the rate is close to, and below, 1 − confidence."""
    rng = np.random.default_rng(2)
    m, beta = 1000, 1 - confidence
    exceed, bounds = 0, []
    for _ in range(TRIALS):
        included = rng.random(m) < 0.5
        lb = one_run_epsilon_lower_bound(_rr_scores(included, eps, rng), included, 0.0, confidence,
                                         m // 2, m // 2)["epsilon_lower_bound"]
        exceed += lb > eps
        bounds.append(lb)
    margin = 2 * math.sqrt(TRIALS * beta * (1 - beta))  # two binomial standard deviations
    assert exceed <= beta * TRIALS + margin, f"exceeded eps={eps} in {exceed}/{TRIALS} trials"
    assert np.mean(bounds) > 0.7 * eps  # and it is not vacuous: the bound comes close to the truth


def _gdp_epsilon(mu, delta):
    """The ε at which μ-GDP (Dong, Roth & Su 2022) is (ε, δ)-DP: the root of their δ(ε) formula."""
    return brentq(lambda e: norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta, 0, 100)


def test_gaussian_scores_with_known_gdp_never_exceed_their_epsilon():
    """Score = μ·(included) + N(0, 1): each canary's inclusion is μ-GDP, i.e. (ε(δ), δ)-DP."""
    rng = np.random.default_rng(3)
    mu, delta, m = 1.0, 1e-5, 300
    eps_true = _gdp_epsilon(mu, delta)  # 4.38
    exceed = 0
    for _ in range(TRIALS):
        included = rng.random(m) < 0.5
        scores = mu * included + rng.normal(size=m)
        exceed += one_run_epsilon_lower_bound(scores, included, delta, 0.95)["epsilon_lower_bound"] > eps_true
    assert exceed <= 0.05 * TRIALS


# ---------------------------------------------------------------------------- canaries, membership, a real model

def test_membership_is_secret_by_default_and_repeats_only_with_a_seed():
    a, src = draw_membership(256)
    b, _ = draw_membership(256)
    assert not torch.equal(a, b)  # two secret draws of 256 fair coins agree with probability 2^-256
    assert src["reproducible_noise"] is False and "entropy" in src["noise_source"]
    c, src_c = draw_membership(256, seed=7)
    assert torch.equal(c, draw_membership(256, seed=7)[0]) and src_c["reproducible_noise"] is True
    many, _ = draw_membership(20_000)
    assert abs(many.float().mean().item() - 0.5) < 0.02


def test_canaries_are_planted_with_their_membership(digits):
    cs = plant_one_run_canaries(digits, 60, "mislabeled", seed=0, membership_seed=1)
    assert isinstance(cs, OneRunCanaries) and len(cs) == 60
    n_in = int(cs.included.sum())
    assert len(cs.data.y_private) == len(digits.y_private) - 60 + n_in  # left-out canaries are removed
    assert torch.equal(cs.data.x_heldout, digits.x_heldout)
    assert (cs.y != cs.true_labels).all() and torch.equal(cs.true_labels, digits.y_private[cs.private_index])
    train = {tuple(x.flatten().tolist()): int(y) for x, y in zip(cs.data.x_private, cs.data.y_private)}
    for x, y, inc in zip(cs.x, cs.y, cs.included):
        key = tuple(x.flatten().tolist())
        assert (key in train) == bool(inc) and (not inc or train[key] == int(y))
    natural = plant_one_run_canaries(digits, 10, "natural", membership_seed=1)
    assert torch.equal(natural.y, natural.true_labels)
    with pytest.raises(DpsdError):
        plant_one_run_canaries(digits, 10, "crafted")


def _memorising_mlp(data, steps=300):
    """A small non-private classifier trained to 100% training accuracy: it learns the canaries' wrong labels."""
    with torch.random.fork_rng():  # seeded initialisation without touching the caller's generator
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(data.x_private), data.y_private)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def test_a_memorising_classifier_gives_a_clearly_positive_bound(digits):
    res, cs, net = one_run_audit(_memorising_mlp, digits, num_canaries=100, membership_seed=1, n_boot=20)
    with torch.no_grad():
        assert (net(cs.data.x_private).argmax(1) == cs.data.y_private).float().mean() == 1.0
    lb = res.metrics["eps_lb"]
    assert res.attack == "one-run" and res.epsilon_lower_bound > 1.5, lb
    assert lb["v"] == lb["r"] and lb["m"] == 100
    exposure = one_run_exposure(net, cs)
    assert exposure["canary_hits"] == int(cs.included.sum()) and exposure["control_hits"] <= 2
    text = format_audit([res])
    assert "must satisfy" in text and "SEEDED" in text and "Cor. 5.4" in text
    # the same canaries against a model trained on the original data (every canary record, true label): its
    # output does not depend on the coin flips, so there is nothing to find
    control = one_run_attack(_memorising_mlp(digits, steps=100), cs, n_boot=10)
    assert control.epsilon_lower_bound == 0.0


def test_privacy_study_puts_the_record_level_routes_side_by_side(digits, monkeypatch, tmp_path):
    """Plain DP-SGD, DP-SGD from public drawings and a student transcribed from that DP model, each with its
    record-level claim (and wall time) beside the per-answer DPSD student."""
    from dpsd_lite import dpsgd
    from dpsd_lite.audit import StudySettings, format_study, privacy_study

    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_steps", 20)
    s = StudySettings(epsilons=(5.0,), modes=("rr",), transcribe={"steps": 3, "batch_size": 32}, teacher_epochs=2,
                      dpsgd={"epochs": 1, "batch_size": 128}, dp_teacher={"epochs": 1, "batch_size": 128},
                      ensemble_teachers=0, num_shadows=0, n_boot=10, canaries=20, membership_seed=0, seed=0)
    study = privacy_study(digits, s, cache_dir=str(tmp_path), log=None)
    by_mode = {r["mode"]: r for r in study.rows}
    assert {"teacher", "rr", "dpsgd", "dpsgd-public", "dp-teacher"} <= set(by_mode)
    for mode in ("dpsgd", "dpsgd-public", "dp-teacher"):
        row = by_mode[mode]
        assert row["unit"] == "record" and 0 < row["epsilon"] <= 5.0 and row["seconds"] > 0, row
    assert by_mode["rr"]["unit"] == "teacher answer"
    assert "dp-teacher student" in format_study(study)
    # the audited student starts from its DP teacher's weights, as `dpsd-lite transcribe --teacher-dp-epsilon` does
    assert by_mode["dp-teacher"]["student_init"] == "teacher"


def test_the_record_level_route_is_audited_with_the_dp_teachers_shipped_recipe(digits, monkeypatch, tmp_path):
    """The audited DP-SGD-from-public route is the DP teacher users get (dpsgd.DP_TEACHER), not plain DP-SGD's
    settings; plain DP-SGD can be left out."""
    from dpsd_lite import dpsgd
    from dpsd_lite.audit import StudySettings, privacy_study, study as study_module

    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_steps", 20)
    monkeypatch.setitem(dpsgd.DP_TEACHER, "epochs", 1)
    calls = []
    real = study_module.train_dpsgd

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(study_module, "train_dpsgd", spy)
    s = StudySettings(epsilons=(5.0,), modes=(), teacher_epochs=2, dpsgd={"epochs": 1, "batch_size": 128},
                      plain_dpsgd=False, dp_teacher_student=False, ensemble_teachers=0, num_shadows=0, n_boot=10,
                      canaries=20, membership_seed=0, seed=0)
    study = privacy_study(digits, s, cache_dir=str(tmp_path), log=None)
    assert [r["mode"] for r in study.rows] == ["teacher", "dpsgd-public"]
    assert len(calls) == 1 and calls[0]["init"] is not None
    _, recipe = dpsgd.split_recipe()  # train_dpsgd's part of the shipped recipe
    assert {k: calls[0][k] for k in recipe} == recipe


def test_audit_verdicts_compare_each_record_level_bound_with_its_claim_and_want_leakage_from_the_control():
    from dpsd_lite.audit import Study, StudySettings, audit_verdicts, format_verdicts

    def row(model, mode, unit, eps, lb):
        return {"model": model, "mode": mode, "unit": unit, "epsilon": eps, "eps_lower_bound": lb}

    rows = [row("teacher", "teacher", "none", math.inf, 1.7), row("student rr eps=10", "rr", "teacher answer", 10, 0.0),
            row("dp-teacher student eps=1", "dp-teacher", "record", 0.98, 0.0),
            row("dpsgd-public eps=1", "dpsgd-public", "record", 0.98, 1.2),
            {"model": "no canaries", "mode": "dpsgd", "unit": "record", "epsilon": 1.0, "eps_lower_bound": None}]
    study = Study(rows, [], [], StudySettings(canaries=100), "mnist-5k")
    v = {x["model"]: x for x in audit_verdicts(study)}
    assert set(v) == {"teacher", "dp-teacher student eps=1", "dpsgd-public eps=1"}  # no verdict without a claim/bound
    assert v["teacher"]["ok"] and v["teacher"]["verdict"] == "leakage found"
    assert v["dp-teacher student eps=1"]["ok"] and v["dp-teacher student eps=1"]["verdict"] == "agrees"
    assert not v["dpsgd-public eps=1"]["ok"] and v["dpsgd-public eps=1"]["verdict"] == "EXCEEDS THE CLAIM"
    rows[0]["eps_lower_bound"] = 0.0
    assert audit_verdicts(study)[0]["verdict"] == "no leakage found: attack too weak"
    text = format_verdicts(study)
    assert "100 canaries" in text and "EXCEEDS THE CLAIM" in text and "none (inf)" in text
