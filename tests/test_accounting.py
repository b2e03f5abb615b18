"""Accounting: every ε the package prints is checked against an independent oracle.

Oracles used here (none of them calls the function under test to get the expected value):
* the analytic Gaussian mechanism's closed form (Balle & Wang 2018), evaluated in
  this file with scipy:  δ(ε) = Φ(-ε/μ + μ/2) − e^ε Φ(-ε/μ − μ/2),  μ = 1/σ;
* Opacus's PRV accountant (numerical, an upper bound within eps_error = 0.01);
* Opacus's own published test vectors (``opacus/tests/accountants_test.py``);
* the RDP → (ε, δ) conversion written out by hand, so the test states *which*
  conversion we expect: current Opacus (1.6) uses the improved conversion of
  Balle et al. 2020 (Thm 21 of arXiv:1905.09982), not Mironov's 2017 one;
* closed forms for k-ary randomized response.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from dpsd_lite import accounting as acc
from dpsd_lite.errors import DpsdError

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore:Optimal order:UserWarning")

EPSILONS = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]
DELTAS = [1e-8, 1e-5, 1e-3, 0.1]


# --------------------------------------------------------------------------- independent oracles
def delta_closed_form(eps: float, sigma: float) -> float:
    """δ(ε) of one Gaussian release with noise multiplier σ, written out from Balle & Wang (2018)."""
    mu = 1.0 / sigma
    first = norm.cdf(-eps / mu + mu / 2)
    second = math.exp(eps + norm.logcdf(-eps / mu - mu / 2))  # e^ε Φ(.) in log space
    return first - second


def eps_closed_form(sigma: float, delta: float) -> float:
    """Exact ε at δ, by inverting the closed form with scipy (0 if the release is (0, δ)-DP)."""
    if delta_closed_form(0.0, sigma) <= delta:
        return 0.0
    return brentq(lambda e: delta_closed_form(e, sigma) - delta, 0.0, 1000.0, xtol=1e-13, rtol=1e-12)


OPACUS_ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def rdp_to_eps_balle2020(rdp, alphas, delta):
    """Improved RDP → (ε, δ) conversion (Balle et al. 2020, Thm 21), as current Opacus uses."""
    a = np.asarray(alphas, dtype=float)
    eps = np.asarray(rdp) - (np.log(delta) + np.log(a)) / (a - 1) + np.log((a - 1) / a)
    return float(np.nanmin(eps))


def rdp_to_eps_mironov2017(rdp, alphas, delta):
    """Classic RDP → (ε, δ) conversion (Mironov 2017, Prop. 3): ε = RDP(α) + log(1/δ)/(α−1)."""
    a = np.asarray(alphas, dtype=float)
    return float(np.min(np.asarray(rdp) + np.log(1 / delta) / (a - 1)))


# --------------------------------------------------------------------------- analytic Gaussian
@pytest.mark.parametrize("delta", DELTAS)
@pytest.mark.parametrize("eps", EPSILONS)
def test_gaussian_calibration_round_trip(eps, delta):
    sigma = acc.gaussian_noise_multiplier(eps, delta)
    assert sigma > 0
    # ε → σ → ε through the package
    assert acc.gaussian_epsilon(sigma, delta) == pytest.approx(eps, rel=1e-6)
    # σ really achieves δ at ε according to the independently written closed form ...
    assert delta_closed_form(eps, sigma) == pytest.approx(delta, rel=1e-6)
    # ... and is the smallest such σ: 0.01% less noise already violates (ε, δ)
    assert delta_closed_form(eps, sigma * (1 - 1e-4)) > delta


@pytest.mark.parametrize("delta", [1e-5, 1e-3])
@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 2.0, 5.0, 20.0])
def test_gaussian_epsilon_matches_closed_form(sigma, delta):
    eps = acc.gaussian_epsilon(sigma, delta)
    assert eps == pytest.approx(eps_closed_form(sigma, delta), rel=1e-6, abs=1e-9)
    assert delta_closed_form(eps, sigma) == pytest.approx(delta, rel=1e-5)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("eps", [0.0, 0.5, 2.0, 8.0])
def test_gaussian_delta_matches_closed_form(sigma, eps):
    assert acc.gaussian_delta(sigma, eps) == pytest.approx(max(0.0, delta_closed_form(eps, sigma)), rel=1e-9, abs=1e-300)


def test_gaussian_epsilon_is_monotone_in_sigma_and_delta():
    sigmas = [0.4, 0.8, 1.6, 3.2]
    eps = [acc.gaussian_epsilon(s, 1e-5) for s in sigmas]
    assert all(a > b for a, b in zip(eps, eps[1:]))  # more noise, smaller ε
    assert acc.gaussian_epsilon(1.0, 1e-3) < acc.gaussian_epsilon(1.0, 1e-6)  # larger δ, smaller ε


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 5.0])
def test_gaussian_epsilon_agrees_with_opacus_prv_for_one_release(sigma):
    delta = 1e-5
    exact = acc.gaussian_epsilon(sigma, delta)
    from opacus.accountants import PRVAccountant

    prv = PRVAccountant()
    prv.history = [(sigma, 1.0, 1)]
    prv_eps = prv.get_epsilon(delta=delta)  # an upper bound, eps_error = 0.01 (absolute)
    assert exact <= prv_eps + 1e-6
    assert prv_eps - exact <= 0.01 * exact + 0.011
    # composed_epsilon(..., 'prv') is the same Opacus computation
    assert acc.composed_epsilon(sigma, 1.0, 1, delta, "prv") == pytest.approx(prv_eps, rel=1e-9)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 3.0])
def test_rdp_single_release_uses_balle2020_conversion(sigma):
    """RDP of one Gaussian release is α/(2σ²); Opacus 1.6 converts it with Balle et al. 2020."""
    delta = 1e-5
    rdp = [a / (2 * sigma**2) for a in OPACUS_ALPHAS]
    expected = rdp_to_eps_balle2020(rdp, OPACUS_ALPHAS, delta)
    got = acc.composed_epsilon(sigma, 1.0, 1, delta, "rdp")
    assert got == pytest.approx(expected, rel=1e-9)
    assert got < rdp_to_eps_mironov2017(rdp, OPACUS_ALPHAS, delta)  # strictly tighter than the old conversion
    assert got >= acc.gaussian_epsilon(sigma, delta) - 1e-9  # RDP is a valid, looser bound than the exact curve


@pytest.mark.parametrize("steps", [4, 25])
def test_composition_without_subsampling_is_mu_gdp(steps):
    """T Gaussian releases (q = 1) compose to exactly μ-GDP with μ = √T/σ (MISSION §5)."""
    sigma, delta = 2.0, 1e-5
    exact = eps_closed_form(sigma / math.sqrt(steps), delta)
    prv = acc.composed_epsilon(sigma, 1.0, steps, delta, "prv")
    assert exact - 1e-6 <= prv <= exact * 1.01 + 0.011
    assert acc.composed_epsilon(sigma, 1.0, steps, delta, "rdp") >= exact


@pytest.mark.parametrize("eps", [0.1, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("delta", [1e-8, 1e-5, 1e-3])
def test_classic_formula_is_looser_than_analytic_below_one(eps, delta):
    classic = acc.classic_gaussian_noise_multiplier(eps, delta)
    assert classic == pytest.approx(math.sqrt(2 * math.log(1.25 / delta)) / eps, rel=1e-12)
    analytic = acc.gaussian_noise_multiplier(eps, delta)
    assert classic > analytic
    # the classic σ is valid for ε < 1 (Dwork & Roth Thm A.1): its δ(ε) is below the target
    assert delta_closed_form(eps, classic) <= delta


# --------------------------------------------------------------------------- Opacus test vectors
def test_opacus_rdp_test_vector():
    # opacus/tests/accountants_test.py::test_rdp_accountant, steps = int(90 / 0.04) = 2250.
    # Current Opacus RDP uses the improved Balle et al. 2020 RDP→(ε, δ) conversion;
    # the 7.3291 value is for that conversion, not Mironov's.
    eps = acc.composed_epsilon(1.5, 0.04, 2250, 1e-5, "rdp")
    assert eps == pytest.approx(7.32911117143, abs=1e-6)


def test_opacus_prv_test_vector():
    # opacus/tests/accountants_test.py::test_prv_accountant uses steps = int(90 // 0.04),
    # which is 2249 in floating point (90 // 0.04 == 2249.0), giving 6.777395712150674.
    eps_2249 = acc.composed_epsilon(1.5, 0.04, 2249, 1e-5, "prv")
    assert eps_2249 == pytest.approx(6.777395712150674, abs=1e-4)
    # MISSION §5 quotes 2250 steps: one more step moves PRV ε by ~0.002 (6.7791), still ≈ 6.7774.
    eps_2250 = acc.composed_epsilon(1.5, 0.04, 2250, 1e-5, "prv")
    assert eps_2249 < eps_2250 == pytest.approx(6.7774, rel=1e-3)
    assert eps_2250 < acc.composed_epsilon(1.5, 0.04, 2250, 1e-5, "rdp")  # PRV is tighter than RDP


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_composed_noise_multiplier_round_trip(accountant):
    eps, delta, q, steps = 2.0, 1e-5, 0.05, 30
    sigma = acc.composed_noise_multiplier(eps, delta, q, steps, accountant=accountant)
    got = acc.composed_epsilon(sigma, q, steps, delta, accountant)
    # Opacus's get_noise_multiplier returns a σ whose ε is below the target by < epsilon_tolerance (0.005),
    # plus PRV's own numerical eps_error (0.01)
    slack = 0.005 if accountant == "rdp" else 0.02
    assert eps - slack <= got <= eps + 1e-9
    # and a clearly smaller σ would overspend the budget
    assert acc.composed_epsilon(sigma * 0.9, q, steps, delta, accountant) > eps


def test_composed_noise_multiplier_exceeds_single_release_sigma():
    """Many releases at the same total ε need more noise each than one release."""
    single = acc.gaussian_noise_multiplier(2.0, 1e-5)
    many = acc.composed_noise_multiplier(2.0, 1e-5, 1.0, 10, accountant="rdp")
    assert many > 2.5 * single  # μ-GDP: roughly √10 ≈ 3.2 times the noise


# --------------------------------------------------------------------------- randomized response
def test_rr_keep_probability_reference_value():
    assert acc.rr_keep_probability(1.0, 10) == pytest.approx(0.231969, abs=1e-6)
    assert acc.rr_keep_probability(1.0, 10) == pytest.approx(math.e / (math.e + 9), rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5, 10, 100])
@pytest.mark.parametrize("eps", [0.1, 1.0, 5.0, 50.0, 800.0])
def test_rr_keep_probability_closed_form_and_dp(eps, k):
    p = acc.rr_keep_probability(eps, k)
    assert math.isfinite(p) and 0 < p <= 1
    if k == 1:
        assert p == 1.0
        return
    other = (1 - p) / (k - 1)
    if eps < 700:  # e^ε is finite: compare with the textbook form
        assert p == pytest.approx(math.exp(eps) / (math.exp(eps) + k - 1), rel=1e-12)
    if eps < 20:  # 1 - p is still resolvable in float64
        assert p / other == pytest.approx(math.exp(eps), rel=1e-9)  # the likelihood ratio is exactly e^ε
    assert p >= 1 / k


@pytest.mark.parametrize("k", [2, 3, 10, 50])
@pytest.mark.parametrize("eps", [0.05, 0.5, 1.0, 4.0, 12.0])
def test_rr_epsilon_inverts_keep_probability(eps, k):
    assert acc.rr_epsilon(acc.rr_keep_probability(eps, k), k) == pytest.approx(eps, rel=1e-9)


@pytest.mark.parametrize("p,k", [(0.1, 10), (0.05, 10), (1.0, 10), (1.2, 10), (0.5, 2), (-0.1, 3), (float("nan"), 10), (0.9, 1)])
def test_rr_epsilon_rejects_impossible_keep_probability(p, k):
    with pytest.raises(DpsdError):
        acc.rr_epsilon(p, k)


@pytest.mark.parametrize("k", [0, -3])
def test_rr_keep_probability_rejects_bad_k(k):
    with pytest.raises(DpsdError):
        acc.rr_keep_probability(1.0, k)


def test_rr_epsilon_rejects_bad_k():
    with pytest.raises(DpsdError):
        acc.rr_epsilon(0.5, 0)


# --------------------------------------------------------------------------- bad inputs
BAD_EPSILONS = [0, 0.0, -1.0, -1e-12, float("nan"), float("inf"), float("-inf"), "abc", "", None, [1.0]]
BAD_DELTAS = [0, 0.0, -1e-5, 1.0, 1, 1.5, float("nan"), float("inf"), "abc", None]

EPS_TAKERS = {
    "check_epsilon": lambda e: acc.check_epsilon(e),
    "gaussian_noise_multiplier": lambda e: acc.gaussian_noise_multiplier(e, 1e-5),
    "classic_gaussian_noise_multiplier": lambda e: acc.classic_gaussian_noise_multiplier(e, 1e-5),
    "rr_keep_probability": lambda e: acc.rr_keep_probability(e, 10),
    "composed_noise_multiplier": lambda e: acc.composed_noise_multiplier(e, 1e-5, 0.01, 10),
}
DELTA_TAKERS = {
    "check_delta": lambda d: acc.check_delta(d),
    "gaussian_epsilon": lambda d: acc.gaussian_epsilon(1.0, d),
    "gaussian_noise_multiplier": lambda d: acc.gaussian_noise_multiplier(1.0, d),
    "classic_gaussian_noise_multiplier": lambda d: acc.classic_gaussian_noise_multiplier(1.0, d),
    "composed_epsilon": lambda d: acc.composed_epsilon(1.0, 0.01, 10, d),
    "composed_noise_multiplier": lambda d: acc.composed_noise_multiplier(1.0, d, 0.01, 10),
}


@pytest.mark.parametrize("bad", BAD_EPSILONS, ids=repr)
@pytest.mark.parametrize("fn", list(EPS_TAKERS), ids=str)
def test_bad_epsilon_raises_dpsd_error(fn, bad):
    with pytest.raises(DpsdError, match="epsilon"):
        EPS_TAKERS[fn](bad)


@pytest.mark.parametrize("bad", BAD_DELTAS, ids=repr)
@pytest.mark.parametrize("fn", list(DELTA_TAKERS), ids=str)
def test_bad_delta_raises_dpsd_error(fn, bad):
    with pytest.raises(DpsdError, match="delta"):
        DELTA_TAKERS[fn](bad)


def test_valid_inputs_are_accepted_as_floats():
    assert acc.check_epsilon(np.float32(1.0)) == 1.0 and type(acc.check_epsilon(np.int64(3))) is float
    assert acc.check_delta(np.float64(1e-5)) == 1e-5 and type(acc.check_delta(np.float32(0.5))) is float


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_noise_multiplier_raises_dpsd_error(bad):
    with pytest.raises(DpsdError):
        acc.gaussian_epsilon(bad, 1e-5)
    with pytest.raises(DpsdError):
        acc.composed_epsilon(bad, 0.01, 10, 1e-5)


def test_unknown_accountant_raises_dpsd_error():
    with pytest.raises(DpsdError, match="accountant"):
        acc.composed_epsilon(1.0, 0.01, 10, 1e-5, accountant="gdp")
    with pytest.raises(DpsdError, match="accountant"):
        acc.composed_noise_multiplier(1.0, 1e-5, 0.01, 10, accountant="moments")


# ---- regressions: each of these once escaped as a raw exception or a wrong answer
@pytest.mark.parametrize("bad", ["abc", None])
def test_non_numeric_noise_multiplier_raises_dpsd_error(bad):
    with pytest.raises(DpsdError):
        acc.gaussian_epsilon(bad, 1e-5)


@pytest.mark.parametrize("sigma,delta", [(100.0, 0.1), (1e4, 1e-3)])
def test_gaussian_epsilon_is_zero_when_noise_alone_meets_delta(sigma, delta):
    assert delta_closed_form(0.0, sigma) <= delta  # the release is already (0, δ)-DP
    assert acc.gaussian_epsilon(sigma, delta) == pytest.approx(0.0, abs=1e-9)


def test_gaussian_delta_rejects_nan_epsilon():
    with pytest.raises(DpsdError):
        acc.gaussian_delta(1.0, float("nan"))


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5])
def test_composed_epsilon_rejects_bad_sample_rate(q):
    with pytest.raises(DpsdError):
        acc.composed_epsilon(1.0, q, 10, 1e-5)


# --------------------------------------------------------------------------- the whole run: every answer composed
def brute_force_rr_delta(eps: float, k: int, total: float) -> float:
    """δ(total) of k binary randomized responses composed, by enumerating all 2^k outputs (an oracle for small k):
    the hockey-stick divergence sum over outputs of max(0, P(o) − e^total·Q(o))."""
    import itertools

    keep = math.exp(eps) / (1 + math.exp(eps))
    out = 0.0
    for o in itertools.product((0, 1), repeat=k):  # 0: the answer of input A, 1: of input B
        flips = sum(o)
        p = keep ** (k - flips) * (1 - keep) ** flips
        q = keep ** flips * (1 - keep) ** (k - flips)
        out += max(0.0, p - math.exp(total) * q)
    return out


@pytest.mark.parametrize("eps,k,total", [(1.0, 1, 0.5), (1.0, 3, 1.2), (0.5, 8, 1.0), (2.0, 6, 5.0), (0.3, 10, 0.0)])
def test_pure_composition_delta_matches_brute_force(eps, k, total):
    assert acc.pure_composition_delta(eps, k, total) == pytest.approx(brute_force_rr_delta(eps, k, total), abs=1e-12)


def test_pure_composition_epsilon_of_one_answer_and_the_basic_bound():
    # one answer: ε' solves (1 − q)(1 − e^(ε'−ε)) = δ, q = 1/(1 + e^ε): just below ε
    eps, delta = 1.0, 1e-5
    keep = math.exp(eps) / (1 + math.exp(eps))
    expected = eps + math.log(1 - delta / keep)
    assert acc.pure_composition_epsilon(eps, 1, delta) == pytest.approx(expected, rel=1e-8)
    # never above basic composition k·ε; at ε = 10 almost exactly it (a flip is rarer than δ allows to ignore)
    assert acc.pure_composition_epsilon(10.0, 174080, 1e-5) <= 174080 * 10.0
    assert acc.pure_composition_epsilon(10.0, 174080, 1e-5) > 0.9999 * 174080 * 10.0


@pytest.mark.parametrize("eps,k", [(0.1, 1000), (0.05, 5000)])
def test_pure_composition_is_within_the_advanced_composition_bound(eps, k):
    """Dwork, Rothblum & Vadhan's advanced composition is a valid (looser) bound: the optimal one lies below it."""
    delta = 1e-5
    advanced = math.sqrt(2 * k * math.log(1 / delta)) * eps + k * eps * (math.exp(eps) - 1)
    optimal = acc.pure_composition_epsilon(eps, k, delta)
    assert optimal < advanced < k * eps
    assert acc.pure_composition_delta(eps, k, optimal) == pytest.approx(delta, rel=1e-6)


