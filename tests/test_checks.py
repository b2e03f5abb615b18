"""The assignment self-checks: each passes the reference solution and fails typical wrong answers by name.

The reference solutions below are the instructor solutions of the assignment
notebooks (notebooks/assignments/source); where the package has the same
function (accounting.py, mechanisms.py) the check must accept that too.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from dpsd_lite import checks
from dpsd_lite.accounting import (
    classic_gaussian_noise_multiplier,
    composed_epsilon,
    gaussian_delta,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    rr_keep_probability,
)
from dpsd_lite.mechanisms import LabelNoise, SelectiveRR, select_rr_classes


@pytest.fixture(autouse=True)
def _not_strict(monkeypatch):
    monkeypatch.delenv("DPSD_STRICT_CHECKS", raising=False)


def expect_fail(result, mistake, *phrases):
    assert not result, result.message
    assert result.mistake == mistake, (result.mistake, result.message)
    for phrase in phrases:
        assert phrase in result.message, (phrase, result.message)


# ---------------------------------------------------------------- references (instructor solutions)

def keep_probability(epsilon, k):
    return math.exp(epsilon) / (math.exp(epsilon) + k - 1)


def randomized_response(labels, epsilon, num_classes, generator=None):
    keep = torch.rand(labels.shape, generator=generator) < keep_probability(epsilon, num_classes)
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)  # a uniform *other* class
    return torch.where(keep, labels, (labels + shift) % num_classes)


def choose_k(prior, epsilon):
    K = prior.shape[1]
    mass = prior.sort(dim=1, descending=True).values.cumsum(dim=1)
    keep = torch.tensor([keep_probability(epsilon, k) for k in range(1, K + 1)])
    return (mass * keep).argmax(dim=1) + 1


def selective_rr(labels, prior, epsilon, generator=None, _keep=keep_probability, _exclude_true=True):
    B, K = prior.shape
    k = choose_k(prior, epsilon)
    in_set = prior.argsort(dim=1, descending=True).argsort(dim=1) < k.view(-1, 1)
    rows = torch.arange(B)
    weights = in_set.float()
    if _exclude_true:
        weights[rows, labels] = 0.0
    empty = weights.sum(1) == 0  # k = 1 and the label is the set: nothing else to answer
    weights[empty, labels[empty]] = 1.0
    replacement = torch.multinomial(weights, 1, generator=generator).view(-1)
    keep = torch.tensor([_keep(epsilon, kk) for kk in range(K + 1)])[k]
    kept = in_set[rows, labels] & (torch.rand(B, generator=generator) < keep)
    return torch.where(kept, labels, replacement)


def gaussian_delta_ref(sigma, epsilon):
    from scipy.stats import norm

    mu = 1.0 / sigma
    return norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * norm.cdf(-epsilon / mu - mu / 2)


def calibrate_sigma(epsilon, delta):
    lo, hi = 1e-3, 1e3
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gaussian_delta_ref(mid, epsilon) > delta else (lo, mid)
    return hi


def epsilon_after(sigma, steps, delta):
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(sigma, 1.0, steps)]
    return acc.get_epsilon(delta=delta)


def generator_loss(student, generator, z, c):
    student.requires_grad_(False)
    try:
        return F.cross_entropy(student(generator(z, c)), c)
    finally:
        student.requires_grad_(True)


def generator_step(student, generator, optimizer, z, c):
    optimizer.zero_grad()
    loss = generator_loss(student, generator, z, c)
    loss.backward()
    optimizer.step()
    return loss.item()


def smallest_epsilon(rows, fraction):
    reference = next(r["student_accuracy"] for r in rows if r["noise_mode"] == "none")
    good = [r["epsilon"] for r in rows if r["noise_mode"] != "none" and r["student_accuracy"] >= fraction * reference]
    return min(good) if good else None


def epsilon_lower_bound(tpr, fpr, delta=0.0):
    best = 0.0
    for num, den in ((tpr - delta, fpr), (1 - fpr - delta, 1 - tpr)):
        if num > 0:
            best = max(best, math.inf if den == 0 else math.log(num / den))
    return best


# ---------------------------------------------------------------- assignment 1

def test_keep_probability_passes_reference_and_library():
    assert checks.check_rr_keep_probability(keep_probability)
    assert checks.check_rr_keep_probability(rr_keep_probability)


def test_keep_probability_overflow_tip_but_passes(capsys):
    assert checks.check_rr_keep_probability(keep_probability)
    assert "overflows" in capsys.readouterr().out  # math.exp(800) overflows: a tip, not a failure


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (lambda e, k: math.exp(e) / (math.exp(e) + k), "denominator_k", "k−1 *other* answers"),
    (lambda e, k: math.exp(e) / (1 + math.exp(e)), "binary", "binary RR"),
    (lambda e, k: 1 / (1 + (k - 1) * math.exp(e)), "inverted", "falls* as ε grows"),
    (lambda e, k: e / (e + k - 1), "no_exp", "needs e^ε"),
    (lambda e, k: 1 / (math.exp(e) + k - 1), "other_answer", "one particular *other* answer"),
])
def test_keep_probability_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_rr_keep_probability(wrong, verbose=False), mistake, phrase)


def test_keep_probability_reports_learner_exception():
    def broken(e, k):
        return 1 / 0

    expect_fail(checks.check_rr_keep_probability(broken, verbose=False), "raised", "ZeroDivisionError")


def test_not_implemented_propagates_with_a_note(capsys):
    def todo(e, k):
        raise NotImplementedError("Exercise 1.1")

    with pytest.raises(NotImplementedError):
        checks.check_rr_keep_probability(todo)
    assert "not written yet" in capsys.readouterr().out


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv("DPSD_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="k−1"):
        checks.check_rr_keep_probability(lambda e, k: math.exp(e) / (math.exp(e) + k), verbose=False)


def _noise_from(generator):
    """The library's mechanisms own their noise source: a reproducible one derived from the check's generator."""
    from dpsd_lite.noise import NoiseSource

    return NoiseSource.from_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))


def library_rr(labels, epsilon, num_classes, generator=None):
    logits = F.one_hot(labels, num_classes).float()
    return SelectiveRR(epsilon, k_min=num_classes, noise=_noise_from(generator)).release(logits).labels


def test_randomized_response_passes_reference_and_library():
    assert checks.check_randomized_response(randomized_response)
    assert checks.check_randomized_response(library_rr)


def test_randomized_response_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks.check_randomized_response(randomized_response, verbose=False)
    assert torch.equal(torch.rand(3), expected)


def rr_replacement_from_all(labels, epsilon, num_classes, generator=None):
    keep = torch.rand(labels.shape, generator=generator) < keep_probability(epsilon, num_classes)
    return torch.where(keep, labels, torch.randint(0, num_classes, labels.shape, generator=generator))


def rr_k_denominator(labels, epsilon, num_classes, generator=None):
    p = math.exp(epsilon) / (math.exp(epsilon) + num_classes)
    keep = torch.rand(labels.shape, generator=generator) < p
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return torch.where(keep, labels, (labels + shift) % num_classes)


def rr_next_class(labels, epsilon, num_classes, generator=None):
    keep = torch.rand(labels.shape, generator=generator) < keep_probability(epsilon, num_classes)
    return torch.where(keep, labels, (labels + 1) % num_classes)


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (rr_replacement_from_all, "replacement_includes_true", "K−1 *other* classes"),
    (rr_k_denominator, "denominator_k", "K−1 *other* answers"),
    (lambda labels, e, K, generator=None: labels.clone(), "no_noise", "unchanged"),
    (rr_next_class, "not_uniform", "uniform over the K−1"),
    (lambda labels, e, K, generator=None: torch.randint(0, K, labels.shape), "uniform", "chance rate"),
    (lambda labels, e, K, generator=None: labels.float() / K, "bad_output", "non-integer"),
])
def test_randomized_response_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_randomized_response(wrong, verbose=False), mistake, phrase)


def test_choose_k_passes_reference_and_library():
    assert checks.check_choose_k(choose_k)
    assert checks.check_choose_k(lambda prior, eps: select_rr_classes(prior, eps, k_min=1)[1])


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (lambda prior, eps: torch.full((prior.shape[0],), prior.shape[1]), "always_K", "ignores the prior"),
    (lambda prior, eps: torch.ones(prior.shape[0], dtype=torch.long), "always_1", "self-training"),
    (lambda prior, eps: choose_k(prior, eps) - 1, "off_by_one", "+ 1"),
    (lambda prior, eps: (prior.cumsum(1) * torch.tensor([keep_probability(eps, k) for k in range(1, 11)])).argmax(1) + 1,
     "unsorted", "decreasing order"),
    (lambda prior, eps: torch.tensor(3), "one_k", "its own k"),
])
def test_choose_k_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_choose_k(wrong, verbose=False), mistake, phrase)


def library_selective_rr(labels, prior, epsilon, generator=None):
    logits = F.one_hot(labels, prior.shape[1]).float()
    return SelectiveRR(epsilon, k_min=1, noise=_noise_from(generator)).release(logits, prior=prior).labels


def test_selective_rr_passes_reference_and_library():
    assert checks.check_selective_rr(selective_rr)
    assert checks.check_selective_rr(library_selective_rr)


def srr_leaks_outside(labels, prior, epsilon, generator=None):
    out = selective_rr(labels, prior, epsilon, generator)
    k = choose_k(prior, epsilon)
    in_set = prior.argsort(dim=1, descending=True).argsort(dim=1) < k.view(-1, 1)
    return torch.where(in_set[torch.arange(len(labels)), labels], out, labels)


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (srr_leaks_outside, "leak_outside", "reveals it exactly"),
    (lambda y, prior, e, generator=None: randomized_response(y, e, prior.shape[1], generator), "ignores_prior",
     "ignore the prior"),
    (lambda y, prior, e, generator=None: selective_rr(y, prior, e, generator, _keep=lambda eps, k: keep_probability(eps, 10)),
     "keep_with_K", "use e^ε/(e^ε+k−1)"),
    (lambda y, prior, e, generator=None: selective_rr(y, prior, e, generator, _exclude_true=False),
     "replacement_includes_true", "k−1 *other* members"),
])
def test_selective_rr_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_selective_rr(wrong, verbose=False), mistake, phrase)


# ---------------------------------------------------------------- assignment 2

def test_gaussian_delta_passes_reference_and_library():
    assert checks.check_gaussian_delta(gaussian_delta_ref)
    assert checks.check_gaussian_delta(gaussian_delta)


def _delta(mu_of_sigma, sign=-1.0, with_exp=True):
    from scipy.stats import norm

    def f(sigma, epsilon):
        mu = mu_of_sigma(sigma)
        factor = math.exp(epsilon) if with_exp else 1.0
        return norm.cdf(-epsilon / mu + mu / 2) + sign * factor * norm.cdf(-epsilon / mu - mu / 2)

    return f


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (_delta(lambda s: 1 / s, with_exp=False), "no_exp", "factor e^ε"),
    (_delta(lambda s: s), "mu_is_sigma", "μ = 1/σ"),
    (_delta(lambda s: 1 / s, sign=+1.0), "plus_sign", "*subtracted*"),
])
def test_gaussian_delta_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_gaussian_delta(wrong, verbose=False), mistake, phrase)


def test_gaussian_sigma_passes_reference_and_library():
    assert checks.check_gaussian_sigma(calibrate_sigma)
    assert checks.check_gaussian_sigma(gaussian_noise_multiplier)


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (classic_gaussian_noise_multiplier, "classic", "valid only for"),
    (lambda e, d: e * math.sqrt(2 * math.log(1.25 / d)), "scales_with_eps", "noise must scale with 1/ε"),
    (lambda e, d: gaussian_noise_multiplier(e, 1e-5) * (1 + math.log10(d / 1e-5)), "delta_direction", "smaller δ"),
    (lambda e, d: 0.9 * gaussian_noise_multiplier(e, d), "too_small", "not ("),
    (lambda e, d: 1.1 * gaussian_noise_multiplier(e, d), "too_large", "wasteful"),
    (lambda e, d: -1.0, "not_positive", "positive"),
])
def test_gaussian_sigma_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_gaussian_sigma(wrong, verbose=False), mistake, phrase)


def test_classic_message_is_the_one_the_issue_asks_for():
    r = checks.check_gaussian_sigma(classic_gaussian_noise_multiplier, verbose=False)
    assert "classic formula" in r.message and "ε < 1" in r.message


def test_label_noise_std():
    assert checks.check_label_noise_std(lambda e, d: calibrate_sigma(e, d) * math.sqrt(2))
    assert checks.check_label_noise_std(lambda e, d: LabelNoise(e, d).noise_std)
    expect_fail(checks.check_label_noise_std(calibrate_sigma, verbose=False), "no_sensitivity", "√2")
    expect_fail(checks.check_label_noise_std(lambda e, d: 2 * calibrate_sigma(e, d), verbose=False),
                "sensitivity_squared", "Δ² = 2")
    expect_fail(checks.check_label_noise_std(lambda e, d: calibrate_sigma(e, d) / math.sqrt(2), verbose=False),
                "sensitivity_divided", "divided")


def test_composed_epsilon_accepts_rdp_and_exact():
    assert checks.check_composed_epsilon(epsilon_after)
    assert checks.check_composed_epsilon(lambda s, t, d: composed_epsilon(s, 1.0, t, d))
    assert checks.check_composed_epsilon(lambda s, t, d: gaussian_epsilon(s / math.sqrt(t), d))


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (lambda s, t, d: t * gaussian_epsilon(s, d), "linear", "composed linearly"),
    (lambda s, t, d: math.sqrt(t) * gaussian_epsilon(s, d), "sqrt_t", "overclaim"),
    (lambda s, t, d: gaussian_epsilon(s, d), "ignores_steps", "does not change"),
])
def test_composed_epsilon_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_composed_epsilon(wrong, verbose=False), mistake, phrase)


# ---------------------------------------------------------------- assignment 3

def test_generator_loss_passes_reference():
    assert checks.check_generator_loss(generator_loss)


def loss_detached(student, generator, z, c):
    student.requires_grad_(False)
    try:
        return F.cross_entropy(student(generator(z, c).detach()), c)
    finally:
        student.requires_grad_(True)


def loss_not_frozen(student, generator, z, c):
    return F.cross_entropy(student(generator(z, c)), c)


def loss_left_frozen(student, generator, z, c):
    student.requires_grad_(False)
    return F.cross_entropy(student(generator(z, c)), c)


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (loss_detached, "no_generator_grad", "detach"),
    (loss_not_frozen, "student_grads", "freeze the student"),
    (loss_left_frozen, "left_frozen", "left the student frozen"),
    (lambda s, g, z, c: -generator_loss(s, g, z, c), "sign", "opposite sign"),
    (lambda s, g, z, c: generator_loss(s, g, z, c) * len(c), "sum", "mean"),
    (lambda s, g, z, c: F.nll_loss(s(g(z, c)), c), "nll_on_logits", "log_softmax"),
    (lambda s, g, z, c: generator_loss(s, g, z, c).item(), "not_a_tensor", "tensor"),
])
def test_generator_loss_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_generator_loss(wrong, verbose=False), mistake, phrase)


def test_generator_step_passes_reference():
    assert checks.check_generator_step(generator_step)


def step_no_zero_grad(student, generator, optimizer, z, c):
    loss = generator_loss(student, generator, z, c)
    loss.backward()
    optimizer.step()
    return loss.item()


def step_no_step(student, generator, optimizer, z, c):
    optimizer.zero_grad()
    loss = generator_loss(student, generator, z, c)
    loss.backward()
    return loss.item()


def step_ascent(student, generator, optimizer, z, c):
    optimizer.zero_grad()
    loss = -generator_loss(student, generator, z, c)
    loss.backward()
    optimizer.step()
    return -loss.item()


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (step_no_zero_grad, "no_zero_grad", "zero_grad"),
    (step_no_step, "no_step", "optimizer.step()"),
    (step_ascent, "ascent", "uphill"),
])
def test_generator_step_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_generator_step(wrong, verbose=False), mistake, phrase)


def test_generator_checks_leave_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    checks.check_generator_loss(generator_loss, verbose=False)
    assert torch.equal(torch.rand(2), expected)


# ---------------------------------------------------------------- assignment 4

def _rows(eps_acc, none_acc=0.95, mode="rr"):
    rows = [{"noise_mode": mode, "epsilon": e, "student_accuracy": a, "teacher_accuracy": 0.97} for e, a in eps_acc]
    if none_acc is not None:
        rows.append({"noise_mode": "none", "epsilon": math.inf, "student_accuracy": none_acc, "teacher_accuracy": 0.97})
    return rows


def test_check_sweep():
    good = _rows([(1, 0.3), (4, 0.6), (10, 0.8)])
    assert checks.check_sweep(good, [1, 4, 10])
    expect_fail(checks.check_sweep(_rows([(10, 0.3), (10, 0.6), (10, 0.8)]), [1, 4, 10], verbose=False),
                "same_epsilon", "epsilon=eps")
    expect_fail(checks.check_sweep(_rows([(1, 30.0), (4, 60.0), (10, 80.0)], 95.0), [1, 4, 10], verbose=False),
                "percent", "fractions")
    expect_fail(checks.check_sweep(_rows([(1, 0.3), (4, 0.6), (10, 0.8)], None), [1, 4, 10], verbose=False),
                "no_reference", "'none'")
    expect_fail(checks.check_sweep(_rows([(1, 0.3), (10, 0.8)]), [1, 4, 10], verbose=False), "missing_epsilon", "4")


def test_smallest_epsilon():
    assert checks.check_smallest_epsilon(smallest_epsilon)

    def first_in_list(rows, fraction):
        ref = next(r["student_accuracy"] for r in rows if r["noise_mode"] == "none")
        return next((r["epsilon"] for r in rows if r["noise_mode"] != "none"
                     and r["student_accuracy"] >= fraction * ref), None)

    def counts_none(rows, fraction):
        ref = next(r["student_accuracy"] for r in rows if r["noise_mode"] == "none")
        return min((r["epsilon"] for r in rows if r["student_accuracy"] >= fraction * ref), default=None)

    def vs_teacher(rows, fraction):
        good = [r["epsilon"] for r in rows if r["noise_mode"] != "none"
                and r["student_accuracy"] >= fraction * r["teacher_accuracy"]]
        return min(good) if good else None

    expect_fail(checks.check_smallest_epsilon(first_in_list, verbose=False), "unsorted", "sort by ε")
    expect_fail(checks.check_smallest_epsilon(counts_none, verbose=False), "counts_none", "return None")
    expect_fail(checks.check_smallest_epsilon(vs_teacher, verbose=False), "teacher_reference", "non-private student")


def test_epsilon_lower_bound_passes_reference():
    assert checks.check_epsilon_lower_bound(epsilon_lower_bound)
    assert checks.check_epsilon_lower_bound(checks.reference_epsilon_lower_bound)


def lb_one_sided(tpr, fpr, delta=0.0):
    if fpr == 0:
        return math.inf
    return max(0.0, math.log((tpr - delta) / fpr)) if tpr > delta else 0.0


def lb_no_clip(tpr, fpr, delta=0.0):
    a = math.inf if fpr == 0 else math.log((tpr - delta) / fpr)
    b = math.log((1 - fpr - delta) / (1 - tpr))
    return max(a, b)


def lb_no_delta(tpr, fpr, delta=0.0):
    return epsilon_lower_bound(tpr, fpr, 0.0)


def lb_divides(tpr, fpr, delta=0.0):
    return max(0.0, math.log((tpr - delta) / fpr), math.log((1 - fpr - delta) / (1 - tpr)))


def lb_log10(tpr, fpr, delta=0.0):
    return epsilon_lower_bound(tpr, fpr, delta) / math.log(10)


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (lb_one_sided, "one_sided", "both sides"),
    (lb_no_clip, "negative", "Clip at 0"),
    (lb_no_delta, "no_delta", "subtract δ"),
    (lb_divides, "fpr_zero", "math.inf"),
    (lb_log10, "log10", "natural log"),
])
def test_epsilon_lower_bound_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_epsilon_lower_bound(wrong, verbose=False), mistake, phrase)


def test_check_result_is_quiet_in_notebooks_and_truthy():
    r = checks.check_rr_keep_probability(keep_probability, verbose=False)
    assert bool(r) and r.passed and r.mistake is None
    assert "passed" in repr(r) and r._ipython_display_() is None
    assert str(r).startswith("✅")
