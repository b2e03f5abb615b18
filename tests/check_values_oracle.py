"""Where the self-checks' stored values come from: reference solutions and the library, used as oracles.

``dpsd_lite/course/check_values.json`` holds every value the self-checks in
:mod:`dpsd_lite.course.checks` compare a learner's answer with (and the values of the
typical mistakes they name). The checks contain no solution code; this file
does, outside the package:

* the instructor solutions of the assignments (the same code as the
  ``### BEGIN SOLUTION`` blocks of ``notebooks/assignments/source``), and
* implementations of the named mistakes,

and :func:`compute_values` recomputes the whole table, asserting on the way
that the solutions agree with the package's own functions (``accounting``,
``mechanisms``, ``audit``) wherever the package has one.
``tests/test_checks.py`` compares the result with the shipped JSON, so a stale
table fails CI. To rewrite the table after changing a case or a solution::

    PYTHONPATH=. python tests/check_values_oracle.py            # keeps the stored random inputs
    PYTHONPATH=. python tests/check_values_oracle.py --fresh    # draws new priors and logits too
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binom, norm

ROOT = Path(__file__).resolve().parents[1]
VALUES_PATH = ROOT / "dpsd_lite" / "course" / "check_values.json"


# ================================================================ reference solutions (instructor solutions)

def keep_probability(epsilon, k):
    return 1.0 / (1.0 + (k - 1) * math.exp(-epsilon))


def randomized_response(labels, epsilon, num_classes, generator=None):
    keep = torch.rand(labels.shape, generator=generator) < keep_probability(epsilon, num_classes)
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)  # a uniform *other* class
    return torch.where(keep, labels, (labels + shift) % num_classes)


def choose_k(prior, epsilon):
    K = prior.shape[1]
    mass = prior.sort(dim=1, descending=True).values.cumsum(dim=1)
    keep = torch.tensor([keep_probability(epsilon, k) for k in range(1, K + 1)])
    return (mass * keep).argmax(dim=1) + 1


def answer_set(prior, k):
    return prior.argsort(dim=1, descending=True).argsort(dim=1) < k.view(-1, 1)


def selective_rr(labels, prior, epsilon, generator=None, _keep=keep_probability, _exclude_true=True):
    B, K = prior.shape
    k = choose_k(prior, epsilon)
    in_set = answer_set(prior, k)
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


def rr_channel(released, answer_set, epsilon, _keep=keep_probability, outside="uniform", k_of=None):
    """B×K matrix P(released_b | true class y) of selective RR (the learner's helper in the solution)."""
    B, K = answer_set.shape
    k = answer_set.sum(1) if k_of is None else k_of(answer_set)
    keep = torch.tensor([_keep(epsilon, int(kk)) for kk in k], dtype=torch.float64)
    other = torch.where(k > 1, (1 - keep) / (k - 1).clamp_min(1), torch.zeros_like(keep))
    if outside == "uniform":
        out_value = (1.0 / k.double()).view(-1, 1)
    elif outside == "zero":
        out_value = torch.zeros(B, 1, dtype=torch.float64)
    else:  # "other": the mistake of treating outside labels like other members of the set
        out_value = other.view(-1, 1)
    channel = torch.where(answer_set, other.view(-1, 1), out_value)
    channel[torch.arange(B), released] = keep
    return channel


def rr_channel_loss(student_logits, released, answer_set, epsilon):
    channel = rr_channel(released, answer_set, epsilon).to(student_logits.dtype)
    likelihood = (student_logits.softmax(1) * channel).sum(1)  # P(released | student), per query
    return -likelihood.log().mean()


def gaussian_delta_ref(sigma, epsilon):
    mu = 1.0 / sigma
    return norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * norm.cdf(-epsilon / mu - mu / 2)


def calibrate_sigma(epsilon, delta):
    lo, hi = 1e-3, 1.0
    while gaussian_delta_ref(hi, epsilon) > delta:  # widen the bracket until hi is private enough
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gaussian_delta_ref(mid, epsilon) > delta else (lo, mid)
    return hi


def label_noise_std(epsilon, delta):
    e0, e1 = torch.eye(2, dtype=torch.float64)
    sensitivity = float(torch.dist(e0, e1))  # two one-hot answers: the largest L2 distance, √2
    return calibrate_sigma(epsilon, delta) * sensitivity


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
    baseline = next(r["student_accuracy"] for r in rows if r["noise_mode"] == "none")
    good = [r["epsilon"] for r in rows if r["noise_mode"] != "none" and r["student_accuracy"] >= fraction * baseline]
    return min(good) if good else None


def epsilon_lower_bound(tpr, fpr, delta=0.0):
    best = 0.0
    for num, den in ((tpr - delta, fpr), (1 - fpr - delta, 1 - tpr)):
        if num > 0:
            best = max(best, math.inf if den == 0 else math.log(num / den))
    return best


def counting_p_value(r, v, epsilon):
    q = 1.0 / (1.0 + math.exp(-epsilon))  # e^ε/(1+e^ε): one ε-DP guess is right at most this often
    return float(binom.sf(v - 1, r, q))  # P[W ≥ v] = P[W > v − 1]


def counting_epsilon(r, v, confidence=0.95, tol=1e-6):
    beta = 1 - confidence
    if counting_p_value(r, v, 0.0) > beta:
        return 0.0
    lo, hi = 0.0, 1.0
    while counting_p_value(r, v, hi) <= beta:
        lo, hi = hi, 2 * hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if counting_p_value(r, v, mid) <= beta else (lo, mid)
    return lo


# ================================================================ the cases and their values

def _close(a, b, rel=1e-9, abs_=1e-12):
    if a is None or b is None:
        return a is b
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= max(abs_, rel * abs(b))


def _agree(name, ours, library, rel=1e-9, abs_=1e-12):
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(ours, library)) if not _close(a, b, rel, abs_)]
    assert not bad, f"{name}: the reference solution and the library disagree: {bad[:3]}"


