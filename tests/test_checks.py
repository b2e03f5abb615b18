"""The assignment self-checks: stored values are right, each check passes the solution and names typical mistakes.

The instructor solutions (and the implementations of the named mistakes) live
in ``tests/check_values_oracle.py``, outside the package; ``dpsd_lite.course.checks``
only compares with the values stored in ``dpsd_lite/course/check_values.json``. Here
the oracle recomputes that table from the solutions and the package's own
functions, so a stale table fails; and where the package has the same function
(accounting.py, mechanisms.py, audit/) the check must accept it too.
"""

import ast
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import check_values_oracle as oracle
from check_values_oracle import (
    calibrate_sigma,
    choose_k,
    counting_epsilon,
    counting_p_value,
    epsilon_after,
    epsilon_lower_bound,
    gaussian_delta_ref,
    generator_loss,
    generator_step,
    keep_probability,
    randomized_response,
    rr_channel_loss,
    selective_rr,
    smallest_epsilon,
)
from dpsd_lite.course import checks
from dpsd_lite.accounting import (
    classic_gaussian_noise_multiplier,
    composed_epsilon,
    gaussian_delta,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    rr_keep_probability,
)
from dpsd_lite.audit import one_run_epsilon_from_counts, one_run_p_value
from dpsd_lite.mechanisms import LabelNoise, Release, SelectiveRR, select_rr_classes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _not_strict(monkeypatch):
    monkeypatch.delenv("DPSD_STRICT_CHECKS", raising=False)


def expect_fail(result, mistake, *phrases):
    assert not result, result.message
    assert result.mistake == mistake, (result.mistake, result.message)
    for phrase in phrases:
        assert phrase in result.message, (phrase, result.message)


# ---------------------------------------------------------------- the stored values and the module itself

def _same(a, b, path="values"):
    """Recursive comparison of two JSON-like trees, floats to 1e-9 relative (NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), f"{path}: {a} vs {b}"
        elif math.isinf(a) or math.isinf(b):
            assert a == b, f"{path}: {a} vs {b}"
        else:
            assert abs(a - b) <= max(1e-12, 1e-9 * abs(b)), f"{path}: stored {a!r}, oracle {b!r}"
    else:
        assert a == b, f"{path}: stored {a!r}, oracle {b!r}"


def test_stored_values_match_the_oracles():
    """Recompute check_values.json from the solutions and the library (which must agree): a stale table fails."""
    stored = json.loads(checks.VALUES_PATH.read_text(encoding="utf-8"))
    _same(stored, oracle.compute_values(stored))  # stored random inputs (priors, logits) reused, answers recomputed


def test_stored_table_is_what_the_generator_writes():
    text = checks.VALUES_PATH.read_text(encoding="utf-8")
    assert text == oracle._dump(json.loads(text)), "rewrite with: PYTHONPATH=. python tests/check_values_oracle.py"


def test_checks_module_holds_no_solution():
    """No reference solution in checks.py: no 'reference', no import of the functions the exercises ask for."""
    source = (ROOT / "dpsd_lite" / "course" / "checks.py").read_text(encoding="utf-8")
    assert "reference" not in source.lower()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not imported & {"accounting", "mechanisms", "audit", "transcribe", "models", "scipy.stats"}, imported
    called = {node.func.attr for node in ast.walk(ast.parse(source))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    formulas = {"cross_entropy", "nll_loss", "log_softmax", "softmax", "cdf", "sf", "logcdf", "pmf"}
    assert not called & formulas, f"checks.py computes {called & formulas}: compare with stored values instead"
    assert not [n for n in dir(checks) if n.startswith("reference") or "_reference" in n]
    assert set(checks.__all__) >= {"check_rr_channel_loss", "check_counting_p_value", "check_counting_epsilon"}
    assert "check_values.json" in (ROOT / "pyproject.toml").read_text(encoding="utf-8"), "ship it as package data"


# ---------------------------------------------------------------- assignment 1

def test_keep_probability_passes_solution_and_library():
    assert checks.check_rr_keep_probability(keep_probability)
    assert checks.check_rr_keep_probability(rr_keep_probability)


def test_keep_probability_overflow_tip_but_passes(capsys):
    assert checks.check_rr_keep_probability(lambda e, k: math.exp(e) / (math.exp(e) + k - 1))
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


def test_keep_probability_message_the_issue_asks_for():
    r = checks.check_rr_keep_probability(lambda e, k: math.exp(e) / (math.exp(e) + k), verbose=False)
    assert ("your keep probability looks like e^ε/(e^ε+k): the denominator should count the k−1 *other* answers"
            in r.message)


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


def test_randomized_response_passes_solution_and_library():
    assert checks.check_randomized_response(randomized_response)
    assert checks.check_randomized_response(library_rr)


def test_randomized_response_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks.check_randomized_response(randomized_response, verbose=False)
    assert torch.equal(torch.rand(3), expected)


def test_statistical_checks_draw_from_an_explicit_seeded_noise_source():
    """The checks' noise is NoiseSource.from_seed(...) (a lesson setting), not a bare torch.Generator."""
    from dpsd_lite.noise import reproducible_noise_seed

    seen = []

    def spy(labels, epsilon, num_classes, generator=None):
        seen.append(generator)
        return randomized_response(labels, epsilon, num_classes, generator)

    assert checks.check_randomized_response(spy, verbose=False)
    assert seen and all(g.initial_seed() == reproducible_noise_seed(0) for g in seen)


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


