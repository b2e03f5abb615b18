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
# # 1 · Quickstart: a private student in a minute or two
#
# **What you will see.** The whole `dpsd_lite` pipeline on the embedded
# `mnist-5k` data (5,000 real MNIST digits that ship with the package's
# dependencies, so nothing is downloaded):
#
# 1. the *private* data, which only the teacher ever sees;
# 2. the *teacher*, a CNN trained on it (trained once, then loaded from a disk cache);
# 3. the *transcription*: DPSD's **learned generator** (a small network that
#    starts from random weights and never sees a private image) invents
#    images, the teacher answers about them **through a differentially private
#    mechanism**, and a small *student* learns from those noisy answers, never
#    from the private data; the generator in turn learns, through the student
#    alone, to draw images the student names as the class it was asked for,
#    each class in many different ways;
# 4. the privacy report, which says what ε protects;
# 5. the interactive dashboard, where you choose ε and the noise mode yourself.
#
# Every computation is one call into the library; this notebook only calls and plots.
# The later notebooks open each box in turn.

# %%
# %matplotlib inline
import os

import torch

from dpsd_lite import plots
from dpsd_lite.data import load_dataset
from dpsd_lite.teacher import get_teacher
from dpsd_lite.transcribe import TranscribeConfig, resolve, transcribe
from dpsd_lite.widgets import Dashboard, LiveMonitor, dashboard_steps

# %% [markdown]
# The settings, as capitalised constants. `DPSD_FAST=1` (what CI uses) swaps
# in the tiny `digits` data and a few steps so the notebook runs in seconds;
# leave it unset for the real thing.

# %% tags=["parameters"]
FAST = os.environ.get("DPSD_FAST", "0") == "1"
DATASET = "digits" if FAST else "mnist-5k"
NOISE_MODE = "rr"  # none | label | rr | data
EPSILON = 10.0  # per teacher answer (see the privacy report below)
STEPS = 20 if FAST else resolve(TranscribeConfig()).steps
DASHBOARD_STEPS = 10 if FAST else dashboard_steps()  # a third of a run, so each dashboard run answers quickly
BATCH_SIZE = 64 if FAST else TranscribeConfig().batch_size
TEACHER_EPOCHS = 3 if FAST else TranscribeConfig().teacher_epochs
DEVICE = "cpu"  # the notebooks are sized for a laptop CPU; "auto" picks a GPU if there is one
SEED = 0

