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
# # 5 · The adversarial loop: three players, one step at a time
#
# **What you will see.** The transcription loop taken apart into the very
# functions `transcribe()` calls (`dpsd_lite/phases.py`), each run here with
# its real optimiser step:
#
# 1. `private_step`: the generator proposes queries, the teacher answers them
#    *in private*, the mechanism decides what gets out, and the student takes a
#    step on the release;
# 2. `replay_step`: the student learns again from earlier releases, at no
#    privacy cost;
# 3. `generator_step`: the generator takes a step with the **student** as its
#    discriminator, and never reads the teacher.
#
# For each: what it computes (the formula), its code, and what it changed (the
# released labels, the student's accuracy before and after, the images before
# and after). Then the loop runs with live curves, privately (`rr`) and
# without privacy (`none`).

# %%
# %matplotlib inline
import inspect
import os

import torch

from dpsd_lite import phases, plots
from dpsd_lite.data import load_dataset
from dpsd_lite.report import format_report
from dpsd_lite.teacher import get_teacher
from dpsd_lite.transcribe import TranscribeConfig, transcribe
from dpsd_lite.utils import accuracy
from dpsd_lite.widgets import LiveMonitor

# %% tags=["parameters"]
FAST = os.environ.get("DPSD_FAST", "0") == "1"
DATASET = "digits" if FAST else "mnist-5k"
NOISE_MODE = "rr"
EPSILON = 4.0
DELTA = 1e-5
STEPS = 20 if FAST else TranscribeConfig().resolved().steps
BATCH_SIZE = 64 if FAST else TranscribeConfig().batch_size
HAND_STEPS = 5 if FAST else 20  # iterations taken by hand in section 2
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
# student (untrained), the generator (untrained), the mechanism of the noise
# mode (its noise secret), their optimisers and the run's random generator.
# The teacher is the trained one, frozen.

