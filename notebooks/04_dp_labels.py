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
# For each: the formula, the few lines of library code that compute it (read
# them beside the formula), what the noisy answers look like, and what the
# privacy report says. Then where the noise itself comes from (and the attack
# on noise that is not secret), and an ε slider over the teacher's answers.
#
# **Unit of privacy throughout:** one teacher answer to one query. The
# mechanism is the only door between the teacher and everything else:

# %%
# %matplotlib inline
import inspect
import os

import torch

from dpsd_lite import plots
from dpsd_lite.accounting import (classic_gaussian_noise_multiplier, gaussian_delta, gaussian_epsilon,
                                  gaussian_noise_multiplier, pure_composition_delta, rr_keep_probability,
                                  whole_run_epsilon)
from dpsd_lite.data import load_dataset
from dpsd_lite.mechanisms import GradientNoise, LabelNoise, SelectiveRR, make_mechanism, select_rr_classes
from dpsd_lite.noise import replay_label_noise
from dpsd_lite.report import format_report, privacy_report, privacy_summary
from dpsd_lite.teacher import get_teacher
from dpsd_lite.transcribe import TranscribeConfig, resolve
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

# %%
plots.plot_pipeline(highlight="mechanism", title="this notebook: the mechanism, where the noise is added")

# %% [markdown]
# ## 1. From ε to noise: the Gaussian mechanism
#
# An answer $a \in \mathbb{R}^K$ (a probability vector, a gradient) whose
# value can move by at most $\Delta$ in L2 norm when the private thing it is
# about changes (its *sensitivity*) is released as
#
# $$\tilde a = a + \mathcal{N}\!\left(0,\ \sigma^2 \Delta^2 I_K\right),$$
#
# where $\sigma$ is the *noise multiplier*. One such release is exactly
# $\mu$-GDP with $\mu = 1/\sigma$, and its exact $(\varepsilon, \delta)$ curve
# is the analytic Gaussian mechanism (Balle & Wang 2018):
#
# $$\delta(\varepsilon) = \Phi\!\left(-\frac{\varepsilon}{\mu} + \frac{\mu}{2}\right)
#   - e^{\varepsilon}\, \Phi\!\left(-\frac{\varepsilon}{\mu} - \frac{\mu}{2}\right).$$
#
# $\delta(\varepsilon)$ falls as $\sigma$ grows, so the smallest $\sigma$
# meeting a target $(\varepsilon, \delta)$ is found by a one-dimensional root
# search. In the library, line for line:

# %%
print(inspect.getsource(gaussian_delta))

# %% [markdown]
# **Try it.** At ε = 1, is σ = 4 enough for δ = 1e-5? And σ = 5? (Call
# `gaussian_delta(sigma, 1.0)` and compare with `DELTA`.) The package solves
# for σ with Brent's method in `gaussian_noise_multiplier`; assignment 2 asks
# you to write that search yourself, by bisection.
#
# The textbook formula $\sigma = \sqrt{2\ln(1.25/\delta)}/\varepsilon$ is
# shown for comparison: it is only proven for $\varepsilon < 1$, and above
# $\varepsilon \approx 8$ it gives *less* noise than needed. Randomized
# response over $k$ classes keeps the true label with probability
# $e^\varepsilon / (e^\varepsilon + k - 1)$ and is exactly ε-DP with δ = 0.
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
# The teacher's softmax $p$, restricted to a set $S$ of $k$ classes chosen by
# a prior (in a run: the student's own guess, which costs no privacy) and
# renormalised, plus Gaussian noise on those $k$ entries:
#
# $$\tilde a = \frac{p \odot \mathbb{1}_S}{\sum_{j\in S} p_j}
#   + \mathcal{N}\!\left(0,\ \sigma^2 \Delta^2 I\right)\odot\mathbb{1}_S,
#   \qquad \Delta = \sqrt 2 .$$
#
# Two points of the probability simplex are at most $\sqrt 2$ apart (two
# different one-hot vectors), so $\Delta = \sqrt 2$ whatever the teacher
# says. Fewer classes means the same noise spread over fewer entries: that is
# why a prior helps. Without a prior (as here) all classes are kept. In a
# run the prior is the student's own prediction from the very first query:
# there is no warm-up with a uniform prior.
# With the learned generator, though, `label` keeps all ten classes anyway
# (`top_k = 10`: its student's prior is too weak early on to choose from);
# runs with the stroke renderer keep the prior's top two. The code:

# %%
print(inspect.getsource(LabelNoise.release))