@pytest.mark.parametrize("sigma,n", [(1.5, 100), (4.0, 1000), (0.8, 10)])
def test_gaussian_composition_equals_opacus_rdp_accountant(sigma, n):
    """Where the best Rényi order lies in Opacus's own grid, the whole-run figure is Opacus's accountant's."""
    from opacus.accountants import RDPAccountant

    ref = RDPAccountant()
    ref.history = [(sigma, 1.0, n)]
    assert acc.gaussian_composition_epsilon(sigma, n, 1e-5) == pytest.approx(ref.get_epsilon(1e-5), rel=1e-9)


def test_gaussian_composition_of_a_default_run_lies_between_the_exact_value_and_zcdp():
    """label at ε = 10 per answer over 174,080 answers: about 3.5e5 (MISSION's figure by zCDP). The Rényi figure
    is at least the exact value (μ-GDP with μ = √N/σ, a lower bound for any accountant) and at most the zCDP
    closed form ρ + 2√(ρ ln(1/δ)), ρ = N/(2σ²), and no looser than Opacus's default order grid."""
    from opacus.accountants import RDPAccountant

    n, delta = 174080, 1e-5
    sigma = acc.gaussian_noise_multiplier(10.0, delta)
    rho = n / (2 * sigma ** 2)
    zcdp = rho + 2 * math.sqrt(rho * math.log(1 / delta))
    exact = acc.gaussian_composition_exact_epsilon(sigma, n, delta)
    rdp = acc.gaussian_composition_epsilon(sigma, n, delta)
    default_grid = RDPAccountant()
    default_grid.history = [(sigma, 1.0, n)]
    assert exact <= rdp <= zcdp * (1 + 1e-4)
    assert rdp <= default_grid.get_epsilon(delta)
    assert 3.4e5 < rdp < 3.6e5
    assert delta_closed_form(exact, sigma / math.sqrt(n)) == pytest.approx(delta, rel=1e-5)


