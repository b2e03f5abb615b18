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
# # 07 · Private synthetic data, and a re-identification filter
#
# A finished DPSD run leaves two networks behind: the **student** and DPSD's **learned generator**, which
# learnt through the student alone what to draw. The generator is a product too: it can release a *synthetic
# data set* that others train on.
#
# In this notebook you will:
#
# 1. draw synthetic images from the run's learned generator and label them with its **student** — no new
#    teacher query, so the set costs no privacy beyond the run's ε;
# 2. train a fresh classifier on the synthetic images only and compare it with one trained on the real
#    private images;
# 3. run the **re-identification filter** of *Privacy Distillation* (Fernandez et al. 2023): drop synthetic
#    images that sit too close to a real private image, and look at the closest pairs;
# 4. ask what the filter does, and does **not**, guarantee.
#
# Every computation is a call into `dpsd_lite` (`synthetic.py`, `reid_filter.py`).

# %% tags=["parameters"]
import os

FAST = os.environ.get("DPSD_FAST") == "1"  # CI: tiny sizes, runs in seconds

DATASET = "digits" if FAST else "mnist-5k"
NOISE_MODE = "rr"
EPSILON = 10.0  # per teacher answer (see the privacy report)
STEPS = 20 if FAST else 300  # transcription steps
BATCH_SIZE = 64 if FAST else 256
TEACHER_EPOCHS = 3 if FAST else 8
N_SYNTHETIC = 300 if FAST else 4000  # the mnist-5k private split has 4,000 images
PERCENTILE = 95.0  # filter threshold: percentile of held-out → nearest-private similarity
DOWNSTREAM_STEPS = 30 if FAST else 600  # training steps of every downstream classifier
SEED = 0

# %%
# %matplotlib inline
import tempfile

import torch

from dpsd_lite import plots
from dpsd_lite.data import load_dataset
from dpsd_lite.reid_filter import closest_pairs_figure, reid_filter, similarity_histogram
from dpsd_lite.report import format_report
from dpsd_lite.synthetic import (contact_sheet, downstream_comparison, load_synthetic, sample_synthetic,
                                 save_synthetic)
from dpsd_lite.transcribe import transcribe

# %% [markdown]
# ## 1. A private run
#
# One transcription in `rr` mode (selective randomized response on the teacher's labels). The teacher is
# trained once and cached, so re-running this cell at another ε is quick.

# %%
data = load_dataset(DATASET)
result = transcribe(dataset=DATASET, data=data, noise_mode=NOISE_MODE, epsilon=EPSILON, steps=STEPS,
                    batch_size=BATCH_SIZE, teacher_epochs=TEACHER_EPOCHS, seed=SEED)
print(f"{plots.run_title(result)}\nteacher {result.teacher_accuracy:.1%}, student {result.student_accuracy:.1%} "
      "on the held-out split")

# %% [markdown]
# ## 2. Synthetic images, labelled by the student
#
# `sample_synthetic` asks the class-conditional generator `G(z, c)` for every class equally often and lets
# the student label each image. Only the generator and the student run; the teacher is never queried.
# The images come in equal parts from the generator as it was at a quarter, half and three quarters of the
# run (the loop keeps those copies). Late in a run the generator mostly draws what the student already
# recognises, which teaches a fresh classifier less; `source="final"` draws from the final generator instead.
# A red title marks an image whose student label differs from the class the generator was asked for.

# %%
synth = sample_synthetic(result, N_SYNTHETIC, seed=SEED)
print(f"{len(synth)} images from the run's {plots.generator_name(result)}; "
      f"student label = requested class for {synth.agreement:.1%}")
print("label counts:", synth.label_counts())
plots.add_run_title(contact_sheet(synth), result)

# %% [markdown]
# The set carries the run's privacy report. Read the *unit of privacy*: ε protects each answer the teacher
# gave during training, not each private training record.

# %%
print(f"synthetic set of the run: {plots.run_title(result)}")
print(format_report(synth.privacy))

# %% [markdown]
# ## 3. Is the synthetic set useful? Train on it, test on real data
#
# Two fresh students with the same architecture and the same number of training steps:
# one trained on the **real private** images (no privacy at all: the reference), one on the **synthetic**
# set. All are tested on the real held-out split, which none of them has seen. (The filtered row comes in
# section 5.)
#
# The synthetic student learns from more than the student's top label: `synth.probabilities` holds the
# student's class probabilities at temperature T = 2 (`config.SYNTHESIS_TEMPERATURE`), so an ambiguous image
# teaches "mostly a 4, a bit of a 9". Both come from the same student, under the same ε. The last line
# trains on the argmax labels instead (`labels="hard"`), for comparison. T = 2 was chosen by measuring on the
# private splits; `privacy.json` says so.

# %%
rows = downstream_comparison(data, synth, steps=DOWNSTREAM_STEPS, seed=SEED)
print(f"synthetic images from: {plots.run_title(result)}")
for r in rows:
    print(f"{r['training set']:<22} {r['size']:>5} images  held-out accuracy {r['heldout_accuracy']:.1%}"
          f"   labels: {r['labels']}   privacy: {r['privacy']}")
