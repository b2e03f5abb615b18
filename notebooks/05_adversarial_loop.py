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
# # 5 · The adversarial loop: one iteration, tensor by tensor
#
# **What you will see.** The transcription loop taken apart into the very
# functions `transcribe()` calls (`dpsd_lite/phases.py`), run here one at a
# time with DPSD's **learned generator** and their real optimiser steps:
#
# 1. `private_step`: the generator draws a batch $x = G(z, c)$, the teacher
#    answers it *inside the mechanism*, the student's own prediction picks the
#    answer set, the mechanism releases a noisy label, and the student takes a
#    step on it;
# 2. `replay_step`: the student learns again from earlier releases, at no
#    privacy cost;
# 3. `generator_step`: the generator takes a step with the **student** as its
#    discriminator, and never reads the teacher.
#
# For each: its formula, the code that computes it, and every tensor it made
# (shapes, images, probabilities, the answer sets, how far the weights moved).
# Then the loop runs with live curves, privately (`rr`) and without privacy
# (`none`).

# %%
# %matplotlib inline
import inspect
import os

import torch

from dpsd_lite import phases, plots
from dpsd_lite.data import load_dataset
from dpsd_lite.mechanisms import SelectiveRR, rr_channel, select_rr_classes
from dpsd_lite.teacher import get_teacher
from dpsd_lite.transcribe import TranscribeConfig, resolve, transcribe
from dpsd_lite.utils import accuracy
from dpsd_lite.widgets import LiveMonitor

# %% tags=["parameters"]
FAST = os.environ.get("DPSD_FAST", "0") == "1"
DATASET = "digits" if FAST else "mnist-5k"
NOISE_MODE = "rr"
EPSILON = 4.0  # per teacher answer
DELTA = 1e-5
STEPS = 20 if FAST else resolve(TranscribeConfig(epsilon=EPSILON)).steps
BATCH_SIZE = 64 if FAST else TranscribeConfig().batch_size
HAND_STEPS = 5 if FAST else 20  # iterations taken by hand in section 5
SHOWN = 6  # queries followed through the mechanism in section 2
TEACHER_EPOCHS = 3 if FAST else TranscribeConfig().teacher_epochs
DEVICE = "cpu"
SEED = 0

# %%
plots.plot_pipeline(highlight=["generator", "student", "mechanism"],
                    title="this notebook: one iteration, player by player")

# %% [markdown]
# ## 1. The players
#
# `phases.setup` builds everything one run needs from a configuration: the
# student (untrained), the learned generator (untrained), the mechanism of the
# noise mode (its noise secret), their optimisers and the run's random
# generator. The teacher is the trained one, frozen. `resolve(config)` fills
# in the learned generator's own defaults for this ε; the ones this notebook's
# formulas use are printed.

