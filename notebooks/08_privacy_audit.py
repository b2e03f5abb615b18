# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Privacy vs utility, and an honest audit
#
# A privacy engineer's first two questions about any ε are:
#
# * **"ε with respect to what?"** — the *unit of privacy*. The `label`, `rr` and `data` modes protect
#   **each answer the teacher gives to one synthetic query**. One private training record can change
#   the teacher's answer on *every* query, so that ε says nothing about training records.
#   Record-level privacy needs either a **teacher ensemble** on disjoint partitions of the private data
#   (one record moves one vote: PATE's noisy vote aggregation) or **DP-SGD**.
# * **"Compared with what?"** — a baseline. Here: **DP-SGD** (Opacus) training the student's own
#   architecture directly on the private split at the same (ε, δ), plain and from weights trained on
#   **public** digit drawings (no private data), and a student **transcribed from that DP model**: everything
#   computed from a record-level DP model is post-processing, so it keeps the guarantee.
#
# Then we **attack** every released model: membership inference (is this record in the teacher's
# private training data?) and planted **canaries** (mislabeled records: does the model repeat the wrong
# label?). The canaries are planted the way the **one-run audit** (Steinke, Nasr & Jagielski, NeurIPS 2023)
# needs: each one is put in the training set by its own secret coin flip, which is what turns the attack's
# success into a valid lower bound on ε.
#
# > **An audit gives a lower bound on leakage, never a proof of privacy.** An attack that succeeds
# > proves that a model leaks. An attack that fails proves nothing: a stronger attack might succeed.
# > Only the accounting of a mechanism gives an upper bound, and only for the unit it names.
#
# Every computation is a call into `dpsd_lite` (`dpsgd.py`, `ensemble.py`, `audit/`).

# %%
# %matplotlib inline
import os

# %% [markdown]
# The sizes. Full mode trains an ensemble of 20 teachers, plain DP-SGD for 5 epochs, the DP teacher with its
# shipped recipe and 4 shadow models, sized to finish in about ten minutes on 2 CPU cores; the full-size
# study (50 teachers, 30 DP-SGD epochs, 8 shadow models) is `python benchmarks/audit_benchmark.py`, and
# `python benchmarks/audit_benchmark.py --record-level` audits the record-level route alone against its claim.
# Fast mode (`DPSD_FAST=1`, CI) trains 5 teachers on the small digits data.

# %% tags=["parameters"]
FAST = os.environ.get("DPSD_FAST") == "1"  # CI: tiny sizes, well under a minute

DATASET = "digits" if FAST else "mnist-5k"
EPSILONS = (1.0, 10.0)
DELTA = 1e-5
MODES = ("rr",) if FAST else ("label", "rr")  # DPSD noise modes (epsilon per teacher answer)
STEPS = 10 if FAST else 85  # transcription steps of each DPSD student
BATCH_SIZE = 64 if FAST else 256
TEACHER_EPOCHS = 3 if FAST else 8
DPSGD_EPOCHS = 2 if FAST else 5  # plain DP-SGD, for comparison
# the record-level route: the DP teacher users get (`dpsd-lite teacher --dp-epsilon E`), DP-SGD from public
# drawings with its shipped recipe (dpsgd.DP_TEACHER: 30 epochs); fast mode a tiny stand-in
DP_TEACHER_SETTINGS = {"epochs": 2, "batch_size": 64} if FAST else None  # None: the shipped recipe
ENSEMBLE_TEACHERS = 5 if FAST else 20  # teachers on disjoint partitions of the private split
ENSEMBLE_EPOCHS = 3 if FAST else 15
ENSEMBLE_QUERIES = 128 if FAST else 256  # the ensemble's query budget (every answer costs record-level privacy)
NUM_SHADOWS = 2 if FAST else 4  # LiRA shadow models, trained on halves of the held-out split
SHADOW_EPOCHS = 5 if FAST else 15
N_BOOT = 50 if FAST else 200  # bootstrap resamples for the confidence intervals
CANARIES = 40 if FAST else 100  # mislabeled private records, each kept by a secret coin flip (one-run audit)
SEED = 0

# %%
import inspect

import torch

from dpsd_lite import plots
from dpsd_lite.transcribe import TranscribeConfig
from dpsd_lite.accounting import composed_epsilon, composed_noise_multiplier
from dpsd_lite.audit import (StudySettings, format_canaries, format_study, format_verdicts, one_run_p_value,
                             plot_privacy_utility, plot_roc, privacy_study)
from dpsd_lite.data import load_dataset
from dpsd_lite.dpsgd import UNIT_RECORD
from dpsd_lite.report import UNIT_PER_QUERY, UNIT_RECORD_ENSEMBLE

torch.manual_seed(SEED)
data = load_dataset(DATASET)
data.describe()

