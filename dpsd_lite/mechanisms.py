"""Where the noise is added: the four noise modes of the dropdown.

Every mode turns the teacher's raw answers on a batch of synthetic queries into
a *release*. In the private modes the release is the only thing derived from
the teacher that the rest of the system (student, generator, reports) ever
sees; everything computed from it afterwards is post-processing and costs no
privacy.

Where the noise comes from: every private mechanism draws from its
:class:`~dpsd_lite.noise.NoiseSource`, secret (operating-system entropy) unless
the caller opts in to noise derived from a seed (lessons and tests; the report
then says the ε does not hold against whoever knows the seed).

Unit of privacy (``label``, ``rr``, ``data``): each teacher answer to one
synthetic query. Two neighbouring inputs of a mechanism are two possible
answers of the teacher to the same query (replace-one). Each answer enters
exactly one release, so the per-query guarantee needs no composition. It does
*not* bound what one private training record can do to the teacher, which
may change every answer (see :mod:`dpsd_lite.report`).

Modes
-----
``none``  the teacher's logits, as they are (DFAD-style, no privacy).
``label`` label noisy perturbation: the teacher's softmax restricted to k
          classes chosen by a prior (the student's own prediction, which costs
          no privacy), renormalised to sum 1, plus Gaussian noise. Any two such
          vectors are ≤ √2 apart in L2, so Δ = √2.
``rr``    selective randomized response (RR-with-prior, Ghazi et al. 2021):
          the teacher's hard label is released by k-ary RR restricted to the
          prior's top-k classes, k chosen per query to maximise the chance the
          true label survives, with keep probability e^ε/(e^ε+k−1). If the true
          label is outside the set, a uniform member of the set is returned.
          With ``answer="top2"`` (:class:`TopTwoRR`) it releases instead the
          teacher's ordered top two classes by K(K−1)-ary RR over all ordered
          pairs, keep probability e^ε/(e^ε+K(K−1)−1): the same ε for the same
          unit (any two teacher answers to one query), one more class per answer.
``ensemble`` (record-level, not a mode of the dropdown): a teacher ensemble's vote histogram plus Gaussian
          noise, the noisy arg-max released (PATE's GNMax, :class:`EnsembleVote`; the ensemble itself lives in
          :mod:`dpsd_lite.ensemble`).
``data``  data/gradient noisy perturbation (DPDFD): the per-query gradient of
          the distillation loss KL(teacher ‖ student) with respect to the
          student's logits, ``softmax(s) − p_teacher``, normalised to norm C,
          plus Gaussian noise of std σ·2C (Δ = 2C under replace-one), then
          back-propagated into the student.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .accounting import (check_delta, check_epsilon, composed_epsilon, composed_noise_multiplier,
                         gaussian_noise_multiplier, rr_keep_probability)
from .errors import DpsdError
from .names import NOISE_MODES, RR_ANSWERS, SPENT_AT_ONCE  # noqa: F401  (re-exported: mechanisms.NOISE_MODES)
from .noise import NoiseSource

__all__ = [
    "NOISE_MODES",
    "Release",
    "Mechanism",
    "NoNoise",
    "LabelNoise",
    "SelectiveRR",
    "TopTwoRR",
    "GradientNoise",
    "EnsembleVote",
    "make_mechanism",
    "select_rr_classes",
    "rr_sample",
    "top_k_mask",
]


@dataclass
class Release:
    """What a mechanism lets out for one batch of queries.

    ``mask`` (B×K bool) marks the classes each query's answer is about;
    ``labels`` (B,) hard labels (``rr``); ``values`` (B×K float) soft answers
    (``label``: noisy normalised probabilities on the mask; ``data``: noisy
    normalised gradients; ``none``: raw teacher logits).
    """

    mode: str
    mask: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    values: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    @property
    def hard_labels(self) -> torch.Tensor:
        """A hard label per query derived from the release (post-processing)."""
        if self.labels is not None:
            return self.labels
        vals = self.values
        if self.mask is not None:
            vals = vals.masked_fill(~self.mask, float("-inf"))
        return vals.argmax(1)


def top_k_mask(prior: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """B×K bool mask of each row's k most probable classes (k per row or shared)."""
    B, K = prior.shape
    ranks = prior.argsort(dim=1, descending=True).argsort(dim=1)  # rank of each class, 0 = top
    if not torch.is_tensor(k):
        k = torch.full((B,), int(k), device=prior.device)
    return ranks < k.view(-1, 1)


