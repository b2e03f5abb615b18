# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Assignment 1 — Randomized response, and selective RR with a prior
#
# In `dpsd_lite`'s `rr` mode the teacher never hands its answer to the student directly. Each time it labels a
# synthetic image, its answer goes through **randomized response** (RR): with some probability the true label,
# otherwise a random other one. In this assignment you build that mechanism yourself, then its sharper
# version, **selective RR with a prior** (RR-with-prior, Ghazi et al. 2021), which is what `dpsd_lite` runs.
#
# **Learning goals.** After this assignment you can
# 1. state what ε-differential privacy promises for *one answer*, and derive the keep probability of k-ary RR;
# 2. implement k-ary RR and check its output distribution statistically;
# 3. explain why restricting RR to the top-k classes of a *prior* helps, and why the prior must cost no privacy;
# 4. implement RR-with-prior: choose k, answer inside the top-k set;
# 5. train on released labels correctly: write the **RR-channel loss**, the likelihood of the *released* label
#    under the student's class probabilities pushed through the known RR channel, and see why plain
#    cross-entropy on noisy labels learns the wrong thing.
#
# Everything here is written by you: the notebook imports none of the package's mechanisms. When you are done,
# compare your code with `dpsd_lite.accounting.rr_keep_probability`, `dpsd_lite.mechanisms.select_rr_classes` and
# `SelectiveRR` (`release` and `student_loss`), which the transcription loop runs.
#
# **How to work.** Fill in each **Exercise** cell (they raise `NotImplementedError` until you do), then run the
# self-check below it. The checks run your code on fixed inputs, compare with stored answers and tell you, kindly
# and specifically, what to look at if something is off.
# Each self-check is also how the assignment is graded: a check that passes earns its exercise's points (given
# in the exercise's heading); the written answers are graded by hand.

# %%
import math
import os

import matplotlib.pyplot as plt
import torch

from dpsd_lite.course import checks
from dpsd_lite.noise import NoiseSource

# %% tags=["parameters"]
# DPSD_FAST=1 runs everything small (CI, a first look); unset, you get the full experience.
FAST = os.environ.get("DPSD_FAST") == "1"
SEED = 0
NUM_CLASSES = 10  # K: the teacher's possible answers
N_QUERIES = 20_000 if FAST else 200_000  # simulated teacher answers per experiment
EPSILONS = [0.5, 1.0, 2.0, 4.0]
FIT_STEPS = 100 if FAST else 300  # Adam steps of each one-vector student in section 4

# %% [markdown]
# ## 1. One answer, two neighbours
#
# The teacher is asked about one synthetic image and would answer `y ∈ {0, …, K−1}`. The **unit of privacy** in
# `dpsd_lite`'s private modes is exactly this: *one answer of the teacher to one query*. Two neighbouring inputs
# of the mechanism are two possible answers `y` and `y'` to the same query.
#
# A randomized mechanism `M` is **ε-DP** if for every pair `y, y'` and every output `o`:
#
# $$P[M(y) = o] \le e^{\varepsilon}\, P[M(y') = o].$$
#
# **k-ary randomized response** returns the true answer with probability `p`, and each of the other `k−1`
# answers with probability `q = (1−p)/(k−1)`. The worst ratio is `p/q`; setting it to exactly `e^ε` gives the
# most useful mechanism that is still ε-DP.
#
# ### Exercise 1.1 — the keep probability *(2 points)*
# Write `keep_probability(epsilon, k)`: the probability that k-ary RR at privacy level ε returns the true answer.

# %% nbgrader={"grade": false, "grade_id": "exercise_1_1", "locked": false, "schema_version": 3, "solution": true, "task": false}
def keep_probability(epsilon, k):
    """Probability that k-ary randomized response at ε returns the true answer (a float in (0, 1])."""
    # Hint: give the true answer weight e^ε and each of the other answers weight 1, then normalise.
    ### BEGIN SOLUTION (Exercise 1.1)
    return 1.0 / (1.0 + (k - 1) * math.exp(-epsilon))  # = e^ε/(e^ε+k−1), without overflow at large ε
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_1_1", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# NBVAL_CHECK_OUTPUT
assert checks.check_rr_keep_probability(keep_probability)