def _safe(f, *args):
    try:
        v = float(f(*args))
    except (OverflowError, ValueError, ZeroDivisionError):
        return math.nan
    return v


KEEP_CASES = [(e, k) for e in (0.1, 0.5, 1.0, 2.0, 5.0, 10.0) for k in (1, 2, 3, 10)]
KEEP_MISTAKES = {
    "denominator_k": lambda e, k: math.exp(e) / (math.exp(e) + k),
    "binary": lambda e, k: math.exp(e) / (1 + math.exp(e)),
    "no_exp": lambda e, k: e / (e + k - 1),
    "inverted": lambda e, k: 1.0 / (1.0 + (k - 1) * math.exp(e)),
    "other_answer": lambda e, k: 1.0 / (math.exp(e) + k - 1),
}


def keep_values():
    from dpsd_lite.accounting import rr_keep_probability

    expected = [keep_probability(e, k) for e, k in KEEP_CASES]
    _agree("keep probability", expected, [rr_keep_probability(e, k) for e, k in KEEP_CASES])
    return {"cases": [list(c) for c in KEEP_CASES], "expected": expected,
            "mistakes": {code: [_safe(f, e, k) for e, k in KEEP_CASES] for code, f in KEEP_MISTAKES.items()}}


def rr_values():
    cases = [(1.0, 10, 10_000), (2.0, 3, 20_000)]  # (ε, K, draws per true class)
    return {"cases": [{"epsilon": e, "num_classes": K, "per_class": n, "keep": keep_probability(e, K)}
                      for e, K, n in cases]}


def _choose_k_priors(seed=0, rows=32, margin=1e-4):
    """Dirichlet priors rounded to 4 decimals, keeping rows whose best k wins by at least ``margin``."""
    rng = np.random.default_rng(seed)
    groups = []
    for eps, alpha in ((0.5, 0.3), (1.0, 0.5), (2.0, 1.0), (4.0, 0.3)):
        kept = []
        while len(kept) < rows:
            p = np.round(rng.dirichlet(np.full(10, alpha)), 4)
            score = np.sort(p)[::-1].cumsum() * np.array([keep_probability(eps, k) for k in range(1, 11)])
            top2 = np.sort(score)[-2:]
            if top2[1] - top2[0] >= margin:
                kept.append([float(x) for x in p])
        groups.append((eps, kept))
    hand = [[0.91] + [0.01] * 9,  # k = 1
            [0.02, 0.45, 0.02, 0.44] + [round(0.07 / 6, 4)] * 6,  # k = 2 (top classes not first)
            [0.1] * 10]  # uniform: k = K
    groups.append((1.0, hand))
    return groups