def select_rr_classes(prior: torch.Tensor, epsilon: float, k_min: int = 1):
    """RR-with-prior class selection (Ghazi et al. 2021).

    For each query pick k ≥ k_min maximising (prior mass of the top-k) ·
    e^ε/(e^ε+k−1): the probability that RR restricted to those k classes
    returns the true label, if the prior is right. Returns (mask B×K, k B).
    The prior must not depend on the teacher's answer to this query.
    """
    B, K = prior.shape
    k_min = max(1, min(int(k_min), K))
    sorted_p = prior.sort(dim=1, descending=True).values
    cum = sorted_p.cumsum(dim=1)  # B×K: mass of top-(j+1)
    ks = torch.arange(1, K + 1, device=prior.device, dtype=prior.dtype)
    keep = 1.0 / (1.0 + (ks - 1) * math.exp(-epsilon))
    score = cum * keep
    score[:, : k_min - 1] = -1.0
    k = score.argmax(dim=1) + 1
    return top_k_mask(prior, k), k


class Mechanism:
    """Base class: ``release`` sees the teacher; ``student_loss`` sees only the release.

    ``noise``: the :class:`~dpsd_lite.noise.NoiseSource` every release draws
    from; ``None`` means a secret one (the default everywhere).
    """

    mode = "base"
    private = True
    uses_prior = False
    @property
    def replayable(self) -> bool:
        """Can the student learn from a release again later (post-processing, no new query)? Not in the modes
        whose release is a gradient at the student's parameters of that moment (``names.SPENT_AT_ONCE``)."""
        return self.mode not in SPENT_AT_ONCE

    def __init__(self, noise: NoiseSource | None = None):
        self.noise = noise if noise is not None else NoiseSource.secret()

    def release(self, teacher_logits, prior=None, student_logits=None) -> Release:
        raise NotImplementedError

    def student_loss(self, student_logits: torch.Tensor, rel: Release) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        """Parameters for the privacy report."""
        return {"mode": self.mode}


class NoNoise(Mechanism):
    """No privacy: the teacher's logits go straight to the student, who learns their softmax (soft labels).

    The loss is the cross-entropy from the teacher's class probabilities to the student's (knowledge
    distillation at temperature 1; the KL divergence up to a constant). It replaced DFAD's L1 distance
    between logits, which kept 1 point (mnist-5k) to 3 points (Fashion-MNIST) less of the teacher with the
    learned generator (benchmarks/RESULTS.md, "Design history")."""

    mode = "none"
    private = False

    def __init__(self):
        self.noise = None  # no noise at all

    def release(self, teacher_logits, prior=None, student_logits=None):
        return Release("none", values=teacher_logits.detach())

    def student_loss(self, student_logits, rel):
        return F.cross_entropy(student_logits, rel.values.softmax(1))  # probabilities as targets

    def describe(self):
        return {"mode": "none", "mechanism": "none (teacher logits released as they are)"}