# %% [markdown]
# How much does the truth survive? With `K = 10` classes, at ε = 1 the true label comes back less than a quarter
# of the time:

# %%
# NBVAL_CHECK_OUTPUT
print("  ε    k=2    k=3   k=10")
for eps in EPSILONS:
    print(f"{eps:4g}  " + "  ".join(f"{keep_probability(eps, k):.3f}" for k in (2, 3, 10)))

# %%
eps_grid = torch.linspace(0.05, 6, 100)
fig, ax = plt.subplots(figsize=(5, 3.2))
for k in (2, 3, 5, 10):
    ax.plot(eps_grid, [keep_probability(float(e), k) for e in eps_grid], label=f"k = {k}")
ax.set_xlabel("ε per answer")
ax.set_ylabel("P(true answer kept)")
ax.set_title("k-ary randomized response")
ax.legend()
plt.show()

# %% [markdown]
# ### Exercise 1.2 — sampling randomized response *(2 points)*
# Write `randomized_response(labels, epsilon, num_classes, generator=None)`: given a LongTensor of true labels,
# return one released label per entry. Keep each label with probability `keep_probability(epsilon, num_classes)`;
# otherwise return a **uniformly random other** class. Draw every random number from `generator` (a
# `torch.Generator`): whoever calls the mechanism decides where its noise comes from. Avoid Python loops over the
# labels: the check draws 160,000 of them.

# %% nbgrader={"grade": false, "grade_id": "exercise_1_2", "locked": false, "schema_version": 3, "solution": true, "task": false}
def randomized_response(labels, epsilon, num_classes, generator=None):
    """Release each true label (LongTensor, shape (n,)) through K-ary RR; returns a LongTensor of shape (n,)."""
    # Hint: torch.rand(labels.shape, generator=generator) < p decides "keep"; adding a random shift
    # in 1..K−1 modulo K gives a uniformly random *other* class.
    ### BEGIN SOLUTION (Exercise 1.2)
    keep = torch.rand(labels.shape, generator=generator) < keep_probability(epsilon, num_classes)
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return torch.where(keep, labels, (labels + shift) % num_classes)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_1_2", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert checks.check_randomized_response(randomized_response)

# %% [markdown]
# **Where the noise comes from.** A release is private only while its noise is secret: noise drawn from a
# generator seeded with a number you publish (a notebook's `SEED`) can be recomputed and subtracted. `dpsd_lite`'s
# mechanisms therefore draw from `NoiseSource.secret()` (operating-system entropy, stored nowhere) unless the caller
# opts in to `NoiseSource.from_seed(seed)`, which makes a lesson repeatable and whose privacy report says that no
# ε holds against anyone who knows the seed. The self-checks and this notebook use the latter, *explicitly*:
# these are lessons, not releases.
#
# The self-check measured the **transition matrix** `P(released = j | true = i)`. Here it is for your
# implementation, with the empirical privacy loss: the largest log-ratio between two rows of any column. It should
# sit close to ε (it is an estimate, so a little above or below).

# %%
g = NoiseSource.from_seed(SEED).generator()  # lesson noise: reproducible, so NOT private against the seed's holder
true = torch.randint(0, NUM_CLASSES, (N_QUERIES,), generator=g)
released = randomized_response(true, 1.0, NUM_CLASSES, generator=g)
T = torch.zeros(NUM_CLASSES, NUM_CLASSES)
T.index_put_((true, released), torch.ones(N_QUERIES), accumulate=True)
T = T / T.sum(1, keepdim=True)
print(f"kept: {100 * (released == true).float().mean():.1f}% (expected {100 * keep_probability(1.0, NUM_CLASSES):.1f}%)")
print(f"empirical privacy loss: max log(T[i,j] / T[i',j]) = {float((T.max(0).values / T.min(0).values).log().max()):.2f}"
      " (ε = 1)")
