"""Mechanisms: each noise mode's release is checked against its closed form.

Expected values are computed here from first principles (closed forms, brute
force loops, autograd), not by calling the code under test a second time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import chisquare, norm

from dpsd_lite.errors import DpsdError
from dpsd_lite.mechanisms import (
    GradientNoise,
    LabelNoise,
    NoNoise,
    Release,
    SelectiveRR,
    TopTwoRR,
    make_mechanism,
    pair_from_index,
    pair_index,
    pair_rr_output_distribution,
    rr_output_distribution,
    select_rr_classes,
    top_k_mask,
)
from dpsd_lite.noise import NoiseSource

K = 10


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Big-ish tensor ops on a shared 2-core box: one thread avoids OpenMP spin contention."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def seeded(mech, seed):
    """The mechanism with reproducible noise (the explicit opt-in), so a statistical test is repeatable."""
    mech.noise = NoiseSource.from_seed(seed)
    return mech


def independent_sigma(eps, delta):
    """Analytic-Gaussian noise multiplier from the Balle & Wang closed form, solved here with scipy."""

    def d(sigma):
        mu = 1 / sigma
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps + norm.logcdf(-eps / mu - mu / 2)) - delta

    return brentq(d, 1e-3, 1e4, xtol=1e-13, rtol=1e-13)


def rr_closed_form(y, in_set, eps):
    """P(released = j | true label y) for selective RR on the class set ``in_set`` (list of bools)."""
    members = [j for j in range(len(in_set)) if in_set[j]]
    k = len(members)
    keep = math.exp(eps) / (math.exp(eps) + k - 1)
    p = np.zeros(len(in_set))
    if in_set[y]:
        for j in members:
            p[j] = keep if j == y else (1 - keep) / (k - 1)
    else:
        p[members] = 1.0 / k
    return p


def brute_force_k(prior_row, eps, k_min):
    """argmax over k >= k_min of (mass of the top-k) · e^ε/(e^ε + k − 1), first maximiser."""
    p = sorted(prior_row, reverse=True)
    best, best_k = -1.0, None
    for k in range(max(1, k_min), len(p) + 1):
        score = sum(p[:k]) * math.exp(eps) / (math.exp(eps) + k - 1)
        if score > best + 1e-12:
            best, best_k = score, k
    return best_k


PEAKED = torch.tensor([[0.35, 0.25, 0.2, 0.1, 0.04, 0.02, 0.02, 0.01, 0.005, 0.005]], dtype=torch.float64)


# --------------------------------------------------------------------------- class selection
def test_top_k_mask_marks_the_k_largest():
    prior = torch.tensor([[0.1, 0.5, 0.2, 0.05, 0.15], [0.3, 0.1, 0.25, 0.2, 0.15]])
    m = top_k_mask(prior, torch.tensor([2, 3]))
    assert m.tolist() == [[False, True, True, False, False], [True, False, True, True, False]]
    assert top_k_mask(prior, 1).sum(1).tolist() == [1, 1]


@pytest.mark.parametrize("eps", [0.5, 1.0, 3.0])
def test_select_rr_classes_uniform_prior_picks_all_classes(eps):
    prior = torch.full((4, K), 1.0 / K)
    for k_min in (1, 2, 5):
        mask, k = select_rr_classes(prior, eps, k_min=k_min)
        assert k.tolist() == [K] * 4
        assert mask.all()


def test_select_rr_classes_peaked_prior_picks_small_k_and_respects_k_min():
    prior = torch.tensor([[0.9] + [0.1 / 9] * 9])
    mask, k = select_rr_classes(prior, 1.0, k_min=1)
    assert k.item() == 1 and mask[0].tolist() == [True] + [False] * 9
    for k_min in (2, 3, 7):
        mask, k = select_rr_classes(prior, 1.0, k_min=k_min)
        assert k.item() == k_min
        assert mask.sum().item() == k_min and mask[0, 0]  # the prior's favourite is always in
    # k_min beyond K is clamped to K
    assert select_rr_classes(prior, 1.0, k_min=50)[1].item() == K


@pytest.mark.parametrize("eps", [0.3, 1.0, 2.0, 6.0])
@pytest.mark.parametrize("k_min", [1, 2, 4])
def test_select_rr_classes_matches_brute_force(eps, k_min):
    rng = np.random.default_rng(int(eps * 10) + k_min)
    alphas = [0.1, 0.5, 2.0]
    prior = np.concatenate([rng.dirichlet([a] * K, size=40) for a in alphas])
    mask, k = select_rr_classes(torch.tensor(prior), eps, k_min=k_min)
    for row in range(len(prior)):
        expected_k = brute_force_k(prior[row].tolist(), eps, k_min)
        assert k[row].item() == expected_k, (row, prior[row])
        top = set(np.argsort(-prior[row])[:expected_k].tolist())
        assert set(torch.nonzero(mask[row]).flatten().tolist()) == top


# --------------------------------------------------------------------------- selective RR
def _rr_case(y, eps=1.0, k_min=2, n=60_000, seed=0):
    mech = SelectiveRR(eps, k_min=k_min)
    prior = PEAKED.float().expand(n, K)
    logits = torch.zeros(n, K)
    logits[:, y] = 4.0
    rel = seeded(mech, seed).release(logits, prior=prior)
    return mech, rel


@pytest.mark.parametrize("y", [0, 2, 3, 9])
def test_selective_rr_empirical_distribution_matches_closed_form(y):
    eps = 1.0
    k_expected = brute_force_k(PEAKED[0].tolist(), eps, 2)
    assert k_expected == 3  # the case is built so that y = 0, 2 are inside the set and y = 3, 9 outside
    mech, rel = _rr_case(y, eps)
    in_set = [j < k_expected for j in range(K)]
    assert rel.mask[0].tolist() == in_set and (rel.extra["k"] == k_expected).all()
    expected = rr_closed_form(y, in_set, eps)
    counts = np.bincount(rel.labels.numpy(), minlength=K)
    n = counts.sum()
    assert counts[~np.array(in_set)].sum() == 0  # never a label outside the set
    support = expected > 0
    stat, pvalue = chisquare(counts[support], expected[support] * n)
    assert pvalue > 1e-4, (counts, expected * n)
    assert np.abs(counts / n - expected).max() < 0.01


def test_selective_rr_without_prior_is_plain_k_ary_rr():
    n, y, eps = 60_000, 6, 1.0
    logits = torch.randn(n, K, generator=gen(3))
    logits[:, y] = 20.0
    rel = seeded(SelectiveRR(eps), 4).release(logits, prior=None)
    assert rel.mask.all() and (rel.extra["k"] == K).all()
    freq = np.bincount(rel.labels.numpy(), minlength=K) / n
    keep = 0.231969  # MISSION §5: K = 10, ε = 1
    assert freq[y] == pytest.approx(keep, abs=0.006)
    others = np.delete(freq, y)
    assert np.allclose(others, (1 - keep) / 9, atol=0.006)


def test_selective_rr_is_reproducible_with_a_generator():
    _, a = _rr_case(2, n=500, seed=11)
    _, b = _rr_case(2, n=500, seed=11)
    _, c = _rr_case(2, n=500, seed=12)
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)


@pytest.mark.parametrize("eps", [0.1, 1.0, 3.0])
def test_rr_output_distribution_matches_closed_form(eps):
    rng = np.random.default_rng(0)
    prior = torch.tensor(rng.dirichlet([0.5] * K, size=30))
    mask, k = select_rr_classes(prior, eps, k_min=1)
    for y in range(K):
        w = rr_output_distribution(torch.full((30,), y), mask, k, eps)
        assert torch.allclose(w.sum(1), torch.ones(30, dtype=w.dtype), atol=1e-6)
        for row in range(30):
            expected = rr_closed_form(y, mask[row].tolist(), eps)
            assert np.allclose(w[row].double().numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("eps", [0.05, 0.5, 1.0, 2.0, 8.0])
@pytest.mark.parametrize("k_min", [1, 2, 3])
def test_selective_rr_is_eps_dp(eps, k_min):
    """For a fixed prior (so a fixed set), every output's likelihood ratio between true labels is ≤ e^ε."""
    rng = np.random.default_rng(1)
    priors = np.concatenate([rng.dirichlet([a] * K, size=10) for a in (0.1, 1.0, 10.0)])
    priors = np.vstack([priors, np.full(K, 1 / K)])
    # rr_output_distribution works in float64 without cancellation: the ratio is e^ε to float precision.
    bound = math.exp(eps) * (1 + 1e-9)
    for prior in priors:
        prior_t = torch.tensor(prior).expand(K, K)  # one row per candidate true label
        mask, k = select_rr_classes(prior_t, eps, k_min=k_min)
        P = rr_output_distribution(torch.arange(K), mask, k, eps).double()  # P[y, j] = P(j | y)
        for j in range(K):
            col = P[:, j]
            if (col == 0).all():
                continue  # output impossible whatever the truth
            assert (col > 0).all(), "an output possible under one label must be possible under all"
            assert (col.max() / col.min()).item() <= bound


