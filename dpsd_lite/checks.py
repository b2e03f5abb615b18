"""Self-checks for the assignment notebooks: a learner's code against the reference.

Each ``check_*`` function takes the learner's implementation, tests it against
the reference in this package (``accounting.py``, ``mechanisms.py``, the
generator objective of ``transcribe.py``), **prints** specific, kind feedback
and **returns** a :class:`CheckResult` (truthy if and only if it passed; its
``mistake`` names the diagnosed error for tests and graders).

How answers are judged
----------------------
* Deterministic answers (a keep probability, a σ, a loss value) are compared
  with the reference on a grid of inputs, to a relative tolerance.
* Random mechanisms (randomized response) are checked statistically: a fixed
  seed, tens of thousands of draws, and a tolerance of several standard errors
  per estimated probability. A correct sampler passes (false alarm well below
  1e-3); the typical mistakes move some probability by ten standard errors or
  more and fail.
* When an answer is wrong, the checker compares it with a list of typical
  mistakes (e.g. ``e^ε/(e^ε+k)`` for the RR keep probability) and names the
  one it matches; otherwise it shows the first input where the answer differs.

A learner's ``NotImplementedError`` is not caught: "run all" stops at the first
unfinished exercise, with a note saying which one. With the environment
variable ``DPSD_STRICT_CHECKS=1`` (set by the notebook tests) a failed check
also raises ``AssertionError``, so a broken instructor notebook fails CI.
"""

from __future__ import annotations

import copy
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .accounting import (
    classic_gaussian_noise_multiplier,
    composed_epsilon,
    gaussian_delta,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    rr_keep_probability,
)
from .mechanisms import LabelNoise, rr_output_distribution, select_rr_classes

__all__ = [
    "CheckResult",
    "check_rr_keep_probability",
    "check_randomized_response",
    "check_choose_k",
    "check_selective_rr",
    "check_gaussian_delta",
    "check_gaussian_sigma",
    "check_label_noise_std",
    "check_composed_epsilon",
    "check_generator_loss",
    "check_generator_step",
    "check_sweep",
    "check_smallest_epsilon",
    "check_epsilon_lower_bound",
    "reference_epsilon_lower_bound",
]

PASS, FAIL = "✅", "❌"
SIGMAS = 5.5  # statistical tolerance, in standard errors per estimated probability


@dataclass
class CheckResult:
    """Outcome of one self-check. ``bool(result)`` is ``result.passed``.

    ``mistake`` is a short code for the diagnosed error (``None`` when passed
    or not recognised), e.g. ``"denominator_k"``; ``message`` is the feedback
    that was printed.
    """

    name: str
    passed: bool
    message: str
    mistake: str | None = None
    details: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        state = "passed" if self.passed else f"failed ({self.mistake or 'see message'})"
        return f"<CheckResult {self.name}: {state}>"

    def _ipython_display_(self):
        # The feedback was printed when the check ran; a notebook cell ending
        # in check_...(fn) should not show it twice.
        pass


def _finish(name, passed, message, mistake=None, verbose=True, **details) -> CheckResult:
    head = f"{PASS} {name}: " if passed else f"{FAIL} {name}: "
    result = CheckResult(name, passed, head + message, None if passed else mistake, details)
    if verbose:
        print(result.message)
    if not passed and os.environ.get("DPSD_STRICT_CHECKS") == "1":
        raise AssertionError(f"self-check failed (DPSD_STRICT_CHECKS=1): {result.message}")
    return result


class _LearnerError(Exception):
    """The learner's function raised something other than NotImplementedError."""

    def __init__(self, exc, call):
        super().__init__(str(exc))
        self.exc, self.call = exc, call


def _call(fn, *args, call: str = None, **kwargs):
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        print(f"✋ {name} is not written yet: fill in the exercise cell above, run it, then run this check again.")
        raise
    except Exception as exc:  # report, don't crash: the learner's code is under test
        raise _LearnerError(exc, call or f"{name}(...)") from exc


def _raised(name, err: _LearnerError, verbose, hint="") -> CheckResult:
    exc = err.exc
    msg = (f"your function raised {exc.__class__.__name__}: {exc}\n"
           f"   when called as {err.call}.{(' ' + hint) if hint else ''}")
    return _finish(name, False, msg, "raised", verbose)


@contextmanager
def _seeded(seed: int):
    """Seed torch and NumPy for a statistical check without disturbing the learner's RNG state."""
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield torch.Generator().manual_seed(seed)
        finally:
            np.random.set_state(np_state)


def _float(x) -> float:
    if torch.is_tensor(x):
        return float(x.detach().reshape(-1)[0]) if x.numel() == 1 else math.nan
    return float(x)


def _close(a, b, rel=1e-6, abs_=1e-12) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return False
    return abs(a - b) <= max(abs_, rel * abs(b))


def _matches(values, candidate, rel=1e-6, abs_=1e-12) -> bool:
    return all(_close(v, c, rel, abs_) for v, c in zip(values, candidate))


def _fmt_eps(e) -> str:
    return f"{e:g}"


# --------------------------------------------------------------------------
# Assignment 1: randomized response and selective (top-k, prior-based) RR
# --------------------------------------------------------------------------

_KEEP_CASES = [(e, k) for e in (0.1, 0.5, 1.0, 2.0, 5.0, 10.0) for k in (1, 2, 3, 10)]

_KEEP_MISTAKES = [
    ("denominator_k", lambda e, k: math.exp(e) / (math.exp(e) + k),
     "your keep probability looks like e^ε/(e^ε+k): the denominator should count the k−1 *other* answers, "
     "e^ε/(e^ε+k−1). (Try k = 1: with one possible answer RR must return it with probability 1.)"),
    ("binary", lambda e, k: math.exp(e) / (1 + math.exp(e)),
     "you return e^ε/(1+e^ε) for every k: that is binary RR (k = 2). With k answers the true one "
     "competes with k−1 others: e^ε/(e^ε+k−1)."),
    ("no_exp", lambda e, k: e / (e + k - 1),
     "your formula uses ε where it needs e^ε: the ratio of keep to replace probabilities must be exactly e^ε, "
     "so the keep probability is e^ε/(e^ε+k−1)."),
    ("inverted", lambda e, k: 1.0 / (1.0 + (k - 1) * math.exp(e)),
     "your keep probability *falls* as ε grows. A larger ε means less privacy, so the true answer should be "
     "kept more often: check the sign in the exponent (e^ε/(e^ε+k−1) = 1/(1+(k−1)e^−ε))."),
    ("other_answer", lambda e, k: 1.0 / (math.exp(e) + k - 1),
     "you return 1/(e^ε+k−1), the probability of one particular *other* answer. The true answer gets the "
     "e^ε in the numerator: e^ε/(e^ε+k−1)."),
]


