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
# 5. find these pieces in the package: `dpsd_lite.accounting.rr_keep_probability`,
#    `dpsd_lite.mechanisms.select_rr_classes` and `SelectiveRR`.
#
# **How to work.** Fill in each **Exercise** cell (they raise `NotImplementedError` until you do), then run the
# self-check below it. The checks test your code against the reference and tell you, kindly and specifically,
# what to look at if something is off.

# %% [markdown] tags=["banner"]
# *Student version.* Fill in each **Exercise** cell (look for `NotImplementedError`), then run the self-check below it: it tells you what is right and, if something is not, what to look at.

# %%
import math
import os

import matplotlib.pyplot as plt
import torch

from dpsd_lite import checks
from dpsd_lite.accounting import rr_keep_probability
from dpsd_lite.mechanisms import SelectiveRR, select_rr_classes

# %% tags=["parameters"]
# DPSD_FAST=1 runs everything small (CI, a first look); unset, you get the full experience.
FAST = os.environ.get("DPSD_FAST") == "1"
SEED = 0
NUM_CLASSES = 10  # K: the teacher's possible answers
N_QUERIES = 20_000 if FAST else 200_000  # simulated teacher answers per experiment
EPSILONS = [0.5, 1.0, 2.0, 4.0]

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
# ### Exercise 1.1 — the keep probability
# Write `keep_probability(epsilon, k)`: the probability that k-ary RR at privacy level ε returns the true answer.

# %%
def keep_probability(epsilon, k):
    """Probability that k-ary randomized response at ε returns the true answer (a float in (0, 1])."""
    # Hint: give the true answer weight e^ε and each of the other answers weight 1, then normalise.
    raise NotImplementedError("Exercise 1.1: write your solution here")


# %%
checks.check_rr_keep_probability(keep_probability)

# %% [markdown]
# How much does the truth survive? With `K = 10` classes, at ε = 1 the true label comes back less than a quarter
# of the time. The library's `rr_keep_probability` is the same function:

# %%
print("  ε    k=2    k=3   k=10")
for eps in EPSILONS:
    print(f"{eps:4g}  " + "  ".join(f"{rr_keep_probability(eps, k):.3f}" for k in (2, 3, 10)))

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
# ### Exercise 1.2 — sampling randomized response
# Write `randomized_response(labels, epsilon, num_classes, generator=None)`: given a LongTensor of true labels,
# return one released label per entry. Keep each label with probability `keep_probability(epsilon, num_classes)`;
# otherwise return a **uniformly random other** class. Use `generator` (a `torch.Generator`) in your random calls
# so results are reproducible. Avoid Python loops over the labels: the check draws 160,000 of them.

# %%
def randomized_response(labels, epsilon, num_classes, generator=None):
    """Release each true label (LongTensor, shape (n,)) through K-ary RR; returns a LongTensor of shape (n,)."""
    # Hint: torch.rand(labels.shape, generator=generator) < p decides "keep"; adding a random shift
    # in 1..K−1 modulo K gives a uniformly random *other* class.
    raise NotImplementedError("Exercise 1.2: write your solution here")


# %%
checks.check_randomized_response(randomized_response)

# %% [markdown]
# The self-check measured the **transition matrix** `P(released = j | true = i)`. Here it is for your
# implementation, with the empirical privacy loss: the largest log-ratio between two rows of any column. It should
# sit close to ε (it is an estimate, so a little above or below).

# %%
g = torch.Generator().manual_seed(SEED)
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
# ### Exercise 1.3 — choosing k
# Write `choose_k(prior, epsilon)`: `prior` is a `B×K` tensor whose rows sum to 1; return a LongTensor of `B` set
# sizes in `1..K`, each maximising `score(k)` for its row.

# %%
def choose_k(prior, epsilon):
    """Per row of the prior (B×K), the top-k set size that maximises P(released label = true label)."""
    # Hint: sort each row in decreasing order, cumsum gives the mass of the top-1, top-2, ... classes;
    # multiply by keep_probability(epsilon, k) for k = 1..K and take the argmax (0-based!).
    raise NotImplementedError("Exercise 1.3: write your solution here")


# %%
checks.check_choose_k(choose_k)

# %% [markdown]
# ### Exercise 1.4 — selective randomized response
# Write `selective_rr(labels, prior, epsilon, generator=None)`. For each query:
# 1. the set is the prior's top-`k` classes, with `k` from your `choose_k`;
# 2. if the true label is **in** the set: keep it with probability `keep_probability(epsilon, k)`, otherwise
#    answer a uniformly random **other member** of the set;
# 3. if the true label is **outside** the set: answer a uniformly random member of the set.

# %%
def selective_rr(labels, prior, epsilon, generator=None):
    """RR restricted to each query's top-k prior classes. labels: (B,), prior: (B, K); returns (B,) labels."""
    # Hint: ranks = prior.argsort(1, descending=True).argsort(1) gives each class's rank (0 = top), so
    # in_set = ranks < k[:, None]. torch.multinomial(weights, 1, generator=generator) draws one class per row
    # with probability proportional to the row's weights (every row needs a positive weight).
    raise NotImplementedError("Exercise 1.4: write your solution here")


# %%
checks.check_selective_rr(selective_rr)

# %% [markdown]
# Your mechanism and the library's agree: `select_rr_classes` picks the same k (with `k_min=1`), and
# `SelectiveRR.release` is the version the transcription loop calls on the teacher's logits.

# %%
torch.manual_seed(SEED)
priors = torch.distributions.Dirichlet(torch.full((NUM_CLASSES,), 0.5)).sample((1000,))
for eps in EPSILONS:
    mask, k_lib = select_rr_classes(priors, eps, k_min=1)
    same = bool((choose_k(priors, eps) == k_lib).all())
    print(f"ε = {eps:g}: same k as select_rr_classes for all 1000 priors: {same}")

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
g = torch.Generator().manual_seed(SEED)
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
# own mistakes (pure self-training). That is why `dpsd_lite` starts every run with a **uniform prior** (a warm-up
# during which k = K), mixes the student's prior with a little uniform mass (`prior_smoothing`), and never lets
# k fall below `k_min = 2` by default:

# %%
mech = SelectiveRR(epsilon=1.0, k_min=2)
print(mech.describe()["mechanism"])
print("keep probability at k = 2, 3, 10:", [round(mech.keep_probability(k), 4) for k in (2, 3, 10)])

# %% [markdown]
# ### Exercise 1.5 — written answers
# Answer in two or three sentences each.
#
# **(a)** A colleague proposes to use the *teacher's* softmax on the query as the prior: "it is far more accurate
# than the student's". What goes wrong with the privacy guarantee?
#
# **(b)** The `rr` mode reports "ε = 1 per teacher answer". Does that bound what an attacker can learn about one
# of the teacher's *training records* from the student? Why or why not?

# %% [markdown]
# *Your answer here.*

# %% [markdown]
# **Where next.** Assignment 2 calibrates the other kind of noise `dpsd_lite` offers — Gaussian noise on the
# teacher's top-k probabilities (`label` mode) — for a target (ε, δ).
