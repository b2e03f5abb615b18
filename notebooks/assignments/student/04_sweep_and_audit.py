# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: deletable,editable,nbgrader,tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Assignment 4 — The privacy–utility trade-off, and what an audit can (not) tell you
#
# You now know the mechanisms (assignments 1–2) and the loop (assignment 3). Here you run the whole pipeline at
# several privacy budgets, read the trade-off, and then put on the attacker's hat: a membership-inference audit.
# The audit will look reassuring — AUC close to 0.5. Your job is to explain why that is *not* a proof of privacy.
#
# **Learning goals.** After this assignment you can
# 1. run an ε sweep with the library (`dpsd_lite.sweep.run_sweep`) and read the privacy–utility trade-off;
# 2. answer "how much ε do we need?" from a sweep;
# 3. run a membership-inference audit (`dpsd_lite.audit`) and read its AUC and TPR at low FPR;
# 4. turn an attack's TPR and FPR into a **lower bound on ε**, and explain why it needs confidence intervals
#    and independent trials with randomised membership;
# 5. (stretch) compute the **one-run counting bound**: a binomial-tail test of how many canary guesses an ε-DP
#    algorithm can get right, and the ε lower bound it certifies;
# 6. explain why AUC ≈ 0.5 does not prove privacy — and keep the units straight: the per-query ε of the
#    `rr`/`label`/`data` modes is not a claim about training records at all.
#
# You write the bounds yourself; the notebook imports none of `dpsd_lite.audit`'s bound functions. Compare
# afterwards with `one_run_p_value` and `one_run_epsilon_from_counts` there.
#
# **How to work.** Fill in each **Exercise** cell (it raises `NotImplementedError` until you do), then run the
# self-check below it: it tells you what is right and, if something is not, what to look at.
# Each self-check is also how the assignment is graded: a check that passes earns its exercise's points (given
# in the exercise's heading); the written answers are graded by hand.

# %%
# %matplotlib inline
import math
import os

import numpy as np
import torch
from scipy.stats import binom
from sklearn.metrics import roc_auc_score

from dpsd_lite.audit import audit_model, clopper_pearson, format_audit
from dpsd_lite.course import checks
from dpsd_lite.data import load_dataset
from dpsd_lite.noise import NoiseSource
from dpsd_lite.sweep import format_table, plot_sweep, run_sweep
from dpsd_lite.teacher import get_teacher

# %% tags=["parameters"]
# DPSD_FAST=1 runs everything small (CI, a first look); unset, you get the full experience.
FAST = os.environ.get("DPSD_FAST") == "1"
SEED = 0
DATASET = "digits" if FAST else "mnist-5k"
GENERATOR = "learned"  # DPSD's learned generator G(z, c), the package's default ("strokes": the stroke renderer)
TEACHER_EPOCHS = 3 if FAST else 8
EPSILONS = [1.0, 10.0] if FAST else [1.0, 3.0, 10.0]  # per teacher answer
STEPS = 40 if FAST else 200  # transcription iterations per run
BATCH_SIZE = 64 if FAST else 256
N_BOOT = 50 if FAST else 200  # bootstrap resamples for the audit's confidence intervals
FRACTION = 0.9  # "how much ε to keep 90% of the non-private student's accuracy?"
CANARY_COUNTS = [100, 1_000, 10_000] if FAST else [100, 1_000, 10_000, 100_000]  # the simulated one-run audit
TRUE_EPSILON = 1.0  # ε of the simulated canary mechanism

# %% [markdown]
# ## 1. The sweep
#
# One teacher, one transcription per ε in mode `rr`, plus the non-private baseline (mode `none`, ε = ∞). Same
# seed, same steps: only the privacy budget changes. `run_sweep` loads the data and the teacher once and returns
# one row (a dict) per run; `on_result` lets us keep each run's student for the audit below.
#
# ### Exercise 4.1 — run the sweep *(2 points)*
# Call `run_sweep` for `EPSILONS` with the noise modes `"rr"` and `"none"`, passing `data`, `teacher`,
# `dataset=DATASET`, `generator=GENERATOR`, `steps=STEPS`, `batch_size=BATCH_SIZE`, `eval_every=STEPS`, `seed=SEED`
# and `on_result=keep_student`. Store the rows in `rows`.