def check_rr_keep_probability(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(epsilon, k)`` = probability that k-ary RR returns the true answer, e^ε/(e^ε+k−1).

    Typical mistakes recognised: ``e^ε/(e^ε+k)``, the binary formula for all k,
    ε instead of e^ε, the sign of ε flipped, the probability of one *other* answer.
    """
    name = "keep probability"
    values = []
    for e, k in _KEEP_CASES:
        try:
            values.append(_float(_call(fn, e, k, call=f"{getattr(fn, '__name__', 'fn')}({e}, {k})")))
        except _LearnerError as err:
            return _raised(name, err, verbose)
        except (TypeError, ValueError):
            return _finish(name, False, f"for ε={e}, k={k} your function did not return a number.", "not_a_number",
                           verbose)
    ref = [rr_keep_probability(e, k) for e, k in _KEEP_CASES]
    if _matches(values, ref):
        tip = ""
        try:
            big = _float(fn(800.0, 10))
            if not math.isfinite(big):
                raise OverflowError
        except Exception:  # noqa: BLE001 - only a tip
            tip = ("\n   Tip: at very large ε (try 800) e^ε overflows; 1/(1+(k−1)e^−ε) is the same number "
                   "and never does (that is how dpsd_lite.accounting.rr_keep_probability computes it).")
        return _finish(name, True, f"correct on all {len(ref)} (ε, k) pairs, "
                       f"e.g. ε=1, k=10 → {rr_keep_probability(1, 10):.6f}.{tip}", verbose=verbose)
    for code, cand, msg in _KEEP_MISTAKES:
        if _matches(values, [cand(e, k) for e, k in _KEEP_CASES]):
            return _finish(name, False, msg, code, verbose)
    if any(not (0.0 <= v <= 1.0) for v in values if not math.isnan(v)) or any(math.isnan(v) for v in values):
        bad = next((c, v) for c, v in zip(_KEEP_CASES, values) if math.isnan(v) or not 0 <= v <= 1)
        return _finish(name, False, f"for ε={bad[0][0]}, k={bad[0][1]} you returned {bad[1]}, which is not a "
                       "probability (it must lie in [0, 1]).", "not_a_probability", verbose)
    i = next(i for i, (v, r) in enumerate(zip(values, ref)) if not _close(v, r))
    (e, k), v, r = _KEEP_CASES[i], values[i], ref[i]
    extra = " With k = 1 there is only one answer: it must be kept with probability 1." if k == 1 else ""
    return _finish(name, False, f"for ε={e}, k={k} you returned {v:.6f}, expected {r:.6f} = e^ε/(e^ε+k−1).{extra}",
                   "wrong_value", verbose)


def _as_labels(out, n, num_classes, what="your function"):
    """Turn a learner's output into a LongTensor of n labels in [0, K), or return an error message."""
    try:
        out = torch.as_tensor(np.asarray(out.detach().cpu() if torch.is_tensor(out) else out))
    except Exception:  # noqa: BLE001
        return None, f"{what} should return a tensor of labels, got {type(out).__name__}."
    if out.dtype.is_floating_point:
        if not torch.all(out == out.round()):
            return None, f"{what} returned non-integer values: return class indices (a LongTensor), not probabilities."
        out = out.long()
    out = out.reshape(-1) if out.numel() == n else out
    if out.shape != (n,):
        return None, f"{what} returned shape {tuple(out.shape)}; expected one label per input, shape ({n},)."
    out = out.long()
    if out.min() < 0 or out.max() >= num_classes:
        return None, (f"{what} returned labels outside 0..{num_classes - 1} (min {int(out.min())}, "
                      f"max {int(out.max())}): labels are class indices.")
    return out, None


def _transition(y, out, num_classes):
    """K×K matrix of empirical P(released = j | true = i) and the count per true class."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    counts.index_put_((y, out), torch.ones(len(y), dtype=torch.float64), accumulate=True)
    n = counts.sum(1)
    return counts / n.clamp_min(1).unsqueeze(1), n


def _worst_z(obs, exp, n):
    """Largest |obs−exp| in standard errors (exp 0 or 1 must be hit exactly)."""
    se = torch.sqrt(exp * (1 - exp) / n.unsqueeze(1).clamp_min(1))
    dev = (obs - exp).abs()
    z = torch.where(se > 0, dev / se.clamp_min(1e-300), torch.where(dev > 0, torch.full_like(dev, math.inf), dev))
    idx = int(z.argmax())
    return float(z.reshape(-1)[idx]), divmod(idx, z.shape[1])


_RR_CASES = [(1.0, 10, 10_000), (2.0, 3, 20_000)]  # (ε, K, draws per true class)


def check_randomized_response(fn, verbose: bool = True, seed: int = 0) -> CheckResult:
    """Check a k-ary randomized response sampler, statistically.

    ``fn(labels, epsilon, num_classes, generator=None)`` gets a LongTensor of
    true labels and returns one released label per input. For K = 10, ε = 1
    and K = 3, ε = 2 (10,000–20,000 draws per true class) the empirical
    P(released = j | true = i) must match e^ε/(e^ε+K−1) on the diagonal and
    (1−keep)/(K−1) elsewhere within 5.5 standard errors.

    Typical mistakes recognised: no noise; keep e^ε/(e^ε+K); drawing the
    replacement from all K classes (the true one included); a uniform output;
    replacements that are not uniform over the other classes.
    """
    name = "randomized response"
    measured = []
    for eps, K, per_class in _RR_CASES:
        y = torch.arange(K).repeat_interleave(per_class)
        y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]
        with _seeded(seed) as gen:
            try:
                out = _call(fn, y.clone(), eps, K, generator=gen,
                            call=f"{getattr(fn, '__name__', 'fn')}(labels, epsilon={eps}, num_classes={K}, generator=g)")
            except _LearnerError as err:
                return _raised(name, err, verbose)
        out, problem = _as_labels(out, len(y), K)
        if problem:
            return _finish(name, False, problem, "bad_output", verbose)
        p = rr_keep_probability(eps, K)
        obs, n = _transition(y, out, K)
        kept = float((out == y).double().mean())
        se = math.sqrt(p * (1 - p) / len(y))
        where = f"(ε={_fmt_eps(eps)}, K={K})"
        if abs(kept - p) > SIGMAS * se:
            candidates = [
                ("no_noise", 1.0, "every label came back unchanged: that releases the true answer, ε = ∞. "
                 f"Keep it with probability e^ε/(e^ε+K−1) = {p:.3f}, otherwise answer another class."),
                ("denominator_k", math.exp(eps) / (math.exp(eps) + K),
                 "your keep rate matches e^ε/(e^ε+K): the denominator should count the K−1 *other* answers."),
                ("replacement_includes_true", p + (1 - p) / K,
                 "when you replace the answer you draw from all K classes, so the true label also comes back "
                 f"'by chance': it is kept {100 * (p + (1 - p) / K):.1f}% of the time instead of {100 * p:.1f}%, and "
                 "the likelihood ratio exceeds e^ε (you leak more than ε). Draw the replacement from the K−1 "
                 "*other* classes."),
                ("uniform", 1.0 / K, "your output looks uniform (the true label is kept only at the chance rate "
                 "1/K): that is perfectly private but useless. Keep it with probability e^ε/(e^ε+K−1)."),
                ("binary", math.exp(eps) / (1 + math.exp(eps)),
                 "your keep rate matches e^ε/(1+e^ε), the binary formula: with K classes use e^ε/(e^ε+K−1)."),
                ("inverted", 1.0 / (1.0 + (K - 1) * math.exp(eps)),
                 "your keep rate matches 1/(1+(K−1)e^ε): the sign of ε is flipped, so *more* ε gives *more* noise."),
            ]
            for code, value, msg in candidates:
                if abs(kept - value) <= SIGMAS * math.sqrt(max(value * (1 - value), 1e-12) / len(y)) + 1e-12:
                    return _finish(name, False, f"{where} {msg}", code, verbose, kept=kept, expected=p)
            return _finish(name, False, f"{where} the true label came back {100 * kept:.2f}% of the time; "
                           f"RR keeps it with probability e^ε/(e^ε+K−1) = {100 * p:.2f}%.", "wrong_keep_rate",
                           verbose, kept=kept, expected=p)
        exp = torch.full((K, K), (1 - p) / (K - 1), dtype=torch.float64)
        exp.fill_diagonal_(p)
        z, (i, j) = _worst_z(obs, exp, n)
        if z > SIGMAS:
            if i == j:
                msg = (f"{where} class {i} is kept {100 * float(obs[i, i]):.1f}% of the time, other classes "
                       f"{100 * p:.1f}%: every true label must be kept with the same probability.")
                return _finish(name, False, msg, "class_dependent", verbose)
            msg = (f"{where} when the true label {i} is replaced, it becomes {j} {100 * float(obs[i, j]):.1f}% of the "
                   f"time instead of {100 * (1 - p) / (K - 1):.1f}%: the replacement must be uniform over the K−1 "
                   "other classes (otherwise the released label says more about the true one than e^ε allows).")
            return _finish(name, False, msg, "not_uniform", verbose)
        off = obs.clone().fill_diagonal_(math.nan)
        ratio = float(obs.diagonal().min() / torch.nan_to_num(off, nan=0.0).max())
        measured.append((eps, K, kept, math.log(ratio)))
    lines = ", ".join(f"K={K}, ε={_fmt_eps(e)}: kept {100 * kept:.1f}% (expected "
                      f"{100 * rr_keep_probability(e, K):.1f}%)" for e, K, kept, _ in measured)
    return _finish(name, True, f"the output distribution matches K-ary RR ({lines}).", verbose=verbose,
                   measured=measured)


def _choose_k_cases(seed=0):
    """Priors (B×K) and ε with a unique best k per row, plus three hand-made rows."""
    rng = np.random.default_rng(seed)
    cases = []
    for eps, alpha in ((0.5, 0.3), (1.0, 0.5), (2.0, 1.0), (4.0, 0.3)):
        prior = torch.as_tensor(rng.dirichlet(np.full(10, alpha), size=64), dtype=torch.float32)
        cases.append((eps, prior / prior.sum(1, keepdim=True)))
    hand = torch.tensor([[0.91] + [0.01] * 9,  # k = 1
                         [0.02, 0.45, 0.02, 0.44] + [0.07 / 6] * 6,  # k = 2 (top classes not first)
                         [0.1] * 10])  # uniform: k = K
    cases.append((1.0, hand))
    return cases


def _rr_scores(prior, eps, keep=None):
    sorted_p = prior.double().sort(dim=1, descending=True).values
    ks = torch.arange(1, prior.shape[1] + 1, dtype=torch.float64)
    keep = keep if keep is not None else 1.0 / (1.0 + (ks - 1) * math.exp(-eps))
    return sorted_p.cumsum(1) * keep


def check_choose_k(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(prior, epsilon)`` → k per row (LongTensor B), the RR-with-prior set size.

    The best k maximises (prior mass of the top-k classes) × e^ε/(e^ε+k−1)
    (Ghazi et al. 2021); any k reaching the maximum score (to 1e-6) passes.
    Typical mistakes recognised: always k = K, always k = 1, k off by one (a
    0-based argmax), cumulative mass of an unsorted prior, keep e^ε/(e^ε+k).
    """
    name = "choose k"
    rows_total = 0
    diffs = []
    codes = set()
    for eps, prior in _choose_k_cases():
        B, K = prior.shape
        try:
            out = _call(fn, prior.clone(), eps, call=f"{getattr(fn, '__name__', 'fn')}(prior of shape {B}×{K}, {eps})")
        except _LearnerError as err:
            return _raised(name, err, verbose)
        try:
            k = torch.as_tensor(np.asarray(out.detach().cpu() if torch.is_tensor(out) else out)).reshape(-1)
        except Exception:  # noqa: BLE001
            return _finish(name, False, f"return one k per row of the prior (a LongTensor of shape ({B},)), "
                           f"got {type(out).__name__}.", "bad_output", verbose)
        if k.numel() == 1 and B > 1:
            return _finish(name, False, f"you returned a single k for a prior with {B} rows: each query (row) has its "
                           "own prior and gets its own k.", "one_k", verbose)
        if k.shape != (B,):
            return _finish(name, False, f"return one k per row, shape ({B},); got shape {tuple(k.shape)}.",
                           "bad_output", verbose)
        k = k.long()
        ref_k = select_rr_classes(prior, eps, k_min=1)[1]
        rows_total += B
        score = _rr_scores(prior, eps)
        best = score.max(1).values
        valid = (k >= 1) & (k <= K)
        got = torch.where(valid, score.gather(1, (k.clamp(1, K) - 1).view(-1, 1)).squeeze(1), torch.full_like(best, -1))
        bad = got < best - 1e-6  # float32 near-ties are fine
        if bad.any():
            i = int(bad.nonzero()[0])
            diffs.append((eps, prior[i], int(k[i]), int(ref_k[i]), score[i]))
            # which typical mistake explains this case?
            unsorted = (prior.double().cumsum(1) * (1.0 / (1.0 + (torch.arange(K) * math.exp(-eps))))).argmax(1) + 1
            plus = _rr_scores(prior, eps, keep=math.exp(eps) / (math.exp(eps) + torch.arange(1, K + 1).double()))
            found = set()
            if torch.all(k == K):
                found.add("always_K")
            if torch.all(k == 1):
                found.add("always_1")
            if torch.all(k == ref_k - 1):
                found.add("off_by_one")
            if torch.all(k == unsorted):
                found.add("unsorted")
            if torch.all(k == plus.argmax(1) + 1):
                found.add("denominator_k")
            codes.add(frozenset(found))
    if not diffs:
        return _finish(name, True, f"your k maximises (top-k prior mass) × keep(k) on all {rows_total} priors.",
                       verbose=verbose)
    common = set.intersection(*[set(c) for c in codes]) if codes else set()
    messages = {
        "always_1": "you always return k = 1. Then RR always answers the prior's own top class, whatever the "
                    "teacher said: pure self-training. Pick k to maximise (top-k prior mass) × e^ε/(e^ε+k−1).",
        "off_by_one": "your k is one smaller than the best k everywhere: argmax gives a 0-based position; the set "
                      "size is that position + 1.",
        "unsorted": "you accumulate the prior in class order. Sort each row in decreasing order first: the top-k "
                    "set is the k *most probable* classes.",
        "denominator_k": "your k maximises (top-k mass) × e^ε/(e^ε+k): the keep probability's denominator counts "
                         "the k−1 other answers, e^ε/(e^ε+k−1).",
        "always_K": "you always return k = K: that is plain RR over all classes and ignores the prior. The prior "
                    "lets RR answer among fewer classes, which keeps the true label more often when the prior is right.",
    }
    for code in ("always_1", "off_by_one", "unsorted", "denominator_k", "always_K"):
        if code in common:
            return _finish(name, False, messages[code], code, verbose)
    eps, p, k, ref, score = diffs[0]
    shown = ", ".join(f"{v:.2f}" for v in p.tolist())
    msg = (f"for the prior [{shown}] at ε={_fmt_eps(eps)} the best k is {ref} (score "
           f"{float(score[ref - 1]):.3f} = top-{ref} mass × keep({ref})), but you returned {k}"
           + (f" (score {float(score[k - 1]):.3f})." if 1 <= k <= len(p) else ", which is not a set size in 1..K."))
    return _finish(name, False, msg, "wrong_k", verbose)


def _selective_cases():
    """Four priors (k = 2, 3, K and 1 at ε = 1), with their top classes not in index order."""
    K = 10
    raw = [
        [0.45, 0.35, 0.1, 0.04, 0.02, 0.01, 0.01, 0.01, 0.005, 0.005],  # k = 2
        [0.3, 0.25, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.005, 0.005],  # k = 3
        [0.1] * 10,  # k = 10 (plain K-ary RR)
        [0.91] + [0.01] * 9,  # k = 1 (RR answers the prior's top class)
    ]
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(3))
    return [torch.tensor(r)[perm] for r in raw]