def test_choose_k_passes_solution_and_library():
    assert checks.check_choose_k(choose_k)
    assert checks.check_choose_k(lambda prior, eps: select_rr_classes(prior, eps, k_min=1)[1])


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (lambda prior, eps: torch.full((prior.shape[0],), prior.shape[1]), "always_K", "ignores the prior"),
    (lambda prior, eps: torch.ones(prior.shape[0], dtype=torch.long), "always_1", "self-training"),
    (lambda prior, eps: choose_k(prior, eps) - 1, "off_by_one", "+ 1"),
    (lambda prior, eps: (prior.cumsum(1) * torch.tensor([keep_probability(eps, k) for k in range(1, 11)])).argmax(1) + 1,
     "unsorted", "decreasing order"),
    (lambda prior, eps: (prior.sort(1, descending=True).values.cumsum(1) * torch.tensor(
        [math.exp(eps) / (math.exp(eps) + k) for k in range(1, 11)])).argmax(1) + 1, "denominator_k", "k−1 other"),
    (lambda prior, eps: torch.tensor(3), "one_k", "its own k"),
])
def test_choose_k_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_choose_k(wrong, verbose=False), mistake, phrase)


def library_selective_rr(labels, prior, epsilon, generator=None):
    logits = F.one_hot(labels, prior.shape[1]).float()
    return SelectiveRR(epsilon, k_min=1, noise=_noise_from(generator)).release(logits, prior=prior).labels


def test_selective_rr_passes_solution_and_library():
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


def library_channel_loss(student_logits, released, answer_set, epsilon):
    rel = Release("rr", mask=answer_set, labels=released, extra={"k": answer_set.sum(1)})
    return SelectiveRR(epsilon, k_min=1).student_loss(student_logits, rel)


def test_rr_channel_loss_passes_solution_and_library():
    assert checks.check_rr_channel_loss(rr_channel_loss)
    assert checks.check_rr_channel_loss(library_channel_loss)


def _mistake(code):
    f = oracle.RR_LOSS_MISTAKES[code]
    return lambda lg, r, m, e: f(lg, r, m, e)