# %%
config = TranscribeConfig(dataset=DATASET, noise_mode=NOISE_MODE, epsilon=EPSILON, steps=STEPS,
                          batch_size=BATCH_SIZE, teacher_epochs=TEACHER_EPOCHS, device=DEVICE, seed=SEED,
                          eval_every=max(1, STEPS // 5))
config

# %% [markdown]
# The whole pipeline in one picture: the private data and the teacher on the
# left (red: they touch private data), the mechanism in the middle (the only
# door, where the noise is added), and everything else on the right, public:

# %%
plots.plot_pipeline(title="private data → teacher → mechanism → release → student, and the generator")

# %% [markdown]
# ## 1. The private data
#
# A *private* split (the teacher's training set) and a *held-out* split that
# is only ever used to measure accuracy.

# %%
data = load_dataset(DATASET)
data.describe()

# %%
every = len(data.y_private) // 32
plots.image_grid(data.x_private[::every][:32], classes=data.y_private[::every][:32],
                 class_names=data.class_names, title="private training images and their true labels")

# %% [markdown]
# ## 2. The teacher
#
# Trained on the private split. The first call trains it (about 20 s on two
# CPU cores for `mnist-5k`) and caches the weights on disk; every later call, in
# any notebook or the command line, loads them in a fraction of a second.

# %%
teacher = get_teacher(data, epochs=config.teacher_epochs, seed=config.seed, device=config.device)
print(f"teacher held-out accuracy: {teacher.heldout_accuracy:.1%} "
      f"({'loaded from the cache' if teacher.cached else 'trained now and cached'})")

# %% [markdown]
# ## 3. Transcription
#
# The live view below is attached to the training loop with callbacks: a
# progress bar, the student's held-out accuracy, and the current synthetic
# queries, each titled *requested class → released label*. The released label
# is what the noise mode let out of the teacher; red titles are where it
# disagrees with the class the generator was asked to draw. The generator
# starts from random weights, so its first images are blobs that the teacher
# calls almost anything; watch them change as it learns what the student (and,
# through the releases, the teacher) calls each class.

# %%
live = LiveMonitor(teacher_accuracy=teacher.heldout_accuracy, class_names=data.class_names)
display(live)
result = transcribe(config, data=data, teacher=teacher, callbacks=live.callbacks)
print(plots.run_title(result))
result.summary()

# %% [markdown]
# ## 4. What came out, and what it cost
#
# The privacy report names the run (its data, noise mode and generator), the
# mechanism, ε and δ, how the noise was calibrated, and, most importantly,
# **what one unit of privacy is**.

# %%
print(plots.run_report(result))

# %%
plots.plot_accuracy_curves(result, teacher_accuracy=teacher.heldout_accuracy)

# %% [markdown]
# The student never saw a private image. Here it is on held-out real digits
# (titles: true label → the student's prediction):

# %%
every = len(data.y_heldout) // 32  # the held-out split is sorted by class: take every n-th image
shown, truth = data.x_heldout[::every][:32], data.y_heldout[::every][:32]
print(f"true labels shown: {sorted(set(truth.tolist()))}")
with torch.no_grad():
    predicted = result.student(shown).argmax(1)
plots.image_grid(shown, classes=truth, labels=predicted, class_names=data.class_names,
                 class_name="true label", label_name="student's prediction",
                 title=f"held-out real images, named by the student ({plots.run_title(result)})")

# %% [markdown]
# ## 5. Your turn: the dashboard
#
# Move the ε slider (log scale: 0.1 is very private, 100 barely private), pick
# a noise mode and press **Run**. The run happens in the background, so the
# notebook stays usable; **Stop** ends it early and keeps what the student
# learnt. Each run adds a row to the table and a point to the
# accuracy-vs-ε plot, so the privacy/utility trade-off builds up as you go.
# The teacher above is reused, so each run costs only the transcription.
# Dashboard runs start at `DASHBOARD_STEPS`, a third of the steps of the run
# above, so that each answers quickly (the table shows each run's steps); move
# the steps slider up for the full result.

# %%
dashboard = Dashboard(config.replace(steps=DASHBOARD_STEPS), data=data, teacher=teacher)
dashboard

# %% [markdown]
# ## What can go wrong
#
# * **Reading ε without its unit.** Every ε here is per teacher answer; the
#   report says so, and notebook 8 shows what record-level privacy costs.
# * **Believing one run.** Runs move by a point or two with the seed, and the
#   privacy noise is secret, so two runs with one seed differ as well: run a
#   setting a few times before comparing.
# * **A stuck student** (near 10%): the generator collapsed to one kind of
#   image; notebook 3 shows the check.
#
# ## Questions
#
# 1. Run `rr` at ε = 1 and at ε = 10. How much accuracy does the smaller ε
#    cost? Is the loss the same for `label`?
# 2. The privacy report says ε is *per teacher answer*. Why does that **not**
#    mean one private training image is protected at ε?
#    (Notebook 2 shows what the teacher itself gives away.)
# 3. Mode `none` has no privacy at all. Why is it still worth running?
# 4. Watch the image grid during a run at ε = 1. What fraction of titles are
#    red (released label ≠ requested class), and where does that noise come
#    from: the generator, or the mechanism?
# 5. The generator's images never look much like handwriting, yet the student
#    reads real digits. What does the generator have to get right for that,
#    and what may it get wrong?