def check_selective_rr(fn, verbose: bool = True, seed: int = 0, per_cell: int = 1000) -> CheckResult:
    """Check selective (top-k, prior-based) randomized response, statistically.

    ``fn(labels, prior, epsilon, generator=None)``: true labels (B), the prior
    (B×K, rows sum to 1) and ε; returns one released label per query. The set
    is the prior's top-k classes with k from :func:`check_choose_k`'s rule; a
    true label inside the set is kept with probability e^ε/(e^ε+k−1), else
    replaced by a uniform *other* member of the set; a true label outside the
    set is replaced by a uniform member of the set. Four priors (k = 2, 3, 10,
    1) × 10 true labels × 1,000 draws at ε = 1, per-cell tolerance 5.5 s.e.

    Typical mistakes recognised: returning a true label outside the set (leak);
    ignoring the prior; keep probability with K instead of k; replacement
    drawn from the whole set; non-uniform answers for labels outside the set.
    """
    name = "selective RR"
    eps, K = 1.0, 10
    priors = _selective_cases()
    prior = torch.stack([p for p in priors for _ in range(K * per_cell)])
    y = torch.arange(K).repeat_interleave(per_cell).repeat(len(priors))
    group = torch.arange(len(priors)).repeat_interleave(K * per_cell)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    prior, y, group = prior[order], y[order], group[order]
    with _seeded(seed) as gen:
        try:
            out = _call(fn, y.clone(), prior.clone(), eps, generator=gen,
                        call=f"{getattr(fn, '__name__', 'fn')}(labels, prior, epsilon={eps}, generator=g)")
        except _LearnerError as err:
            return _raised(name, err, verbose)
    out, problem = _as_labels(out, len(y), K)
    if problem:
        return _finish(name, False, problem, "bad_output", verbose)
    mask, k = select_rr_classes(prior, eps, k_min=1)
    in_set_out = mask[torch.arange(len(y)), out]
    y_in_set = mask[torch.arange(len(y)), y]
    if not in_set_out.all():
        outside = ~in_set_out
        leak = outside & ~y_in_set & (out == y)
        if leak.sum() > 0.5 * (outside & ~y_in_set).sum() and leak.any():
            return _finish(name, False, "when the true label is outside the top-k set you returned it unchanged. "
                           "That reveals it exactly (ε = ∞ for those queries). RR with a prior always answers "
                           "*inside* the set: return a uniformly random member of the set.", "leak_outside", verbose)
        plain = rr_keep_probability(eps, K)
        kept = float((out == y).double().mean())
        if abs(kept - plain) < 0.02:
            return _finish(name, False, "your answers look like plain K-ary RR: they ignore the prior. Restrict RR to "
                           "the prior's top-k classes (k from your choose_k) and use e^ε/(e^ε+k−1) inside the set.",
                           "ignores_prior", verbose)
        i = int(outside.nonzero()[0])
        return _finish(name, False, f"some answers fall outside the top-k set (e.g. prior top-{int(k[i])} set "
                       f"{mask[i].nonzero().view(-1).tolist()}, you answered {int(out[i])}): every answer must be a "
                       "member of the set.", "outside_set", verbose)
    # inside the set: keep rates per prior (pooled over true labels inside the set, k > 1)
    for g_id in range(len(priors)):
        sel = (group == g_id) & y_in_set
        kk = int(k[group == g_id][0])
        if kk == 1:
            continue
        kept = float((out[sel] == y[sel]).double().mean())
        p = rr_keep_probability(eps, kk)
        n = int(sel.sum())
        if abs(kept - p) > SIGMAS * math.sqrt(p * (1 - p) / n):
            e = math.exp(eps)
            for code, value, msg in [
                ("keep_with_K", rr_keep_probability(eps, K),
                 f"inside a top-{kk} set you keep the true label with probability e^ε/(e^ε+K−1) (K = {K}): "
                 f"RR runs over the k = {kk} classes of the set, so use e^ε/(e^ε+k−1)."),
                ("replacement_includes_true", p + (1 - p) / kk,
                 "when you replace a label inside the set you draw from the whole set, the true label included: it "
                 "comes back too often and the likelihood ratio exceeds e^ε. Draw from the k−1 *other* members."),
                ("denominator_k", e / (e + kk),
                 "inside the set your keep rate matches e^ε/(e^ε+k): the denominator counts the k−1 other answers."),
                ("no_noise", 1.0, "inside the set you always return the true label: RR must keep it only with "
                 "probability e^ε/(e^ε+k−1)."),
            ]:
                if abs(kept - value) <= SIGMAS * math.sqrt(max(value * (1 - value), 1e-12) / n) + 1e-12:
                    return _finish(name, False, msg, code, verbose)
            return _finish(name, False, f"for a top-{kk} set the true label came back {100 * kept:.1f}% of the time; "
                           f"expected e^ε/(e^ε+k−1) = {100 * p:.1f}%.", "wrong_keep_rate", verbose)
    # full distribution, per prior and true label
    for g_id, pr in enumerate(priors):
        sel = group == g_id
        obs, n = _transition(y[sel], out[sel], K)
        m, kk = select_rr_classes(pr.view(1, -1), eps, k_min=1)
        ys = torch.arange(K)
        exp = rr_output_distribution(ys, m.expand(K, K), kk.expand(K), eps).double()
        z, (i, j) = _worst_z(obs, exp, n)
        if z > SIGMAS:
            if not bool(m[0, i]):
                msg = (f"when the true label ({i}) is outside the top-{int(kk)} set, answer with a *uniformly random* "
                       f"member of the set: you answered {j} {100 * float(obs[i, j]):.1f}% of the time, expected "
                       f"{100 * float(exp[i, j]):.1f}%.")
                return _finish(name, False, msg, "outside_not_uniform", verbose)
            msg = (f"with a top-{int(kk)} set and true label {i}, you answered {j} {100 * float(obs[i, j]):.1f}% of the "
                   f"time; expected {100 * float(exp[i, j]):.1f}%. Replacements must be uniform over the other "
                   "members of the set.")
            return _finish(name, False, msg, "not_uniform", verbose)
    ks = sorted({int(k[group == g][0]) for g in range(len(priors))})
    return _finish(name, True, f"answers stay in the top-k set and match RR-with-prior for k = "
                   f"{', '.join(map(str, ks))} at ε = {_fmt_eps(eps)} ({len(y):,} draws).", verbose=verbose)