def loss_k1_nan(student_logits, released, answer_set, epsilon):
    k = answer_set.sum(1).double()
    keep = 1 / (1 + (k - 1) * math.exp(-epsilon))
    other = (1 - keep) / (k - 1)  # 0/0 for k = 1
    channel = torch.where(answer_set, other.view(-1, 1), 1 / k.view(-1, 1))
    channel[torch.arange(len(released)), released] = keep
    channel = channel * torch.where(k.view(-1, 1) > 1, 1.0, other.view(-1, 1))  # the NaN survives
    return -(student_logits.softmax(1) * channel).sum(1).log().mean()


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (_mistake("clean_label"), "clean_label", "as if it were the teacher's true label"),
    (_mistake("no_outside_rows"), "no_outside_rows", "forgot the channel rows outside the answer set"),
    (_mistake("outside_as_other"), "outside_as_other", "1/k"),
    (_mistake("keep_with_K"), "keep_with_K", "ignores the answer set"),
    (_mistake("log_inside"), "log_inside", "log of the *mixture*"),
    (_mistake("sum"), "sum", "mean"),
    (_mistake("set_renormalised"), "set_renormalised", "restricted the student"),
    (lambda lg, r, m, e: rr_channel_loss(lg, r, m, e).item(), "not_a_tensor", "tensor"),
    (lambda lg, r, m, e: rr_channel_loss(lg.detach(), r, m, e), "no_grad", "gradient"),
    (loss_k1_nan, "nan", "k = 1"),
])
def test_rr_channel_loss_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_rr_channel_loss(wrong, verbose=False), mistake, phrase)


# ---------------------------------------------------------------- assignment 2

def test_gaussian_delta_passes_solution_and_library():
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


def test_gaussian_sigma_passes_solution_and_library():
    assert checks.check_gaussian_sigma(calibrate_sigma)
    assert checks.check_gaussian_sigma(gaussian_noise_multiplier)


def bisect_fixed_bracket(hi):
    def calibrate(epsilon, delta):
        lo, top = 1e-3, hi
        for _ in range(100):
            mid = (lo + top) / 2
            lo, top = (mid, top) if gaussian_delta_ref(mid, epsilon) > delta else (lo, mid)
        return top

    return calibrate


def bisect_reversed(epsilon, delta):
    lo, hi = 1e-3, 1e3
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if gaussian_delta_ref(mid, epsilon) > delta else (mid, hi)
    return hi


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (classic_gaussian_noise_multiplier, "classic", "valid only for"),
    (bisect_fixed_bracket(10.0), "bracket", "widen it"),
    (bisect_fixed_bracket(100.0), "bracket", "edge of its bracket"),
    (bisect_reversed, "bracket", "lo = mid"),
    (lambda e, d: 1 / gaussian_noise_multiplier(e, d), "returned_mu", "μ = 1/σ"),
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
    assert checks.check_label_noise_std(oracle.label_noise_std)
    assert checks.check_label_noise_std(lambda e, d: LabelNoise(e, d).noise_std)
    expect_fail(checks.check_label_noise_std(calibrate_sigma, verbose=False), "no_sensitivity", "√2")
    expect_fail(checks.check_label_noise_std(lambda e, d: 2 * calibrate_sigma(e, d), verbose=False),
                "sensitivity_squared", "Δ² = 2")
    expect_fail(checks.check_label_noise_std(lambda e, d: calibrate_sigma(e, d) / math.sqrt(2), verbose=False),
                "sensitivity_divided", "divided")
    expect_fail(checks.check_label_noise_std(
        lambda e, d: classic_gaussian_noise_multiplier(e, d) * math.sqrt(2), verbose=False), "classic", "classic")


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

def test_generator_loss_passes_solution():
    assert checks.check_generator_loss(generator_loss)


def test_generator_checks_work_with_the_package_generator_and_student():
    """The learner's functions take any ``generator(z, c)``; the check's own tiny players are independent of them."""
    from dpsd_lite.models import Student
    from dpsd_lite.generators import Generator

    torch.manual_seed(0)
    student, gen = Student((1, 8, 8), 10, width=8), Generator((1, 8, 8), 10)
    z, c = torch.randn(4, gen.nz), torch.arange(4)
    loss = generator_loss(student, gen, z, c)
    loss.backward()
    assert all(p.grad is None for p in student.parameters()) and any(p.grad is not None for p in gen.parameters())


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
    (lambda s, g, z, c: F.cross_entropy(s(g(z, c)), s(g(z, c)).argmax(1)), "own_prediction", "requested class"),
    (lambda s, g, z, c: F.cross_entropy(s(g(z, c)).softmax(1), c), "double_softmax", "pass the logits"),
    (lambda s, g, z, c: generator_loss(s, g, z, c).item(), "not_a_tensor", "tensor"),
])
def test_generator_loss_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_generator_loss(wrong, verbose=False), mistake, phrase)