fig, ax = plt.subplots(figsize=(3.6, 3.2))
im = ax.imshow(T, cmap="viridis")
ax.set_xlabel("released label j")
ax.set_ylabel("true label i")
fig.colorbar(im, ax=ax, shrink=0.8)
plt.show()

# %% [markdown]
# ## 2. A prior shrinks the answer set
#
# At ε = 1 with ten classes, 77% of released labels are noise. But suppose we already had a decent guess — a
# **prior** over the classes — that says "this image is probably a 3 or an 8". RR restricted to those **k = 2**
# classes keeps the truth 73% of the time at the *same* ε. The catch: if the true label is outside the set, the
# mechanism must still answer *inside* the set (a uniformly random member), and that answer carries no
# information.
#
# So the best set size trades the prior's mass on the top-k classes against the keep probability. If the prior is
# right, the chance that the released label is the true one is
#
# $$\text{score}(k) = \underbrace{\textstyle\sum_{j \le k} p_{(j)}}_{\text{mass of the top-}k\text{ classes}} \times \frac{e^\varepsilon}{e^\varepsilon + k - 1},$$
#
# and RR-with-prior picks the `k` that maximises it, per query.
#
# **Why is the prior free?** In `dpsd_lite` the prior is the *student's own* prediction on the synthetic image.
# The student has only ever seen earlier *released* (already privatised) labels, so its prediction is
# post-processing and costs no privacy. The set must never depend on the teacher's answer to *this* query.
#
# ### Exercise 1.3 — choosing k *(2 points)*
# Write `choose_k(prior, epsilon)`: `prior` is a `B×K` tensor whose rows sum to 1; return a LongTensor of `B` set
# sizes in `1..K`, each maximising `score(k)` for its row.

# %% nbgrader={"grade": false, "grade_id": "exercise_1_3", "locked": false, "schema_version": 3, "solution": true, "task": false}
def choose_k(prior, epsilon):
    """Per row of the prior (B×K), the top-k set size that maximises P(released label = true label)."""
    # Hint: sort each row in decreasing order, cumsum gives the mass of the top-1, top-2, ... classes;
    # multiply by keep_probability(epsilon, k) for k = 1..K and take the argmax (0-based!).
    ### BEGIN SOLUTION (Exercise 1.3)
    K = prior.shape[1]
    mass = prior.sort(dim=1, descending=True).values.cumsum(dim=1)
    keep = torch.tensor([keep_probability(epsilon, k) for k in range(1, K + 1)])
    return (mass * keep).argmax(dim=1) + 1
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_1_3", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# NBVAL_CHECK_OUTPUT
assert checks.check_choose_k(choose_k)

# %% [markdown]
# ### Exercise 1.4 — selective randomized response *(2 points)*
# Write `selective_rr(labels, prior, epsilon, generator=None)`. For each query:
# 1. the set is the prior's top-`k` classes, with `k` from your `choose_k`;
# 2. if the true label is **in** the set: keep it with probability `keep_probability(epsilon, k)`, otherwise
#    answer a uniformly random **other member** of the set;
# 3. if the true label is **outside** the set: answer a uniformly random member of the set.

# %% nbgrader={"grade": false, "grade_id": "exercise_1_4", "locked": false, "schema_version": 3, "solution": true, "task": false}
def selective_rr(labels, prior, epsilon, generator=None):
    """RR restricted to each query's top-k prior classes. labels: (B,), prior: (B, K); returns (B,) labels."""
    # Hint: ranks = prior.argsort(1, descending=True).argsort(1) gives each class's rank (0 = top), so
    # in_set = ranks < k[:, None]. torch.multinomial(weights, 1, generator=generator) draws one class per row
    # with probability proportional to the row's weights (every row needs a positive weight).
    ### BEGIN SOLUTION (Exercise 1.4)
    B, K = prior.shape
    rows = torch.arange(B)
    k = choose_k(prior, epsilon)
    in_set = prior.argsort(dim=1, descending=True).argsort(dim=1) < k.view(-1, 1)
    weights = in_set.float()
    weights[rows, labels] = 0.0  # replacements are *other* members of the set
    empty = weights.sum(1) == 0  # k = 1 and the label is the set: it is always kept
    weights[empty, labels[empty]] = 1.0
    replacement = torch.multinomial(weights, 1, generator=generator).view(-1)
    keep = torch.tensor([keep_probability(epsilon, kk) for kk in range(K + 1)])[k]
    kept = in_set[rows, labels] & (torch.rand(B, generator=generator) < keep)
    return torch.where(kept, labels, replacement)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_1_4", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert checks.check_selective_rr(selective_rr)