hard = downstream_comparison(data, synth, steps=DOWNSTREAM_STEPS, seed=SEED, include_real=False, labels="hard")[0]
print(f"{'synthetic, argmax':<22} {hard['size']:>5} images  held-out accuracy {hard['heldout_accuracy']:.1%}"
      f"   labels: {hard['labels']}")

# %% [markdown]
# ## 4. The re-identification filter
#
# A generator can *memorise*: emit something very close to one real private image. Privacy Distillation
# filters such samples before release:
#
# 1. embed every image with the teacher's penultimate features (`Teacher.embed`), centred on the mean
#    private embedding, and compare by cosine similarity;
# 2. for each synthetic image find its **nearest private image**;
# 3. calibrate on real images the teacher never trained on: how close is a *fresh* held-out image to its
#    nearest private image? The 95th percentile of that is the threshold;
# 4. drop every synthetic image closer than that.
#
# **The filter reads the private images. It is not a DP mechanism and has no ε**: which images it drops,
# how many, even the threshold, depend on private data. It lowers memorisation risk empirically; it proves
# nothing.

# %%
filt = reid_filter(synth.images, data.x_private, data.x_heldout, result.teacher, percentile=PERCENTILE)
print(filt.format())
plots.add_run_title(similarity_histogram(filt), result)

# %% [markdown]
# The closest synthetic/private pairs, synthetic on top. These pictures show **private images**: they are
# for the data owner, never for release.

# %%
plots.add_run_title(closest_pairs_figure(filt, synth.images, data.x_private, k=8, labels=synth.labels,
                                        class_names=synth.class_names), result)

# %% [markdown]
# ### Does the filter catch a memorised image?
#
# Pretend the generator had memorised five private images: slip slightly perturbed copies into the set
# and filter again.

# %%
g = torch.Generator().manual_seed(SEED)
copies = (data.x_private[:5] + 0.03 * torch.randn(data.x_private[:5].shape, generator=g)).clamp(-1, 1)
leaky = reid_filter(torch.cat([synth.images, copies]), data.x_private, data.x_heldout, result.teacher,
                    percentile=PERCENTILE)
print("planted copies dropped:", (~leaky.keep[-5:]).tolist())
print(f"nearest private index of each copy: {leaky.nearest[-5:].tolist()} (planted: [0, 1, 2, 3, 4])")

# %% [markdown]
# ## 5. Downstream accuracy before and after filtering
#
# A third student, trained on the filtered set only, joins the two from section 3.

# %%
filtered = synth.subset(filt.keep)
rows += downstream_comparison(data, filtered=filtered, steps=DOWNSTREAM_STEPS, seed=SEED, include_real=False)
fig, ax = plots.new_figure(6, 3)
ax.barh([f"{r['training set']} ({r['size']})" for r in rows], [100 * r["heldout_accuracy"] for r in rows])
ax.set_xlabel("accuracy on the real held-out split (%)")
ax.set_xlim(0, 100)
ax.set_title(f"filter dropped {filt.fraction_dropped:.1%}\n{plots.run_title(result)}", fontsize=9)
fig

# %% [markdown]
# ## 6. Release
#
# `save_synthetic` writes the release atomically: `synthetic.npz` (images in [-1, 1], student labels and
# class probabilities, requested classes, class names), `contact_sheet.png` and `privacy.json` (the run's report, where the labels
# come from, and — when filtered — that the filter is not DP). The filter's audit, with its pictures of
# private images, goes into `filter_audit/`: keep that folder inside. From the shell:
# `dpsd-lite synthesize RUN --n 4000 --out DIR --filter`.

# %%
out = os.path.join(tempfile.mkdtemp(), "synthetic")
save_synthetic(synth, out, filter_result=filt, x_private=data.x_private)
print(sorted(os.listdir(out)), sorted(os.listdir(os.path.join(out, "filter_audit"))))
assert len(load_synthetic(out)) == filt.n_kept

# %% [markdown]
# ## What can go wrong
#
# * **Calling the filtered set DP.** The filter reads private data; only the
#   unfiltered set is covered by the run's ε, and `privacy.json` says so.
# * **Leaking through the audit folder.** `filter_audit/` shows private
#   images: it stays inside.
# * **A synthetic set from a collapsed generator**: its labels are unbalanced
#   and a classifier trained on it is weak; look at the label counts first.
#
# ## Questions
#
# 1. The threshold is the 95th percentile of held-out → private similarity. What fraction of *fresh real*
#    images would the filter drop? What does that tell you about a synthetic set where it drops 20%? Or 0%?
# 2. The run's ε covers the unfiltered set. Why does filtering, which only *removes* images, not inherit
#    that guarantee? (Hint: what does the decision to drop one image depend on?)
# 3. The same held-out split calibrates the filter and scores the downstream classifiers. Is that a problem?
#    How would you split it?
# 4. Re-run with `EPSILON = 1.0`. How do the student's accuracy, the label agreement, the downstream
#    accuracy and the fraction filtered change?
# 5. The embedding comes from a teacher trained on the private data. Would raw pixels (`"pixels"`) catch the
#    same near-copies? Which would catch a shifted or slightly rotated copy?
# 6. Compare the soft-label and argmax rows of section 3. Why would probabilities teach a fresh classifier
#    more than labels drawn from the very same student? Does releasing them cost any extra ε?