# --------------------------------------------------------------------------
# Assignment 2: calibrating Gaussian noise for (ε, δ)
# --------------------------------------------------------------------------

_DELTA_CASES = [(s, e) for s in (0.5, 1.0, 2.0, 5.0) for e in (0.1, 0.5, 1.0, 2.0, 5.0)]


def check_gaussian_delta(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(sigma, epsilon)`` = δ(ε) of one Gaussian release with noise multiplier σ.

    Reference: the analytic Gaussian mechanism (Balle & Wang 2018) with μ = 1/σ,
    δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2). Typical mistakes recognised: the
    e^ε factor missing, μ = σ instead of 1/σ, a + instead of the −, the two
    Φ arguments swapped.
    """
    from scipy.stats import norm

    name = "Gaussian δ(ε)"
    values = []
    for s, e in _DELTA_CASES:
        try:
            values.append(_float(_call(fn, s, e, call=f"{getattr(fn, '__name__', 'fn')}(sigma={s}, epsilon={e})")))
        except _LearnerError as err:
            return _raised(name, err, verbose)
    ref = [gaussian_delta(s, e) for s, e in _DELTA_CASES]
    if _matches(values, ref, rel=1e-6, abs_=1e-10):
        return _finish(name, True, f"matches the analytic Gaussian mechanism on all {len(ref)} (σ, ε) pairs "
                       f"(e.g. σ=1, ε=1 → δ = {gaussian_delta(1.0, 1.0):.6f}).", verbose=verbose)

    def cand(f):
        out = []
        for s, e in _DELTA_CASES:
            try:
                out.append(f(s, e))
            except (OverflowError, ValueError):
                out.append(math.nan)
        return out

    mistakes = [
        ("no_exp", lambda s, e: norm.cdf(-e * s + 1 / (2 * s)) - norm.cdf(-e * s - 1 / (2 * s)),
         "the second term needs the factor e^ε: δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2)."),
        ("mu_is_sigma", lambda s, e: norm.cdf(-e / s + s / 2) - math.exp(e) * norm.cdf(-e / s - s / 2),
         "you used μ = σ. One release with noise multiplier σ is μ-GDP with μ = 1/σ: more noise, smaller μ."),
        ("plus_sign", lambda s, e: norm.cdf(-e * s + 1 / (2 * s)) + math.exp(e) * norm.cdf(-e * s - 1 / (2 * s)),
         "the two terms are *subtracted*: δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2)."),
        ("swapped", lambda s, e: norm.cdf(-e * s - 1 / (2 * s)) - math.exp(e) * norm.cdf(-e * s + 1 / (2 * s)),
         "the ±μ/2 are swapped between the two Φ terms: first Φ(−ε/μ + μ/2), then e^ε·Φ(−ε/μ − μ/2)."),
    ]
    for code, f, msg in mistakes:
        if _matches(values, cand(f), rel=1e-6, abs_=1e-10):
            return _finish(name, False, msg, code, verbose)
    i = next(i for i, (v, r) in enumerate(zip(values, ref)) if not _close(v, r, 1e-6, 1e-10))
    (s, e), v, r = _DELTA_CASES[i], values[i], ref[i]
    return _finish(name, False, f"for σ={s}, ε={e} you returned δ = {v:.6g}, expected {r:.6g} "
                   "(μ = 1/σ; δ = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2)).", "wrong_value", verbose)


_SIGMA_CASES = [(e, d) for d in (1e-5, 1e-3) for e in (0.1, 0.5, 1.0, 2.0, 4.0, 8.0)]


def check_gaussian_sigma(fn, verbose: bool = True, rel: float = 1e-3) -> CheckResult:
    """Check ``fn(epsilon, delta)`` = the smallest noise multiplier σ making one Gaussian release (ε, δ)-DP.

    Reference: :func:`dpsd_lite.accounting.gaussian_noise_multiplier` (exact,
    any ε), to relative tolerance ``rel``. Typical mistakes recognised: the
    classic formula (valid only for ε < 1), σ growing with ε (noise must scale
    with 1/ε), σ growing with δ, too little noise (not private) or too much
    (private but wasteful).
    """
    name = "Gaussian σ for (ε, δ)"
    values = []
    for e, d in _SIGMA_CASES:
        try:
            values.append(_float(_call(fn, e, d, call=f"{getattr(fn, '__name__', 'fn')}(epsilon={e}, delta={d})")))
        except _LearnerError as err:
            return _raised(name, err, verbose)
    ref = [gaussian_noise_multiplier(e, d) for e, d in _SIGMA_CASES]
    if _matches(values, ref, rel=rel):
        return _finish(name, True, f"exact calibration on all {len(ref)} (ε, δ) pairs "
                       f"(e.g. ε=1, δ=1e-5 → σ = {gaussian_noise_multiplier(1, 1e-5):.4f}).", verbose=verbose)
    if any(not (v > 0 and math.isfinite(v)) for v in values):
        (e, d), v = next(((c, v) for c, v in zip(_SIGMA_CASES, values) if not (v > 0 and math.isfinite(v))))
        return _finish(name, False, f"for ε={e}, δ={d} you returned σ = {v}: a noise multiplier is a positive, "
                       "finite number.", "not_positive", verbose)
    classic = [classic_gaussian_noise_multiplier(e, d) for e, d in _SIGMA_CASES]
    if _matches(values, classic, rel=rel):
        return _finish(name, False, "you used the classic formula σ = √(2 ln(1.25/δ))/ε, valid only for ε < 1 "
                       "(Dwork & Roth prove it only there). It is loose everywhere (e.g. ε=0.1, δ=1e-5: 48.4 instead of 30.7) and can even be too "
                       "small at large ε. Calibrate with the exact δ(ε; σ) of the analytic Gaussian mechanism: "
                       "solve δ(ε; σ) = δ for σ.", "classic", verbose)
    by_delta = {}
    for (e, d), v in zip(_SIGMA_CASES, values):
        by_delta.setdefault(d, []).append((e, v))
    for d, pts in by_delta.items():
        if all(b[1] > a[1] for a, b in zip(pts, pts[1:])):
            return _finish(name, False, "your σ shrinks when ε shrinks: noise must scale with 1/ε (a smaller ε, "
                           "i.e. more privacy, needs *more* noise).", "scales_with_eps", verbose)
    for e in (0.5, 2.0):
        lo, hi = values[_SIGMA_CASES.index((e, 1e-5))], values[_SIGMA_CASES.index((e, 1e-3))]
        if hi > lo * (1 + rel):
            return _finish(name, False, f"at ε={e} your σ is larger for δ=1e-3 ({hi:.4f}) than for δ=1e-5 "
                           f"({lo:.4f}): a smaller δ (a stronger guarantee) needs more noise.", "delta_direction",
                           verbose)
    for (e, d), v, r in zip(_SIGMA_CASES, values, ref):
        if v < r * (1 - rel):
            actual = gaussian_epsilon(v, d)
            return _finish(name, False, f"at ε={e}, δ={d} your σ = {v:.4f} is below the exact {r:.4f}: with it one "
                           f"release is only ({actual:.3g}, {d:g})-DP, not ({e:g}, {d:g}). Too little noise "
                           "breaks the promise.", "too_small", verbose)
    (e, d), v, r = next(((c, v, r) for c, v, r in zip(_SIGMA_CASES, values, ref) if not _close(v, r, rel)))
    return _finish(name, False, f"at ε={e}, δ={d} your σ = {v:.4f} is above the exact {r:.4f} "
                   f"({100 * (v / r - 1):.1f}% too much noise). That is private but wasteful: find the *smallest* σ "
                   "with δ(ε; σ) ≤ δ (bisection works: δ(ε; σ) decreases in σ).", "too_large", verbose)


def check_label_noise_std(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(epsilon, delta)`` = noise std of the ``label`` mechanism, σ(ε, δ)·Δ with Δ = √2.

    Reference: :class:`dpsd_lite.mechanisms.LabelNoise` ``.noise_std``.
    Typical mistakes recognised: sensitivity forgotten (Δ = 1), Δ² = 2 instead
    of Δ = √2, Δ = 2, dividing by Δ.
    """
    name = "label-noise std"
    cases = [(e, d) for e in (0.5, 1.0, 4.0) for d in (1e-5, 1e-3)]
    values = []
    for e, d in cases:
        try:
            values.append(_float(_call(fn, e, d, call=f"{getattr(fn, '__name__', 'fn')}(epsilon={e}, delta={d})")))
        except _LearnerError as err:
            return _raised(name, err, verbose)
    sig = [gaussian_noise_multiplier(e, d) for e, d in cases]
    ref = [LabelNoise(e, d).noise_std for e, d in cases]
    if _matches(values, ref, rel=1e-3):
        return _finish(name, True, f"σ·√2 matches LabelNoise.noise_std on {len(ref)} (ε, δ) pairs "
                       f"(ε=1, δ=1e-5 → {LabelNoise(1.0, 1e-5).noise_std:.4f}).", verbose=verbose)
    for code, factor, msg in [
        ("no_sensitivity", 1.0, "you returned the noise multiplier σ itself. The noise std is σ × the L2 sensitivity; "
         "two top-k probability vectors can be √2 apart, so multiply by √2."),
        ("sensitivity_squared", 2.0, "you multiplied by Δ² = 2. The std scales with the sensitivity itself, Δ = √2 "
         "(variance scales with Δ²)."),
        ("sensitivity_divided", 1 / math.sqrt(2), "you divided by the sensitivity: a query that can change more needs "
         "*more* noise, std = σ·Δ."),
    ]:
        if _matches(values, [s * factor for s in sig], rel=1e-3):
            return _finish(name, False, msg, code, verbose)
    classic = [classic_gaussian_noise_multiplier(e, d) * math.sqrt(2) for e, d in cases]
    if _matches(values, classic, rel=1e-3):
        return _finish(name, False, "the sensitivity is right but σ comes from the classic formula: use your exact "
                       "calibration from exercise 2.2.", "classic", verbose)
    (e, d), v, r = next(((c, v, r) for c, v, r in zip(cases, values, ref) if not _close(v, r, 1e-3)))
    return _finish(name, False, f"at ε={e}, δ={d} you returned {v:.4f}, expected σ·√2 = {r:.4f}.", "wrong_value",
                   verbose)