def test_selective_rr_ratio_is_eps_to_float_precision_at_large_eps():
    eps = 8.0
    prior = torch.tensor([[0.6, 0.3, 0.1] + [0.0] * (K - 3)], dtype=torch.float64).expand(K, K)
    mask, k = select_rr_classes(prior, eps, k_min=2)
    P = rr_output_distribution(torch.arange(K), mask, k, eps).double()
    ratio = max((P[:, j].max() / P[:, j].min()).item() for j in range(K) if P[:, j].min() > 0)
    assert ratio <= math.exp(eps) * (1 + 1e-6)


def test_selective_rr_student_loss_is_forward_corrected_likelihood():
    eps = 1.3
    B = 24
    rng = np.random.default_rng(5)
    prior = torch.tensor(np.concatenate([rng.dirichlet([0.3] * K, size=B - 4), np.full((4, K), 1 / K)]),
                         dtype=torch.float32)
    mech = SelectiveRR(eps, k_min=1)
    teacher = torch.randn(B, K, generator=gen(1)) * 3
    rel = seeded(mech, 2).release(teacher, prior=prior)
    assert (rel.extra["k"] == 1).any() and (rel.extra["k"] > 1).any()  # both branches are exercised
    student = torch.randn(B, K, generator=gen(3), dtype=torch.float64) * 2
    q = student.softmax(1).numpy()
    total = 0.0
    for b in range(B):
        in_set = rel.mask[b].tolist()
        lik = sum(q[b, y] * rr_closed_form(y, in_set, eps)[rel.labels[b].item()] for y in range(K))
        total += -math.log(lik)
    got = mech.student_loss(student, rel).item()
    assert got == pytest.approx(total / B, rel=1e-6)