# %% [markdown]
# ## 1 · Three units of privacy, in the package's own words
#
# Every report in `dpsd_lite` prints its unit. Read the three side by side before looking at any number.

# %%
print("label / rr / data modes:\n ", UNIT_PER_QUERY, "\n")
print("teacher ensemble (PATE GNMax):\n ", UNIT_RECORD_ENSEMBLE, "\n")
print("DP-SGD (Opacus):\n ", UNIT_RECORD)

# %% [markdown]
# ## 1b · The record-level accounting, written out
#
# **The teacher ensemble (GNMax).** The private split is cut into $n$ partitions by a hash of each record's
# own content, one teacher each. A query $x$ is answered by the noisy arg-max of their votes
# $v_j(x) = \#\{\text{teachers whose top class is } j\}$:
#
# $$\tilde y(x) = \arg\max_j \big(v_j(x) + \mathcal{N}(0,\ \sigma^2 \cdot 2)\big).$$
#
# Adding or removing one record changes one partition, hence one teacher, hence one vote moves from one class
# to another: the histogram moves by $\sqrt 2$ in L2, and each answer is a Gaussian mechanism with noise
# multiplier $\sigma$. Its Rényi DP at order $\alpha$ is $\alpha / (2\sigma^2)$, and $T$ answers about the
# same records *compose*:
#
# $$\varepsilon_{\mathrm{RDP}}(\alpha) = \frac{T\,\alpha}{2\sigma^2},\qquad
#   \varepsilon(\delta) \le \min_{\alpha > 1}\Big[\varepsilon_{\mathrm{RDP}}(\alpha)
#   + \frac{\log(1/\delta)}{\alpha - 1}\Big]$$
#
# (Mironov's conversion; Opacus uses the slightly tighter one of Balle et al. 2020). So every answer costs:
# the ensemble can afford only a few hundred. In the library (Opacus does the arithmetic):

# %%
print(inspect.getsource(composed_epsilon))
for queries in (64, 256, 1024):
    sigma = composed_noise_multiplier(1.0, DELTA, sample_rate=1.0, steps=queries)
    print(f"eps = 1 per record over {queries:>4} answers needs sigma = {sigma:6.1f}: noise std "
          f"{sigma * 2 ** 0.5:6.1f} votes (check: eps = {composed_epsilon(sigma, 1.0, queries, DELTA):.3f})")
print(f"the ensemble below: {ENSEMBLE_TEACHERS} teachers, so a vote margin of at most {ENSEMBLE_TEACHERS} votes, "
      f"and {ENSEMBLE_QUERIES} answers")

# %% [markdown]
# **What you should see:** the noise grows with the square root of the number of answers. The ensemble
# trained below has `ENSEMBLE_TEACHERS` teachers (20 in full mode), so no vote margin exceeds 20: at ε = 1
# over its 256 answers, against noise of the std printed above, its answers are mostly noise. More
# teachers, fewer queries, or a larger ε.
#
# **DP-SGD.** At step $t$ a batch $B_t$ is drawn by Poisson sampling (each record with probability $q$), each
# record's gradient is clipped to norm $C$, and Gaussian noise is added to their sum:
#
# $$g_t = \frac{1}{qN}\Big(\sum_{i \in B_t} \mathrm{clip}_C\big(\nabla_\theta \ell(x_i, y_i)\big)
#   + \mathcal{N}(0,\ \sigma^2 C^2 I)\Big).$$
#
# One step is a *subsampled* Gaussian mechanism (a record is in the batch only with probability $q$, and
# nobody may know which: the sampling is secret, like the noise); the accountant composes its RDP over the
# $T = E/q$ steps of $E$ epochs:

# %%
q = 256 / len(data.y_private)
steps = int(30 / q)
sigma = composed_noise_multiplier(1.0, DELTA, sample_rate=q, steps=steps)
print(f"{len(data.y_private):,} records, batch 256 (q = {q:.3f}), 30 epochs = {steps} steps: sigma = {sigma:.3f} "
      f"for eps = 1; the RDP accountant gives back eps = {composed_epsilon(sigma, q, steps, DELTA):.3f}")
sigma_prv = composed_noise_multiplier(1.0, DELTA, sample_rate=q, steps=steps, accountant="prv")
print(f"the PRV accountant bounds the same mechanism more tightly: sigma = {sigma_prv:.3f} is enough for eps = 1 "
      f"(RDP would call it eps = {composed_epsilon(sigma_prv, q, steps, DELTA):.3f})")

# %% [markdown]
# Both are upper bounds on the same mechanism's ε; PRV (privacy-loss random variables, computed numerically)
# is the tighter one, so it lets the same guarantee through with less noise. The DP teacher that
# `dpsd-lite teacher --dp-epsilon E` trains counts with it (`dpsd_lite.dpsgd.DP_TEACHER["accountant"]`), and its
# report names the accountant. Plain DP-SGD below keeps RDP.

