# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: deletable,editable,nbgrader,tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Assignment 3 — The generator's objective: the student as discriminator
#
# DPSD has three players. The **teacher** (trained on private data) is only ever queried on synthetic images, and
# in a private mode its answers reach the rest of the system only through a DP mechanism. The **student** learns
# from those privatised answers. The **generator** `G(z, c)` makes the synthetic images — and must learn to make
# *useful* ones without touching the teacher at all.
#
# Its trick: use the **student as the discriminator**. The generator is asked for class `c` and is trained so that
# the student assigns its image to `c`. Everything the student knows came through the mechanism, so this costs no
# privacy (post-processing).
#
# **Learning goals.** After this assignment you can
# 1. say which player sees what in a private mode, and why the generator must not use the teacher's outputs or
#    gradients;
# 2. write the class-conditional generator loss `cross_entropy(student(G(z, c)), c)` with the student as a fixed
#    discriminator, and verify that gradients reach the generator only;
# 3. write one generator update step;
# 4. watch a generator learn to satisfy the student, and explain why "the student agrees" is not "the image is a
#    real digit" — and what keeps the loop honest.
#
# The self-checks run your functions on tiny fixed networks and compare with stored values. When you are done,
# compare your code with the generator phase of `dpsd_lite.transcribe.transcribe`.
#
# **How to work.** Fill in each **Exercise** cell (it raises `NotImplementedError` until you do), then run the
# self-check below it: it tells you what is right and, if something is not, what to look at.
# Each self-check is also how the assignment is graded: a check that passes earns its exercise's points (given
# in the exercise's heading); the written answers are graded by hand.

# %%
import os

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from dpsd_lite.course import checks
from dpsd_lite.data import load_dataset
from dpsd_lite.generators import Generator
from dpsd_lite.teacher import get_teacher
from dpsd_lite.transcribe import PUBLIC_INK, transcribe

# %% tags=["parameters"]
# DPSD_FAST=1 runs everything small (CI, a first look); unset, you get the full experience.
FAST = os.environ.get("DPSD_FAST") == "1"
SEED = 0
DATASET = "digits" if FAST else "mnist-5k"  # digits: 8×8 scikit-learn digits; mnist-5k: 28×28 MNIST subset
GENERATOR = "learned"  # DPSD's learned generator G(z, c), the package's default ("strokes": the stroke renderer)
TEACHER_EPOCHS = 3 if FAST else 8
TRANSCRIBE_STEPS = 40 if FAST else 150  # iterations of the full loop that trains our student
BATCH_SIZE = 64 if FAST else 256
GEN_STEPS = 60 if FAST else 200  # steps of your own generator training in section 3
EPSILON = 10.0  # rr mode, per teacher answer


# %% [markdown]
# ## 1. Who sees what
#
# | player | sees | never sees (private modes) |
# |---|---|---|
# | teacher | synthetic images | — (it *is* the private part) |
# | mechanism | the teacher's answers on one batch | — |
# | student | synthetic images, the mechanism's **release** | raw teacher outputs, private data |
# | generator | `z`, `c`, the **student**'s outputs and gradients | the teacher's outputs or gradients, private data |
#
# In mode `none` (no privacy) `dpsd_lite` lets the generator also *maximise* the teacher–student disagreement, as
# in DFAD. In a private mode that would feed the teacher's raw outputs into the generator, outside the mechanism.

# %% [markdown]
# ## 2. The loss
#
# The generator is asked for classes `c` (a LongTensor of `B` class indices) with noise `z` (`B × nz`). Its loss
# is the student's cross-entropy on the requested class:
#
# $$L_G = \frac{1}{B}\sum_i \mathrm{CE}\big(S(G(z_i, c_i)),\, c_i\big).$$
#
# Two things matter as much as the formula:
# * the gradient must flow **through** the student into the generator — don't detach `G(z, c)`;
# * the student is a **fixed** discriminator here: its parameters must receive no gradient. Freeze them while you
#   build the loss (`student.requires_grad_(False)`) and restore them afterwards (`requires_grad_(True)`), so the
#   student's next training step still learns. Autograd records at forward time which tensors need gradients, so
#   restoring before `backward()` is fine.
#
# ### Exercise 3.1 — the generator loss *(2 points)*
# Write `generator_loss(student, generator, z, c)` returning a scalar tensor.

# %% deletable=false nbgrader={"cell_type": "code", "checksum": "ba1d2e987a670536ed46a38dc49cb37d", "grade": false, "grade_id": "exercise_3_1", "locked": false, "schema_version": 3, "solution": true, "task": false}
def generator_loss(student, generator, z, c):
    """Cross-entropy of the (frozen) student on G(z, c) against the requested classes c; a scalar tensor."""
    # Hint: try/finally makes sure the student is unfrozen even if something fails.
    raise NotImplementedError("Exercise 3.1: write your solution here")


# %% deletable=false editable=false nbgrader={"cell_type": "code", "checksum": "19c8601ba5ee5d519c343ede6cb569b8", "grade": true, "grade_id": "check_3_1", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert checks.check_generator_loss(generator_loss)


# %% [markdown]
# ### Exercise 3.2 — one generator step *(2 points)*
# Write `generator_step(student, generator, optimizer, z, c)`: one update of the generator with `optimizer`
# (which holds the generator's parameters only), returning the loss as a float.