# %%
data = load_dataset(DATASET)
teacher = get_teacher(data, epochs=TEACHER_EPOCHS, seed=SEED)
students = {}


def keep_student(row, result):
    students[(row["noise_mode"], row["epsilon"])] = result.student


# %% deletable=false nbgrader={"cell_type": "code", "checksum": "5873ede8183055546f43fabc25d83ab8", "grade": false, "grade_id": "exercise_4_1", "locked": false, "schema_version": 3, "solution": true, "task": false}
raise NotImplementedError("Exercise 4.1: write your solution here")

# %% deletable=false editable=false nbgrader={"cell_type": "code", "checksum": "f5901329e68b57029bb6cc22b13dde35", "grade": true, "grade_id": "check_4_1", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert checks.check_sweep(rows, EPSILONS)

# %%
print(format_table(rows))
fig = plot_sweep(rows)
fig.axes[0].set_title(f"{DATASET}, {GENERATOR} generator: student accuracy vs ε ({STEPS} steps, seed {SEED})")
fig


# %% [markdown]
# ### Exercise 4.2 — written answer *(1 point)*
# Describe the trade-off you see in two or three sentences: how does the student's accuracy move with ε, where
# does it meet the non-private baseline, and *why* — in terms of what the mechanism does to each label? (Use
# `rr_keep_probability(ε, 10)` from assignment 1 for numbers. In fast mode the runs are very short, so all
# accuracies are low; the shape is what matters.)

# %% [markdown] deletable=false nbgrader={"cell_type": "markdown", "checksum": "c680f8bf05b28bb3100a78e7213a09ff", "grade": true, "grade_id": "answers_4_2", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# *Your answer here.*

# %% [markdown]
# ### Exercise 4.3 — how much ε do we need? *(2 points)*
# Write `smallest_epsilon(rows, fraction)`: the smallest ε (private rows only) whose student reaches at least
# `fraction` × the accuracy of the non-private student (the `none` row); `None` if no ε gets there.

# %% deletable=false nbgrader={"cell_type": "code", "checksum": "8490b47d1d0dba294f35e0fb060ca5e7", "grade": false, "grade_id": "exercise_4_3", "locked": false, "schema_version": 3, "solution": true, "task": false}
def smallest_epsilon(rows, fraction):
    """Smallest ε of a private run reaching `fraction` of the non-private student's accuracy, or None."""
    raise NotImplementedError("Exercise 4.3: write your solution here")


# %% deletable=false editable=false nbgrader={"cell_type": "code", "checksum": "e9a40da3bae04db4b098f64c98a8b62e", "grade": true, "grade_id": "check_4_3", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert checks.check_smallest_epsilon(smallest_epsilon)

# %%
eps_needed = smallest_epsilon(rows, FRACTION)
print(f"smallest ε reaching {FRACTION:.0%} of the non-private student: "
      f"{'none of the budgets tried' if eps_needed is None else eps_needed}")

# %% [markdown]
# ## 2. The audit
#
# **Membership inference** asks: given a record, was it in the teacher's private training set? Members are
# private records, non-members the held-out ones (same distribution, never trained on). The simplest attack
# thresholds the model's loss on the record: members tend to have lower loss. `dpsd_lite.audit` reports
# * **AUC**: the probability that a random member scores higher than a random non-member (0.5 = coin flip);
# * **TPR at 1% and 0.1% FPR**: how many members the attack catches while almost never accusing a non-member;
# * a **pooled ε** statistic (more on it below — and on why, for this audit, it is *not* a lower bound on ε).

# %%
eps_max = max(EPSILONS)
audits = (audit_model(teacher.model, data, target="teacher", n_boot=N_BOOT, seed=SEED)
          + audit_model(students[("none", math.inf)], data, target="student, none", n_boot=N_BOOT, seed=SEED)
          + audit_model(students[("rr", eps_max)], data, target=f"student, rr ε={eps_max:g}", n_boot=N_BOOT,
                        seed=SEED))
print(format_audit(audits))


