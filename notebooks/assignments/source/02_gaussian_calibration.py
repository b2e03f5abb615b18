# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Assignment 2 — Calibrating Gaussian noise for a target (ε, δ)
#
# `dpsd_lite`'s `label` mode releases the teacher's top-k probabilities plus Gaussian noise; the `data` mode adds
# Gaussian noise to normalised gradients. In both, someone has to answer: *how much noise buys (ε, δ)?* In this
# assignment you compute the exact answer, compare it with the textbook formula, and check it against Opacus's
# accountants.
#
# **Learning goals.** After this assignment you can
# 1. explain the noise multiplier σ and the L2 sensitivity Δ of a Gaussian mechanism (noise std = σ·Δ);
# 2. compute the exact δ(ε) of one Gaussian release (the *analytic Gaussian mechanism*, Balle & Wang 2018) and
#    invert it by bisection to calibrate σ for a target (ε, δ);
# 3. say when the classic σ = √(2 ln(1.25/δ))/ε is valid (only ε < 1) and how loose it is;
# 4. verify a calibration with Opacus (Gaussian DP and RDP accountants) and explain why they differ;
# 5. compose many releases with an accountant instead of adding up ε's;
#
# You write the calibration yourself; the notebook imports none of the package's calibration functions. When you
# are done, compare with `dpsd_lite.accounting` (`gaussian_delta`, `gaussian_noise_multiplier`, `composed_epsilon`)
# and `dpsd_lite.mechanisms.LabelNoise`.
#
# **How to work.** Fill in each **Exercise** cell (it raises `NotImplementedError` until you do), then run the
# self-check below it: it tells you what is right and, if something is not, what to look at.
# Each self-check is also how the assignment is graded: a check that passes earns its exercise's points (given
# in the exercise's heading); the written answers are graded by hand.

# %%
import math
import os
import warnings

import matplotlib.pyplot as plt
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.gdp import eps_from_mu
from scipy.stats import norm

from dpsd_lite.accounting import classic_gaussian_noise_multiplier, composed_noise_multiplier
from dpsd_lite.course import checks

warnings.filterwarnings("ignore", module="opacus")  # "optimal order is the largest alpha": expected at large ε


def gdp_epsilon(sigma, delta):
    """ε of one Gaussian release with noise multiplier σ at δ: Opacus's exact GDP conversion (μ = 1/σ)."""
    return float(eps_from_mu(mu=1.0 / sigma, delta=delta))


def rdp_epsilon(sigma, delta):
    """ε of one Gaussian release with noise multiplier σ at δ: Opacus's RDP accountant (an upper bound)."""
    acc = RDPAccountant()
    acc.history = [(sigma, 1.0, 1)]  # (noise multiplier, sample rate 1 = no subsampling, steps)
    return acc.get_epsilon(delta=delta)

# %% tags=["parameters"]
# DPSD_FAST=1 runs everything small (CI, a first look); unset, you get the full experience.
FAST = os.environ.get("DPSD_FAST") == "1"
DELTA = 1e-5
EPSILONS = [0.1, 0.5, 1.0, 2.0, 4.0, 8.0]
N_PLOT_POINTS = 8 if FAST else 40  # points per curve in the σ(ε) plot (each RDP point is a search)

# %% [markdown]
# ## 1. The Gaussian mechanism, exactly
#
# A query `f` has **L2 sensitivity** Δ if two neighbouring inputs change its value by at most Δ in Euclidean
# norm. The Gaussian mechanism releases `f(x) + N(0, (σΔ)² I)`; σ is the **noise multiplier**.
#
# One release is exactly **μ-Gaussian DP with μ = 1/σ** (Dong, Roth & Su): distinguishing neighbours is as hard as
# telling `N(0, 1)` from `N(μ, 1)`. Its exact (ε, δ) trade-off is
#
# $$\delta(\varepsilon) = \Phi\!\left(-\frac{\varepsilon}{\mu} + \frac{\mu}{2}\right) - e^{\varepsilon}\,\Phi\!\left(-\frac{\varepsilon}{\mu} - \frac{\mu}{2}\right),$$
#
# where Φ is the standard normal CDF. For every ε the mechanism is (ε, δ(ε))-DP, and no smaller δ holds.
#
# ### Exercise 2.1 — δ(ε) of one release *(2 points)*
# Write `gaussian_delta(sigma, epsilon)`.