# %%
data = load_dataset(DATASET)
teacher = get_teacher(data, epochs=TEACHER_EPOCHS, seed=SEED, device=DEVICE)
asked = TranscribeConfig(dataset=DATASET, noise_mode=NOISE_MODE, epsilon=EPSILON, delta=DELTA, steps=STEPS,
                         batch_size=BATCH_SIZE, teacher_epochs=TEACHER_EPOCHS, device=DEVICE, seed=SEED,
                         eval_every=max(1, STEPS // 5))
config = resolve(asked)  # every default that depends on ε, the generator and the CPU, filled in once
p = phases.setup(config, data, teacher, torch.device(DEVICE))
cfg = p.config  # resolved: what the run really uses, and what a run's config.json saves
before = accuracy(p.student, data.x_heldout, data.y_heldout)
print(f"run: {plots.run_title(p)}")
print(f"teacher {teacher.heldout_accuracy:.1%}, untrained student {before:.1%} on held-out images")
print(f"mechanism: {p.mechanism.describe()['mechanism']}")
print(f"B = {cfg.batch_size} queries per private step, {cfg.student_steps} private steps, {p.replay_steps} replay "
      f"steps and 1 generator step (n = {cfg.generator_batch} images) per iteration; query_pool {cfg.query_pool}, "
      f"augment {cfg.augment}, class_balance u = {cfg.class_balance}")
print(f"prior: temperature T = {cfg.prior_temperature}, smoothing λ = {cfg.prior_smoothing}, k_min = {cfg.k_min} "
      "(the prior is used from the first query)")
print(f"generator objective weights: diversity λ_div = {cfg.diversity_weight}, discrepancy λ_disc = "
      f"{cfg.discrepancy_weight} (0 in every private mode); forward passes in {cfg.precision}")

# %% [markdown]
# The stroke renderer would first warm the student up on its own skeleton
# drawings (`phases.warm_start`, no teacher). The learned generator has no
# drawings of its own, so nothing happens here: the student starts untrained,
# and its first prior is nearly flat.

# %%
print(f"warm start ran: {phases.warm_start(p)}")

# %% [markdown]
# ## 2. `private_step`: the only phase that asks the teacher
#
# **The queries.** $B$ noise vectors $z_i \sim \mathcal{N}(0, I_{d})$, $d$ =
# `nz` = 64, and requested classes $c_i$ (the batch is two copies of
# $m = \lceil B/2\rceil$ drawn classes: image $i$ and image $i + m$ are asked
# for the same class). With
# class balancing a share $u$ of the classes is drawn in inverse proportion to
# how often each class was released lately ($r$, a moving average of the
# released labels' class shares, $r \leftarrow 0.9\,r + 0.1\,\text{share}$):
#
# $$P(c_i = c) = w_c = \frac{1-u}{K} + u\,\frac{1/(r_c + 0.02)}{\sum_j 1/(r_j + 0.02)},
#   \qquad x_i = G(z_i, c_i; a_i),$$
#
# where $a_i$, drawn log-uniformly in $[\tfrac12, 2]$, scales how much of the
# image the generator may light (its ink; left out of the notation below).
#
# **Inside the mechanism.** The teacher's logits $t_i = T(x_i)$ go *only*
# into `mechanism.release`; `rr` reads nothing of them but the label
# $y_i = \arg\max_j t_{ij}$.
#
# **The prior** is the student's own prediction $s_i = S(x_i)$, tempered and
# smoothed (`phases.student_prior`):
#
# $$\pi_i = (1-\lambda)\,\mathrm{softmax}(s_i / T) + \lambda / K .$$
#
# **The answer set** (`select_rr_classes`): the top $k_i$ classes of $\pi_i$,
# $S_i$, with
#
# $$k_i = \arg\max_{k \ge k_{\min}} \Big(\sum_{j \le k} \pi_{i,(j)}\Big)\,\frac{e^{\varepsilon}}{e^{\varepsilon} + k - 1},$$
#
# ($\pi_{i,(j)}$ the $j$-th largest entry). **The release** is randomized
# response over $S_i$, the channel $P(\tilde y_i = j \mid y_i)$:
#
# $$P(\tilde y = j \mid y) = \begin{cases}
#   \dfrac{e^{\varepsilon}}{e^{\varepsilon} + k - 1} & j = y \in S \\[1ex]
#   \dfrac{1}{e^{\varepsilon} + k - 1} & j \in S,\ j \ne y,\ y \in S \\[1ex]
#   \dfrac{1}{k} & j \in S,\ y \notin S \\[1ex]
#   0 & j \notin S .
# \end{cases}$$
#
# **The student's step.** One Adam step (learning rate from the one-cycle
# schedule: it starts at 1/25 of `lr_student`) on the forward-corrected
# likelihood of what was released, with $q_i = \mathrm{softmax}(s_i)$ the
# student's clean class probabilities:
#
# $$\mathcal{L}_S = -\frac{1}{B}\sum_{i=1}^{B} \log \sum_{y=1}^{K} q_i(y)\, P(\tilde y_i \mid y).$$
#
# The code, `private_step`, then the mechanism's loss:

# %%
print(inspect.getsource(phases.private_step))
print(inspect.getsource(SelectiveRR.student_loss))

# %% [markdown]
# One private step, traced: `phases.trace_private_step` runs `private_step`
# unchanged and keeps what it computed on the way. Every tensor, with its shape:

# %%
trace = phases.trace_private_step(p, use_prior=True)
after_one = accuracy(p.student, data.x_heldout, data.y_heldout)
shapes = {"z": trace.z, "c": trace.c, "x = G(z, c)": trace.x,
          "teacher's probabilities (inside the mechanism only)": trace.teacher_probabilities,
          "student logits s": trace.student_logits, "prior π": trace.prior, "answer set S (mask)": trace.release.mask,
          "k": trace.release.extra["k"], "released labels": trace.release.labels}
for name, tensor in shapes.items():
    print(f"{name:<52} {tuple(tensor.shape)}")
print(f"student loss on the release {trace.loss:.3f}; held-out accuracy {before:.1%} -> {after_one:.1%}")

# %%
plots.image_grid(trace.x[:32], trace.c[:32], trace.release.labels[:32], class_names=data.class_names,
                 label_name="released label",
                 title=f"x = G(z, c) from the untrained {plots.generator_name(p)}, and what the mechanism let out")

# %% [markdown]
# Six of those queries followed through the mechanism. The red row is what
# the mechanism reads, the teacher's probabilities: it is printed here for
# the lesson only, and in a run nothing outside `mechanism.release` ever sees
# it. The bottom row is public: the prior $\pi$, its answer set $S$ (blue)
# and $k$, and the released label.

# %%
plots.plot_private_step(trace, n=SHOWN, class_names=data.class_names, run=p)

# %% [markdown]
# **What you should see:** the untrained student's prior is almost flat, so
# the rule above picks the largest set, $k = K$: the mechanism starts as
# plain $K$-ary randomized response by itself, without any warm-up. Most
# released labels differ from the class asked for: the untrained generator's
# images are not yet what the teacher calls them.

# %%
k = trace.release.extra["k"]
print(f"answer set sizes k in this batch: {torch.bincount(k, minlength=p.num_classes + 1)[1:].tolist()} "
      f"(counts of k = 1..{p.num_classes})")
recomputed = select_rr_classes(trace.prior, EPSILON, cfg.k_min)[1]  # from the public prior alone
print(f"k recomputed from the prior alone: {bool(torch.equal(recomputed, k))}")
keep = rr_channel(k, EPSILON)[0].mean().item()  # the channel the student's loss uses: (keep, other) per query
print(f"mean keep probability e^ε/(e^ε+k−1) over the batch: {keep:.3f}")
print(f"released label = requested class for {(trace.release.labels == trace.c).float().mean().item():.0%} "
      f"of the queries; = the teacher's label for "
      f"{(trace.release.labels == trace.teacher_probabilities.argmax(1)).float().mean().item():.0%}")

# %% [markdown]
# How far one step moved the student: the norm of each layer's change,
# relative to the layer's weights (weight and bias together).

# %%
plots.add_run_title(plots.plot_weight_change(trace.student_change, title="the student's weights: one private step"), p)

# %% [markdown]
# ## 3. `replay_step`: learning again from what was already released
#
# A release is public by definition, so training on it again is
# post-processing: no new query, no privacy cost. The loop keeps the last
# 32,768 (query, release) pairs in a ring buffer and takes `replay_steps`
# extra student steps per iteration, each on $B$ pairs drawn uniformly (with
# replacement) from it, with the same loss $\mathcal{L}_S$. (Not in mode `data`: its release is
# a gradient at the student of that moment, meaningless later.)

# %%
print(inspect.getsource(phases.replay_step))
print(f"replay buffer holds {p.buffer.size:,} released queries; replay loss {phases.replay_step(p).item():.3f}")

# %% [markdown]
# ## 4. `generator_step`: the student is the discriminator
#
# The generator $G_\theta$ takes one Adam step on a fresh batch of $n$ =
# `generator_batch` images, drawn as above (image $i$ and image $i+h$, $h =
# n/2$, are asked for the same class), with the student $S$ frozen (eval
# mode, no update):
#
# $$\mathcal{L}_G(\theta) =
#   \underbrace{-\frac{1}{n}\sum_{i=1}^{n} \log \mathrm{softmax}\big(S(G_\theta(z_i, c_i))\big)_{c_i}}_{\text{class}}
#   \;-\; \lambda_{\mathrm{div}}\,
#   \underbrace{\frac{1}{h}\sum_{i=1}^{h}
#     \frac{\frac{1}{D}\lVert G_\theta(z_i, c_i) - G_\theta(z_{i+h}, c_i)\rVert_1}{\frac{1}{d}\lVert z_i - z_{i+h}\rVert_1}}_{\text{diversity}}
#   \;-\; \lambda_{\mathrm{disc}}\,
#   \underbrace{\frac{1}{nK}\sum_{i=1}^{n}\big\lVert S(x_i) - T(x_i)\big\rVert_1}_{\text{discrepancy: mode none only}}$$
#
# with $D$ the pixels of an image and $d = 64$ the size of $z$. The class
# term asks the student to see the requested class (the student as auxiliary
# classifier); the diversity term (weight $\lambda_{\mathrm{div}}$ =
# `diversity_weight` = 1) pushes two images of one class apart per unit of
# distance between their $z$, so a class does not collapse to one image. The
# discrepancy term (DFAD's) reads the raw teacher, so only mode `none` may
# use it: its weight $\lambda_{\mathrm{disc}}$ = `discrepancy_weight` is 0.1
# there for the learned generator and 0 in every private mode, as here. One
# more term is off in this run: for the stroke renderer only,
# an anchor $+\lambda_{\mathrm{anchor}}\cdot\mathrm{mean}\big(\phi_\theta(z,
# c) - \phi_{\theta_0}(z, c)\big)^2$ on its stroke parameters
# (`anchor_weight` = 10). One line per term:

# %%
print(inspect.getsource(phases.generator_objective))

# %% [markdown]
# One generator step, traced on 16 fixed $(z, c)$: the same images before
# and after the step, the value of each active term (its weight included),
# and how far each layer moved.

# %%
gen_trace = phases.trace_generator_step(p, n=16)
print("objective terms, weights included:", {k: round(v, 4) for k, v in gen_trace.terms.items()})
print(f"mean change per pixel of the fixed images: {(gen_trace.after - gen_trace.before).abs().mean().item():.4f} "
      f"(pixels in [-1, 1])")
plots.image_grid(torch.cat([gen_trace.before[:8], gen_trace.after[:8]]), torch.cat([gen_trace.c[:8]] * 2), ncols=8,
                 class_names=data.class_names,
                 title=f"{plots.generator_name(p)}: the same (z, c) before (top) and after (bottom) one step")

# %%
plots.add_run_title(plots.plot_weight_change(gen_trace.generator_change, title="the generator's weights: one step"), p)

# %% [markdown]
# **Why the generator never reads the teacher.** Count the teacher's calls
# during a generator step in a private mode:

# %%
calls = []
hook = p.teacher_model.register_forward_hook(lambda *args: calls.append(1))
phases.generator_step(p)
hook.remove()
print(f"teacher calls during a generator step in mode {NOISE_MODE!r}: {len(calls)}")

# %% [markdown]
# **Try it.** Set `p.config = p.config.replace(diversity_weight=0)` and take
# a dozen generator steps: what happens to the images of one class? (Mode
# collapse: see "what can go wrong" below.)
#
# ## 5. A few iterations by hand
#
# Each iteration: `student_steps` private steps, `replay_steps` replay steps,
# one generator step, exactly as `transcribe()` orders them. Watch the
# student's accuracy, how often the released label is the class asked for,
# and the size $k$ of the answer sets. In these first iterations the
# tempered prior ($T = 4$) is still too flat to leave out any class, so
# $k$ stays at $K$; only later, as the student grows sure of itself, do
# smaller sets appear (the privacy report of the run in section 6 counts
# them: in our full-mode run half of the answers still came from $k = K$).

# %%
print(f"{plots.run_title(p)}: {HAND_STEPS} iterations by hand")
for iteration in range(1, HAND_STEPS + 1):
    for _ in range(cfg.student_steps):
        x, c, release, loss = phases.private_step(p, use_prior=True)
    for _ in range(p.replay_steps):
        phases.replay_step(p)
    phases.generator_step(p)
    if iteration % max(1, HAND_STEPS // 5) == 0:
        print(f"iteration {iteration:>2}: student {accuracy(p.student, data.x_heldout, data.y_heldout):.1%}, "
              f"released = requested {(release.labels == c).float().mean().item():.0%}, "
              f"mean k {release.extra['k'].float().mean().item():.1f}")

# %% [markdown]
# ## 6. The loop, live
#
# `transcribe()` is exactly this, repeated (read `dpsd_lite/transcribe.py`:
# the loop is about forty lines). Once privately:

# %%
live = LiveMonitor(teacher_accuracy=teacher.heldout_accuracy, class_names=data.class_names)
display(live)
private_run = transcribe(config, data=data, teacher=teacher, callbacks=live.callbacks)
print(plots.run_report(private_run))

# %% [markdown]
# The same loop without privacy, for reference (its generator may also seek
# the images where student and teacher disagree: the discrepancy term):

# %%
live_open = LiveMonitor(teacher_accuracy=teacher.heldout_accuracy, class_names=data.class_names)
display(live_open)
# resolved again from what was asked: mode none gets its own defaults, not those chosen for rr at ε = 4
open_run = transcribe(resolve(asked.replace(noise_mode="none")), data=data, teacher=teacher,
                      callbacks=live_open.callbacks)
print(plots.run_title(open_run))

# %%
plots.plot_accuracy_curves([private_run, open_run], teacher_accuracy=teacher.heldout_accuracy, x="queries")

# %% [markdown]
# **What you should see:** the share of queries whose released label is the
# class the generator was asked for rises in both runs, as the generator
# learns what the student (and, through the releases, the teacher) calls each
# class: in our full-mode run on `mnist-5k` from 16% to 79% with `rr` at ε = 4,
# and from 9% to 74% without privacy. The two students start close (72% and
# 76% at the first evaluation); the private one then levels off in the low 80s
# while the non-private one goes on to 96%: the noise in the labels, not the
# loop, is what holds it back. (The noise is secret, so your numbers will
# differ by a few points.)

# %%
for run in (private_run, open_run):
    print(f"{plots.run_title(run)}\n  released label = requested class, per evaluation: "
          + " ".join(f"{h['agreement']:.0%}" for h in run.history)
          + "\n  student accuracy, per evaluation:                  "
          + " ".join(f"{h['student_accuracy']:.0%}" for h in run.history))
plots.plot_losses(private_run)

# %% [markdown]
# ## What can go wrong
#
# * **Mode collapse.** Without the diversity term the generator can satisfy
#   "the student sees class c" with one image per class; the student then
#   learns ten images, and stalls near 10–30%. Watch the images and the
#   class balance of the released labels.
# * **An overconfident prior.** In `rr`, a sure student makes the answer sets
#   tiny; with $k = 1$ the release is the student's own guess, whatever the
#   teacher said (self-training). Temperature, smoothing and `k_min = 2` guard
#   against it.
# * **Noise seeded from a published number.** The mechanism's noise is
#   secret; the run's seed (saved with it) sets everything else. Derive the
#   noise from the seed and the ε no longer holds (notebook 04, section 6).
# * **Tuning on private data.** Comparing runs on the teacher's private split
#   to pick a setting is a release no ε covers; the reports say which defaults
#   were chosen that way.
#
# ## Questions
#
# 1. Which lines of `private_step` may read the teacher's raw answers? Why
#    does `del teacher_logits` matter for the privacy argument? Which of the
#    tensors printed in section 2 would an attacker who sees everything but
#    the mechanism's inside never see?
# 2. After one iteration, what did each of the three players do, and which of
#    them did the privacy noise touch?
# 3. The first answer sets had $k = K$ with no warm-up. Why does a flat prior
#    give the largest set? Is there an ε at which a flat prior would give a
#    smaller one? (Compare $\frac{k}{K} \cdot \frac{e^\varepsilon}{e^\varepsilon
#    + k - 1}$ with its value at $k + 1$.)
# 4. Look at the generator's loss while the student improves. Is the
#    generator cooperating with the student, fighting it, or both? Compare
#    with a GAN, where the generator only fights the discriminator.
# 5. Mode `none` also maximises the teacher–student disagreement when it
#    updates the generator. Why is that not allowed in the private modes?
# 6. The two runs do not share every setting: `resolve(config)` gives the
#    learned generator different defaults with good labels (mode `none`, or
#    ε ≥ 5) than with noisy ones (print `private_run.config` and
#    `open_run.config`: `replay_steps`, `augment`, `lr_generator`,
#    `discrepancy_weight`). Which of them change how fast each student learns
#    in the first evaluations, and which only matter later? And what would you
#    change first to close the gap at the end: more steps, a larger batch, or a
#    larger ε?