# %%
label_mech = make_mechanism("label", EPSILON, DELTA)
release = label_mech.release(teacher_logits)
top = torch.arange(QUERIES), teacher_labels
plots.plot_histograms({"clean: teacher's probability of its top class": teacher_logits.softmax(1)[top],
                       "released: the same entry with noise": release.values[top]},
                      xlabel="answer for the teacher's top class (probability units)",
                      title=f"label mode at ε = {EPSILON:g}: noise std {label_mech.noise_std:.3f}")

# %% [markdown]
# **What you should see:** the released values spread far beyond [0, 1]
# (the noise std is printed in the title), yet their arg-max still points to
# the teacher's label more often than chance:

# %%
kept = (release.hard_labels == teacher_labels).float().mean().item()
print(f"the released answer points to the teacher's label for {kept:.1%} of queries (chance: "
      f"{1 / data.num_classes:.0%}); the noise std is {label_mech.noise_std:.2f}")
print(format_report(privacy_report(label_mech, queries=QUERIES)))

# %% [markdown]
# ## 4. `rr`: selective randomized response
#
# Only a hard label is released. Given a prior $\pi$ (the student's
# prediction) with its classes sorted $\pi_{(1)} \ge \pi_{(2)} \ge \dots$,
# RR-with-prior (Ghazi et al. 2021) picks the answer set $S$ as the top
# $k^{\star}$ classes, where
#
# $$k^{\star} = \arg\max_{k \ge k_{\min}}\ \Big(\sum_{j \le k} \pi_{(j)}\Big)
#   \cdot \frac{e^{\varepsilon}}{e^{\varepsilon} + k - 1}:$$
#
# the chance that the true label is in the set, times the chance that RR over
# $k$ classes keeps it. Then, with $y$ the teacher's label,
#
# $$P(\tilde y = y) = \frac{e^\varepsilon}{e^\varepsilon + k - 1},\qquad
#   P(\tilde y = j) = \frac{1}{e^\varepsilon + k - 1}\ \ (j \in S,\ j \ne y),$$
#
# and a uniform member of $S$ if $y \notin S$. Any two teacher labels change
# the probability of any output by at most a factor $e^\varepsilon$: pure
# ε-DP. The choice of $k$ reads the prior only, never the teacher, so it is
# free. Line for line:

# %%
print(inspect.getsource(select_rr_classes))

# %%
rr_mech = make_mechanism("rr", EPSILON, DELTA)
release = rr_mech.release(teacher_logits)
plots.plot_label_confusion(teacher_labels, release.labels, class_names=data.class_names,
                           title=f"rr at ε = {EPSILON:g}: keep probability "
                                 f"{rr_keep_probability(EPSILON, data.num_classes):.3f} with k = 10")

# %% [markdown]
# **What you should see:** the diagonal holds the kept labels. Without a
# prior $k = K$, and the measured keep rate matches the formula:

# %%
measured = (release.labels == teacher_labels).float().mean().item()
print(f"kept: {measured:.1%} measured on {QUERIES} answers, "
      f"{rr_keep_probability(EPSILON, data.num_classes):.1%} in theory")
print(format_report(privacy_report(rr_mech, queries=QUERIES, answer_set_sizes=release.extra["k"])))

# %% [markdown]
# ### How the student learns from randomized labels
#
# The student does not treat $\tilde y$ as the truth. Its loss is the
# likelihood of what was released, under its own clean class probabilities
# $q_\theta(y\mid x)$ pushed through the known RR channel:
#
# $$\mathcal{L}(x, \tilde y) = -\log \sum_{y=1}^{K} q_\theta(y \mid x)\,
#   P(\tilde y \mid y),$$
#
# with $P(\tilde y \mid y)$ from the formulas above ($1/k$ for $y \notin S$).
# Minimising it recovers the clean probabilities: the noise is *modelled*,
# not ignored.

# %%
print(inspect.getsource(SelectiveRR.student_loss))

# %% [markdown]
# **Try it.** Give the selection a confident prior: `prior = torch.softmax(4 *
# teacher_logits, 1)` (a cheat, for the lesson only: a real prior must not
# depend on the teacher) and look at `select_rr_classes(prior, EPSILON)[1]`:
# which $k$ does it pick, and how often would RR now keep the label?

# %% [markdown]
# ### Releasing more of each answer at the same ε: the top two
#
# ε protects *the teacher's answer to a query*, whatever part of it a
# mechanism reads. `rr` with `rr_answer="top2"` (an extension beyond the
# papers' mode) reads the teacher's first and second class, an ordered pair
# $(a, b)$, one of $N = K(K-1) = 90$, and releases it by randomized response
# over all the pairs:
#
# $$P\big((\tilde a, \tilde b) = (a, b)\big) = \frac{e^\varepsilon}{e^\varepsilon + N - 1},\qquad
#   P\big((\tilde a, \tilde b) = \text{each other pair}\big) = \frac{1}{e^\varepsilon + N - 1}.$$
#
# Any two teacher answers change the probability of any output pair by at most
# $e^\varepsilon$: the same pure ε-DP for the same unit. The price of the
# larger answer space is a smaller keep probability:

