"""Where ε is computed: calibration of every mechanism from (ε, δ), and back.

Conventions used throughout the package
---------------------------------------
* A Gaussian mechanism with L2 sensitivity ``Δ`` that adds ``N(0, (σ·Δ)²)`` to
  each coordinate has *noise multiplier* ``σ``. One release of it is exactly
  ``μ``-GDP with ``μ = 1/σ`` (Dong, Roth & Su), and its exact (ε, δ) curve is
  the analytic Gaussian mechanism of Balle & Wang (2018)::

      δ(ε) = Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2)

  We convert with Opacus's ``eps_from_mu`` (the same formula) and invert it
  numerically, so σ is exact for every ε. The classic
  ``σ = √(2 ln(1.25/δ))/ε`` is provided only to show learners how loose it is;
  it is valid for ε < 1 only and is never used for calibration.
* k-ary randomized response keeps the true answer with probability
  ``e^ε / (e^ε + k - 1)``; it is ε-DP with δ = 0.
* Where mechanisms compose (many noisy releases about the same record, e.g. a
  teacher ensemble or DP-SGD), Opacus's RDP or PRV accountant is used.
* **The whole run.** A per-answer ε protects one teacher answer; one private
  record can change the teacher, hence every answer, so what one record can
  move through a non-private teacher is the composition of all N answers
  (:func:`whole_run_epsilon`): Rényi DP (Opacus) for the Gaussian modes, the
  optimal composition of pure ε-DP (Kairouz, Oh & Viswanath 2015) for
  randomized response. :func:`per_answer_epsilon_for_whole_run` inverts it.
"""

from __future__ import annotations

import functools
import math

from .errors import DpsdError

__all__ = [
    "check_epsilon",
    "check_delta",
    "gaussian_epsilon",
    "gaussian_delta",
    "gaussian_noise_multiplier",
    "classic_gaussian_noise_multiplier",
    "rr_keep_probability",
    "rr_epsilon",
    "composed_epsilon",
    "composed_noise_multiplier",
    "gaussian_composition_epsilon",
    "gaussian_composition_exact_epsilon",
    "pure_composition_delta",
    "pure_composition_epsilon",
    "whole_run_epsilon",
    "per_answer_epsilon_for_whole_run",
]