# %% [markdown]
# ## 2 · Train and audit everything, side by side
#
# One library call trains every model on the same private split (with the canaries planted), and audits
# each one:
#
# * the **teacher** (no privacy at all);
# * a **DPSD student** per noise mode and ε (ε per teacher answer);
# * the **ensemble student**: the private split is cut into `ENSEMBLE_TEACHERS` partitions, one teacher
#   each; each synthetic query is answered by the noisy arg-max of their vote histogram (Gaussian noise,
#   L2 sensitivity √2), composed over the queries actually answered with Opacus's RDP accountant, and no
#   query is answered after the budget;
# * the **DP-SGD** model: the student's architecture trained on the private split with Opacus's
#   `make_private_with_epsilon`;
# * **DP-SGD from a public initialisation**: the same, started from weights trained only on freshly drawn
#   public digits (`dpsd_lite.public_data`: no private image, label or statistic), so the private budget is
#   spent on what the drawings cannot teach;
# * the **DP-teacher student**: that DP model used as the teacher and transcribed in mode `none` (no
#   per-answer noise at all). Its record-level guarantee is the DP model's: post-processing is free.
#
# Membership inference on the fixed split: members are the teacher's private training records, non-members
# the held-out records. The attacks are a **loss threshold** and an **offline LiRA** with small shadow models
# trained on halves of the held-out split (every record is compared with the same number of shadows that never
# saw it). Their AUC and TPR **describe** how separable the two sets are on one model; they are not a bound on
# ε, because that split was drawn once and never randomised for the audit.
#
# The **one-run audit** gives the bound: `CANARIES` private records get a wrong label and each is kept in the
# training set with probability 1/2 by a secret coin flip (the operating system's entropy). Every model is
# trained once on that copy; the auditor ranks the canaries by the model's loss on their wrong labels and
# guesses "in" for the lowest losses and "out" for the highest.

# %%
settings = StudySettings(
    epsilons=EPSILONS, modes=MODES, delta=DELTA,
    transcribe={"steps": STEPS, "batch_size": BATCH_SIZE}, teacher_epochs=TEACHER_EPOCHS,
    dpsgd={"epochs": DPSGD_EPOCHS, "batch_size": 64 if FAST else 256, "lr": 4e-3}, dp_teacher=DP_TEACHER_SETTINGS,
    ensemble_teachers=ENSEMBLE_TEACHERS, ensemble_epochs=ENSEMBLE_EPOCHS, ensemble_queries=ENSEMBLE_QUERIES,
    ensemble_finetune_epochs=5 if FAST else 30,
    num_shadows=NUM_SHADOWS, shadow_epochs=SHADOW_EPOCHS, n_boot=N_BOOT, canaries=CANARIES, seed=SEED,
)
study = privacy_study(data, settings, log=print)
made_by = plots.generator_name(TranscribeConfig(**settings.transcribe))  # what asked the DPSD students' queries
print(f"DPSD students: queries from the {made_by}, "
      f"{STEPS} iterations each")
print(format_study(study))

# %% [markdown]
# Sanity checks: a broken run should fail here, loudly, rather than plot nonsense.

# %%
assert all(0.0 <= r["heldout_accuracy"] <= 1.0 for r in study.rows)
for r in study.rows:
    if r["unit"] == "record":  # DP-SGD and the ensemble never spend more than their target
        assert r["epsilon"] <= r["epsilon_target"] + 1e-9, r

# %% [markdown]
# ## 3 · Privacy vs utility
#
# Held-out accuracy against ε, one line per mode. **Solid lines are ε per private training record**
# (DP-SGD, the ensemble); **dashed lines are ε per teacher answer** (DPSD modes). Two points at the same
# x position are *not* the same guarantee: a per-answer ε of 10 promises nothing about any training record.

# %%
plot_privacy_utility(study.rows, title=f"{DATASET}: held-out accuracy vs ε (δ = {DELTA:g})\nDPSD students: {made_by}")

# %% [markdown]
# ## 4 · Membership inference: ROC curves on log axes
#
# What matters for privacy is the **low false-positive corner**: an attack that identifies even a few
# members with near-certainty is a real leak, whatever its AUC. Hence log–log axes. With n held-out
# records an FPR below 1/n cannot be resolved, so the curves start at the first non-member.

# %%
lira = [a for a in study.attacks if a.attack.startswith("lira")]
plot_roc(lira, title=f"offline LiRA: teacher's private records vs held-out records\nDPSD students' queries: {made_by}")

# %%
plot_roc([a for a in study.attacks if a.attack == "loss"],
         title=f"loss threshold attack\nDPSD students' queries: {made_by}")