_COMPOSE_CASES = [(s, t) for s in (1.0, 2.0, 5.0) for t in (1, 10, 100)]


def check_composed_epsilon(fn, verbose: bool = True, delta: float = 1e-5) -> CheckResult:
    """Check ``fn(sigma, steps, delta)`` = ε after ``steps`` Gaussian releases about the same record.

    Any valid accountant passes: the answer must lie between the exact value
    (μ-GDP with μ = √steps/σ) and Opacus's RDP bound (plus 2%). Typical
    mistakes recognised: linear composition ε₁·T (valid but very loose), ε₁·√T
    (not a bound: too small), ignoring ``steps``.
    """
    name = "composed ε"
    values = []
    for s, t in _COMPOSE_CASES:
        try:
            values.append(_float(_call(fn, s, t, delta,
                                       call=f"{getattr(fn, '__name__', 'fn')}(sigma={s}, steps={t}, delta={delta})")))
        except _LearnerError as err:
            return _raised(name, err, verbose)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rdp = [composed_epsilon(s, 1.0, t, delta, "rdp") for s, t in _COMPOSE_CASES]
    exact = [gaussian_epsilon(s / math.sqrt(t), delta) for s, t in _COMPOSE_CASES]
    ok = [x * (1 - 1e-3) <= v <= r * 1.02 for v, x, r in zip(values, exact, rdp)]
    if all(ok):
        how = "exact (μ-GDP)" if _matches(values, exact, rel=1e-3) else "RDP (Opacus)" if _matches(
            values, rdp, rel=2e-2) else "a valid accountant"
        return _finish(name, True, f"your ε is {how} on all {len(ok)} (σ, steps) pairs (σ=1, 100 steps → ε = "
                       f"{values[_COMPOSE_CASES.index((1.0, 100))]:.2f}; exact {exact[_COMPOSE_CASES.index((1.0, 100))]:.2f}).",
                       verbose=verbose)
    one = [gaussian_epsilon(s, delta) for s, t in _COMPOSE_CASES]
    for code, cand, msg in [
        ("linear", [e * t for e, (s, t) in zip(one, _COMPOSE_CASES)],
         "you composed linearly, ε₁·T. That is a valid bound (basic composition) but very loose: after 100 releases "
         "at σ=1 it says 438 where the truth is 92. Let an accountant do it: Opacus's RDPAccountant with history "
         "[(σ, 1.0, T)], or exactly: T Gaussian releases are μ-GDP with μ = √T/σ."),
        ("sqrt_t", [e * math.sqrt(t) for e, (s, t) in zip(one, _COMPOSE_CASES)],
         "you multiplied ε₁ by √T. The √T rule holds for μ (Gaussian DP: μ = √T/σ) or for the noise, not for ε; "
         "your values are *below* the true ε, i.e. they overclaim privacy."),
        ("ignores_steps", one,
         "your ε does not change with the number of steps: every release about the same record spends budget."),
    ]:
        if _matches(values, cand, rel=1e-3):
            return _finish(name, False, msg, code, verbose)
    i = ok.index(False)
    (s, t), v = _COMPOSE_CASES[i], values[i]
    if v < exact[i]:
        return _finish(name, False, f"for σ={s}, {t} step{'s' if t != 1 else ''} you returned ε = {v:.3f}, below the exact {exact[i]:.3f}: "
                       "that overclaims privacy.", "too_small", verbose)
    return _finish(name, False, f"for σ={s}, {t} step{'s' if t != 1 else ''} you returned ε = {v:.3f}; a good accountant gives between "
                   f"{exact[i]:.3f} (exact) and {rdp[i]:.3f} (RDP).", "too_large", verbose)