# %% nbgrader={"grade": false, "grade_id": "exercise_2_1", "locked": false, "schema_version": 3, "solution": true, "task": false}
def gaussian_delta(sigma, epsilon):
    """Exact δ at which one Gaussian release with noise multiplier σ is (ε, δ)-DP."""
    # Hint: mu = 1 / sigma; norm.cdf is Φ.
    ### BEGIN SOLUTION (Exercise 2.1)
    mu = 1.0 / sigma
    return norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * norm.cdf(-epsilon / mu - mu / 2)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_2_1", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# NBVAL_CHECK_OUTPUT
assert checks.check_gaussian_delta(gaussian_delta)

# %% [markdown]
# ### Exercise 2.2 — calibrate σ *(2 points)*
# More noise means a smaller δ(ε): `gaussian_delta(sigma, epsilon)` *decreases* in σ. Write
# `calibrate_sigma(epsilon, delta)`: the smallest σ with `gaussian_delta(σ, ε) ≤ δ`, **by bisection** (no
# library root finder): keep a bracket `lo < σ* ≤ hi` with `lo` not private enough (δ(ε; lo) > δ) and `hi`
# private (δ(ε; hi) ≤ δ), and halve it until it is tiny.
#
# The answer ranges over orders of magnitude (ε = 0.02 needs σ ≈ 130, ε = 20 about 0.25), so a fixed bracket will
# miss it somewhere: first **widen** it.

# %% nbgrader={"grade": false, "grade_id": "exercise_2_2", "locked": false, "schema_version": 3, "solution": true, "task": false}
def calibrate_sigma(epsilon, delta):
    """Smallest noise multiplier σ for which one Gaussian release is (ε, δ)-DP."""
    # Hint: lo, hi = 1e-3, 1.0; while δ(ε; hi) > δ: lo, hi = hi, 2 * hi. Then about 100 halvings; return hi
    # (the private side of the bracket).
    ### BEGIN SOLUTION (Exercise 2.2)
    lo, hi = 1e-3, 1.0
    while gaussian_delta(hi, epsilon) > delta:  # widen until hi is private enough
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        if gaussian_delta(mid, epsilon) > delta:
            lo = mid  # not private enough: more noise
        else:
            hi = mid
    return hi
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_2_2", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# NBVAL_CHECK_OUTPUT
assert checks.check_gaussian_sigma(calibrate_sigma)

# %% [markdown]
# ## 2. Verify against the accountants
#
# Trust, but verify. For each target ε we compare your σ with the **classic** textbook σ = √(2 ln(1.25/δ))/ε
# (Dwork & Roth, Thm A.1), and feed your σ back into two Opacus accountants (the helpers `gdp_epsilon` and
# `rdp_epsilon` defined at the top):
# * **GDP**: `opacus.accountants.analysis.gdp.eps_from_mu(1/σ, δ)` — exact, so it should give back your ε;
# * **RDP**: Opacus's `RDPAccountant` with one step — a valid but looser *upper bound*, so it reports a somewhat
#   larger ε for the same σ.

# %%
# NBVAL_CHECK_OUTPUT
print(f"δ = {DELTA:g}")
print("     ε   σ (yours)  σ (classic)   ε back: GDP   RDP")
for eps in EPSILONS:
    s = calibrate_sigma(eps, DELTA)
    print(f"{eps:6g}  {s:9.4f}  {classic_gaussian_noise_multiplier(eps, DELTA):11.4f}   "
          f"{gdp_epsilon(s, DELTA):11.4f}  {rdp_epsilon(s, DELTA):5.3f}")