# %% [markdown]
# ## 5 · Lower bound beside the claim
#
# The one-run audit counts how many of the auditor's guesses are right. With $m$ canaries, $r$ guesses and
# $V$ of them right, if training is (ε, δ)-DP per record then (Steinke, Nasr & Jagielski 2023, Corollary 5.4)
#
# $$P[V \ge v] \le f(v) + 2m\delta \max_{i = 1..m} \frac{f(v - i) - f(v)}{i},\qquad
#   f(u) = P\Big[\mathrm{Binomial}\big(r,\ \tfrac{e^\varepsilon}{1 + e^\varepsilon}\big) \ge u\Big]:$$
#
# the count can beat a coin that is right with probability $e^\varepsilon/(1+e^\varepsilon)$ only by chance, and
# by a term that grows with $m\delta$. The **ε lower bound** is the largest ε this p-value rules out at 95%
# confidence: under these assumptions (each canary kept by its own secret coin flip), any training algorithm
# that is (ε, δ)-DP *per record* must have ε at least this large. It is comparable **only with a record-level
# claim**. For DPSD students the claim per record is "none": their ε counts teacher answers. The code:

# %%
print(inspect.getsource(one_run_p_value))
print(f"100 canaries, 50 guesses, all right: p-value at eps = 1: {one_run_p_value(100, 50, 50, 1.0, DELTA):.2e}, "
      f"at eps = 3: {one_run_p_value(100, 50, 50, 3.0, DELTA):.3f}")

# %% [markdown]
# With m canaries even a perfect attack can show only so much (about 2.4 for 100 canaries, 4.7 for 1000), so
# a small bound from a small audit is weak evidence of anything, and never evidence of privacy.

# %%
for r in study.rows:
    claim = r["record_claim"]
    claimed = (f"eps = {claim['epsilon']:.3g}, delta = {claim['delta']:g} per private training record"
               if claim["unit"] == "record" else claim["unit"])
    o = r["one_run"]
    print(f"{r['model']:<26} one-run eps lower bound {r['eps_lower_bound']:.2f} ({o['v']}/{o['r']} guesses right)"
          f"   claimed: {claimed}")

# %% [markdown]
# **Does the audit agree with the claims?** Two checks, and both matter:
#
# * the **record-level route** (the DP teacher and the student transcribed from it): its one-run lower bound must
#   be at or below the claimed ε per record. Above it, the claim or the code would be wrong;
# * the **teacher**, the control: it has no privacy, so a working audit should find leakage there (a bound above
#   0). If it finds none, the attack is too weak for this setting, and every "agrees" above says little.

# %%
print(format_verdicts(study))

# %% [markdown]
# ## 6 · Canaries
#
# The same canaries, read off the model's predictions: how often does each released model output the wrong
# label on the canaries the coin flip kept, compared with the canaries it left out (the controls: same kind of
# image, wrong label by the same rule, never trained on)? A model that memorises individual records repeats
# the canary label far more often than the control rate.

# %%
print(format_canaries(study.canaries))

# %% [markdown]
# ## 7 · What this shows, what it does not, and what can go wrong
#
# * The **DPSD students never see a private record**, only synthetic images labelled through a
#   mechanism, so attacks on them usually fail. That is an *observation*, not a guarantee: their ε is per
#   teacher answer, and nothing in their accounting bounds what one training record can do.
# * **DP-SGD** and the **ensemble** carry a record-level guarantee, and the one-run bound must stay below it
#   (except with probability 5%: that is what 95% confidence means). If a bound exceeded a record-level claim
#   (the table marks it with '!'), the claim or the code would be suspect: that is what audits are for.
# * The ensemble pays for its record-level guarantee with every answered query, so it can afford only a few
#   hundred; PATE's published results also use public unlabelled data and a data-dependent analysis that
#   this small, data-independent version does not.
# * Small audits have wide intervals. A lower bound near 0 from a few hundred records is weak evidence,
#   never evidence of privacy. The bootstrap intervals cover the sampling of records only, not the
#   randomness of training, and the table makes many comparisons at once: an AUC interval that excludes
#   0.5 *from below* says the held-out records happen to be a little easier, not that anything leaks.
# * If no attack succeeds even against the **teacher** (which has no DP at all), the attacks are simply too
#   weak for this setting: a well-regularised teacher trained with augmentation does not overfit enough for a
#   loss or small-shadow attack to see it. That is exactly why "the audit found nothing" is never a proof.
#
# **Questions.** (1) Why may the per-answer ε of a DPSD student not be compared with DP-SGD's ε on the same
# axis? (2) Increase `ENSEMBLE_QUERIES` at a fixed ε: what happens to the noise per vote, and to accuracy?
# (3) Which attack is stronger at 1% FPR, and why does LiRA need shadow models?