# %% [markdown]
# How large is the set, typically? For priors of different sharpness (a Dirichlet with small α is peaked, with
# large α flat), your `choose_k` picks:

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(SEED)  # priors are not privacy noise: the global seed is fine here
alphas = (0.1, 0.5, 2.0)
priors = {a: torch.distributions.Dirichlet(torch.full((NUM_CLASSES,), a)).sample((1000,)) for a in alphas}
print("mean k chosen (1000 priors each)")
print("  ε    " + "  ".join(f"α={a:<4g}" for a in alphas))
for eps in EPSILONS:
    print(f"{eps:4g}   " + "  ".join(f"{float(choose_k(priors[a], eps).float().mean()):6.2f}" for a in alphas))

# %% [markdown]
# ## 3. How good must the prior be?
#
# We simulate three priors for queries whose true label is uniformly random:
# * **uniform** — no knowledge (k = K: plain RR);
# * **informative** — the true class has the highest prior logit on average, with noise;
# * **confidently wrong** — 91% of the mass on one *wrong* class.
#
# and measure how often the released label is the true one.

# %%
g = NoiseSource.from_seed(SEED).generator()  # lesson noise for the mechanism (and, here, for the simulation too)
y = torch.randint(0, NUM_CLASSES, (N_QUERIES,), generator=g)
wrong = (y + torch.randint(1, NUM_CLASSES, y.shape, generator=g)) % NUM_CLASSES
prior_kinds = {
    "uniform": torch.full((N_QUERIES, NUM_CLASSES), 1.0 / NUM_CLASSES),
    "informative": (2.0 * torch.nn.functional.one_hot(y, NUM_CLASSES)
                    + torch.randn(N_QUERIES, NUM_CLASSES, generator=g)).softmax(1),
    "confidently wrong": torch.full((N_QUERIES, NUM_CLASSES), 0.01).scatter(1, wrong.view(-1, 1), 0.91),
}
print("share of released labels that are the true label")
print(f"{'prior':>18}  " + "  ".join(f"ε={e:<4g}" for e in EPSILONS))
for kind, prior in prior_kinds.items():
    accs = [float((selective_rr(y, prior, eps, generator=g) == y).float().mean()) for eps in EPSILONS]
    print(f"{kind:>18}  " + "  ".join(f"{100 * a:5.1f}%" for a in accs))

# %% [markdown]
# A good prior roughly doubles the useful signal at small ε. A confidently wrong prior is worse than none: it picks
# k = 1, and RR then returns the prior's own guess whatever the teacher said — the student would be trained on its
# own mistakes (pure self-training). That is why `dpsd_lite` tempers the student's prior (`prior_temperature` 4:
# an untrained student's prior is then nearly flat, so the first answer sets have k = K by themselves, with no
# separate warm-up), mixes it with a little uniform mass (`prior_smoothing`), and never lets k fall below
# `k_min = 2` by default (it maximises the same score over k ≥ 2 only). With k ≥ 2 the teacher's answer always
# has a say:

# %%
# NBVAL_CHECK_OUTPUT
print("keep probability at k = 2, 3, 10 (ε = 1):", [round(keep_probability(1.0, k), 4) for k in (2, 3, 10)])