class LabelNoise(Mechanism):
    """Gaussian noise on the teacher's top-k renormalised softmax (label noisy perturbation)."""

    mode = "label"
    uses_prior = True
    sensitivity = math.sqrt(2.0)  # two points of the probability simplex are ≤ √2 apart

    def __init__(self, epsilon: float, delta: float, top_k: int = 2, noise: NoiseSource | None = None):
        super().__init__(noise)
        self.epsilon = check_epsilon(epsilon)
        self.delta = check_delta(delta)
        self.top_k = int(top_k)
        if self.top_k < 1:
            raise DpsdError(f"top_k must be at least 1, got {top_k}")
        self.noise_multiplier = gaussian_noise_multiplier(self.epsilon, self.delta)
        self.noise_std = self.noise_multiplier * self.sensitivity
        self.queries_with_prior = self.queries_without_prior = 0  # for the report: which classes were kept

    def release(self, teacher_logits, prior=None, student_logits=None):
        probs = teacher_logits.detach().softmax(1)
        B, K = probs.shape
        if prior is None:
            mask = torch.ones_like(probs, dtype=torch.bool)
            self.queries_without_prior += B
        else:
            mask = top_k_mask(prior, min(self.top_k, K))
            self.queries_with_prior += B
        restricted = probs * mask
        restricted = restricted / restricted.sum(1, keepdim=True).clamp_min(1e-12)
        noise = torch.randn(probs.shape, generator=self.noise.generator(), device="cpu").to(probs.device)
        values = (restricted + self.noise_std * noise) * mask
        return Release("label", mask=mask, values=values)

    def student_loss(self, student_logits, rel):
        # Squared error between the student's renormalised probabilities on the
        # released classes and the noisy answer: unbiased under zero-mean noise,
        # with bounded gradients (cross-entropy on negative noisy targets is not).
        q = student_logits.softmax(1) * rel.mask
        q = q / q.sum(1, keepdim=True).clamp_min(1e-12)
        return (((q - rel.values) * rel.mask) ** 2).sum(1).mean()

    def describe(self):
        return {
            "mode": "label",
            "mechanism": "Gaussian mechanism on the teacher's softmax restricted to the prior's top-k classes, renormalised",
            "epsilon": self.epsilon,
            "delta": self.delta,
            "top_k": self.top_k,
            "queries_with_prior": self.queries_with_prior,
            "queries_without_prior": self.queries_without_prior,
            "l2_sensitivity": self.sensitivity,
            "noise_multiplier": self.noise_multiplier,
            "noise_std": self.noise_std,
            "calibration": "analytic Gaussian mechanism (Balle & Wang 2018), exact for every epsilon",
        }


class SelectiveRR(Mechanism):
    """Selective randomized response on the teacher's hard label, restricted by a prior."""

    mode = "rr"
    uses_prior = True

    def __init__(self, epsilon: float, k_min: int = 2, noise: NoiseSource | None = None):
        super().__init__(noise)
        self.epsilon = check_epsilon(epsilon)
        self.k_min = int(k_min)
        if self.k_min < 1:
            raise DpsdError(f"k_min must be at least 1, got {k_min}")

    def keep_probability(self, k):
        return rr_keep_probability(self.epsilon, k)

    def release(self, teacher_logits, prior=None, student_logits=None):
        y = teacher_logits.detach().argmax(1)
        B, K = teacher_logits.shape
        if prior is None:
            prior = torch.full((B, K), 1.0 / K, device=teacher_logits.device)
        mask, k = select_rr_classes(prior, self.epsilon, self.k_min)
        weights = rr_output_distribution(y, mask, k, self.epsilon)
        u = torch.rand((B,), generator=self.noise.generator(), device="cpu", dtype=torch.float64)
        return Release("rr", mask=mask, labels=rr_sample(weights, u.to(weights.device)), extra={"k": k})

    def student_loss(self, student_logits, rel):
        # Forward correction: the likelihood of the released label under the
        # student's clean class probabilities and the exact RR channel.
        K = student_logits.shape[1]
        k = rel.extra["k"]
        B = student_logits.shape[0]
        # channel[b, y] = P(released = labels[b] | true class y)
        keep, other = (t.to(student_logits.dtype) for t in rr_channel(k, self.epsilon))
        channel = torch.where(rel.mask, other.view(-1, 1), (1.0 / k.to(student_logits.dtype)).view(-1, 1))
        channel = channel.expand(B, K).clone()
        channel[torch.arange(B), rel.labels] = keep
        logp = student_logits.log_softmax(1)
        return -torch.logsumexp(logp + channel.clamp_min(1e-12).log(), dim=1).mean()

    def describe(self):
        return {
            "mode": "rr",
            "mechanism": "selective randomized response on the teacher's hard label, restricted to a prior's top-k classes (RR-with-prior)",
            "epsilon": self.epsilon,
            "delta": 0.0,
            "k_min": self.k_min,
            "keep_probability_at_k": {
                str(k): rr_keep_probability(self.epsilon, k) for k in range(max(1, self.k_min), 11)
            },
            "calibration": "closed form: keep probability e^eps/(e^eps+k-1) is exactly eps-DP (delta = 0)",
        }


