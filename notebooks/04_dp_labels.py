# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
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
# # 4 · DP labels: how the teacher's answers are made private
#
# **What you will see.** The three private noise modes, one at a time, acting
# on the same batch of teacher answers:
#
# * `label`: Gaussian noise on the teacher's (top-k) probabilities;
# * `rr`: selective randomized response on the teacher's hard label;
# * `data`: Gaussian noise on the per-query training gradient (DPDFD).
#
# For each: how ε becomes a noise level (σ or a keep probability), what the
# noisy answers look like, and what the accountant reports. At the end, an ε
# slider lets you see the noise grow as ε shrinks.
#
# **Unit of privacy throughout:** one teacher answer to one query.

# %%
# %matplotlib inline
import os

import torch

from dpsd_lite import plots
from dpsd_lite.accounting import (classic_gaussian_noise_multiplier, gaussian_epsilon, gaussian_noise_multiplier,
                                  rr_keep_probability)
from dpsd_lite.data import load_dataset
from dpsd_lite.mechanisms import make_mechanism
from dpsd_lite.report import format_report, privacy_report
from dpsd_lite.teacher import get_teacher
from dpsd_lite.transcribe import TranscribeConfig
from dpsd_lite.widgets import MechanismExplorer

# %% tags=["parameters"]
FAST = os.environ.get("DPSD_FAST", "0") == "1"
DATASET = "digits" if FAST else "mnist-5k"
TEACHER_EPOCHS = 3 if FAST else TranscribeConfig().teacher_epochs
EPSILON = 2.0  # per teacher answer
DELTA = 1e-5
QUERIES = 300 if FAST else 1000
DEVICE = "cpu"
SEED = 0

# %% [markdown]
# ## 1. From ε to noise
#
# A Gaussian mechanism adds noise of standard deviation σ·Δ, where Δ is how
# far one answer can move (its L2 *sensitivity*) and σ is the *noise
# multiplier*. The package computes σ exactly from (ε, δ) with the analytic
# Gaussian mechanism (Balle & Wang 2018). The textbook formula
# σ = √(2 ln(1.25/δ))/ε is shown for comparison: it is only proven for ε < 1,
# and above ε ≈ 8 it even gives *less* noise than needed.
#
# Randomized response over k classes keeps the true label with probability
# e^ε/(e^ε + k − 1) and is exactly ε-DP with δ = 0.
#
# These numbers are deterministic; the test suite checks this table.

# %%
# NBVAL_CHECK_OUTPUT
print(f"delta = {DELTA:g}")
print(f"{'eps':>5} {'sigma exact':>12} {'sigma classic':>14} {'label std':>10} {'data std':>9} "
      f"{'rr keep k=10':>13} {'rr keep k=2':>12}")
for eps in (0.5, 1, 2, 5, 10):
    print(f"{eps:>5g} {gaussian_noise_multiplier(eps, DELTA):>12.4f} "
          f"{classic_gaussian_noise_multiplier(eps, DELTA):>14.4f} "
          f"{make_mechanism('label', eps, DELTA).noise_std:>10.4f} "
          f"{make_mechanism('data', eps, DELTA).noise_std:>9.4f} "
          f"{rr_keep_probability(eps, 10):>13.6f} {rr_keep_probability(eps, 2):>12.6f}")

# %% [markdown]
# And back: the accountant turns a noise multiplier into the ε it buys
# (a round trip that should give the ε we started from).

# %%
# NBVAL_CHECK_OUTPUT
for eps in (0.5, 1, 2, 5, 10):
    sigma = gaussian_noise_multiplier(eps, DELTA)
    print(f"eps {eps:>4g} -> sigma {sigma:.4f} -> eps {gaussian_epsilon(sigma, DELTA):.4f}")

# %%
plots.plot_noise_calibration(delta=DELTA)

# %% [markdown]
# ## 2. The teacher's answers
#
# To look at the mechanisms without the rest of the loop, we let the teacher
# answer real held-out images (any query would do; the mechanisms never look
# at the query, only at the answer).

# %%
data = load_dataset(DATASET)
teacher = get_teacher(data, epochs=TEACHER_EPOCHS, seed=SEED, device=DEVICE)
with torch.no_grad():
    teacher_logits = teacher.model(data.x_heldout[:QUERIES])
teacher_labels = teacher_logits.argmax(1)
print(f"{QUERIES} teacher answers, {(teacher_labels == data.y_heldout[:QUERIES]).float().mean():.1%} correct")