# --------------------------------------------------------------------------- top-two RR
def _all_pairs():
    a, b = torch.arange(K).repeat_interleave(K), torch.arange(K).repeat(K)
    keep = a != b
    return a[keep], b[keep]


def test_pair_index_is_a_bijection_onto_the_ordered_pairs():
    a, b = _all_pairs()
    idx = pair_index(a, b, K)
    assert sorted(idx.tolist()) == list(range(K * (K - 1)))
    first, second = pair_from_index(idx, K)
    assert torch.equal(first, a) and torch.equal(second, b)


@pytest.mark.parametrize("eps", [0.05, 1.0, 5.0, 10.0, 30.0])
def test_top_two_rr_is_eps_dp_for_every_pair_of_teacher_answers(eps):
    """P(output | true pair) for all 90 × 90 cases: every ratio between two true pairs is at most e^ε, and the
    largest is e^ε (the calibration is tight), to float64 precision."""
    N = K * (K - 1)
    P = pair_rr_output_distribution(torch.arange(N), N, eps)  # P[i, j] = P(release j | true pair i)
    assert torch.allclose(P.sum(1), torch.ones(N, dtype=torch.float64), atol=1e-12)
    assert (P > 0).all()
    ratio = (P.max(0).values / P.min(0).values).max().item()
    assert ratio <= math.exp(eps) * (1 + 1e-9)
    assert ratio == pytest.approx(math.exp(eps), rel=1e-9)
    assert P[0, 0].item() == pytest.approx(math.exp(eps) / (math.exp(eps) + N - 1), rel=1e-12)