class TopTwoRR(Mechanism):
    """Randomized response over the teacher's ordered top two classes (its first and second choice).

    The teacher's answer to a query becomes one of the K(K−1) ordered pairs
    (a, b), a ≠ b: its most and second most probable classes. The pair is kept
    with probability e^ε/(e^ε+N−1), N = K(K−1), else replaced by a uniform
    other pair. For any two teacher answers and any output pair the
    probabilities differ by at most the factor e^ε: exactly ε-DP (δ = 0) per
    teacher answer, the unit of every per-query mode. No prior is needed, so
    no answer set is chosen.

    With good labels (large ε) the second choice is what a hard label throws
    away: which class the teacher would name next. The student learns it by
    the pair's likelihood under its own class probabilities (``student_loss``).
    At small ε the larger answer space keeps the true pair rarely (0.62 at
    ε = 5, 0.03 at ε = 1 with K = 10), and :class:`SelectiveRR` does better.
    """

    mode = "rr"

    def __init__(self, epsilon: float, num_classes: int = 10, noise: NoiseSource | None = None):
        super().__init__(noise)
        self.epsilon = check_epsilon(epsilon)
        self.num_classes = int(num_classes)
        if self.num_classes < 2:
            raise DpsdError(f"the top-two release needs at least 2 classes, got {num_classes}")
        self.num_pairs = self.num_classes * (self.num_classes - 1)
        self.keep_probability, self.other_probability = pair_rr_channel(self.epsilon, self.num_pairs)

    def release(self, teacher_logits, prior=None, student_logits=None):
        B, K = teacher_logits.shape
        if K != self.num_classes:
            raise DpsdError(f"this top-two release was built for {self.num_classes} classes; the teacher has {K}")
        top = teacher_logits.detach().topk(2, dim=1).indices.cpu()
        u, j = pair_rr_draws(B, K, self.noise.generator())
        out = pair_rr_sample(pair_index(top[:, 0], top[:, 1], K), u, j, self.keep_probability)
        first, second = pair_from_index(out, K)
        dev = teacher_logits.device
        return Release("rr", mask=torch.ones(B, K, dtype=torch.bool, device=dev), labels=first.to(dev),
                       extra={"second": second.to(dev)})

    def student_loss(self, student_logits, rel):
        # Forward correction: the likelihood of the released pair (a, b) under the RR channel, where the
        # student's chance that (a, b) is the teacher's top two is p_a · p_b / (1 − p_a) (drawn in order
        # without replacement, Plackett–Luce).
        B, K = student_logits.shape
        keep, other = self.keep_probability, self.other_probability
        logp = student_logits.log_softmax(1)
        rows = torch.arange(B, device=logp.device)
        a, b = rel.labels, rel.extra["second"]
        rest = torch.logsumexp(logp.masked_fill(F.one_hot(a, K).bool(), float("-inf")), dim=1)  # log(1 − p_a)
        log_q = logp[rows, a] + logp[rows, b] - rest
        return -torch.logaddexp(torch.full_like(log_q, math.log(other)), log_q + math.log(keep - other)).mean()

    def describe(self):
        return {
            "mode": "rr",
            "answer": "top2",
            "mechanism": "randomized response over the teacher's ordered top two classes (all K(K-1) ordered "
                         "pairs; no prior)",
            "epsilon": self.epsilon,
            "delta": 0.0,
            "answer_pairs": self.num_pairs,
            "keep_probability": self.keep_probability,
            "calibration": "closed form: keep probability e^eps/(e^eps+N-1) over N = K(K-1) ordered pairs is "
                           "exactly eps-DP (delta = 0)",
        }