# %% [markdown]
# ## 3. `label`: Gaussian noise on probabilities
#
# The teacher's softmax, restricted to the top-k classes of a prior (in a
# run, the student's own guess, which costs no privacy) and renormalised.
# Any two such vectors are at most √2 apart, so Δ = √2. Without a prior
# (as here, and during a run's warm-up) all classes are kept.

# %%
label_mech = make_mechanism("label", EPSILON, DELTA)
release = label_mech.release(teacher_logits)
top = torch.arange(QUERIES), teacher_labels
plots.plot_histograms({"clean: teacher's probability of its top class": teacher_logits.softmax(1)[top],
                       "released: the same entry with noise": release.values[top]},
                      xlabel="answer for the teacher's top class (probability units)",
                      title=f"label mode at ε = {EPSILON:g}: noise std {label_mech.noise_std:.3f}")

# %%
print(f"the released answer still points to the teacher's label for "
      f"{(release.hard_labels == teacher_labels).float().mean():.1%} of queries")
print(format_report(privacy_report(label_mech, queries=QUERIES)))

# %% [markdown]
# ## 4. `rr`: selective randomized response
#
# Only a hard label is released. With a prior, RR is restricted to the
# prior's top-k classes, k chosen so the true label has the best chance to
# come out; with fewer candidates, the same ε keeps the true label more
# often. Without a prior (here), k = all 10 classes.

# %%
rr_mech = make_mechanism("rr", EPSILON, DELTA)
release = rr_mech.release(teacher_logits)
plots.plot_label_confusion(teacher_labels, release.labels, class_names=data.class_names,
                           title=f"rr at ε = {EPSILON:g}: keep probability "
                                 f"{rr_keep_probability(EPSILON, data.num_classes):.3f} with k = 10")

# %%
print(format_report(privacy_report(rr_mech, queries=QUERIES)))

# %% [markdown]
# ## 5. `data`: noisy gradients (DPDFD)
#
# Nothing about the teacher is released directly: for each query, the
# gradient of the distillation loss with respect to the student's outputs is
# normalised to norm C, and Gaussian noise with std σ·2C is added (Δ = 2C:
# two gradients of norm C are at most 2C apart). Here the student is
# untrained (uniform prediction).

# %%
data_mech = make_mechanism("data", EPSILON, DELTA)
student_logits = torch.zeros_like(teacher_logits)
release = data_mech.release(teacher_logits, student_logits=student_logits)
clean = student_logits.softmax(1) - teacher_logits.softmax(1)
clean = clean / clean.norm(dim=1, keepdim=True)
plots.plot_histograms({"clean: normalised gradient coordinates": clean, "released: with noise": release.values},
                      xlabel="gradient coordinate w.r.t. the student's logits (C = 1)",
                      title=f"data mode at ε = {EPSILON:g}: noise std {data_mech.noise_std:.3f}")

# %%
print(format_report(privacy_report(data_mech, queries=QUERIES)))

# %% [markdown]
# ## 6. Where the noise comes from
#
# Every release above drew its noise from a generator seeded with the
# operating system's entropy, a seed nobody knows and nothing stores (look for
# "noise: secret" in the reports). Run one of those cells again and the noise
# changes. That is the point: a noise draw anyone can *recompute*, for example
# from a run's published seed, can be subtracted, and then no ε holds. Here
# is what a lesson's *reproducible* noise looks like, and what its report
# says about it:

# %%
lesson_mech = make_mechanism("label", EPSILON, DELTA, noise_seed=SEED)  # explicit opt-in: a lesson, not a release
print(format_report(privacy_report(lesson_mech, queries=QUERIES)).splitlines()[0])

# %% [markdown]
# ## 7. Explore
#
# Move ε and switch modes. The explorer is a lesson, so it uses reproducible
# noise: moving ε rescales the *same* noise draw, which makes the effect of ε
# easy to see (and its report carries the warning above).

# %%
MechanismExplorer(teacher_logits, epsilon=EPSILON, noise_mode="rr", delta=DELTA, class_names=data.class_names)

# %% [markdown]
# ## Questions
#
# 1. At which ε does `rr` over 10 classes keep the true label half of the
#    time? Check it with `rr_keep_probability`.
# 2. At ε = 1 the `label` noise std is far larger than 1, the whole range of a
#    probability. Why can the student still learn anything from it?
#    (Hint: many queries, and an unbiased loss.)
# 3. Why does restricting `rr` to the top-k classes of a prior help, and why
#    must the prior not depend on the teacher's answer to the same query?
# 4. Every report says "no composition needed". When *would* we have to
#    compose, and which accountant would we use?