@pytest.mark.parametrize("true_pair", [(0, 1), (7, 3), (9, 8)])
def test_top_two_rr_empirical_distribution_matches_closed_form(true_pair):
    """The sampler draws from the closed form: the true pair at e^ε/(e^ε+89), each other pair uniformly."""
    eps, n, N = 5.0, 90_000, K * (K - 1)
    a, b = true_pair
    logits = torch.randn(n, K, generator=gen(7))
    logits[:, a], logits[:, b] = 30.0, 20.0  # the teacher's top two, in this order
    rel = seeded(TopTwoRR(eps), 8).release(logits)
    assert (rel.labels != rel.extra["second"]).all()
    counts = np.bincount(pair_index(rel.labels, rel.extra["second"], K).numpy(), minlength=N)
    true = pair_index(torch.tensor(a), torch.tensor(b), K).item()
    expected = pair_rr_output_distribution(torch.tensor([true]), N, eps)[0].numpy()
    assert chisquare(counts, expected * n).pvalue > 1e-4
    assert counts[true] / n == pytest.approx(0.6251, abs=0.006)  # e^5 / (e^5 + 89)


def test_top_two_rr_reads_only_the_order_of_the_top_two():
    """Any change to the logits that keeps each row's first and second class keeps the release (same noise)."""
    logits = torch.randn(2000, K, generator=gen(9)) * 3
    top = logits.topk(3, dim=1)
    moved = logits.clone()
    rows = torch.arange(len(logits))
    moved[rows, top.indices[:, 2]] = top.values[:, 2] - 5.0  # the third class and below may change freely
    moved = 0.5 * moved + torch.randn(len(logits), 1, generator=gen(10))  # and the scale and offset of each row
    a = seeded(TopTwoRR(3.0), 1).release(logits)
    b = seeded(TopTwoRR(3.0), 1).release(moved)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.extra["second"], b.extra["second"])
    swapped = logits.clone()
    swapped[rows, top.indices[:, 1]], swapped[rows, top.indices[:, 2]] = top.values[:, 2], top.values[:, 1]
    c = seeded(TopTwoRR(30.0), 1).release(swapped)  # control: another second class shows (ε = 30 keeps it)
    assert (c.extra["second"] == top.indices[:, 2]).float().mean() > 0.99


@pytest.mark.parametrize("eps", [0.5, 5.0, 12.0])
def test_top_two_rr_student_loss_is_the_pairs_forward_corrected_likelihood(eps):
    """−log P(release) with the student's chance of each ordered pair p_a·p_b/(1−p_a), summed over all 90."""
    B, N = 16, K * (K - 1)
    mech = TopTwoRR(eps)
    rel = seeded(mech, 4).release(torch.randn(B, K, generator=gen(2)) * 3)
    student = torch.randn(B, K, generator=gen(5), dtype=torch.float64) * 2
    p = student.softmax(1).numpy()
    channel = pair_rr_output_distribution(torch.arange(N), N, eps).numpy()  # [true pair, released pair]
    a_all, b_all = (t.numpy() for t in _all_pairs())
    pair_prob = p[:, a_all] * p[:, b_all] / (1 - p[:, a_all])  # B × 90, index order of pair_index
    assert np.allclose(pair_prob.sum(1), 1.0)
    released = pair_index(rel.labels, rel.extra["second"], K).numpy()
    expected = -np.mean(np.log((pair_prob * channel[:, released].T).sum(1)))
    assert mech.student_loss(student, rel).item() == pytest.approx(expected, rel=1e-9)