# %% [markdown]
# ## 4. Learning from released labels: the RR channel
#
# The student never sees the teacher's label `y`, only the released label `ỹ`. Trained with plain cross-entropy
# on `ỹ`, it learns to predict the *released* distribution — at ε = 1 with ten classes that is mostly noise, and
# the noise is not harmless: it flattens every prediction towards uniform. But the mechanism is public. We know
# the **channel** `P(ỹ | y)` exactly, so the student can explain each released label by every class that could
# have produced it. With the student's class probabilities `q(y)`:
#
# $$P(\tilde y) = \sum_y q(y)\, P(\tilde y \mid y), \qquad L = -\frac{1}{B}\sum_b \log \sum_y q_b(y)\, P(\tilde y_b \mid y).$$
#
# For RR-with-prior on a query whose answer set has `k` members and released label `ỹ`:
#
# | true class `y` | `P(ỹ \| y)` |
# |---|---|
# | `y = ỹ` | keep probability `e^ε/(e^ε+k−1)` |
# | another member of the set | `(1 − keep)/(k − 1)` (RR replaced it by `ỹ`) |
# | outside the set | `1/k` (RR answered a uniform member) |
#
# Minimising `L` makes the student's *clean* probabilities, pushed through the channel, match what was released:
# it learns the teacher's labels, not the noise (this is "forward correction" for label noise). The set and the
# mechanism are public post-processing: the loss costs no privacy.
#
# ### Exercise 1.5 — the RR-channel loss *(2 points)*
# Write `rr_channel_loss(student_logits, released, answer_set, epsilon)`: `student_logits` is `B×K`, `released`
# a LongTensor of `B` released labels, `answer_set` a `B×K` bool tensor marking each query's set (`k =
# answer_set.sum(1)`; the released label is always in it). Return the scalar loss `L` as a tensor, so that
# `loss.backward()` reaches the logits.

# %% nbgrader={"grade": false, "grade_id": "exercise_1_5", "locked": false, "schema_version": 3, "solution": true, "task": false}
def rr_channel_loss(student_logits, released, answer_set, epsilon):
    """−mean log Σ_y q(y)·P(released | y): the likelihood of the released labels under the student and the RR channel."""
    # Hint: build the B×K channel matrix P(released_b | y) row by row from the table above (torch.where on
    # answer_set, then channel[torch.arange(B), released] = keep). With k = 1 the set is just the released label:
    # (1 − keep)/(k − 1) is 0/0 there but never needed — guard it. The demo below calls your loss FIT_STEPS times
    # on N_QUERIES queries: look the keep probability up in a table over k = 1..K rather than loop over the queries.
    ### BEGIN SOLUTION (Exercise 1.5)
    B, K = student_logits.shape
    k = answer_set.sum(1)
    keep = torch.tensor([keep_probability(epsilon, kk) for kk in range(1, K + 1)], dtype=student_logits.dtype)[k - 1]
    other = torch.where(k > 1, (1 - keep) / (k - 1).clamp_min(1), torch.zeros_like(keep))
    channel = torch.where(answer_set, other.view(-1, 1), 1.0 / k.view(-1, 1).to(student_logits.dtype))
    channel[torch.arange(B), released] = keep
    likelihood = (student_logits.softmax(dim=1) * channel).sum(dim=1)  # P(released | student), per query
    return -likelihood.log().mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_1_5", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# NBVAL_CHECK_OUTPUT
assert checks.check_rr_channel_loss(rr_channel_loss)

# %% [markdown]
# **See it work.** One kind of synthetic image; the teacher calls it a 3 (60%), an 8 (30%) or a 5 (10%). We release
# `N_QUERIES` of its labels through your RR at ε = 1 with a uniform prior (k = K), then fit a student that is just
# one vector of logits, once with plain cross-entropy on the released labels and once with your channel loss.