# %% [markdown]
# The teacher, trained on the members, usually shows *some* signal; the students — which never saw a private
# record, only the teacher's (privatised) answers on synthetic images — sit near 0.5. Reassuring? Let us see
# what such numbers can and cannot prove.
#
# ## 3. From an attack to a lower bound on ε
#
# If a training algorithm is (ε, δ)-DP with respect to one record, then **every** membership test on its output
# satisfies
#
# $$\mathrm{TPR} \le e^{\varepsilon}\,\mathrm{FPR} + \delta \qquad\text{and}\qquad 1-\mathrm{FPR} \le e^{\varepsilon}\,(1-\mathrm{TPR}) + \delta$$
#
# (Kairouz et al. 2015). Turned around: an attack with a given TPR and FPR proves ε is *at least*
#
# $$\varepsilon \ge \max\left(\ln\frac{\mathrm{TPR}-\delta}{\mathrm{FPR}},\ \ln\frac{1-\mathrm{FPR}-\delta}{1-\mathrm{TPR}},\ 0\right).$$
#
# ### Exercise 4.4 — the ε lower bound *(2 points)*
# Write `epsilon_lower_bound(tpr, fpr, delta=0.0)`. Skip a side whose numerator is ≤ 0; if a denominator is 0
# (with a positive numerator) that side is `math.inf`.

# %% deletable=false nbgrader={"cell_type": "code", "checksum": "75a315894cd3658d69a4aeab58b43468", "grade": false, "grade_id": "exercise_4_4", "locked": false, "schema_version": 3, "solution": true, "task": false}
def epsilon_lower_bound(tpr, fpr, delta=0.0):
    """Smallest ε consistent with an attack achieving this TPR and FPR against an (ε, δ)-DP algorithm."""
    raise NotImplementedError("Exercise 4.4: write your solution here")


# %% deletable=false editable=false nbgrader={"cell_type": "code", "checksum": "86a22edeb6fec4f7052b60672ea4debc", "grade": true, "grade_id": "check_4_4", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert checks.check_epsilon_lower_bound(epsilon_lower_bound)

# %% [markdown]
# **Point estimates lie.** Apply your bound naively to every threshold of the teacher's ROC curve: at the most
# extreme threshold a handful of members and zero non-members score above it, the measured FPR is 0, and the
# "bound" is infinite. That is noise, not evidence. The audit's *pooled ε* instead picks the threshold on one half
# of the records and bounds TPR from below and FPR from above with **Clopper–Pearson** intervals on the other half.

# %%
teacher_loss = audits[0]
roc = teacher_loss.metrics["roc"]
naive = max(epsilon_lower_bound(t, f, 1e-5) for f, t in zip(roc["fpr"], roc["tpr"]))
print(f"naive max over the ROC curve: ε ≥ {naive}")
print(f"pooled ε (threshold on one half, 95% Clopper–Pearson on the other): {teacher_loss.pooled_epsilon:.3f}")

# %% [markdown]
# **Intervals are not enough.** Clopper–Pearson treats every record as an independent trial of *one* membership
# test. Here all members share one trained model, and who is a member was fixed once by the private/held-out
# split, not randomised for the audit. So the pooled ε only *describes* how separable the two sets are; it is not
# a lower bound on ε, and the audit table prints it as descriptive. A valid bound from one training run
# randomises membership: plant canaries, put each in the training set by its own secret coin flip, train once,
# and test the number of correct guesses against a Binomial(r, e^ε/(1+e^ε)) tail (Steinke, Nasr & Jagielski,
# NeurIPS 2023: `dpsd_lite.audit.one_run_audit`, and notebook 08). Section 5 builds that test.

# %% [markdown]
# ## 4. AUC ≈ 0.5, and still not private
#
# A thought experiment you can compute. A "model" that, for **1% of its training records**, publishes the record
# in the clear (think: a memorised outlier, a planted canary). Every other record behaves like a non-member. The
# attack's scores: normal noise for everyone, plus a huge score for the leaked 1%.

# %%
rng = np.random.default_rng(SEED)
n = 20_000
scores_out = rng.normal(size=n)
scores_in = rng.normal(size=n)
leaked = rng.random(n) < 0.01
scores_in[leaked] += 10.0
labels = np.r_[np.ones(n), np.zeros(n)]
auc = roc_auc_score(labels, np.r_[scores_in, scores_out])