# %%
for eps in (1.0, EPSILON, 5.0, 10.0):
    print(f"ε = {eps:>4g}: the top class kept {rr_keep_probability(eps, data.num_classes):.3f} (10-ary RR), "
          f"the ordered top two {rr_keep_probability(eps, data.num_classes * (data.num_classes - 1)):.3f} (90-ary)")

# %%
pair_mech = make_mechanism("rr", 10.0, DELTA, answer="top2")
pairs = pair_mech.release(teacher_logits)
top_two = teacher_logits.topk(2, dim=1).indices
kept = ((pairs.labels == top_two[:, 0]) & (pairs.extra["second"] == top_two[:, 1])).float().mean().item()
print(f"at ε = 10: {kept:.1%} of the pairs kept on {QUERIES} answers, {pair_mech.keep_probability:.1%} in theory")
print(format_report(privacy_report(pair_mech, queries=QUERIES)))

# %% [markdown]
# The student learns the pair the same way, by its likelihood through the
# channel: its own chance that $(a, b)$ is the teacher's top two is
# $q_a \, q_b / (1 - q_a)$ (the first class, then the second among the rest).
# With the learned generator at ε = 10 it kept more of the teacher than the
# top class alone on the teachers' training images (five seeds, both
# domains), but on held-out images the two came out level; at ε = 1 the
# pair survives 3% of the time (the README gives the figures).

# %% [markdown]
# ## 5. `data`: noisy gradients (DPDFD)
#
# Nothing about the teacher is released directly. For query $i$ the gradient
# of the distillation loss $\mathrm{KL}(p_i \,\|\, \mathrm{softmax}(s_i))$
# with respect to the student's logits $s_i$ is
# $g_i = \mathrm{softmax}(s_i) - p_i$. It is normalised to norm $C$ and
# noised:
#
# $$\tilde g_i = C\,\frac{g_i}{\lVert g_i\rVert}
#   + \mathcal{N}\!\left(0,\ \sigma^2 (2C)^2 I\right),$$
#
# ($\Delta = 2C$: two gradients of norm $C$ are at most $2C$ apart), then
# back-propagated into the student as if it were the loss's gradient. Here the
# student is untrained (a uniform prediction):

# %%
print(inspect.getsource(GradientNoise.release))

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
# ## 6. Where the noise comes from, and the attack on noise that is not secret
#
# Every release above drew its noise from a generator seeded with the
# operating system's entropy, a seed nobody knows and nothing stores (look
# for "noise: secret" in the reports). Run one of those cells again and the
# noise changes. That is the point. A noise draw anyone can *recompute*, for
# example from a run's published seed, can be subtracted from the release,
# and then no ε holds. Watch it happen: a lesson's *reproducible* mechanism
# (the explicit opt-in), and an attacker who knows only the seed.

# %%
lesson_mech = make_mechanism("label", EPSILON, DELTA, noise_seed=SEED)  # explicit opt-in: a lesson, not a release
lesson_release = lesson_mech.release(teacher_logits)
recovered = replay_label_noise(SEED, [lesson_release], lesson_mech.noise_std)[0]  # the attacker's side
exact = teacher_logits.softmax(1)
error = (recovered - exact).abs().max().item()
print(f"reproducible noise: the attacker recovers the teacher's probabilities to within {error:.1e}")
secret_release = make_mechanism("label", EPSILON, DELTA).release(teacher_logits)  # the default
error = (replay_label_noise(SEED, [secret_release], lesson_mech.noise_std)[0] - exact).abs().max().item()
print(f"secret noise: the same attack is off by up to {error:.1f} (the noise itself)")
print(format_report(privacy_report(lesson_mech, queries=QUERIES)).splitlines()[0])