def test_top_two_rr_student_loss_trains_the_students_second_choice():
    """At large ε a student trained on the releases ranks the teacher's first and second class first and second."""
    torch.manual_seed(0)
    teacher = torch.randn(256, K, generator=gen(11)) * 3
    mech = seeded(TopTwoRR(12.0), 3)
    student = torch.zeros(256, K, requires_grad=True)
    opt = torch.optim.Adam([student], lr=0.1)
    for _ in range(300):
        loss = mech.student_loss(student, mech.release(teacher))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(student.topk(2, 1).indices, teacher.topk(2, 1).indices)


def test_top_two_rr_rejects_a_teacher_of_another_width():
    with pytest.raises(DpsdError, match="10 classes"):
        TopTwoRR(1.0).release(torch.randn(4, 3))
    with pytest.raises(DpsdError, match="2 classes"):
        TopTwoRR(1.0, num_classes=1)


# --------------------------------------------------------------------------- label noise
def test_label_noise_std_is_analytic_sigma_times_sqrt2():
    for eps, delta in [(1.0, 1e-5), (10.0, 1e-5), (0.3, 1e-6)]:
        mech = LabelNoise(eps, delta, top_k=3)
        sigma = independent_sigma(eps, delta)
        assert mech.noise_multiplier == pytest.approx(sigma, rel=1e-6)
        assert mech.noise_std == pytest.approx(sigma * math.sqrt(2), rel=1e-6)
        assert mech.sensitivity == pytest.approx(math.sqrt(2))


def test_label_noise_restricted_vector_and_mask_before_noise():
    mech = LabelNoise(1.0, 1e-5, top_k=3)
    mech.noise_std = 0.0  # look at the vector the noise is added to
    teacher = torch.randn(50, K, generator=gen(0)) * 3
    prior = torch.rand(50, K, generator=gen(1))
    prior = prior / prior.sum(1, keepdim=True)
    rel = seeded(mech, 2).release(teacher, prior=prior)
    top3 = prior.argsort(1, descending=True)[:, :3]
    expected_mask = torch.zeros(50, K, dtype=torch.bool).scatter_(1, top3, True)
    assert torch.equal(rel.mask, expected_mask)
    p = teacher.softmax(1)
    expected = torch.where(expected_mask, p, torch.zeros_like(p))
    expected = expected / expected.sum(1, keepdim=True)
    assert torch.allclose(rel.values, expected, atol=1e-6)
    assert torch.allclose(rel.values.sum(1), torch.ones(50), atol=1e-6)
    # hard labels derived from the release stay inside the mask
    assert rel.mask[torch.arange(50), rel.hard_labels].all()


def test_label_noise_empirical_noise_matches_calibration():
    eps, delta, n = 1.0, 1e-5, 20_000
    mech = LabelNoise(eps, delta, top_k=3)
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0, 3.0, -2.0, 0.1, 0.2, 0.3]]).expand(n, K)
    prior = PEAKED.float().expand(n, K)  # top-3 = classes 0, 1, 2
    rel = seeded(mech, 7).release(logits, prior=prior)
    inside = torch.tensor([True, True, True] + [False] * 7)
    assert (rel.values[:, ~inside] == 0).all()  # nothing released outside the mask
    p = logits[0].softmax(0)[inside]
    clean = p / p.sum()
    resid = rel.values[:, inside] - clean
    sigma_std = independent_sigma(eps, delta) * math.sqrt(2)
    assert resid.std().item() == pytest.approx(sigma_std, rel=0.02)
    assert resid.mean(0).abs().max().item() < 5 * sigma_std / math.sqrt(n)
    # the three coordinates get independent noise
    corr = np.corrcoef(resid.numpy().T)
    assert np.abs(corr - np.eye(3)).max() < 0.05


def test_label_noise_without_prior_uses_every_class():
    mech = LabelNoise(2.0, 1e-5, top_k=2)
    mech.noise_std = 0.0
    t = torch.randn(8, K, generator=gen(0))
    rel = seeded(mech, 1).release(t, prior=None)
    assert rel.mask.all()
    assert torch.allclose(rel.values, t.softmax(1), atol=1e-6)