def pair_index(first: torch.Tensor, second: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The index in [0, K(K−1)) of each ordered pair (first, second), first ≠ second."""
    return first * (num_classes - 1) + torch.where(second < first, second, second - 1)


def pair_from_index(index: torch.Tensor, num_classes: int):
    """(first, second) of each ordered-pair index: the inverse of :func:`pair_index`."""
    first, r = index // (num_classes - 1), index % (num_classes - 1)
    return first, torch.where(r < first, r, r + 1)


def pair_rr_draws(n: int, num_classes: int, generator: torch.Generator):
    """The noise of n top-two releases: a uniform u (keep or not) and a uniform other pair j ∈ [0, N−1)."""
    u = torch.rand((n,), generator=generator, dtype=torch.float64)
    j = torch.randint(0, num_classes * (num_classes - 1) - 1, (n,), generator=generator)
    return u, j


def pair_rr_sample(true_index: torch.Tensor, u: torch.Tensor, j: torch.Tensor, keep: float) -> torch.Tensor:
    """N-ary RR: the true index where u < keep, else the j-th of the N − 1 other indices."""
    other = torch.where(j < true_index, j, j + 1)
    return torch.where(u < keep, true_index, other)


def pair_rr_channel(epsilon: float, num_pairs: int):
    """(keep, other): the probability of releasing the true pair, and of each other pair (:func:`rr_channel`
    over the N pairs, as floats)."""
    keep, other = rr_channel(torch.tensor([num_pairs]), check_epsilon(epsilon))
    return keep.item(), other.item()


def pair_rr_output_distribution(true_index: torch.Tensor, num_pairs: int, epsilon: float) -> torch.Tensor:
    """B×N probabilities (float64) of each released pair index under top-two RR (rows sum to 1)."""
    keep, other = pair_rr_channel(epsilon, num_pairs)
    w = torch.full((len(true_index), num_pairs), other, dtype=torch.float64)
    w[torch.arange(len(true_index)), true_index] = keep
    return w


def rr_channel(k: torch.Tensor, epsilon: float):
    """(keep, other) probabilities of k-ary RR per row, in float64 to keep the e^ε ratio exact."""
    kd = k.to(torch.float64)
    e = math.exp(-epsilon)
    keep = 1.0 / (1.0 + (kd - 1) * e)
    other = torch.where(k > 1, e / (1.0 + (kd - 1) * e), torch.zeros_like(keep))
    return keep, other


def rr_sample(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One draw per row from B×K ``weights`` (rows sum to 1) by inverting its CDF at ``u`` ∈ [0, 1).

    Exact on the support: the answer is always a class of positive weight,
    whatever ``u``. The CDF's last step may round to slightly below 1, and a
    ``u`` above it would otherwise run past the last class of the answer set
    (to a class that depends on the true label); it is clamped to that last
    class instead, so no draw ever leaves the set.
    """
    cdf = weights.cumsum(1)
    labels = (cdf <= u.view(-1, 1).to(cdf.dtype) * cdf[:, -1:]).sum(1)
    K = weights.shape[1]
    last = K - 1 - (weights > 0).flip(1).to(torch.int8).argmax(1)  # last class of positive weight per row
    return torch.minimum(labels, last)


def rr_output_distribution(true_label, mask, k, epsilon):
    """B×K probabilities (float64) of each released label under selective RR (rows sum to 1)."""
    B, K = mask.shape
    keep, other = rr_channel(k, epsilon)
    m = mask.to(torch.float64)
    inside = mask[torch.arange(B), true_label]
    w = torch.where(inside.view(-1, 1), other.view(-1, 1) * m, m / k.to(torch.float64).view(-1, 1))
    w[torch.arange(B)[inside], true_label[inside]] = keep[inside]
    return w


class GradientNoise(Mechanism):
    """DPDFD: normalised per-query output gradient plus Gaussian noise."""

    mode = "data"

    def __init__(self, epsilon: float, delta: float, clip_norm: float = 1.0, noise: NoiseSource | None = None):
        super().__init__(noise)
        self.epsilon = check_epsilon(epsilon)
        self.delta = check_delta(delta)
        self.clip_norm = float(clip_norm)
        if not self.clip_norm > 0:
            raise DpsdError(f"clip norm C must be positive, got {clip_norm}")
        self.sensitivity = 2.0 * self.clip_norm  # replace one answer: two vectors of norm C
        self.noise_multiplier = gaussian_noise_multiplier(self.epsilon, self.delta)
        self.noise_std = self.noise_multiplier * self.sensitivity

    def release(self, teacher_logits, prior=None, student_logits=None):
        if student_logits is None:
            raise ValueError("data mode needs the student's logits on the queries")
        grad = student_logits.detach().softmax(1) - teacher_logits.detach().softmax(1)
        norms = grad.norm(dim=1, keepdim=True)
        grad = torch.where(norms > 0, grad * (self.clip_norm / norms.clamp_min(1e-12)), grad)
        noise = torch.randn(grad.shape, generator=self.noise.generator(), device="cpu").to(grad.device)
        return Release("data", values=grad + self.noise_std * noise)

    def student_loss(self, student_logits, rel):
        # A surrogate whose gradient with respect to the logits is the released
        # noisy gradient divided by the batch size.
        return (student_logits * rel.values).sum(1).mean()

    def describe(self):
        return {
            "mode": "data",
            "mechanism": "Gaussian mechanism on each query's distillation gradient w.r.t. the student's logits, normalised to norm C (DPDFD)",
            "epsilon": self.epsilon,
            "delta": self.delta,
            "clip_norm": self.clip_norm,
            "l2_sensitivity": self.sensitivity,
            "noise_multiplier": self.noise_multiplier,
            "noise_std": self.noise_std,
            "calibration": "analytic Gaussian mechanism (Balle & Wang 2018), exact for every epsilon",
        }


class EnsembleVote(Mechanism):
    """GNMax: Gaussian noise on the teachers' vote histogram, the noisy arg-max released as a hard label.

    ``release(votes)`` takes the B×K raw vote histogram (what
    :class:`TeacherEnsemble` returns in place of logits). σ is calibrated so
    that ``max_queries`` answers are (ε, δ)-DP per private training record
    (Opacus RDP accountant, L2 sensitivity √2, q = 1). Once ``max_queries``
    have been answered the mechanism answers no more: the remaining rows of a
    batch get label −1 and no loss (``answered`` in ``Release.extra``), and
    ``exhausted`` turns true so the caller can stop.
    """

    mode = "ensemble"
    private = True
    uses_prior = False
    sensitivity = math.sqrt(2.0)  # one record moves one vote: −1 in one class, +1 in another

    def __init__(self, epsilon: float, delta: float, max_queries: int, num_teachers: int | None = None,
                 noise: NoiseSource | None = None):
        super().__init__(noise)
        self.target_epsilon = check_epsilon(epsilon)
        self.delta = check_delta(delta)
        self.max_queries = int(max_queries)
        if self.max_queries < 1:
            raise DpsdError(f"the query budget must be a positive integer, got {max_queries!r}")
        self.num_teachers = num_teachers
        self.noise_multiplier = composed_noise_multiplier(self.target_epsilon, self.delta, sample_rate=1.0,
                                                          steps=self.max_queries, accountant="rdp")
        self.noise_std = self.noise_multiplier * self.sensitivity
        self.answered = 0
        self.record = False  # when True, keep every released label (CPU) in ``released``
        self.released: list[torch.Tensor] = []

    @property
    def remaining(self) -> int:
        return self.max_queries - self.answered

    @property
    def exhausted(self) -> bool:
        return self.answered >= self.max_queries

    @property
    def epsilon(self) -> float:
        """Record-level ε spent so far (over the queries answered), from Opacus's RDP accountant."""
        return composed_epsilon(self.noise_multiplier, 1.0, self.answered, self.delta) if self.answered else 0.0

    def release(self, teacher_logits, prior=None, student_logits=None) -> Release:
        votes = teacher_logits.detach()
        B, K = votes.shape
        n = max(0, min(B, self.remaining))
        answered = torch.zeros(B, dtype=torch.bool, device=votes.device)
        answered[:n] = True
        labels = torch.full((B,), -1, dtype=torch.long, device=votes.device)
        if n:
            noise = torch.randn((n, K), generator=self.noise.generator(), device="cpu").to(votes.device)
            labels[:n] = (votes[:n] + self.noise_std * noise).argmax(1)
            self.answered += n
        if self.record:
            self.released.append(labels.cpu())
        mask = answered.view(-1, 1).expand(B, K).clone()
        return Release("ensemble", mask=mask, labels=labels, extra={"answered": answered})

    def student_loss(self, student_logits, rel):
        answered = rel.extra["answered"]
        if not bool(answered.any()):
            return student_logits.sum() * 0.0  # budget spent: nothing to learn from this batch
        return F.cross_entropy(student_logits[answered], rel.labels[answered])

    def describe(self) -> dict:
        return {
            "mode": "ensemble",
            "mechanism": (f"GNMax noisy vote aggregation (PATE): Gaussian noise on the vote histogram of "
                          f"{self.num_teachers or 'n'} teachers trained on disjoint partitions of the private "
                          f"split; the noisy arg-max is released as a hard label"),
            "epsilon": self.epsilon,
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "num_teachers": self.num_teachers,
            "query_budget": self.max_queries,
            "queries_answered": self.answered,
            "l2_sensitivity": self.sensitivity,
            "noise_multiplier": self.noise_multiplier,
            "noise_std": self.noise_std,
            "calibration": ("Opacus RDP accountant (Renyi DP, Opacus's current RDP-to-(eps, delta) conversion, "
                            "Balle et al. 2020): each answered query a Gaussian release with q = 1, composed over "
                            "all queries answered; sigma calibrated for the query budget"),
            "composition": (f"RDP composition over the {self.answered:,} queries answered "
                            f"(budget {self.max_queries:,}; no answers after the budget)"),
            "neighbouring": "add/remove one private training record",
            "unit": "record",
            **self.noise.describe(),
        }


def make_mechanism(mode: str, epsilon: float = None, delta: float = None, noise_seed: int | None = None,
                   **options) -> Mechanism:
    """Build the mechanism for a noise mode (``none``, ``label``, ``rr``, ``data``).

    ``rr`` releases the teacher's top class (``answer="top1"``, :class:`SelectiveRR`, the default) or its
    ordered top two (``answer="top2"``, :class:`TopTwoRR`).

    The noise is secret unless ``noise_seed`` is given (an opt-in for lessons
    and tests: the noise is then derived from that seed, and the report says
    the ε does not hold against anyone who knows it).
    """
    if mode not in NOISE_MODES:
        raise DpsdError(f"unknown noise mode {mode!r}; choose one of {', '.join(NOISE_MODES)}")
    if mode == "none":
        return NoNoise()
    noise = NoiseSource.from_seed(noise_seed) if noise_seed is not None else NoiseSource.secret()
    if mode == "label":
        return LabelNoise(epsilon, delta, top_k=options.get("top_k", 2), noise=noise)
    if mode == "rr":
        check_delta(delta)  # δ is still validated: reports print it
        answer = options.get("answer", "top1")
        if answer not in RR_ANSWERS:
            raise DpsdError(f"unknown rr answer {answer!r}; choose one of {', '.join(RR_ANSWERS)}")
        if answer == "top2":
            return TopTwoRR(epsilon, num_classes=options.get("num_classes", 10), noise=noise)
        return SelectiveRR(epsilon, k_min=options.get("k_min", 2), noise=noise)
    return GradientNoise(epsilon, delta, clip_norm=options.get("clip_norm", 1.0), noise=noise)