def check_epsilon(epsilon) -> float:
    """Return ε as a float, or raise a one-line error if it is not a positive finite number."""
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        raise DpsdError(f"epsilon must be a positive number, got {epsilon!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise DpsdError(f"epsilon must be a positive finite number (e.g. 1 or 10), got {epsilon!r}")
    return value


def check_delta(delta) -> float:
    """Return δ as a float, or raise a one-line error if it is not strictly between 0 and 1."""
    try:
        value = float(delta)
    except (TypeError, ValueError):
        raise DpsdError(f"delta must be a number strictly between 0 and 1, got {delta!r}") from None
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise DpsdError(f"delta must be strictly between 0 and 1 (e.g. 1e-5), got {delta!r}")
    return value


def _check_sigma(noise_multiplier) -> float:
    try:
        value = float(noise_multiplier)
    except (TypeError, ValueError):
        raise DpsdError(f"noise multiplier must be a positive number, got {noise_multiplier!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise DpsdError(f"noise multiplier must be a positive finite number, got {noise_multiplier!r}")
    return value


def gaussian_delta(noise_multiplier: float, epsilon: float) -> float:
    """Exact δ(ε) of one Gaussian release with noise multiplier σ (analytic Gaussian mechanism)."""
    mu = 1.0 / _check_sigma(noise_multiplier)
    try:
        eps = float(epsilon)
    except (TypeError, ValueError):
        raise DpsdError(f"epsilon must be a non-negative number, got {epsilon!r}") from None
    if not math.isfinite(eps) or eps < 0:
        raise DpsdError(f"epsilon must be a non-negative finite number, got {epsilon!r}")
    from scipy.stats import norm  # here, not at import: scipy.stats takes ~0.5 s to import, and rr never needs it

    # log-space for e^ε Φ(.) to stay finite at large ε
    a = norm.cdf(-eps / mu + mu / 2)
    b = math.exp(eps + norm.logcdf(-eps / mu - mu / 2))
    return max(0.0, a - b)


def gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """Exact ε of one Gaussian release with noise multiplier σ at the given δ.

    Uses Opacus's GDP conversion (``μ = 1/σ``), which is the analytic Gaussian
    mechanism's exact (ε, δ) curve.
    """
    from opacus.accountants.analysis.gdp import eps_from_mu

    sigma = _check_sigma(noise_multiplier)
    delta = check_delta(delta)
    if gaussian_delta(sigma, 0.0) <= delta:  # the noise alone already meets δ
        return 0.0
    return float(eps_from_mu(mu=1.0 / sigma, delta=delta))


def gaussian_noise_multiplier(epsilon: float, delta: float) -> float:
    """Smallest noise multiplier σ whose single Gaussian release is (ε, δ)-DP (exact, any ε).

    Multiply by the mechanism's L2 sensitivity to get the noise standard deviation.
    """
    eps = check_epsilon(epsilon)
    delta = check_delta(delta)
    # δ(ε; σ) decreases in σ: bracket, then solve δ(ε; σ) = δ.
    lo, hi = 1e-3, 1.0
    while gaussian_delta(hi, eps) > delta:
        hi *= 2.0
        if hi > 1e7:  # pragma: no cover - only for absurd (ε, δ)
            raise DpsdError(f"cannot calibrate Gaussian noise for epsilon={eps}, delta={delta}")
    if gaussian_delta(lo, eps) <= delta:
        return lo
    from scipy.optimize import brentq

    return float(brentq(lambda s: gaussian_delta(s, eps) - delta, lo, hi, xtol=1e-12, rtol=1e-10))


def classic_gaussian_noise_multiplier(epsilon: float, delta: float) -> float:
    """Textbook σ = √(2 ln(1.25/δ)) / ε (Dwork & Roth, Thm A.1).

    Proven only for ε < 1; shown in the notebooks for comparison, never used to
    calibrate a mechanism in this package.
    """
    eps = check_epsilon(epsilon)
    delta = check_delta(delta)
    return math.sqrt(2.0 * math.log(1.25 / delta)) / eps


def rr_keep_probability(epsilon: float, k: int) -> float:
    """Probability that k-ary randomized response returns the true answer: e^ε / (e^ε + k − 1)."""
    eps = check_epsilon(epsilon)
    k = int(k)
    if k < 1:
        raise DpsdError(f"randomized response needs k >= 1 classes, got {k}")
    # 1 / (1 + (k-1) e^{-ε}) is the same value without overflow at large ε
    return 1.0 / (1.0 + (k - 1) * math.exp(-eps))


def rr_epsilon(keep_probability: float, k: int) -> float:
    """ε of k-ary randomized response that keeps the true answer with the given probability."""
    p = float(keep_probability)
    k = int(k)
    if k < 2:
        raise DpsdError(f"randomized response needs k >= 2 classes to have an epsilon, got {k}")
    if not (1.0 / k < p < 1.0):
        raise DpsdError(f"keep probability must lie in (1/k, 1) for k={k}, got {p}")
    return math.log(p * (k - 1) / (1.0 - p))


def composed_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """ε after ``steps`` Poisson-subsampled Gaussian releases, from Opacus's accountant.

    ``sample_rate = 1.0`` is the plain (not subsampled) Gaussian mechanism.
    ``accountant`` is ``"rdp"`` (Rényi DP, with Opacus's current RDP→(ε, δ)
    conversion, Balle et al. 2020) or ``"prv"`` (numerical privacy-loss
    distributions, tighter).
    """
    from opacus.accountants import create_accountant

    delta = check_delta(delta)
    if not 0.0 < float(sample_rate) <= 1.0:
        raise DpsdError(f"sample rate must lie in (0, 1], got {sample_rate!r}")
    if int(steps) < 1:
        raise DpsdError(f"steps must be a positive integer, got {steps!r}")
    acc = _make_accountant(accountant, create_accountant)
    acc.history = [(_check_sigma(noise_multiplier), float(sample_rate), int(steps))]
    return float(acc.get_epsilon(delta=delta))


def composed_noise_multiplier(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
) -> float:
    """Noise multiplier so that ``steps`` subsampled Gaussian releases are (ε, δ)-DP (Opacus)."""
    from opacus.accountants.utils import get_noise_multiplier

    eps = check_epsilon(epsilon)
    delta = check_delta(delta)
    if accountant not in ("rdp", "prv"):
        raise DpsdError(f"unknown accountant {accountant!r}; use 'rdp' or 'prv'")
    return float(
        get_noise_multiplier(
            target_epsilon=eps,
            target_delta=delta,
            sample_rate=float(sample_rate),
            steps=int(steps),
            accountant=accountant,
            epsilon_tolerance=0.005,
        )
    )


def _make_accountant(name, create_accountant):
    if name not in ("rdp", "prv"):
        raise DpsdError(f"unknown accountant {name!r}; use 'rdp' or 'prv'")
    return create_accountant(name)


# ----------------------------------------------------------------------------------------------- the whole run
#: Rényi orders for composing many plain Gaussian releases: Opacus's default grid, plus orders close to 1, where
#: the optimum lies once the composed Rényi divergence is large (hundreds of thousands of releases at small σ).
WHOLE_RUN_ORDERS = tuple(sorted({1 + x / 10.0 for x in range(1, 100)} | set(range(12, 64)) | {128, 256}
                                | {1 + 10 ** (e / 10) for e in range(-70, -9)}))
GAUSSIAN_WHOLE_RUN_ACCOUNTANT = ("Renyi DP of the Gaussian mechanism composed over every answer (Opacus's RDP "
                                 "analysis, orders extended toward 1, converted with Opacus's current conversion)")
PURE_WHOLE_RUN_ACCOUNTANT = ("optimal composition of pure eps-DP answers (Kairouz, Oh & Viswanath 2015: the k-fold "
                             "binary randomized response is the worst case, its delta(eps) computed exactly)")


def _check_count(releases) -> int:
    try:
        n = int(releases)
    except (TypeError, ValueError):
        raise DpsdError(f"the number of answers must be a positive integer, got {releases!r}") from None
    if n < 1 or n != releases:
        raise DpsdError(f"the number of answers must be a positive integer, got {releases!r}")
    return n


def gaussian_composition_epsilon(noise_multiplier: float, releases: int, delta: float) -> float:
    """ε of ``releases`` Gaussian releases with noise multiplier σ about the same input, composed by Rényi DP.

    Opacus's RDP of the (not subsampled) Gaussian mechanism, α·releases/(2σ²), converted to (ε, δ) with
    Opacus's conversion over :data:`WHOLE_RUN_ORDERS`.
    """
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    sigma, n, delta = _check_sigma(noise_multiplier), _check_count(releases), check_delta(delta)
    rdp = compute_rdp(q=1.0, noise_multiplier=sigma, steps=n, orders=list(WHOLE_RUN_ORDERS))
    eps, _ = get_privacy_spent(orders=list(WHOLE_RUN_ORDERS), rdp=rdp, delta=delta)
    return float(eps)


def gaussian_composition_exact_epsilon(noise_multiplier: float, releases: int, delta: float) -> float:
    """The exact ε of ``releases`` Gaussian releases with noise multiplier σ: together they are one Gaussian
    release with noise multiplier σ/√releases (μ-GDP with μ = √releases/σ; Dong, Roth & Su), solved in log
    space where Opacus's ``eps_from_mu`` cannot bracket it. A lower bound for any accountant's figure."""
    from scipy.optimize import brentq

    sigma, n, delta = _check_sigma(noise_multiplier), _check_count(releases), check_delta(delta)
    mu = math.sqrt(n) / sigma
    if gaussian_delta(1.0 / mu, 0.0) <= delta:
        return 0.0
    hi = mu * mu / 2 + 40 * mu + 50  # δ(ε) is far below any δ of interest here
    return float(brentq(lambda e: gaussian_delta(1.0 / mu, e) - delta, 0.0, hi, xtol=1e-9, rtol=1e-12))


@functools.lru_cache(maxsize=32)
def _rr_privacy_loss(epsilon: float, releases: int):
    """The privacy-loss distribution of ``releases`` binary randomized responses at ``epsilon``: the losses
    (k − 2l)·ε and their probabilities under Binomial(k, q), q = 1/(1 + e^ε), for the flip counts l that matter
    (beyond 40 standard deviations above the mean, below e^-800: left out)."""
    import numpy as np
    from scipy.stats import binom

    eps, k = epsilon, releases
    q = math.exp(-eps) / (1.0 + math.exp(-eps))  # 1/(1 + e^ε), without overflow at large ε
    top = min(k, int(k * q + 40 * math.sqrt(k * q * (1 - q)) + 40))
    l = np.arange(top + 1)
    return (k - 2 * l) * eps, np.exp(binom.logpmf(l, k, q))


def pure_composition_delta(epsilon: float, releases: int, total_epsilon: float) -> float:
    """δ at ``total_epsilon`` of ``releases`` pure ε-DP answers composed (adaptively): exact for binary randomized
    response, the worst case of any ε-DP mechanism (Kairouz, Oh & Viswanath 2015).

    With q = 1/(1 + e^ε), the number of flips l ~ Binomial(k, q) and the privacy loss (k − 2l)·ε,
    δ(ε') = Σ_l P(l) · max(0, 1 − e^(ε' − (k − 2l)ε)).
    """
    import numpy as np

    loss, p = _rr_privacy_loss(check_epsilon(epsilon), _check_count(releases))
    keep = loss > total_epsilon
    return float(np.sum(p[keep] * -np.expm1(total_epsilon - loss[keep]))) if keep.any() else 0.0


def pure_composition_epsilon(epsilon: float, releases: int, delta: float) -> float:
    """The smallest ε' with :func:`pure_composition_delta` ≤ δ: the tightest (ε', δ) of ``releases`` ε-DP answers.

    At most the basic bound releases·ε (reached when δ is below the chance of no flip at all)."""
    from scipy.optimize import brentq

    eps, k, delta = check_epsilon(epsilon), _check_count(releases), check_delta(delta)
    if pure_composition_delta(eps, k, 0.0) <= delta:
        return 0.0
    top = k * eps
    if pure_composition_delta(eps, k, top * (1 - 1e-12)) > delta:
        return top
    return float(brentq(lambda e: pure_composition_delta(eps, k, e) - delta, 0.0, top, xtol=1e-9 * top,
                        rtol=1e-12))


def whole_run_epsilon(noise_mode: str, answers: int, delta: float, epsilon: float | None = None,
                      noise_multiplier: float | None = None) -> dict:
    """What one private record can move through a non-private teacher in a run of ``answers`` teacher answers.

    One record can change the teacher, hence every answer, so the run's teacher-level ε is the composition of
    all of them: ``label`` and ``data`` (Gaussian, ``noise_multiplier`` σ per answer) by Rényi DP, ``rr`` (pure
    ``epsilon`` per answer) by the optimal composition of pure ε-DP; ``none`` releases raw answers (ε = ∞).
    Returns ``{"epsilon", "delta", "answers", "accountant"}``.
    """
    n, delta = _check_count(answers), check_delta(delta)
    if noise_mode == "none":
        return {"epsilon": math.inf, "delta": delta, "answers": n, "accountant": "none: raw answers, no noise"}
    if noise_mode in ("label", "data"):
        if noise_multiplier is None:
            noise_multiplier = gaussian_noise_multiplier(epsilon, delta)
        return {"epsilon": gaussian_composition_epsilon(noise_multiplier, n, delta), "delta": delta, "answers": n,
                "accountant": GAUSSIAN_WHOLE_RUN_ACCOUNTANT}
    if noise_mode == "rr":
        return {"epsilon": pure_composition_epsilon(epsilon, n, delta), "delta": delta, "answers": n,
                "accountant": PURE_WHOLE_RUN_ACCOUNTANT}
    raise DpsdError(f"no whole-run accountant for noise mode {noise_mode!r}; choose none, label, rr or data")


def per_answer_epsilon_for_whole_run(noise_mode: str, whole_run: float, answers: int, delta: float) -> float:
    """The per-answer ε that a whole-run budget of ``whole_run`` (at δ) allows for ``answers`` answers: the
    inverse of :func:`whole_run_epsilon` (``label``/``data``: the σ whose composition meets it, as a per-answer
    ε; ``rr``: the pure ε per answer)."""
    from scipy.optimize import brentq

    target, n, delta = check_epsilon(whole_run), _check_count(answers), check_delta(delta)
    if noise_mode in ("label", "data"):
        # composed ε falls as σ grows: bracket σ, then solve
        lo, hi = 1e-3, 1.0
        while gaussian_composition_epsilon(hi, n, delta) > target:
            hi *= 2.0
        sigma = brentq(lambda s: gaussian_composition_epsilon(s, n, delta) - target, lo, hi, rtol=1e-10)
        return gaussian_epsilon(sigma, delta)
    if noise_mode == "rr":
        hi = target  # one answer alone already spends at least its own ε... less with δ, so search below
        while pure_composition_epsilon(hi, n, delta) < target:
            hi *= 2.0
        return float(brentq(lambda e: pure_composition_epsilon(e, n, delta) - target, 1e-9, hi, rtol=1e-10))
    raise DpsdError(f"no per-answer budget for noise mode {noise_mode!r}; choose label, rr or data")