# %%
eps_grid = [0.1 * (80 ** (i / (N_PLOT_POINTS - 1))) for i in range(N_PLOT_POINTS)]  # 0.1 … 8, log-spaced
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(eps_grid, [calibrate_sigma(e, DELTA) for e in eps_grid], label="exact (analytic Gaussian)")
ax.plot(eps_grid, [classic_gaussian_noise_multiplier(e, DELTA) for e in eps_grid], "--", label="classic (ε < 1 only)")
rdp_grid = [e for e in eps_grid if e >= 0.15]  # RDP cannot certify ε ≤ 0.1 at this δ at all: see below
ax.plot(rdp_grid, [composed_noise_multiplier(e, DELTA, 1.0, 1) for e in rdp_grid], ":",
        label="Opacus RDP, 1 step")
ax.axvline(1.0, color="grey", linewidth=0.8)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("target ε")
ax.set_ylabel("noise multiplier σ")
ax.set_title(f"σ for one Gaussian release, δ = {DELTA:g}")
ax.legend()
plt.show()

# %% [markdown]
# Two kinds of looseness. RDP is a bound built for composing *many* releases, converted to (ε, δ) through a fixed
# set of Rényi orders: for a single release it asks for more noise than needed, and with Opacus's default orders
# (up to α = 63) its conversion has a floor of about (ln(1/δ) − ln α)/(α − 1) ≈ 0.1 at δ = 1e-5: it cannot certify
# ε ≤ 0.1 with *any* σ, and needs far too much noise close to it.
#
# The classic formula is loose at small ε (about 1.6× the noise needed at ε = 0.1). Above ε = 1 it is not even
# proven — and at larger δ it can be too *small*:

# %%
# NBVAL_CHECK_OUTPUT
for eps, delta in [(8.0, 1e-3), (10.0, 1e-2)]:
    classic = classic_gaussian_noise_multiplier(eps, delta)
    print(f"ε = {eps:g}, δ = {delta:g}: classic σ = {classic:.4f}, exact σ = {calibrate_sigma(eps, delta):.4f}; "
          f"the classic σ is only ({gdp_epsilon(classic, delta):.2f}, {delta:g})-DP")

# %% [markdown]
# ## 3. The `label` mode's noise
#
# In `label` mode the teacher's softmax is restricted to k classes and renormalised, so each answer is a point on
# the probability simplex. Two neighbouring inputs are two possible answers to the same query; the L2 sensitivity
# Δ is the largest distance between two such points, reached by two *different* one-hot vectors (all mass on one
# class vs all mass on another). The noise std is σ·Δ.
#
# ### Exercise 2.3 — noise std of the `label` mechanism *(2 points)*
# Write `label_noise_std(epsilon, delta)`: compute Δ as the distance between two different one-hot vectors (don't
# type in a constant: `torch.dist` of two rows of `torch.eye`), and multiply your calibrated σ by it.

# %% nbgrader={"grade": false, "grade_id": "exercise_2_3", "locked": false, "schema_version": 3, "solution": true, "task": false}
def label_noise_std(epsilon, delta):
    """Standard deviation of the Gaussian noise that the label mechanism adds to each probability."""
    ### BEGIN SOLUTION (Exercise 2.3)
    one_hot = torch.eye(2, dtype=torch.float64)
    sensitivity = float(torch.dist(one_hot[0], one_hot[1]))  # √2: the two farthest points of the simplex
    return calibrate_sigma(epsilon, delta) * sensitivity
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_2_3", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# NBVAL_CHECK_OUTPUT
assert checks.check_label_noise_std(label_noise_std)

# %%
# NBVAL_CHECK_OUTPUT
for eps in (1.0, 10.0):
    print(f"label mode at ε = {eps:g}, δ = {DELTA:g}: noise std {label_noise_std(eps, DELTA):.3f} on probabilities "
          f"in [0, 1] (σ = {calibrate_sigma(eps, DELTA):.3f})")