@pytest.mark.parametrize("sigma,n", [(2.0, 1), (3.0, 16), (10.0, 400)])
def test_exact_gaussian_composition_is_one_gaussian_with_sigma_over_root_n(sigma, n):
    assert acc.gaussian_composition_exact_epsilon(sigma, n, 1e-5) == pytest.approx(
        acc.gaussian_epsilon(sigma / math.sqrt(n), 1e-5), rel=1e-6)


@pytest.mark.parametrize("mode,per_answer", [("rr", 1.0), ("rr", 0.01), ("label", 2.0), ("data", 0.5)])
def test_per_answer_budget_inverts_the_whole_run(mode, per_answer):
    n, delta = 5000, 1e-5
    whole = acc.whole_run_epsilon(mode, n, delta, epsilon=per_answer)["epsilon"]
    assert acc.per_answer_epsilon_for_whole_run(mode, whole, n, delta) == pytest.approx(per_answer, rel=1e-5)


def test_whole_run_names_its_accountant_and_rejects_what_it_cannot_account():
    assert math.isinf(acc.whole_run_epsilon("none", 10, 1e-5)["epsilon"])
    assert "Renyi" in acc.whole_run_epsilon("label", 10, 1e-5, epsilon=1.0)["accountant"]
    assert "Kairouz" in acc.whole_run_epsilon("rr", 10, 1e-5, epsilon=1.0)["accountant"]
    with pytest.raises(DpsdError, match="noise mode"):
        acc.whole_run_epsilon("ensemble", 10, 1e-5, epsilon=1.0)
    for bad in (0, -3, 2.5, "many", None):
        with pytest.raises(DpsdError, match="number of answers"):
            acc.whole_run_epsilon("rr", bad, 1e-5, epsilon=1.0)
    with pytest.raises(DpsdError, match="delta"):
        acc.whole_run_epsilon("rr", 10, 1.5, epsilon=1.0)
    with pytest.raises(DpsdError, match="epsilon"):
        acc.per_answer_epsilon_for_whole_run("rr", float("nan"), 10, 1e-5)