def choose_k_values(stored=None):
    from dpsd_lite.mechanisms import select_rr_classes

    groups = [(c["epsilon"], c["prior"]) for c in stored] if stored else _choose_k_priors()
    out = []
    for eps, rows in groups:
        prior = torch.tensor(rows, dtype=torch.float32)
        k = choose_k(prior, eps)
        assert torch.equal(k, select_rr_classes(prior, eps, k_min=1)[1]), "choose_k vs select_rr_classes"
        K = prior.shape[1]
        keep = torch.tensor([keep_probability(eps, kk) for kk in range(1, K + 1)], dtype=torch.float64)
        e = math.exp(eps)
        plus = torch.tensor([e / (e + kk) for kk in range(1, K + 1)], dtype=torch.float64)
        sorted_mass = prior.double().sort(dim=1, descending=True).values.cumsum(1)
        out.append({"epsilon": eps, "prior": rows, "k": k.tolist(), "mistakes": {
            "unsorted": ((prior.double().cumsum(1) * keep).argmax(1) + 1).tolist(),
            "denominator_k": ((sorted_mass * plus).argmax(1) + 1).tolist(),
        }})
    return out


def selective_rr_values():
    from dpsd_lite.mechanisms import select_rr_classes

    eps = 1.0
    raw = [
        [0.45, 0.35, 0.1, 0.04, 0.02, 0.01, 0.01, 0.01, 0.005, 0.005],  # k = 2
        [0.3, 0.25, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.005, 0.005],  # k = 3
        [0.1] * 10,  # k = 10 (plain K-ary RR)
        [0.91] + [0.01] * 9,  # k = 1 (RR answers the prior's top class)
    ]
    perm = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]  # top classes not in index order
    priors = [[r[perm.index(j)] for j in range(10)] for r in raw]
    prior = torch.tensor(priors)
    k = choose_k(prior, eps)
    mask = answer_set(prior, k)
    lib_mask, lib_k = select_rr_classes(prior, eps, k_min=1)
    assert torch.equal(k, lib_k) and torch.equal(mask, lib_mask)
    assert k.tolist() == [2, 3, 10, 1]
    return {"epsilon": eps, "priors": priors, "k": k.tolist(),
            "sets": [m.nonzero().view(-1).tolist() for m in mask],
            "keep": {str(kk): keep_probability(eps, kk) for kk in sorted(set(k.tolist()) | {10})}}


def _rr_loss_cases():
    rng = np.random.default_rng(11)
    B, K = 8, 5
    cases = []
    for eps in (1.0, 3.0):
        logits = np.round(rng.normal(scale=1.5, size=(B, K)), 3)
        sets = [[2], [0, 1, 2, 3, 4], [1, 3], [0, 2, 4], [3, 4], [0, 1, 2, 3, 4], [1], [0, 1, 3, 4]]
        released = [2, 4, 3, 0, 3, 1, 1, 4]
        assert all(r in s for r, s in zip(released, sets))
        cases.append({"epsilon": eps, "logits": logits.tolist(), "released": released, "sets": sets})
    return cases


def _rr_loss_inputs(case, requires_grad=False):
    K = len(case["logits"][0])
    logits = torch.tensor(case["logits"], dtype=torch.float64, requires_grad=requires_grad)
    released = torch.tensor(case["released"])
    mask = torch.zeros(len(case["sets"]), K, dtype=torch.bool)
    for b, s in enumerate(case["sets"]):
        mask[b, s] = True
    return logits, released, mask


