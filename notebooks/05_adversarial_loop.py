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
# # 5 · The adversarial loop: three players
#
# **What you will see.** One iteration of the transcription, taken apart
# call by call: the *generator* proposes queries, the *teacher* answers them
# in private, the *mechanism* decides what of those answers gets out, the
# *student* learns from the release, and the generator is then pushed
# towards images the student still gets wrong. Then the real loop runs with
# live curves, once privately (`rr`) and once without privacy (`none`), so
# you can compare.

# %%
# %matplotlib inline
import os

import torch
import torch.nn.functional as F

from dpsd_lite import plots
from dpsd_lite.data import load_dataset
from dpsd_lite.mechanisms import make_mechanism
from dpsd_lite.models import Student
from dpsd_lite.report import format_report
from dpsd_lite.teacher import get_teacher
from dpsd_lite.generators import build_generator
from dpsd_lite.transcribe import TranscribeConfig, transcribe
from dpsd_lite.widgets import LiveMonitor

# %% tags=["parameters"]
FAST = os.environ.get("DPSD_FAST", "0") == "1"
DATASET = "digits" if FAST else "mnist-5k"
NOISE_MODE = "rr"
EPSILON = 4.0
DELTA = 1e-5
STEPS = 20 if FAST else TranscribeConfig().steps
BATCH_SIZE = 64 if FAST else TranscribeConfig().batch_size
TEACHER_EPOCHS = 3 if FAST else TranscribeConfig().teacher_epochs
DEVICE = "cpu"
SEED = 0

# %%
data = load_dataset(DATASET)
teacher = get_teacher(data, epochs=TEACHER_EPOCHS, seed=SEED, device=DEVICE)

# %% [markdown]
# ## 1. One iteration, by hand
#
# The players, untrained, from `dpsd_lite.models` (the teacher is the trained one):

# %%
torch.manual_seed(SEED)
rng = torch.Generator().manual_seed(SEED)
generator = build_generator(TranscribeConfig(dataset=DATASET), data.image_shape, data.num_classes)
student = Student(data.image_shape, data.num_classes)
mechanism = make_mechanism(NOISE_MODE, EPSILON, DELTA)

# %% [markdown]
# **Generator → queries.** Noise `z` and requested classes `c` become images.

# %%
x, c = generator.sample(16, generator=rng)
x.shape, c.tolist()

# %% [markdown]
# **Teacher → raw answers → mechanism → release.** The raw answers are the
# private part: they go into `mechanism.release` and nowhere else. Only the
# release (here one randomized-response label per query) reaches the student
# and, through it, the generator.

# %%
with torch.no_grad():
    teacher_logits = teacher.model(x)
release = mechanism.release(teacher_logits)  # its noise is secret: drawn from the OS's entropy
del teacher_logits  # as in the library: nothing after this line may read the raw answers
plots.image_grid(x, c, release.hard_labels, class_names=data.class_names, label_name="released label",
                 title="one batch of queries")

# %% [markdown]
# **Student ← release.** The student's loss is computed from the release
# only. For `rr` it is the likelihood of the released label under the known
# randomized-response channel, so the student learns the *clean* class
# probabilities from noisy labels.

# %%
student_loss = mechanism.student_loss(student(x), release)
print(f"student loss on this batch: {student_loss.item():.3f}")

# %% [markdown]
# **Generator ← student.** The main term of the generator's objective: the
# student should recognise the requested class `c` in `G(z, c)`. Its
# gradient flows through the student (the discriminator), never through the
# teacher.

# %%
generator_loss = F.cross_entropy(student(generator(torch.randn(16, generator.nz, generator=rng), c)), c)
print(f"generator loss (student's cross-entropy on the requested classes): {generator_loss.item():.3f}")

# %% [markdown]
# `transcribe` repeats this with optimiser steps. Before the first query the
# student warms up on the generator's skeleton drawings, labelled by the digit
# drawn (public, no teacher). Each step then draws two candidates per query
# and sends the teacher the half the student is least sure about, twice; the
# student takes one step on each fresh release and three on earlier ones
# (replay, no new query), and its own (smoothed) prediction is the prior that
# picks the top-k classes for `rr` and `label`; the generator's objective also
# pushes two images asked for the same digit apart, so a class does not
# collapse to one drawing (see the docstring of `dpsd_lite/transcribe.py`).
#
# ## 2. The loop, live

# %%
config = TranscribeConfig(dataset=DATASET, noise_mode=NOISE_MODE, epsilon=EPSILON, delta=DELTA, steps=STEPS,
                          batch_size=BATCH_SIZE, teacher_epochs=TEACHER_EPOCHS, device=DEVICE, seed=SEED,
                          eval_every=max(1, STEPS // 5))
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

# %%
plots.plot_losses(private_run.history, title=f"the two players' losses ({NOISE_MODE}, ε = {EPSILON:g})")

# %% [markdown]
# ## Questions
#
# 1. In the hand-made iteration, which lines may read the teacher's raw
#    answers? Why does deleting `teacher_logits` matter for the privacy
#    argument?
# 2. Look at the generator's loss while the student improves. Is the
#    generator cooperating with the student, fighting it, or both? Compare
#    with a GAN, where the generator only fights the discriminator.
# 3. Mode `none` also maximises the teacher–student disagreement when it
#    updates the generator. Why is that not allowed in the private modes?
# 4. The private curve starts slower. Is the gap closing by the end? What
#    would you change first to close it: more steps, a larger batch, or a
#    larger ε?