# %% [markdown]
# At ε = 1 the noise std is about 5 — on numbers between 0 and 1. One noisy answer says almost nothing; the
# student learns from the *average* over many queries, which is why reducing the answer to k = 2 classes (less
# noise in total) matters so much.
#
# ## 4. Many releases about the same thing: composition
#
# `dpsd_lite`'s per-query guarantee needs no composition: each teacher answer is released once. But when many
# Gaussian releases concern the *same* record (DP-SGD steps, repeated queries), the budget adds up. T releases
# with multiplier σ are exactly μ-GDP with **μ = √T/σ** — the noise adds up slower than the number of releases.
# Opacus's RDP accountant gives a valid upper bound; simply adding the ε's is valid but very loose.
#
# ### Exercise 2.4 — ε after T releases *(2 points)*
# Write `epsilon_after(sigma, steps, delta)` with an accountant — composition itself is Opacus's job, the point is
# to know which accountant to ask and what to feed it: either Opacus's `RDPAccountant` (set `acc.history =
# [(sigma, 1.0, steps)]`, then `acc.get_epsilon(delta=delta)`; sample rate 1.0 means no subsampling), or the exact
# GDP route (`eps_from_mu` with the μ of all `steps` releases together).

# %% nbgrader={"grade": false, "grade_id": "exercise_2_4", "locked": false, "schema_version": 3, "solution": true, "task": false}
def epsilon_after(sigma, steps, delta):
    """ε after `steps` Gaussian releases (noise multiplier σ, no subsampling) about the same record."""
    ### BEGIN SOLUTION (Exercise 2.4)
    acc = RDPAccountant()
    acc.history = [(sigma, 1.0, steps)]
    return acc.get_epsilon(delta=delta)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_2_4", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# NBVAL_CHECK_OUTPUT
assert checks.check_composed_epsilon(epsilon_after)

# %%
# NBVAL_CHECK_OUTPUT
sigma = 2.0
print(f"σ = {sigma}, δ = {DELTA:g}")
print("  steps   adding ε's   RDP (yours)   exact (μ = √T/σ)")
for steps in (1, 10, 100, 1000):
    print(f"{steps:7d}  {steps * gdp_epsilon(sigma, DELTA):11.2f}  {epsilon_after(sigma, steps, DELTA):12.2f}"
          f"  {gdp_epsilon(sigma / math.sqrt(steps), DELTA):17.2f}")

# %% [markdown]
# ### Exercise 2.5 — written answers *(3 points)*
# **(a)** In the table of section 2, why does the RDP accountant report a *larger* ε than the target for the same σ,
# although nothing is wrong with the calibration? Is the mechanism less private than you computed?
#
# **(b)** A run of `dpsd_lite` in `label` mode at ε = 1 answers 150,000 teacher queries. Its report says
# "composition: none needed". Why is that honest for its unit of privacy — and what would you have to compose (and
# with what) to make a claim about one *training record* of the teacher?
#
# **(c)** Your bisection returns `hi`, not `lo` or the midpoint. Why does that matter for the guarantee, and what
# does it cost?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answers_2_5", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# <!-- BEGIN SOLUTION -->
# **(a)** RDP bounds the mechanism through Rényi divergences at a finite set of orders and then converts to
# (ε, δ); the conversion is an upper bound, not the exact trade-off curve, so it is slightly pessimistic for a
# single Gaussian release. The mechanism is exactly as private as the analytic (GDP) curve says; RDP pays off
# when composing many subsampled releases, where it is much tighter than adding ε's.
#
# **(b)** The unit is one teacher answer to one query, and each answer enters exactly one release, so the
# per-query guarantee holds for every query without composition. A training record, though, can change the
# teacher's answer on all 150,000 queries; a record-level claim needs the record's influence bounded first — a
# DP-SGD-trained teacher (Opacus accountant over its training steps) or a teacher ensemble where one record changes
# one vote, composed over all answered queries with an accountant (RDP/PRV).
#
# **(c)** The bisection keeps the invariant δ(ε; hi) ≤ δ, so `hi` is always a σ that *meets* the target; `lo` (and
# possibly the midpoint) does not, and a σ even slightly too small means the release is not (ε, δ)-DP as
# claimed. After ~100 halvings the bracket is far narrower than floating-point precision, so the extra noise is
# nil. (The same rule holds for any calibration: round towards more noise, never less.)
# <!-- END SOLUTION -->

# %% [markdown]
# **Where next.** Assignment 3 looks at the other side of the loop: how the generator learns to ask useful
# questions without ever seeing the teacher.