def _loss_from_channel(logits, channel, reduce="mean", log_inside=False):
    p = logits.softmax(1)
    if log_inside:
        per = -(p * channel.clamp_min(1e-300).log()).sum(1)
    else:
        per = -(p * channel).sum(1).log()
    return per.sum() if reduce == "sum" else per.mean()


RR_LOSS_MISTAKES = {
    "clean_label": lambda lg, r, m, e: F.cross_entropy(lg, r),
    "no_outside_rows": lambda lg, r, m, e: _loss_from_channel(lg, rr_channel(r, m, e, outside="zero")),
    "outside_as_other": lambda lg, r, m, e: _loss_from_channel(lg, rr_channel(r, m, e, outside="other")),
    "keep_with_K": lambda lg, r, m, e: _loss_from_channel(
        lg, rr_channel(r, torch.ones_like(m), e)),  # plain K-ary RR channel, ignoring the set
    "log_inside": lambda lg, r, m, e: _loss_from_channel(lg, rr_channel(r, m, e), log_inside=True),
    "sum": lambda lg, r, m, e: _loss_from_channel(lg, rr_channel(r, m, e), reduce="sum"),
    "set_renormalised": lambda lg, r, m, e: F.nll_loss(
        (lg.masked_fill(~m, -math.inf).log_softmax(1)).masked_fill(~m, 0.0), r),
}


def rr_loss_values(stored=None):
    from dpsd_lite.mechanisms import Release, SelectiveRR

    keys = ("epsilon", "logits", "released", "sets")
    cases = [{k: c[k] for k in keys} for c in stored] if stored else _rr_loss_cases()
    for case in cases:
        logits, released, mask = _rr_loss_inputs(case)
        ours = float(rr_channel_loss(logits, released, mask, case["epsilon"]))
        rel = Release("rr", mask=mask, labels=released, extra={"k": mask.sum(1)})
        lib = float(SelectiveRR(case["epsilon"], k_min=1).student_loss(logits, rel))
        _agree("RR-channel loss", [ours], [lib], rel=1e-9)
        case["expected"] = ours
        case["mistakes"] = {code: float(f(logits, released, mask, case["epsilon"]))
                            for code, f in RR_LOSS_MISTAKES.items()}
    return cases


DELTA_CASES = [(s, e) for s in (0.5, 1.0, 2.0, 5.0) for e in (0.1, 0.5, 1.0, 2.0, 5.0)]
DELTA_MISTAKES = {
    "no_exp": lambda s, e: norm.cdf(-e * s + 1 / (2 * s)) - norm.cdf(-e * s - 1 / (2 * s)),
    "mu_is_sigma": lambda s, e: norm.cdf(-e / s + s / 2) - math.exp(e) * norm.cdf(-e / s - s / 2),
    "plus_sign": lambda s, e: norm.cdf(-e * s + 1 / (2 * s)) + math.exp(e) * norm.cdf(-e * s - 1 / (2 * s)),
    "swapped": lambda s, e: norm.cdf(-e * s - 1 / (2 * s)) - math.exp(e) * norm.cdf(-e * s + 1 / (2 * s)),
}


def gaussian_delta_values():
    from dpsd_lite.accounting import gaussian_delta

    expected = [gaussian_delta_ref(s, e) for s, e in DELTA_CASES]
    _agree("gaussian delta", expected, [gaussian_delta(s, e) for s, e in DELTA_CASES], rel=1e-9, abs_=1e-15)
    return {"cases": [list(c) for c in DELTA_CASES], "expected": expected,
            "mistakes": {code: [_safe(f, s, e) for s, e in DELTA_CASES] for code, f in DELTA_MISTAKES.items()}}


SIGMA_CASES = [(e, d) for d in (1e-5, 1e-3) for e in (0.02, 0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 20.0)]


def gaussian_sigma_values():
    from dpsd_lite.accounting import classic_gaussian_noise_multiplier, gaussian_noise_multiplier

    expected = [calibrate_sigma(e, d) for e, d in SIGMA_CASES]
    _agree("gaussian sigma", expected, [gaussian_noise_multiplier(e, d) for e, d in SIGMA_CASES], rel=1e-8)
    return {"cases": [list(c) for c in SIGMA_CASES], "expected": expected,
            "mistakes": {"classic": [classic_gaussian_noise_multiplier(e, d) for e, d in SIGMA_CASES]}}