threshold = 6.0
tp, fp = int((scores_in > threshold).sum()), int((scores_out > threshold).sum())
tpr_lo, fpr_hi = clopper_pearson(tp, n)[0], clopper_pearson(fp, n)[1]
print(f"AUC = {auc:.3f}  (a coin flip is 0.5)")
print(f"threshold {threshold}: {tp} of {n} members caught, {fp} of {n} non-members accused")
print(f"point estimate: ε ≥ {epsilon_lower_bound(tp / n, fp / n, 1e-5)}")
print(f"95% Clopper–Pearson (TPR ≥ {tpr_lo:.4f}, FPR ≤ {fpr_hi:.5f}): ε ≥ {epsilon_lower_bound(tpr_lo, fpr_hi, 1e-5):.2f}")
assert auc < 0.53 and epsilon_lower_bound(tpr_lo, fpr_hi, 1e-5) > 2


# %% [markdown]
# An AUC of about 0.51 — "indistinguishable from guessing" — for a mechanism that is not (ε, δ)-DP for *any* ε
# when δ < 0.01: it publishes one record in a hundred verbatim. In this simulation every record is an independent
# trial by construction, so the intervals are valid: even with finite samples the 95% bound is far from 0, and
# more samples would push it up without limit (with n non-members it is capped near ln n).
#
# ## 5. Stretch: a valid bound from one run, by counting
#
# Plant `m` canaries; flip a fair, **secret** coin for each to decide whether it goes into the training set; train
# once. The attacker then guesses "in" or "out" for `r` of the canaries (abstaining on the rest) and gets `v` right.
# If training is ε-DP with respect to each canary, each guess is right with probability at most
# `q = e^ε/(1+e^ε)` — the best anyone can do against randomized response on one bit — *even given the other
# guesses*, so the number of correct guesses is dominated by `W ~ Binomial(r, q)` (Steinke, Nasr & Jagielski 2023,
# here with δ = 0). A count `v` that such a `W` rarely reaches rejects "ε-DP":
#
# $$p(\varepsilon) = P[W \ge v], \qquad W \sim \mathrm{Binomial}\!\left(r, \tfrac{e^\varepsilon}{1+e^\varepsilon}\right).$$
#
# ### Exercise 4.5 (stretch) — the counting p-value *(1 point)*
# Write `counting_p_value(r, v, epsilon)`. `scipy.stats.binom` is imported: `binom.sf(x, n, p)` is P[W > x].

# %% deletable=false nbgrader={"cell_type": "code", "checksum": "04169dc22da4f8a77a4798d32eafc9ff", "grade": false, "grade_id": "exercise_4_5", "locked": false, "schema_version": 3, "solution": true, "task": false}
def counting_p_value(r, v, epsilon):
    """P[W ≥ v] for W ~ Binomial(r, e^ε/(1+e^ε)): how surprising v correct guesses out of r are under ε-DP."""
    raise NotImplementedError("Exercise 4.5: write your solution here")


# %% deletable=false editable=false nbgrader={"cell_type": "code", "checksum": "432f1e5a181bd2647ea83f2e83d13649", "grade": true, "grade_id": "check_4_5", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert checks.check_counting_p_value(counting_p_value)


# %% [markdown]
# More ε makes a good guess more plausible, so `p(ε)` *increases* with ε. Every ε with `p(ε) ≤ β = 1 − confidence`
# is rejected; they form an interval `[0, ε*]`, and ε* is the lower bound: "training is not ε-DP for any ε < ε*",
# wrong with probability at most β.
#
# ### Exercise 4.6 (stretch) — the ε lower bound *(1 point)*
# Write `counting_epsilon(r, v, confidence=0.95)`: the largest ε with `counting_p_value(r, v, ε) ≤ 1 − confidence`,
# by bisection (to about 1e-4), or 0 if even ε = 0 is not rejected.