def test_label_noise_sensitivity_bound_holds():
    """Two restricted, renormalised answers on the same mask are at most √2 apart (worst case attained)."""
    mech = LabelNoise(1.0, 1e-5, top_k=4)
    mech.noise_std = 0.0
    prior = PEAKED.float().expand(2, K)
    worst = torch.full((2, K), -50.0)
    worst[0, 0], worst[1, 1] = 50.0, 50.0  # teacher sure of different classes inside the set
    rel = mech.release(worst, prior=prior)
    assert (rel.values[0] - rel.values[1]).norm().item() == pytest.approx(math.sqrt(2), abs=1e-5)
    rnd = mech.release(torch.randn(400, K, generator=gen(0)) * 5, prior=PEAKED.float().expand(400, K))
    d = torch.cdist(rnd.values, rnd.values)
    assert d.max().item() <= math.sqrt(2) + 1e-5


# --------------------------------------------------------------------------- gradient noise
def test_gradient_noise_calibration_and_normalised_gradient():
    C = 0.7
    mech = GradientNoise(1.0, 1e-5, clip_norm=C)
    sigma = independent_sigma(1.0, 1e-5)
    assert mech.sensitivity == pytest.approx(2 * C)
    assert mech.noise_std == pytest.approx(sigma * 2 * C, rel=1e-6)
    mech.noise_std = 0.0
    t = torch.randn(64, K, generator=gen(0)) * 3
    s = torch.randn(64, K, generator=gen(1))
    rel = seeded(mech, 2).release(t, student_logits=s)
    assert torch.allclose(rel.values.norm(dim=1), torch.full((64,), C), atol=1e-5)
    direction = s.softmax(1) - t.softmax(1)
    direction = direction / direction.norm(dim=1, keepdim=True)
    assert torch.allclose(rel.values, C * direction, atol=1e-5)


def test_gradient_noise_zero_gradient_stays_zero():
    mech = GradientNoise(1.0, 1e-5)
    mech.noise_std = 0.0
    t = torch.randn(5, K, generator=gen(0))
    rel = seeded(mech, 1).release(t, student_logits=t.clone())
    assert torch.isfinite(rel.values).all() and rel.values.abs().max().item() < 1e-6


def test_gradient_noise_empirical_std():
    C, n = 1.0, 10_000
    mech = GradientNoise(2.0, 1e-5, clip_norm=C)
    t = torch.randn(1, K, generator=gen(0)).expand(n, K)
    s = torch.randn(1, K, generator=gen(1)).expand(n, K)
    rel = seeded(mech, 2).release(t, student_logits=s)
    clean = s[0].softmax(0) - t[0].softmax(0)
    clean = C * clean / clean.norm()
    resid = rel.values - clean
    expected = independent_sigma(2.0, 1e-5) * 2 * C
    assert resid.std().item() == pytest.approx(expected, rel=0.02)
    assert resid.mean(0).abs().max().item() < 5 * expected / math.sqrt(n)


def test_gradient_noise_surrogate_loss_backpropagates_the_release():
    B = 16
    mech = GradientNoise(1.0, 1e-5, clip_norm=1.0)
    t = torch.randn(B, K, generator=gen(0))
    s = torch.randn(B, K, generator=gen(1), requires_grad=True)
    rel = seeded(mech, 2).release(t, student_logits=s.detach())
    assert not rel.values.requires_grad
    (grad,) = torch.autograd.grad(mech.student_loss(s, rel), s)
    assert torch.allclose(grad, rel.values / B, atol=1e-7)


def test_gradient_noise_needs_student_logits():
    with pytest.raises(ValueError):
        GradientNoise(1.0, 1e-5).release(torch.randn(2, K))


