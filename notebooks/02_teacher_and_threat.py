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
# # 2 · The teacher and the threat
#
# **What you will see.** A model trained on private data (the *teacher*) and
# a first, simple look at what it gives away: it is more confident on the
# images it was trained on (*members*) than on images it never saw
# (*non-members*). An attacker who can query the teacher can use that gap to
# guess whether a given record was in the private data (*membership
# inference*). This is why we never release the teacher, only a student, and
# why we must be precise about what the student's ε protects.
#
# (A proper audit, with attacks and canaries, is a later notebook; here we
# only look.)

# %%
# %matplotlib inline
import os

import torch

from dpsd_lite import plots
from dpsd_lite.data import class_matched_members, load_dataset
from dpsd_lite.report import UNIT_PER_QUERY
from dpsd_lite.teacher import get_teacher
from dpsd_lite.transcribe import TranscribeConfig

# %% tags=["parameters"]
FAST = os.environ.get("DPSD_FAST", "0") == "1"
DATASET = "digits" if FAST else "mnist-5k"
TEACHER_EPOCHS = 3 if FAST else TranscribeConfig().teacher_epochs
DEVICE = "cpu"
SEED = 0

# %% [markdown]
# ## 1. Train (or load) the teacher
#
# `get_teacher` trains a four-layer CNN on the private split, with light
# augmentation (small shifts and rotations), and caches it on disk. If it is
# trained now you will see one line per epoch.

# %%
data = load_dataset(DATASET)
teacher = get_teacher(data, epochs=TEACHER_EPOCHS, seed=SEED, device=DEVICE,
                      progress=lambda epoch, epochs, loss: print(f"epoch {epoch}/{epochs}: loss {loss:.3f}"))
print(f"accuracy on the private split (seen in training): {teacher.private_accuracy:.1%}")
print(f"accuracy on the held-out split (never seen):      {teacher.heldout_accuracy:.1%}")

# %% [markdown]
# ## 2. Members vs non-members
#
# For each image, the teacher's loss on the **true** label, −ln p(true
# label): small when the teacher is sure and right. An attacker who holds a
# candidate record (image and label) can compute exactly this by querying the
# teacher. The members are drawn from the private split with exactly the
# held-out split's class mix (`class_matched_members`: as many of each class
# as the held-out split has), so the two histograms are comparable and any
# gap between them is about membership, not about which digits each set
# holds (some digits are easier than others for every model).

# %%
x_members, y_members = class_matched_members(data, seed=SEED)
n = len(y_members)
print(f"{n} members and {len(data.y_heldout)} non-members; per class: members "
      f"{torch.bincount(y_members).tolist()}, non-members {torch.bincount(data.y_heldout).tolist()}")
with torch.no_grad():
    loss_members = torch.nn.functional.cross_entropy(teacher.model(x_members), y_members, reduction="none")
    loss_nonmembers = torch.nn.functional.cross_entropy(teacher.model(data.x_heldout), data.y_heldout,
                                                        reduction="none")
print(f"median loss on the true label: members {loss_members.median():.3g} nats, "
      f"non-members {loss_nonmembers.median():.3g} nats")
print(f"mean probability of the true label: members {torch.exp(-loss_members).mean():.4f}, "
      f"non-members {torch.exp(-loss_nonmembers).mean():.4f}")

# %%
plots.plot_histograms({f"members (private split, n={n})": loss_members,
                       f"non-members (held-out split, n={n})": loss_nonmembers},
                      xlabel="teacher's loss on the true label, −ln p (nats, log scale)", log_scale=True,
                      bins=30, ylabel="share of images (%)",
                      title="teacher's loss on its training images (members) vs unseen ones")

# %% [markdown]
# The simplest attack: *say "member" when the teacher is surer than usual*,
# i.e. when its loss is below the median loss on images known not to be in
# the training set (an attacker can get such images anywhere). By
# construction half of the non-members are flagged; any more than half of the
# members is leakage.

# %%
threshold = loss_nonmembers.median()
hit = (loss_members < threshold).float().mean().item()
false_alarm = (loss_nonmembers < threshold).float().mean().item()
print(f"members flagged: {hit:.1%}   non-members flagged: {false_alarm:.1%}   "
      f"balanced attack accuracy: {(hit + 1 - false_alarm) / 2:.1%} (50% = no leak)")

# %% [markdown]
# The gap is small for a well-regularised teacher, and grows with
# overfitting (fewer images, more epochs, no augmentation). It is never
# zero, and a determined attacker has far better tools than one threshold.
#
# ## 3. What the transcription protects, and what it does not
#
# The student learns only from the teacher's answers to *synthetic* queries,
# passed through a noise mode. The ε of `label`, `rr` and `data` is about
# one such answer:

# %%
print(UNIT_PER_QUERY)

# %% [markdown]
# In other words: ε bounds how much one released answer depends on what the
# teacher said, not how much the teacher's answers depend on one private
# record. A record that changed the teacher changes **every** answer. For a
# record-level guarantee, the teacher itself must be private (trained with
# DP-SGD, or an ensemble on disjoint data as in PATE); then everything after
# it is post-processing.
#
# ## What can go wrong
#
# * **An overfitted teacher** leaks membership far more (more epochs, fewer
#   images, no augmentation): the gap above grows, and every answer carries it.
# * **Taking "the attack failed" for privacy.** A weak attack finding nothing
#   proves nothing; only accounting bounds leakage (notebook 8).
# * **Publishing the teacher's accuracy on its private split**: it is a
#   statistic of private data, and the package keeps it out of every run file.
#
# ## Questions
#
# 1. Retrain the teacher with `TEACHER_EPOCHS = 1` and with `30`. How do the
#    held-out accuracy and the member/non-member gap move?
# 2. Why do we compare the same number of members and non-members, and with
#    the same class mix? What would the attack measure if the members were
#    all zeros and ones?
# 3. The attack above needs the true label of the record. Is that a
#    realistic assumption for an attacker? What could they do without it?
# 4. The student is trained only on synthetic images. Can it still leak
#    membership? Through which path?
