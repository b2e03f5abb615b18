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
# # 3 · The generator: data-free synthesis
#
# **What you will see.** Where the student's training images come from when
# nobody may look at the private data: a *generator* `G(z, c)` turns random
# noise `z` and a requested class `c` into an image. It never sees a private
# image. It learns only through the student, who plays the discriminator:
# the generator is rewarded when the student recognises class `c` in
# `G(z, c)`. You will watch its images evolve from blobs to something the
# teacher and student agree on, while the student's accuracy on real digits
# climbs.
#
# To see the generator alone, this notebook uses mode `none` (the teacher's
# raw answers, no privacy; notebook 4 adds the noise).

# %%
# %matplotlib inline
import os

import torch

from dpsd_lite import plots
from dpsd_lite.data import load_dataset
from dpsd_lite.teacher import get_teacher
from dpsd_lite.generators import build_generator
from dpsd_lite.transcribe import TranscribeConfig, transcribe
from dpsd_lite.widgets import LiveMonitor

# %% tags=["parameters"]
FAST = os.environ.get("DPSD_FAST", "0") == "1"
DATASET = "digits" if FAST else "mnist-5k"
STEPS = 20 if FAST else TranscribeConfig().steps
BATCH_SIZE = 64 if FAST else TranscribeConfig().batch_size
TEACHER_EPOCHS = 3 if FAST else TranscribeConfig().teacher_epochs
DEVICE = "cpu"
SEED = 0

# %%
data = load_dataset(DATASET)
teacher = get_teacher(data, epochs=TEACHER_EPOCHS, seed=SEED, device=DEVICE)
config = TranscribeConfig(dataset=DATASET, noise_mode="none", steps=STEPS, batch_size=BATCH_SIZE,
                          teacher_epochs=TEACHER_EPOCHS, device=DEVICE, seed=SEED,
                          eval_every=max(1, STEPS // 5))

# %% [markdown]
# ## 1. An untrained generator
#
# Class-conditional and DAFL-style inside (linear layers with BatchNorm and
# LeakyReLU map the noise z and the requested class to numbers), but for
# handwritten digits those numbers are not pixels: they are one or two *pen
# strokes* (start, heading, turns, lengths, pen width) that a differentiable
# renderer draws inside MNIST's published 20×20 box, with the ink's centre of
# mass at the centre of the frame, as MNIST's own preprocessing does. Half of the images are
# free strokes; the other half start from a copybook drawing of the
# requested digit (written by hand in `dpsd_lite/skeletons.py`), bent,
# rotated, sheared and stretched at random. "Digits are drawn with a pen,
# 2–3 pixels wide, in a centred box, and look roughly like this" is *public*
# knowledge about the domain, not a statistic of our private split, so it
# costs no privacy. What the student learns is the teacher's answer, not the
# requested class: a bent 9 may be a 4.
# Titles: requested class → what the (non-private) teacher says.

# %%
torch.manual_seed(SEED)
untrained = build_generator(config, data.image_shape, data.num_classes)
images, classes = untrained.sample(32, generator=torch.Generator().manual_seed(SEED))
with torch.no_grad():
    teacher_says = teacher.model(images).argmax(1)
plots.image_grid(images, classes, teacher_says, class_names=data.class_names, label_name="teacher's label",
                 title="an untrained generator: free strokes and bent digit skeletons, named by the teacher")

# %% [markdown]
# ## 2. Training it through the student
#
# Each step: the student learns from the teacher's answers on fresh
# synthetic images, then the generator takes one step to make images the
# student classifies as the requested class, while also seeking images the
# student is still unsure about (the exact objective is documented in
# `dpsd_lite/transcribe.py`). The monitor keeps a snapshot of the images at
# every evaluation.

# %%
live = LiveMonitor(teacher_accuracy=teacher.heldout_accuracy, class_names=data.class_names,
                   keep_snapshots=True)
display(live)
result = transcribe(config, data=data, teacher=teacher, callbacks=live.callbacks)
print(f"student held-out accuracy {result.student_accuracy:.1%} after {result.queries:,} teacher queries")

# %% [markdown]
# ## 3. How the images evolved
#
# One row per evaluation, one column per requested class; titles are
# requested class → the label the teacher released.

# %%
plots.plot_image_evolution(live.snapshots, class_names=data.class_names)

# %%
plots.plot_accuracy_curves(result.history, teacher_accuracy=teacher.heldout_accuracy, x="queries")

# %% [markdown]
# ## 4. Class balance: the failure to watch for
#
# Data-free distillation is fragile: if the generator finds one kind of image
# that works and keeps drawing it (*mode collapse*), the student only learns
# that class and sits near 10%. A quick check is how often each label was
# released in the last batch:

# %%
last = live.snapshots[-1]
print("released labels in the last batch, per class:",
      torch.bincount(last["labels"], minlength=data.num_classes).tolist())

# %% [markdown]
# ## Questions
#
# 1. Compare the first and last rows of the evolution plot. Do the final
#    images look like digits to *you*? Does that matter for the student?
# 2. The generator is rewarded for images the *student* finds easy to
#    classify. What would go wrong if it only made images that are easy?
#    (Hint: what does the student then never learn?)
# 3. Run again with `generator="learned"` (a convolutional generator that
#    paints pixels) and then with `anchor_weight=0` (strokes free to drift
#    from their random first draw). What happens to the images and to the
#    accuracy curve? Why might "the student says c" be an easy target to
#    fake?
# 4. Run with `skeletons=0` (free strokes only) and `skeletons=1` (bent
#    skeletons only). On mnist-5k at ε = 10 the mix beat both by 6 points or
#    more. Why might a student need the odd scribbles as well as the
#    digit-like drawings? (Hint: where do the teacher's decision boundaries
#    lie?)
# 5. The generator never sees a private image. Can its images still reveal
#    something about the private data? Through which player?