LABEL_CASES = [(e, d) for e in (0.5, 1.0, 4.0) for d in (1e-5, 1e-3)]


def label_noise_values():
    from dpsd_lite.accounting import classic_gaussian_noise_multiplier
    from dpsd_lite.mechanisms import LabelNoise

    expected = [label_noise_std(e, d) for e, d in LABEL_CASES]
    _agree("label noise std", expected, [LabelNoise(e, d).noise_std for e, d in LABEL_CASES], rel=1e-8)
    sig = [calibrate_sigma(e, d) for e, d in LABEL_CASES]
    return {"cases": [list(c) for c in LABEL_CASES], "expected": expected, "mistakes": {
        "no_sensitivity": sig,
        "sensitivity_squared": [2 * s for s in sig],
        "sensitivity_divided": [s / math.sqrt(2) for s in sig],
        "classic": [classic_gaussian_noise_multiplier(e, d) * math.sqrt(2) for e, d in LABEL_CASES],
    }}


COMPOSE_CASES = [(s, t) for s in (1.0, 2.0, 5.0) for t in (1, 10, 100)]
COMPOSE_DELTA = 1e-5


def composed_values():
    import warnings

    from opacus.accountants.analysis.gdp import eps_from_mu

    from dpsd_lite.accounting import composed_epsilon, gaussian_epsilon

    d = COMPOSE_DELTA
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rdp = [float(epsilon_after(s, t, d)) for s, t in COMPOSE_CASES]
        _agree("composed RDP", rdp, [composed_epsilon(s, 1.0, t, d, "rdp") for s, t in COMPOSE_CASES], rel=1e-9)
    exact = [gaussian_epsilon(s / math.sqrt(t), d) for s, t in COMPOSE_CASES]
    _agree("composed exact", exact, [float(eps_from_mu(mu=math.sqrt(t) / s, delta=d)) for s, t in COMPOSE_CASES], rel=1e-6)
    one = [gaussian_epsilon(s, d) for s, t in COMPOSE_CASES]
    return {"delta": d, "cases": [list(c) for c in COMPOSE_CASES], "exact": exact, "rdp": rdp, "mistakes": {
        "linear": [e * t for e, (s, t) in zip(one, COMPOSE_CASES)],
        "sqrt_t": [e * math.sqrt(t) for e, (s, t) in zip(one, COMPOSE_CASES)],
        "ignores_steps": one,
    }}


def generator_values():
    from dpsd_lite.course import checks

    out = {}
    for name, seed in (("loss", 0), ("step", 1)):
        student, generator, z, c = checks._tiny_players(seed)
        loss = generator_loss(student, generator, z, c)
        loss.backward()
        assert all(p.grad is None or not p.grad.any() for p in student.parameters())
        with torch.no_grad():
            logits = student(generator(z, c))
        out[name] = {
            "expected": float(loss.detach()),
            "grad": [p.grad.reshape(-1).tolist() for p in generator.parameters()],
            "mistakes": {
                "nll_on_logits": float(F.nll_loss(logits, c)),
                "own_prediction": float(F.cross_entropy(logits, logits.argmax(1))),
                "double_softmax": float(F.cross_entropy(logits.softmax(1), c)),
            },
        }
    return out


def smallest_epsilon_values():
    from dpsd_lite.course import checks

    return {"expected": [smallest_epsilon(rows, frac) for rows, frac in checks._smallest_epsilon_cases()]}


def lower_bound_values():
    from dpsd_lite.course import checks

    return {"expected": [epsilon_lower_bound(t, f, d) for t, f, d, _ in checks._LB_CASES]}


COUNT_CASES = [(10, 8, 0.5), (100, 70, 1.0), (50, 50, 2.0), (200, 120, 0.2), (20, 0, 1.0), (1000, 560, 0.3),
               (30, 12, 0.1)]