# %% deletable=false nbgrader={"cell_type": "code", "checksum": "474389c4ef9d7666032aea6ca315b403", "grade": false, "grade_id": "exercise_3_2", "locked": false, "schema_version": 3, "solution": true, "task": false}
def generator_step(student, generator, optimizer, z, c):
    """One optimisation step of the generator against the fixed student; returns the loss (float)."""
    # Hint: PyTorch *adds* new gradients to old ones.
    raise NotImplementedError("Exercise 3.2: write your solution here")


# %% deletable=false editable=false nbgrader={"cell_type": "code", "checksum": "7e0e781f30e7617ab601920233e7e2a6", "grade": true, "grade_id": "check_3_2", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert checks.check_generator_step(generator_step)

# %% [markdown]
# ## 3. Train a generator against a student
#
# First a student to play the discriminator: the library's loop trains one for a few steps (mode `rr`, ε = 10 per
# teacher answer, with DPSD's learned generator, `GENERATOR`; its RR noise is secret, as in any real run, so the
# numbers below vary a little from run to run).

# %%
data = load_dataset(DATASET)
teacher = get_teacher(data, epochs=TEACHER_EPOCHS, seed=SEED)
result = transcribe(dataset=DATASET, data=data, teacher=teacher, generator=GENERATOR, noise_mode="rr",
                    epsilon=EPSILON, steps=TRANSCRIBE_STEPS, batch_size=BATCH_SIZE, eval_every=TRANSCRIBE_STEPS,
                    teacher_epochs=TEACHER_EPOCHS, seed=SEED)
student = result.student
K = data.num_classes
print(f"teacher held-out accuracy {teacher.heldout_accuracy:.1%}; student after {TRANSCRIBE_STEPS} steps with the "
      f"{GENERATOR} generator {result.student_accuracy:.1%}")

# %% [markdown]
# Now a fresh learned generator (the same architecture, new weights), trained only with your `generator_step`
# against this fixed student. We track how often the student assigns `G(z, c)` to the requested class `c`.

# %%
torch.manual_seed(SEED)
gen = Generator(data.image_shape, K, ink=PUBLIC_INK[DATASET])
opt = torch.optim.Adam(gen.parameters(), lr=1e-3, betas=(0.5, 0.999))
rng = torch.Generator().manual_seed(SEED)


@torch.no_grad()
def agreement(model, n=1000):
    """Share of G(z, c) that `model` assigns to the requested class c (an evaluation, not a training signal)."""
    gen.eval()
    x, c = gen.sample(n, generator=torch.Generator().manual_seed(1))
    gen.train()
    return float((model(x).argmax(1) == c).float().mean())


before = agreement(student)
losses = []
for step in range(GEN_STEPS):
    z = torch.randn(BATCH_SIZE, gen.nz, generator=rng)
    c = torch.randint(0, K, (BATCH_SIZE,), generator=rng)
    losses.append(generator_step(student, gen, opt, z, c))
after = agreement(student)
print(f"student assigns G(z, c) to c: {before:.0%} before, {after:.0%} after {GEN_STEPS} generator steps")
assert losses[-1] < losses[0], "the generator loss should go down"

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].plot(losses)
axes[0].set_xlabel("generator step")
axes[0].set_ylabel("loss (student CE on c)")
gen.eval()
x, c = gen.sample(K * 6, classes=torch.arange(K).repeat_interleave(6), generator=torch.Generator().manual_seed(2))
grid = x.view(K, 6, *data.image_shape[1:]).permute(1, 2, 0, 3).reshape(6 * data.image_shape[1], -1)
axes[1].imshow(grid, cmap="gray")
axes[1].set_title("your learned G(z, c): one column per requested class 0…9")
axes[1].axis("off")
plt.show()

# %% [markdown]
# ## 4. Fooling the student is easy — and that is the point
#
# The generator quickly finds images that the student labels as requested. Are they digits? Let us ask the
# teacher. **This is an evaluation for us, outside the private pipeline**: the loop itself never shows the
# teacher's answers to the generator.

# %%
print(f"teacher agrees with the requested class on {agreement(teacher.model):.0%} of G(z, c); "
      f"the student on {agreement(student):.0%}")

# %% [markdown]
# Compare the two numbers. Typically the student is satisfied more often than the teacher: the generator has found
# the student's blind spots, images that the student calls `c` but the teacher would not (how large the gap is
# depends on the run; in fast mode everything is small). In the full loop that is exactly what makes the queries
# informative: the next student phase sends these images through the mechanism, the teacher's privatised labels
# disagree with the student, and the student corrects itself there. Generator and student
# alternate — `transcribe` runs `student_steps` student updates on fresh queries per generator step — so the
# generator keeps moving to where the student is still wrong.
#
# ### Exercise 3.3 — written answers *(3 points)*
# **(a)** Why may the generator use the student's gradients for free, but not the teacher's — even though both
# are "just a network"?
#
# **(b)** What would go wrong if `generator_loss` did not freeze the student and the training loop used one
# optimiser over both networks?
#
# **(c)** The teacher agreed with the requested class much less often than the student. Name one reason this is
# *useful* for transcription, and one risk it brings (hint: what if the mechanism's noise is large?).

# %% [markdown] deletable=false nbgrader={"cell_type": "markdown", "checksum": "4e0336f2b3711d1047a9cbd8297fa47c", "grade": true, "grade_id": "answers_3_3", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# *Your answer here.*

# %% [markdown]
# **Where next.** Assignment 4 runs the whole loop across privacy budgets and asks what an audit can — and
# cannot — tell us about the result.
