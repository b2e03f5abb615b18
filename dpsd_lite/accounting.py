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
"""

from __future__ import annotations

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