COUNT_MISTAKES = {
    "strict": lambda r, v, e: binom.sf(v, r, 1 / (1 + math.exp(-e))),
    "lower_tail": lambda r, v, e: binom.cdf(v, r, 1 / (1 + math.exp(-e))),
    "inverted": lambda r, v, e: binom.sf(v - 1, r, 1 / (1 + math.exp(e))),
    "ignores_epsilon": lambda r, v, e: binom.sf(v - 1, r, 0.5),
    "pmf": lambda r, v, e: binom.pmf(v, r, 1 / (1 + math.exp(-e))),
}
COUNT_EPS_CASES = [(100, 70, 0.95), (100, 90, 0.95), (1000, 600, 0.95), (50, 50, 0.95), (100, 50, 0.95),
                   (20, 20, 0.99), (1000, 900, 0.9)]


def counting_values():
    from dpsd_lite.audit import one_run_epsilon_from_counts, one_run_p_value

    p = [counting_p_value(r, v, e) for r, v, e in COUNT_CASES]
    _agree("counting p-value", p, [one_run_p_value(r, r, v, e, 0.0) for r, v, e in COUNT_CASES], rel=1e-9)
    eps = [counting_epsilon(r, v, conf) for r, v, conf in COUNT_EPS_CASES]
    lib = [one_run_epsilon_from_counts(r, r, v, 0.0, conf, tol=1e-7) for r, v, conf in COUNT_EPS_CASES]
    _agree("counting epsilon", eps, lib, rel=0, abs_=2e-6)
    level_mistake = [counting_epsilon(r, v, 1 - conf) for r, v, conf in COUNT_EPS_CASES]  # p ≤ confidence
    return {
        "p_value": {"cases": [list(c) for c in COUNT_CASES], "expected": p,
                    "mistakes": {code: [float(f(r, v, e)) for r, v, e in COUNT_CASES]
                                 for code, f in COUNT_MISTAKES.items()}},
        "epsilon": {"cases": [list(c) for c in COUNT_EPS_CASES], "expected": eps,
                    "mistakes": {"confidence_as_level": level_mistake}},
    }


def compute_values(stored: dict | None = None) -> dict:
    """The whole table. With ``stored`` (the current table), its generated inputs (random priors and logits) are
    reused and only the answers recomputed, so a change in NumPy's random streams cannot fake a stale table."""
    stored = stored or {}
    return {
        "about": ("Expected values of the dpsd_lite.course.checks self-checks and of the typical mistakes they name. "
                  "Generated by tests/check_values_oracle.py from the instructor solutions and the package's "
                  "own functions; tests/test_checks.py fails if it is stale. Do not edit by hand."),
        "keep_probability": keep_values(),
        "randomized_response": rr_values(),
        "choose_k": choose_k_values(stored.get("choose_k")),
        "selective_rr": selective_rr_values(),
        "rr_channel_loss": rr_loss_values(stored.get("rr_channel_loss")),
        "gaussian_delta": gaussian_delta_values(),
        "gaussian_sigma": gaussian_sigma_values(),
        "label_noise_std": label_noise_values(),
        "composed_epsilon": composed_values(),
        "generator": generator_values(),
        "smallest_epsilon": smallest_epsilon_values(),
        "epsilon_lower_bound": lower_bound_values(),
        "counting": counting_values(),
    }


def _dump(values) -> str:
    """Indented JSON, with each innermost list of numbers on one line (a readable, diff-friendly table)."""
    text = json.dumps(values, indent=1, ensure_ascii=False, allow_nan=True)
    flat = re.compile(r"\[\s*((?:-?[\d.eE+-]+|NaN|-?Infinity|null|true|false)(?:,\s*(?:-?[\d.eE+-]+|NaN|-?Infinity|null|true|false))*)\s*\]")
    return flat.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fresh = "--fresh" in argv  # draw new random inputs too (otherwise the stored ones are kept)
    stored = None if fresh or not VALUES_PATH.exists() else json.loads(VALUES_PATH.read_text(encoding="utf-8"))
    values = compute_values(stored)
    VALUES_PATH.write_text(_dump(values), encoding="utf-8")
    print(f"wrote {VALUES_PATH} ({VALUES_PATH.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