def test_generator_step_passes_solution():
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
    (lambda s, g, o, z, c: generator_step(s, g, o, z, c) * 2, "wrong_return", "return the loss"),
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
                "no_baseline", "'none'")
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

    def accuracy(rows, fraction):
        ref = next(r["student_accuracy"] for r in rows if r["noise_mode"] == "none")
        good = sorted((r["epsilon"], r["student_accuracy"]) for r in rows if r["noise_mode"] != "none"
                      and r["student_accuracy"] >= fraction * ref)
        return good[0][1] if good else None

    expect_fail(checks.check_smallest_epsilon(first_in_list, verbose=False), "unsorted", "sort by ε")
    expect_fail(checks.check_smallest_epsilon(counts_none, verbose=False), "counts_none", "return None")
    expect_fail(checks.check_smallest_epsilon(vs_teacher, verbose=False), "teacher_baseline", "non-private student")
    expect_fail(checks.check_smallest_epsilon(accuracy, verbose=False), "returned_accuracy", "return the ε")


def test_epsilon_lower_bound_passes_solution():
    assert checks.check_epsilon_lower_bound(epsilon_lower_bound)


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
    (lambda t, f, d=0.0: -epsilon_lower_bound(t, f, d), "inverted", "upside down"),
])
def test_epsilon_lower_bound_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_epsilon_lower_bound(wrong, verbose=False), mistake, phrase)


def test_counting_p_value_passes_solution_and_library():
    assert checks.check_counting_p_value(counting_p_value)
    assert checks.check_counting_p_value(lambda r, v, e: one_run_p_value(r, r, v, e, 0.0))


@pytest.mark.parametrize("code, phrase", [
    ("strict", "*at least* v"),
    ("lower_tail", "upper tail"),
    ("inverted", "1/(1+e^ε)"),
    ("ignores_epsilon", "blind guess"),
    ("pmf", "one point"),
])
def test_counting_p_value_names_mistakes(code, phrase):
    f = oracle.COUNT_MISTAKES[code]
    expect_fail(checks.check_counting_p_value(lambda r, v, e: float(f(r, v, e)), verbose=False), code, phrase)


def test_counting_epsilon_passes_solution_and_library():
    assert checks.check_counting_epsilon(counting_epsilon)
    assert checks.check_counting_epsilon(lambda r, v, c: one_run_epsilon_from_counts(r, r, v, 0.0, c))
    assert checks.check_counting_epsilon(lambda r, v, c: counting_epsilon(r, v, c, tol=1e-3))  # a coarser bisection


def counting_epsilon_capped(r, v, confidence=0.95):
    beta = 1 - confidence
    if counting_p_value(r, v, 0.0) > beta:
        return 0.0
    lo, hi = 0.0, 1.0  # never widened
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if counting_p_value(r, v, mid) <= beta else (lo, mid)
    return lo


@pytest.mark.parametrize("wrong, mistake, phrase", [
    (lambda r, v, c: counting_epsilon(r, v, 1 - c), "confidence_as_level", "β = 1 − confidence"),
    (counting_epsilon_capped, "bracket", "widen the bracket"),
    (lambda r, v, c: counting_epsilon(r, v, c) if counting_epsilon(r, v, c) > 0 else None, "none_returned", "0"),
    (lambda r, v, c: counting_epsilon(r, v, c) if counting_epsilon(r, v, c) > 0 else -1.0, "negative", "never negative"),
])
def test_counting_epsilon_names_mistakes(wrong, mistake, phrase):
    expect_fail(checks.check_counting_epsilon(wrong, verbose=False), mistake, phrase)


def test_check_result_is_quiet_in_notebooks_and_truthy():
    r = checks.check_rr_keep_probability(keep_probability, verbose=False)
    assert bool(r) and r.passed and r.mistake is None
    assert "passed" in repr(r) and r._ipython_display_() is None
    assert str(r).startswith("✅")