# %% [markdown]
# ## 7. One answer, the whole run, one record: three levels of ε
#
# Every ε above protects **one teacher answer**. A run asks the teacher $N$
# questions, and one private training record can change the teacher, hence
# *every* answer. So what one record can move through a non-private teacher
# is all $N$ answers **composed**:
#
# * `label` and `data`: each answer is a Gaussian mechanism with noise
#   multiplier $\sigma$, so $N$ of them have Rényi divergence
#   $\varepsilon_{\mathrm{RDP}}(\alpha) = N\alpha / (2\sigma^2)$ (converted to
#   $(\varepsilon, \delta)$ by Opacus, as for DP-SGD); exactly, they are one
#   Gaussian release with noise multiplier $\sigma/\sqrt N$;
# * `rr`: $N$ answers of pure ε-DP compose at worst like $N$ binary randomized
#   responses (Kairouz, Oh & Viswanath 2015): with $l$ flips out of $N$,
#   $l \sim \mathrm{Binomial}(N, 1/(1+e^\varepsilon))$, the privacy loss is
#   $(N - 2l)\,\varepsilon$ and
#   $\delta(\varepsilon') = \sum_l P(l)\,\max\big(0,\ 1 - e^{\varepsilon' - (N - 2l)\varepsilon}\big)$.
#
# The third level, **per private record**, exists only when the teacher
# itself is private (a DP-SGD teacher, or an ensemble): then everything after
# it is post-processing. For an ordinary teacher there is none. Every report,
# `privacy.json`, the CLI and the dashboard print the three side by side; for
# a default run:

# %%
print(inspect.getsource(pure_composition_delta))
run = resolve(TranscribeConfig(epsilon=EPSILON))
answers = run.steps * run.student_steps * run.batch_size
print(f"a default run at ε = {EPSILON:g} per answer asks {answers:,} questions "
      f"({run.steps} steps × {run.student_steps} batch × {run.batch_size} queries)\n")
for name, mech in (("label", label_mech), ("rr", rr_mech)):
    print(f"{name}:\n" + privacy_summary(privacy_report(mech, queries=answers, config=run)) + "\n")
print(f"basic composition would say N·ε = {answers * EPSILON:,.0f} for rr; the optimal composition: "
      f"{whole_run_epsilon('rr', answers, DELTA, epsilon=EPSILON)['epsilon']:,.0f}")

# %% [markdown]
# **What you should see:** ε = 2 per answer, and tens of thousands (`label`)
# to hundreds of thousands (`rr`) for the whole run: a number that bounds
# nothing. That is not a flaw of one
# mechanism: any per-answer ε, composed over the answers of a useful run,
# is vacuous for the records behind the teacher. Record-level privacy needs a
# private teacher (notebook 8).
#
# ## 8. Explore
#
# Move ε and switch modes. The explorer is a lesson, so it uses reproducible
# noise: moving ε rescales the *same* noise draw, which makes the effect of ε
# easy to see (and its report carries the warning above).

# %%
MechanismExplorer(teacher_logits, epsilon=EPSILON, noise_mode="rr", delta=DELTA, class_names=data.class_names)

# %% [markdown]
# ## What can go wrong
#
# * **Noise seeded from a published number.** Section 6: the student becomes
#   a deterministic function of the teacher's answers plus a public number.
#   The package's default is secret noise; `--reproducible-noise` exists for
#   lessons and tests, and its report says the ε does not hold.
# * **Spreading noise over every class.** At small ε, Gaussian noise on all
#   $K$ probabilities buries the answer (section 3 without a prior); a prior's
#   top-k keeps the same ε on fewer, more informative entries.
# * **An overconfident prior in `rr`.** If the prior is sure of itself, the
#   rule picks $k = 1$, and RR over one class returns the prior's own guess
#   whatever the teacher said: pure self-training. The package tempers the
#   student's prior (temperature, smoothing) and never lets $k$ fall below
#   `k_min = 2`.
# * **A prior that peeks.** The prior must not depend on the teacher's answer
#   to the same query; otherwise choosing $S$ leaks it. The student's
#   prediction depends only on earlier releases, which is post-processing.
# * **Tuning on private data.** Picking ε, top-k or a temperature by comparing
#   runs on the private split is itself a release no ε here covers; the
#   reports say which defaults were chosen that way.
#
# ## Questions
#
# 1. At which ε does `rr` over 10 classes keep the true label half of the
#    time? Check it with `rr_keep_probability`.
# 2. At ε = 1 the `label` noise std is far larger than 1, the whole range of a
#    probability. Why can the student still learn anything from it?
#    (Hint: many queries, and an unbiased loss.)
# 3. Why does restricting `rr` to the top-k classes of a prior help, and why
#    must the prior not depend on the teacher's answer to the same query?
# 4. The per-answer line of a report says "no composition needed", and the
#    whole-run line composes every answer. Which question does each one
#    answer? Which would a patient whose scan is in the private data ask?
# 5. In section 6 the attacker needed the seed and the releases. Which of the
#    two does a published student carry, and why is the seed alone already
#    too much?
# 6. The top-two release and the top-class release have the same ε. Does the
#    top-two one leak more about the teacher? About what, exactly, and why
#    does the ε not change?