# --------------------------------------------------------------------------
# Assignment 3: the generator's objective, the student as discriminator
# --------------------------------------------------------------------------

def _tiny_players(seed=0, batch=32):
    from .models import Generator, Student

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = Student((1, 8, 8), 10, width=8)
        generator = Generator((1, 8, 8), 10, nz=16, width=16)
    g = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(batch, 16, generator=g)
    c = torch.randint(0, 10, (batch,), generator=g)
    return student, generator, z, c


def _reference_generator_loss(student, generator, z, c):
    student.requires_grad_(False)
    try:
        return F.cross_entropy(student(generator(z, c)), c)
    finally:
        student.requires_grad_(True)


def _has_grad(module) -> bool:
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())


def check_generator_loss(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(student, generator, z, c)`` → the generator's loss, a scalar tensor.

    Reference (``transcribe.py``, private modes): ``F.cross_entropy(student(G(z, c)), c)``,
    computed so that gradients reach the generator only. Checked on fixed tiny
    networks: the value (to 1e-5), a gradient in every generator parameter, no
    gradient in the student's, and the student's ``requires_grad`` restored.
    Typical mistakes recognised: G(z, c) detached or under ``no_grad``; the
    student's parameters not frozen; the student left frozen; the sign flipped;
    sum instead of mean; ``nll_loss`` on raw logits; the student's own argmax as
    target; softmax applied twice.
    """
    name = "generator loss"
    student, generator, z, c = _tiny_players()
    s_ref, g_ref = copy.deepcopy(student), copy.deepcopy(generator)
    ref = float(_reference_generator_loss(s_ref, g_ref, z, c).detach())
    s, g = copy.deepcopy(student), copy.deepcopy(generator)
    try:
        loss = _call(fn, s, g, z.clone(), c.clone(), call=f"{getattr(fn, '__name__', 'fn')}(student, generator, z, c)")
    except _LearnerError as err:
        return _raised(name, err, verbose)
    if not torch.is_tensor(loss):
        return _finish(name, False, f"return the loss as a tensor (got {type(loss).__name__}): the generator needs "
                       "it to call .backward(). Don't use .item() or float().", "not_a_tensor", verbose)
    if loss.numel() != 1:
        return _finish(name, False, f"the loss should be one number (a scalar), got shape {tuple(loss.shape)}: "
                       "average over the batch (reduction='mean').", "not_scalar", verbose)
    value = float(loss.detach())
    if not _close(value, ref, rel=1e-5, abs_=1e-6):
        with torch.no_grad():
            s2, g2 = copy.deepcopy(student), copy.deepcopy(generator)
            logits = s2(g2(z, c))
            cands = [
                ("sign", -ref, "your loss has the opposite sign. The generator *minimises* the student's "
                 "cross-entropy on the requested class c: it looks for images the student assigns to c. "
                 "(Maximising it would make images the student fails on, with no class to aim for.)"),
                ("sum", ref * len(c), "your loss is the sum over the batch: use the mean (F.cross_entropy's default), "
                 "so the step size does not depend on the batch size."),
                ("nll_on_logits", float(F.nll_loss(logits, c)), "you passed raw logits to nll_loss. nll_loss expects "
                 "log-probabilities; F.cross_entropy(logits, c) applies log_softmax for you."),
                ("own_prediction", float(F.cross_entropy(logits, logits.argmax(1))),
                 "you used the student's own prediction as the target (DAFL's one-hot loss). The generator is "
                 "class-conditional: aim at the requested class c."),
                ("double_softmax", float(F.cross_entropy(logits.softmax(1), c)),
                 "you applied softmax before F.cross_entropy, which applies log_softmax itself: pass the logits."),
            ]
        for code, v, msg in cands:
            if _close(value, v, rel=1e-5, abs_=1e-6):
                return _finish(name, False, msg, code, verbose)
        return _finish(name, False, f"on the fixed test tensors your loss is {value:.6f}, expected {ref:.6f} = "
                       "F.cross_entropy(student(generator(z, c)), c).", "wrong_value", verbose)
    if not loss.requires_grad:
        return _finish(name, False, "the value is right but no gradient can flow: did you compute G(z, c) under "
                       "torch.no_grad() or detach it? The student is the discriminator: the gradient must flow "
                       "*through* the student into the generator.", "no_generator_grad", verbose)
    left_frozen = any(not p.requires_grad for p in s.parameters())
    loss.backward()
    if not all(p.grad is not None for p in g.parameters()) or not _has_grad(g):
        return _finish(name, False, "no gradient reached the generator: did you detach G(z, c) (or compute it under "
                       "torch.no_grad())? The gradient must flow through the student into G.",
                       "no_generator_grad", verbose)
    if _has_grad(s):
        return _finish(name, False, "the value is right, but gradients reached the student's parameters. The "
                       "generator step must update the generator only: freeze the student while you compute the loss "
                       "(student.requires_grad_(False), then restore it), so it is a fixed discriminator.",
                       "student_grads", verbose)
    if left_frozen:
        return _finish(name, False, "the loss and gradients are right, but your function left the student frozen "
                       "(requires_grad=False): its next training step would silently learn nothing. Restore "
                       "student.requires_grad_(True) before returning (try/finally is a good habit).",
                       "left_frozen", verbose)
    return _finish(name, True, f"value {value:.4f} matches the reference; gradients reach every generator parameter "
                   "and none of the student's.", verbose=verbose)


def check_generator_step(fn, verbose: bool = True, lr: float = 0.1) -> CheckResult:
    """Check ``fn(student, generator, optimizer, z, c)``: one generator update, returning the loss.

    Checked against the reference step (zero the generator's gradients, the
    loss of :func:`check_generator_loss`, backward, ``optimizer.step()``) with
    SGD on fixed tiny networks whose generator starts with stale gradients.
    Typical mistakes recognised: no ``zero_grad`` (stale gradients added), no
    ``optimizer.step()``, gradient ascent, the student changed.
    """
    name = "generator step"
    student, generator, z, c = _tiny_players(seed=1)
    s_ref, g_ref = copy.deepcopy(student), copy.deepcopy(generator)
    opt_ref = torch.optim.SGD(g_ref.parameters(), lr=lr)
    opt_ref.zero_grad(set_to_none=True)
    loss_ref = _reference_generator_loss(s_ref, g_ref, z, c)
    loss_ref.backward()
    ref_loss = float(loss_ref.detach())
    grads = [p.grad.clone() for p in g_ref.parameters()]
    opt_ref.step()

    s, g = copy.deepcopy(student), copy.deepcopy(generator)
    for p in g.parameters():  # stale gradients from an earlier step (deepcopy does not copy .grad)
        p.grad = torch.full_like(p, 0.05)
    before = [p.detach().clone() for p in g.parameters()]
    s_before = [p.detach().clone() for p in s.parameters()]
    opt = torch.optim.SGD(g.parameters(), lr=lr)
    try:
        out = _call(fn, s, g, opt, z.clone(), c.clone(),
                    call=f"{getattr(fn, '__name__', 'fn')}(student, generator, optimizer, z, c)")
    except _LearnerError as err:
        return _raised(name, err, verbose)
    after = [p.detach() for p in g.parameters()]
    if any(not torch.equal(a, b) for a, b in zip(s_before, s.parameters())):
        return _finish(name, False, "the student's weights changed: the generator step must update the generator "
                       "only (the student is a fixed discriminator during this step).", "student_changed", verbose)
    if all(torch.equal(a, b) for a, b in zip(before, after)):
        return _finish(name, False, "the generator did not change: after loss.backward(), call optimizer.step().",
                       "no_step", verbose)
    if all(torch.allclose(a, p, atol=1e-6) for a, p in zip(after, g_ref.parameters())):
        try:
            v = _float(out)
        except (TypeError, ValueError):
            v = math.nan
        if not _close(v, ref_loss, rel=1e-5, abs_=1e-6):
            return _finish(name, False, f"the update is right, but return the loss you stepped on "
                           f"({ref_loss:.4f}); you returned {out!r}.", "wrong_return", verbose)
        if any(not p.requires_grad for p in s.parameters()):
            return _finish(name, False, "the update is right, but the student was left frozen (requires_grad=False).",
                           "left_frozen", verbose)
        return _finish(name, True, f"one SGD step matches the reference (loss {ref_loss:.4f}); the student is "
                       "untouched.", verbose=verbose)
    stale = [b - lr * (gr + 0.05) for b, gr in zip(before, grads)]
    if all(torch.allclose(a, s_, atol=1e-6) for a, s_ in zip(after, stale)):
        return _finish(name, False, "your update includes stale gradients from an earlier step: call "
                       "optimizer.zero_grad() before loss.backward() (PyTorch *adds* new gradients to old ones).",
                       "no_zero_grad", verbose)
    ascent = [b + lr * gr for b, gr in zip(before, grads)]
    if all(torch.allclose(a, s_, atol=1e-6) for a, s_ in zip(after, ascent)):
        return _finish(name, False, "your step goes uphill (gradient ascent): minimise the loss from exercise 3.1, "
                       "don't negate it.", "ascent", verbose)
    return _finish(name, False, "the generator's parameters after your step differ from one reference step "
                   "(zero_grad → loss → backward → optimizer.step()). Did you step more than once, or on a "
                   "different loss?", "wrong_update", verbose)


# --------------------------------------------------------------------------
# Assignment 4: the trade-off, and what an audit can and cannot say
# --------------------------------------------------------------------------

def _row_get(row, key):
    if isinstance(row, dict):
        return row.get(key)
    if key == "epsilon" and hasattr(row, "privacy"):
        return row.privacy.get("epsilon")
    if key == "noise_mode" and hasattr(row, "config"):
        return row.config.noise_mode
    return getattr(row, key, None)


def check_sweep(rows, epsilons, verbose: bool = True) -> CheckResult:
    """Check the rows of an ε sweep (dicts from :func:`dpsd_lite.sweep.run_sweep`, or results).

    Required: one private row per ε in ``epsilons``, a non-private ``none``
    reference row, accuracies as fractions in [0, 1]. Typical mistakes
    recognised: ε not passed on (every run has the same ε), the ``none`` reference
    missing, accuracies in percent, ε values missing.
    """
    name = "ε sweep"
    rows = list(rows or [])
    if not rows:
        return _finish(name, False, "no rows: run the sweep and pass its rows.", "empty", verbose)
    private = [r for r in rows if _row_get(r, "noise_mode") != "none"]
    eps_seen = [_row_get(r, "epsilon") for r in private]
    accs = [_row_get(r, "student_accuracy") for r in rows]
    if any(a is None for a in accs):
        return _finish(name, False, "each row needs a student_accuracy.", "missing_accuracy", verbose)
    if any(a > 1.0 for a in accs):
        return _finish(name, False, "accuracies above 1: keep them as fractions in [0, 1] (0.93, not 93).",
                       "percent", verbose)
    if len(private) > 1 and len(set(eps_seen)) == 1:
        return _finish(name, False, f"every private run has ε = {eps_seen[0]}: the ε of the loop never reached "
                       "the run. Pass epsilon=eps on each call.", "same_epsilon", verbose)
    missing = [e for e in epsilons if not any(x is not None and math.isclose(x, e) for x in eps_seen)]
    if missing:
        return _finish(name, False, f"no private run at ε = {', '.join(map(_fmt_eps, missing))}: sweep every ε in "
                       "EPSILONS.", "missing_epsilon", verbose)
    if not any(_row_get(r, "noise_mode") == "none" for r in rows):
        return _finish(name, False, "add the non-private reference (noise mode 'none'): a trade-off needs the "
                       "ε = ∞ end to compare with.", "no_reference", verbose)
    return _finish(name, True, f"{len(private)} private run{'s' if len(private) != 1 else ''} (ε = {', '.join(_fmt_eps(e) for e in sorted(set(eps_seen)))}) "
                   "and the non-private reference.", verbose=verbose)


def _reference_smallest_epsilon(rows, fraction):
    ref = [r["student_accuracy"] for r in rows if r["noise_mode"] == "none"][0]
    ok = sorted(r["epsilon"] for r in rows if r["noise_mode"] != "none" and r["student_accuracy"] >= fraction * ref)
    return ok[0] if ok else None


def check_smallest_epsilon(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(rows, fraction)`` → the smallest ε whose student reaches ``fraction`` × the non-private student.

    Rows are sweep rows (``noise_mode``, ``epsilon``, ``student_accuracy``,
    ``teacher_accuracy``); return ``None`` if no ε gets there. Typical mistakes
    recognised: comparing with the teacher instead of the non-private student,
    taking the first row in list order instead of the smallest ε, counting the
    ``none`` row (ε = ∞), returning an accuracy instead of an ε.
    """
    name = "smallest ε"

    def sweep(teacher, *rows):
        return [{"noise_mode": m, "epsilon": e, "student_accuracy": a, "teacher_accuracy": teacher}
                for m, e, a in rows]

    # each sweep isolates one mistake: list order (1), the 'none' row (2), the teacher as reference (3)
    cases = [
        (sweep(0.90, ("rr", 10, 0.9), ("rr", 2, 0.8), ("rr", 5, 0.87), ("none", math.inf, 0.95)), 0.9),
        (sweep(0.98, ("rr", 1, 0.3), ("rr", 2, 0.5), ("rr", 8, 0.7), ("none", math.inf, 0.96)), 0.9),
        (sweep(0.98, ("rr", 0.5, 0.2), ("rr", 1, 0.88), ("rr", 4, 0.93), ("none", math.inf, 0.94)), 0.9),
    ]
    values = []
    for rows, frac in cases:
        try:
            values.append(_call(fn, [dict(r) for r in rows], frac,
                                call=f"{getattr(fn, '__name__', 'fn')}(rows, {frac})"))
        except _LearnerError as err:
            return _raised(name, err, verbose)
    ref = [_reference_smallest_epsilon(r, f) for r, f in cases]
    same = lambda a, b: (a is None and b is None) or (a is not None and b is not None and _close(float(a), float(b)))  # noqa: E731
    if all(same(v, r) for v, r in zip(values, ref)):
        return _finish(name, True, "right on all three sweeps, including the one where no ε gets there (None).",
                       verbose=verbose)
    if same(values[0], 10):
        return _finish(name, False, "you took the first qualifying row in list order; sort by ε (or take the "
                       "minimum ε) — sweeps are not always listed in ε order.", "unsorted", verbose)
    if same(values[1], math.inf):
        return _finish(name, False, "you returned ε = ∞ (the 'none' row): the non-private run is the reference, not "
                       "a candidate; return None when no private ε gets there.", "counts_none", verbose)
    if same(values[2], 4):
        return _finish(name, False, "you compared with the teacher's accuracy. The question is how much of the "
                       "*non-private student* (mode 'none') survives: same student, same steps, no noise.",
                       "teacher_reference", verbose)
    if values[0] is not None and not isinstance(values[0], bool) and 0 < float(values[0]) <= 1 and ref[0] == 5:
        return _finish(name, False, "you returned an accuracy; return the ε of that row.", "returned_accuracy",
                       verbose)
    i = next(i for i, (v, r) in enumerate(zip(values, ref)) if not same(v, r))
    return _finish(name, False, f"on test sweep {i + 1} you returned {values[i]!r}, expected {ref[i]!r}.",
                   "wrong_value", verbose)


def reference_epsilon_lower_bound(tpr: float, fpr: float, delta: float = 0.0) -> float:
    """ε that any (ε, δ)-DP mechanism needs for an attack with this TPR and FPR (Kairouz et al. 2015).

    (ε, δ)-DP forces TPR ≤ e^ε·FPR + δ and 1−FPR ≤ e^ε·(1−TPR) + δ, so
    ε ≥ max(ln((TPR−δ)/FPR), ln((1−FPR−δ)/(1−TPR)), 0). Point estimates give
    a point estimate of the bound; use confidence intervals on TPR and FPR
    before claiming it.
    """
    best = 0.0
    for num, den in ((tpr - delta, fpr), (1.0 - fpr - delta, 1.0 - tpr)):
        if num <= 0:
            continue
        best = max(best, math.inf if den <= 0 else math.log(num / den))
    return best


_LB_CASES = [  # (tpr, fpr, delta, what the case catches)
    (0.5, 0.1, 0.0, None),
    (0.95, 0.5, 0.0, "other_side"),
    (0.3, 0.3, 0.0, None),
    (0.1, 0.3, 0.0, "clip"),
    (0.02, 0.001, 0.01, "delta"),
    (0.6, 0.2, 1e-5, None),
    (0.01, 0.0, 1e-5, "fpr_zero"),
]


def check_epsilon_lower_bound(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(tpr, fpr, delta)`` → the smallest ε consistent with an attack's TPR and FPR.

    Reference: :func:`reference_epsilon_lower_bound`. Each test case targets a
    typical mistake: only the ln(TPR/FPR) side (the other side, ln((1−FPR)/(1−TPR)),
    can be larger); no clipping at 0; δ ignored; FPR = 0 (the bound is ∞);
    log10 instead of ln; the ratio inverted.
    """
    name = "ε lower bound"
    values = []
    for tpr, fpr, delta, _ in _LB_CASES:
        call = f"{getattr(fn, '__name__', 'fn')}(tpr={tpr}, fpr={fpr}, delta={delta})"
        try:
            values.append(_float(_call(fn, tpr, fpr, delta, call=call)))
        except _LearnerError as err:
            if isinstance(err.exc, ZeroDivisionError):
                return _finish(name, False, "with FPR = 0 your function divides by zero. If the attack never fires on "
                               "non-members but sometimes on members (TPR > δ), no finite ε explains it: return "
                               "math.inf.", "fpr_zero", verbose)
            return _raised(name, err, verbose)
    ref = [reference_epsilon_lower_bound(t, f, d) for t, f, d, _ in _LB_CASES]
    if _matches(values, ref, rel=1e-6, abs_=1e-9):
        return _finish(name, True, f"right on all {len(ref)} cases (e.g. TPR=0.5, FPR=0.1 → ε ≥ ln 5 = "
                       f"{math.log(5):.4f}; TPR=0.95, FPR=0.5 → ε ≥ {ref[1]:.4f} from the other side).",
                       verbose=verbose)
    finite = [(v, r) for v, r in zip(values, ref) if math.isfinite(r)]
    if all(_close(v, r / math.log(10), 1e-6, 1e-9) for v, r in finite):
        return _finish(name, False, "your values are ln(...)/ln(10): use the natural log — DP's e^ε is base e.",
                       "log10", verbose)
    if _close(values[0], -math.log(5), 1e-6):
        return _finish(name, False, "your ratio is upside down: DP bounds TPR ≤ e^ε·FPR + δ, so ε ≥ ln((TPR−δ)/FPR).",
                       "inverted", verbose)
    hints = {
        "other_side": ("one_sided", "use both sides of the DP inequality: besides TPR ≤ e^ε·FPR + δ, also "
                       "1−FPR ≤ e^ε·(1−TPR) + δ. At TPR=0.95, FPR=0.5 the second gives ln(0.5/0.05) = 2.30 while the "
                       "first gives only ln(1.9) = 0.64."),
        "clip": ("negative", "a lower bound on ε is never negative: when the attack is worse than guessing, "
                 "the bound is 0 (ε ≥ 0 always holds). Clip at 0."),
        "delta": ("no_delta", "subtract δ: with probability δ a DP mechanism may misbehave, so only TPR − δ (and "
                  "1 − FPR − δ) must be explained by e^ε. At TPR=0.02, FPR=0.001, δ=0.01: ln(0.01/0.001) = 2.30, "
                  "not ln 20 = 3.00."),
        "fpr_zero": ("fpr_zero", "with FPR = 0 and TPR > δ, no finite ε explains the attack: return math.inf "
                     "(and be wary: FPR = 0 measured on a finite sample is an estimate — see the next cells)."),
    }
    for (tpr, fpr, delta, tag), v, r in zip(_LB_CASES, values, ref):
        if not _close(v, r, 1e-6, 1e-9):
            if tag in hints:
                code, msg = hints[tag]
                return _finish(name, False, msg, code, verbose)
            return _finish(name, False, f"for TPR={tpr}, FPR={fpr}, δ={delta} you returned {v:.4f}, expected "
                           f"{r:.4f} = max(ln((TPR−δ)/FPR), ln((1−FPR−δ)/(1−TPR)), 0).", "wrong_value", verbose)
    return _finish(name, False, "some values differ from the reference.", "wrong_value", verbose)  # pragma: no cover