# %% deletable=false nbgrader={"cell_type": "code", "checksum": "9cce62a10478fac54b27d1ef127c4c47", "grade": false, "grade_id": "exercise_4_6", "locked": false, "schema_version": 3, "solution": true, "task": false}
def counting_epsilon(r, v, confidence=0.95):
    """Largest ε rejected at this confidence by v correct guesses out of r (0 if none): a lower bound on ε."""
    # Hint: as in assignment 2, widen the bracket first (double hi while p(hi) ≤ β), then halve it, keeping lo on
    # the rejected side.
    raise NotImplementedError("Exercise 4.6: write your solution here")


# %% deletable=false editable=false nbgrader={"cell_type": "code", "checksum": "2cfe90bd2647f8b450ed9d504a997fb1", "grade": true, "grade_id": "check_4_6", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert checks.check_counting_epsilon(counting_epsilon)

# %% [markdown]
# **Try it where the truth is known.** A simulated training algorithm that is exactly ε-DP per canary: the attacker
# sees each canary's membership bit through randomized response with `TRUE_EPSILON`, and guesses it back (r = m,
# no abstentions). A valid bound must stay below `TRUE_EPSILON`; a fully leaking algorithm (the attacker sees every
# bit) shows how far the bound can go with m canaries.
#
# The membership coins are the audit's secret — and the randomized response is privacy noise. Here both come from
# `NoiseSource.from_seed(SEED)`, explicitly: a repeatable lesson. In a real audit the coins must be secret
# (`dpsd_lite.audit.draw_membership` uses `NoiseSource.secret()` by default), or the attacker could just recompute
# them.

# %%
g = NoiseSource.from_seed(SEED).generator()  # lesson noise, explicitly: NOT a secret draw
q_true = math.exp(TRUE_EPSILON) / (1 + math.exp(TRUE_EPSILON))
print(f"{'canaries m':>11}  {'right (ε=' + format(TRUE_EPSILON, 'g') + ')':>13}  {'ε ≥':>6}  "
      f"{'right (leak)':>12}  {'ε ≥':>6}")
for m in CANARY_COUNTS:
    included = torch.rand(m, generator=g) < 0.5  # the secret coin flips
    seen = torch.where(torch.rand(m, generator=g) < q_true, included, ~included)  # ε-DP view of each bit
    v_dp = int((seen == included).sum())
    v_leak = m  # a leaking algorithm: every guess right
    print(f"{m:11,d}  {v_dp:13,d}  {counting_epsilon(m, v_dp):6.3f}  {v_leak:12,d}  {counting_epsilon(m, v_leak):6.3f}")
assert all(counting_epsilon(m, m) < math.log(m) for m in CANARY_COUNTS)

# %% [markdown]
# The bound stays below the true ε = 1 (*valid* means it exceeds the truth with probability at most
# 1 − confidence = 5%), and it needs many canaries to get close:
# with 100 it certifies very little even though the algorithm is exactly 1-DP. Even perfect guessing is capped
# near ln m: a small audit *cannot* show large ε, so a small measured bound is no evidence of privacy.
# `dpsd_lite.audit.one_run_audit` runs this test on real canaries, with abstentions (guessing only where the score
# is extreme) and δ > 0.
#
# ### Exercise 4.7 — written answers *(2 points)*
# **(a)** Your manager reads the audit table above: "the student's AUC is 0.50, so the student is private". Explain,
# in a short paragraph, why that does not follow. Touch on (i) what one attack can prove, (ii) what AUC averages
# over, (iii) sample size, and (iv) the unit of the ε that `dpsd_lite` reports for the `rr` mode.
#
# **(b)** Why must each canary's membership be decided by its own *secret* coin for the counting bound to be valid?
# What goes wrong if the auditor uses a fixed member/non-member split, or a coin whose seed is saved with the run?

# %% [markdown] deletable=false nbgrader={"cell_type": "markdown", "checksum": "a147866f951c89ae737659119e77a839", "grade": true, "grade_id": "answers_4_7", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# *Your answer here.*

# %% [markdown]
# **Well done.** You have built RR and RR-with-prior and the loss that learns from it, calibrated Gaussian noise,
# written the generator's objective, and read a trade-off and an audit — and bounded ε from one — with a critical
# eye. The library's `dpsd_lite.dpsgd` and
# `dpsd_lite.audit` (canaries, LiRA) are the next places to explore record-level guarantees.