# %%
data = load_dataset(DATASET)
teacher = get_teacher(data, epochs=TEACHER_EPOCHS, seed=SEED, device=DEVICE)
config = TranscribeConfig(dataset=DATASET, noise_mode=NOISE_MODE, epsilon=EPSILON, delta=DELTA, steps=STEPS,
                          batch_size=BATCH_SIZE, teacher_epochs=TEACHER_EPOCHS, device=DEVICE, seed=SEED,
                          eval_every=max(1, STEPS // 5))
p = phases.setup(config, data, teacher, torch.device(DEVICE))
before = accuracy(p.student, data.x_heldout, data.y_heldout)
print(f"teacher {teacher.heldout_accuracy:.1%}, untrained student {before:.1%} on held-out images; "
      f"mechanism: {p.mechanism.describe()['mechanism']}")

# %% [markdown]
# ## 2. `private_step`: the only phase that asks the teacher
#
# For a batch of noise vectors $z_i$ and requested classes $c_i$:
#
# 1. candidates $x = G(z, c)$; the student keeps the $B$ it is least sure
#    about (highest entropy $H(S(x))$: no teacher involved);
# 2. the teacher answers, $a_i = T(x_i)$, and its answers go **only** into the
#    mechanism: $r_i = M(a_i;\ \pi_i)$, with the prior $\pi_i$ the student's
#    own tempered prediction;
# 3. the student takes one optimiser step on $\frac1B\sum_i
#    \mathcal{L}_M\big(S(x_i), r_i\big)$, the mechanism's loss (for `rr`: the
#    likelihood of the released label through the randomized-response channel,
#    notebook 04).

# %%
print(inspect.getsource(phases.private_step))

# %% [markdown]
# Before the first query the student warms up on the generator's own public
# drawings, if it has any (`phases.warm_start`: no teacher). Then one private
# step, by hand:

# %%
warmed = phases.warm_start(p)
after_warm = accuracy(p.student, data.x_heldout, data.y_heldout)
x, c, release, loss = phases.private_step(p, use_prior=True)
after_one = accuracy(p.student, data.x_heldout, data.y_heldout)
print(f"warm start ran: {warmed}; student {before:.1%} -> {after_warm:.1%} after the warm start -> "
      f"{after_one:.1%} after one private step (loss {loss.item():.3f})")
plots.image_grid(x[:32], c[:32], release.hard_labels[:32], class_names=data.class_names,
                 label_name="released label", title="one batch of queries and what the mechanism let out")

# %% [markdown]
# **What you should see:** most titles are red early on: the released label
# (what the teacher said, through the noise) is often not the class the
# generator was asked for. A single step moves the student little; a few more
# iterations, each with two private steps, replay and a generator step:

# %%
curve = []
for _ in range(HAND_STEPS):
    for _ in range(config.student_steps):
        x, c, release, loss = phases.private_step(p, use_prior=True)
    for _ in range(p.replay_steps):
        phases.replay_step(p)
    phases.generator_step(p)
    curve.append(accuracy(p.student, data.x_heldout, data.y_heldout))
print("held-out accuracy after each hand-made iteration:", " ".join(f"{a:.1%}" for a in curve))

# %% [markdown]
# ## 3. `replay_step`: learning again from what was already released
#
# A release is public by definition, so training on it again is
# post-processing: no new query, no privacy cost. The loop keeps a ring buffer
# of (query, release) pairs and takes `replay_steps` extra student steps per
# iteration. (Not in mode `data`: its release is a gradient at the student of
# that moment, meaningless later.)

# %%
print(inspect.getsource(phases.replay_step))
print(f"replay buffer holds {p.buffer.size if p.buffer is not None else 0:,} released queries")

# %% [markdown]
# ## 4. `generator_step`: the student is the discriminator
#
# The generator $G_\theta$ takes one step on
#
# $$\mathcal{L}_G(\theta) = \underbrace{\mathrm{CE}\big(S(G_\theta(z, c)),\, c\big)}_{\text{class}}
#   \; - \; \lambda_{\mathrm{div}}\,
#   \underbrace{\frac{\lVert G_\theta(z_1, c) - G_\theta(z_2, c)\rVert_1}{\lVert z_1 - z_2\rVert_1}}_{\text{diversity}}
#   \; \big[+\ \lambda_{\mathrm{anchor}}\lVert \phi_\theta(z, c) - \phi_{\theta_0}(z, c)\rVert^2\big]
#   \; \big[-\ \lambda_{\mathrm{disc}}\lVert S(x) - T(x)\rVert_1\big]_{\text{mode none only}}$$
#
# with the student $S$ frozen: the student should recognise the requested
# class (the student as auxiliary classifier), and two images asked for the
# same class should differ, so a class does not collapse to one image. The
# anchor keeps a stroke generator's strokes near their random first draw. The
# last term, DFAD's teacher–student discrepancy, reads the raw teacher: only
# mode `none` may use it (the learned generator's default weight there is
# $\lambda_{\mathrm{disc}} = 0.1$). One line per term:

# %%
print(inspect.getsource(phases.generator_objective))

# %% [markdown]
# One generator step by hand, on fixed $(z, c)$, so we can look at the same
# images before and after:

# %%
z, c, ink = phases.draw(p, 16)
with torch.no_grad():
    before_images = p.generator(z, c, ink)
loss_g, terms = phases.generator_step(p)
with torch.no_grad():
    after_images = p.generator(z, c, ink)
print("objective terms:", {k: round(v, 3) for k, v in terms.items()})
print(f"mean change per pixel after one step: {(after_images - before_images).abs().mean().item():.4f}")
plots.image_grid(torch.cat([before_images[:8], after_images[:8]]), torch.cat([c[:8], c[:8]]), ncols=8,
                 class_names=data.class_names, title="the same (z, c) before (top) and after (bottom) one step")

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
# ## 5. The loop, live
#
# `transcribe()` is exactly this, repeated (read `dpsd_lite/transcribe.py`:
# the loop is about sixty lines). Once privately:

# %%
live = LiveMonitor(teacher_accuracy=teacher.heldout_accuracy, class_names=data.class_names)
display(live)
private_run = transcribe(config, data=data, teacher=teacher, callbacks=live.callbacks)
print(format_report(private_run.privacy))

# %% [markdown]
# The same loop without privacy, for reference:

# %%
live_open = LiveMonitor(teacher_accuracy=teacher.heldout_accuracy, class_names=data.class_names)
display(live_open)
open_run = transcribe(config.replace(noise_mode="none"), data=data, teacher=teacher, callbacks=live_open.callbacks)

# %%
plots.plot_accuracy_curves({f"{NOISE_MODE} (ε = {EPSILON:g} per answer)": private_run.history,
                            "none (no privacy)": open_run.history},
                           teacher_accuracy=teacher.heldout_accuracy, x="queries",
                           title="what privacy costs along the way")

# %% [markdown]
# **What you should see:** the share of queries whose released label is the
# class the generator was asked for rises as the generator learns what the
# student (and, through the releases, the teacher) calls each class:

# %%
print("released label = requested class, per evaluation:",
      " ".join(f"{h['agreement']:.0%}" for h in private_run.history))
plots.plot_losses(private_run.history, title=f"the two players' losses ({NOISE_MODE}, ε = {EPSILON:g})")

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
#    does `del teacher_logits` matter for the privacy argument?
# 2. After one iteration, what did each of the three players do, and which of
#    them did the privacy noise touch?
# 3. Look at the generator's loss while the student improves. Is the
#    generator cooperating with the student, fighting it, or both? Compare
#    with a GAN, where the generator only fights the discriminator.
# 4. Mode `none` also maximises the teacher–student disagreement when it
#    updates the generator. Why is that not allowed in the private modes?
# 5. The private curve starts slower. Is the gap closing by the end? What
#    would you change first to close it: more steps, a larger batch, or a
#    larger ε?