# --------------------------------------------------------------------------- no noise
def test_no_noise_releases_raw_logits_and_the_student_learns_their_softmax():
    mech = NoNoise()
    assert mech.private is False
    t = torch.randn(6, K, requires_grad=True)
    rel = mech.release(t)
    assert torch.equal(rel.values, t.detach()) and not rel.values.requires_grad
    s = torch.randn(6, K)
    # the cross-entropy to the teacher's probabilities: its KL divergence plus the teacher's entropy
    kl = torch.nn.functional.kl_div(s.log_softmax(1), t.detach().log_softmax(1), log_target=True,
                                    reduction="batchmean")
    entropy = -(t.detach().softmax(1) * t.detach().log_softmax(1)).sum(1).mean()
    assert mech.student_loss(s, rel).item() == pytest.approx((kl + entropy).item(), rel=1e-5)
    # smallest where the student's probabilities are the teacher's
    assert mech.student_loss(t.detach(), rel) < mech.student_loss(s, rel)
    assert rel.hard_labels.tolist() == t.argmax(1).tolist()


def test_private_modes_are_flagged_private():
    assert all(m.private for m in (LabelNoise(1, 1e-5), SelectiveRR(1), TopTwoRR(1), GradientNoise(1, 1e-5)))


# --------------------------------------------------------------------------- factory
def test_make_mechanism_builds_each_mode_with_options():
    assert isinstance(make_mechanism("none"), NoNoise)
    lab = make_mechanism("label", 2.0, 1e-5, top_k=4)
    assert isinstance(lab, LabelNoise) and lab.top_k == 4 and lab.epsilon == 2.0
    rr = make_mechanism("rr", 2.0, 1e-5, k_min=3)
    assert isinstance(rr, SelectiveRR) and rr.k_min == 3
    two = make_mechanism("rr", 2.0, 1e-5, answer="top2", num_classes=4)
    assert isinstance(two, TopTwoRR) and two.num_pairs == 12 and two.describe()["delta"] == 0.0
    assert two.keep_probability == pytest.approx(math.exp(2) / (math.exp(2) + 11))
    with pytest.raises(DpsdError, match="unknown rr answer"):
        make_mechanism("rr", 2.0, 1e-5, answer="top3")
    assert rr.describe()["delta"] == 0.0  # pure ε-DP
    dat = make_mechanism("data", 2.0, 1e-5, clip_norm=0.5)
    assert isinstance(dat, GradientNoise) and dat.clip_norm == 0.5 and dat.sensitivity == 1.0


@pytest.mark.parametrize("mode", ["gaussian", "", None, "RR", "Label", "dp-sgd"])
def test_make_mechanism_rejects_unknown_modes(mode):
    with pytest.raises(DpsdError, match="noise mode"):
        make_mechanism(mode, 1.0, 1e-5)


@pytest.mark.parametrize("mode", ["label", "rr", "data"])
@pytest.mark.parametrize("eps", [0, -1, float("nan"), float("inf"), "abc", None])
def test_make_mechanism_rejects_bad_epsilon(mode, eps):
    with pytest.raises(DpsdError, match="epsilon"):
        make_mechanism(mode, eps, 1e-5)


@pytest.mark.parametrize("mode", ["label", "rr", "data"])
@pytest.mark.parametrize("delta", [0, -1e-5, 1, 2.0, float("nan"), "abc", None])
def test_make_mechanism_rejects_bad_delta(mode, delta):
    with pytest.raises(DpsdError, match="delta"):
        make_mechanism(mode, 1.0, delta)


@pytest.mark.parametrize("mode,opts", [("label", {"top_k": 0}), ("rr", {"k_min": 0}), ("data", {"clip_norm": 0.0}),
                                       ("data", {"clip_norm": -1.0}), ("data", {"clip_norm": float("nan")})])
def test_make_mechanism_rejects_bad_options(mode, opts):
    with pytest.raises(DpsdError):
        make_mechanism(mode, 1.0, 1e-5, **opts)


def test_release_hard_labels_respect_mask():
    vals = torch.tensor([[5.0, 1.0, 0.0], [0.2, 0.1, 9.0]])
    mask = torch.tensor([[False, True, True], [True, True, False]])
    assert Release("label", mask=mask, values=vals).hard_labels.tolist() == [1, 0]