# %%
# NBVAL_CHECK_OUTPUT
teacher_probs = torch.zeros(NUM_CLASSES)
teacher_probs[[3, 8, 5]] = torch.tensor([0.6, 0.3, 0.1])
g = NoiseSource.from_seed(SEED).generator()  # lesson noise, explicitly (the rule: never the run seed silently)
y_true = torch.multinomial(teacher_probs, N_QUERIES, replacement=True, generator=g)
uniform = torch.full((N_QUERIES, NUM_CLASSES), 1.0 / NUM_CLASSES)
released = selective_rr(y_true, uniform, 1.0, generator=g)
answer_sets = torch.ones(N_QUERIES, NUM_CLASSES, dtype=torch.bool)  # k = K for a uniform prior


def fit(loss_fn, steps=FIT_STEPS):
    logits = torch.zeros(1, NUM_CLASSES, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(logits.expand(N_QUERIES, -1)).backward()
        opt.step()
    return logits.detach().softmax(1).view(-1)


plain = fit(lambda lg: torch.nn.functional.cross_entropy(lg, released))
corrected = fit(lambda lg: rr_channel_loss(lg, released, answer_sets, 1.0))
print("class            " + "  ".join(f"{c:>4d}" for c in range(NUM_CLASSES)))
print("teacher          " + "  ".join(f"{p:4.2f}" for p in teacher_probs.tolist()))
print("plain CE         " + "  ".join(f"{p:4.2f}" for p in plain.tolist()))
print("RR-channel loss  " + "  ".join(f"{p:4.2f}" for p in corrected.tolist()))

# %% [markdown]
# Plain cross-entropy learns the released distribution: the teacher's 60% on class 3 shrinks to under 20%, and
# every class gets a few percent — a student trained that way is confidently unsure, and its prior (and so the next
# k) gets worse. The channel loss recovers the teacher's probabilities up to sampling noise: the same released
# labels, read correctly. (With an informative prior, classes outside the set can only be told apart through other
# queries; the loss still never blames a class for an answer RR gave at random.)
#
# ### Exercise 1.6 — written answers *(3 points)*
# Answer in two or three sentences each.
#
# **(a)** A colleague proposes to use the *teacher's* softmax on the query as the prior: "it is far more accurate
# than the student's". What goes wrong with the privacy guarantee?
#
# **(b)** The `rr` mode reports "ε = 1 per teacher answer". Does that bound what an attacker can learn about one
# of the teacher's *training records* from the student? Why or why not?
#
# **(c)** Your RR-channel loss uses ε, k and the answer set of every query. Does using them in training cost any
# privacy? And why does plain cross-entropy on the released labels not simply "average the noise away"?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answers_1_6", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# <!-- BEGIN SOLUTION -->
# **(a)** The set (and k) would then depend on the teacher's answer to this very query, so choosing it is part of
# the mechanism and is not covered by the RR analysis. In the extreme the teacher is confident, k = 1, and RR
# returns the teacher's top-1 with probability 1: ε = ∞. A prior is free only if it is independent of the private
# answer (e.g. post-processing of earlier releases, like the student's prediction).
#
# **(b)** No. The guarantee is about one answer to one query: two neighbouring inputs are two possible answers.
# One training record can change the teacher's answers on *many* queries, and nothing composes or bounds that;
# record-level DP needs a DP-trained teacher (DP-SGD) or a teacher ensemble with noisy votes (PATE-style), after
# which everything downstream is post-processing.
#
# **(c)** No: ε and the mechanism are public, and the set comes from the prior, which never depends on the
# teacher's answer to this query; the loss is a function of the release and public quantities, i.e.
# post-processing. Plain cross-entropy does average the noise — into its *target*: its minimiser is the released
# distribution keep·p + (noise spread over the other classes), a flattened version of the teacher's, so more data
# converges to the wrong answer. The channel loss models how the noise was added and its minimiser is the
# teacher's distribution itself.
# <!-- END SOLUTION -->

# %% [markdown]
# **Where next.** Assignment 2 calibrates the other kind of noise `dpsd_lite` offers — Gaussian noise on the
# teacher's top-k probabilities (`label` mode) — for a target (ε, δ).
