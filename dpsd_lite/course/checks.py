"""Self-checks for the assignment notebooks: a learner's code against stored values.

Each ``check_*`` function takes the learner's implementation, runs it on fixed
inputs, compares the results with **stored expected values**, **prints**
specific, kind feedback and **returns** a :class:`CheckResult` (truthy if and
only if it passed; its ``mistake`` names the diagnosed error for tests and
graders).

This module contains no solution: nothing here computes what an exercise asks
for, and it imports none of the package functions an exercise asks learners to
write. The expected values (and the values that typical mistakes produce) sit
in ``check_values.json`` next to this file. They were computed once from the
instructor solutions by ``tests/check_values_oracle.py``, which also checks
them against the package's own functions; ``tests/test_checks.py`` fails if
the table is stale.

How answers are judged
----------------------
* Deterministic answers (a keep probability, a σ, a loss value) are compared
  with the stored values on a grid of inputs, to a relative tolerance.
* Random mechanisms (randomized response) are checked statistically: noise
  from a seed (``NoiseSource.from_seed``: a lesson setting, never a real
  release), tens of thousands of draws, and a tolerance of several standard
  errors per estimated probability, against the output distribution written
  out in the check from the stored keep probabilities. A correct sampler
  passes (false alarm well below 1e-3); the typical mistakes move some
  probability by ten standard errors or more and fail.
* When an answer is wrong, the checker compares it with the stored values of
  typical mistakes (e.g. ``e^ε/(e^ε+k)`` for the RR keep probability) and names
  the one it matches; otherwise it shows the first input where the answer
  differs.

A learner's ``NotImplementedError`` is not caught: "run all" stops at the first
unfinished exercise, with a note saying which one. With the environment
variable ``DPSD_STRICT_CHECKS=1`` (set by the notebook tests) a failed check
also raises ``AssertionError``, so a broken instructor notebook fails CI.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..noise import NoiseSource

__all__ = [
    "CheckResult",
    "check_rr_keep_probability",
    "check_randomized_response",
    "check_choose_k",
    "check_selective_rr",
    "check_rr_channel_loss",
    "check_gaussian_delta",
    "check_gaussian_sigma",
    "check_label_noise_std",
    "check_composed_epsilon",
    "check_generator_loss",
    "check_generator_step",
    "check_sweep",
    "check_smallest_epsilon",
    "check_epsilon_lower_bound",
    "check_counting_p_value",
    "check_counting_epsilon",
    "VALUES_PATH",
]

PASS, FAIL = "✅", "❌"
SIGMAS = 5.5  # statistical tolerance, in standard errors per estimated probability
VALUES_PATH = Path(__file__).with_name("check_values.json")


@functools.lru_cache(maxsize=1)
def _values() -> dict:
    """The stored expected values (``check_values.json``), read once."""
    return json.loads(VALUES_PATH.read_text(encoding="utf-8"))


def _table(name: str):
    return copy.deepcopy(_values()[name])


def _stored_keep(epsilon: float, k: int) -> float:
    """The keep probability of k-ary RR at ε, looked up in the stored table of exercise 1.1."""
    t = _values()["keep_probability"]
    for (e, kk), v in zip(t["cases"], t["expected"]):
        if math.isclose(e, epsilon) and int(kk) == int(k):
            return v
    raise KeyError(f"no stored keep probability for ε={epsilon}, k={k}")


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
    """Noise for a statistical check, from a seed: ``NoiseSource.from_seed`` (a lesson setting, said openly).

    Yields the generator the learner's sampler should draw from. The global
    torch and NumPy generators are also seeded (for samplers that ignore the
    ``generator`` argument) and restored afterwards, so the learner's own
    random state is left alone.
    """
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield NoiseSource.from_seed(seed).generator()
        finally:
            np.random.set_state(np_state)


def _float(x) -> float:
    if torch.is_tensor(x):
        return float(x.detach().reshape(-1)[0]) if x.numel() == 1 else math.nan
    return float(x)


def _close(a, b, rel=1e-6, abs_=1e-12) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isinf(a) or math.isinf(b):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return False
    return abs(a - b) <= max(abs_, rel * abs(b))


def _matches(values, candidate, rel=1e-6, abs_=1e-12) -> bool:
    return len(values) == len(candidate) and all(_close(v, c, rel, abs_) for v, c in zip(values, candidate))


def _fmt_eps(e) -> str:
    return f"{e:g}"


def _numbers(fn, cases, name, call_text, not_number_hint=""):
    """Call ``fn(*case)`` for every case; returns (values, None) or (None, CheckResult of the failure)."""
    values = []
    for case in cases:
        call = f"{getattr(fn, '__name__', 'fn')}({call_text.format(*case)})"
        out = _call(fn, *case, call=call)
        try:
            values.append(_float(out))
        except (TypeError, ValueError):
            raise _LearnerError(TypeError(f"returned {type(out).__name__} {out!r}, not a number. "
                                          f"{not_number_hint}".strip()), call) from None
    return values


def _named_mistake(values, mistakes: dict, messages: dict, rel=1e-6, abs_=1e-12):
    """(message, code) of the first typical mistake in ``messages`` whose stored values ``mistakes[code]`` the
    learner's ``values`` match, or None."""
    return next(((msg, code) for code, msg in messages.items() if _matches(values, mistakes[code], rel, abs_)), None)


def _first_difference(values, expected, rel=1e-6, abs_=1e-12) -> int:
    """Index of the first value that differs from the expected one."""
    return next(i for i, (v, r) in enumerate(zip(values, expected)) if not _close(v, r, rel, abs_))


def _check_stored(name, fn, table, cases, call_text, messages, verbose, passed, differs, rel=1e-6,
                  abs_=1e-12) -> CheckResult:
    """A deterministic check: ``fn(*case)`` for every stored case must give ``table["expected"]``.

    Passes with the words ``passed(expected)``; otherwise names the typical mistake whose stored values
    (``table["mistakes"]``, worded in ``messages``) the answers match, or else shows the first case that differs,
    in the words ``differs(case, value, expected)``.
    """
    try:
        values = _numbers(fn, cases, name, call_text)
    except _LearnerError as err:
        return _raised(name, err, verbose)
    ref = table["expected"]
    if _matches(values, ref, rel, abs_):
        return _finish(name, True, passed(ref), verbose=verbose)
    named = _named_mistake(values, table["mistakes"], messages, rel, abs_)
    if named is not None:
        return _finish(name, False, *named, verbose)
    i = _first_difference(values, ref, rel, abs_)
    return _finish(name, False, differs(cases[i], values[i], ref[i]), "wrong_value", verbose)


def _not_a_scalar_loss(name, loss, who: str, how: str, verbose):
    """The failed CheckResult if ``loss`` is not a scalar tensor (``who`` calls .backward() on it; ``how`` says
    how to make it one), else None."""
    if not torch.is_tensor(loss):
        return _finish(name, False, f"return the loss as a tensor (got {type(loss).__name__}): {who} needs "
                       "it to call .backward(). Don't use .item() or float().", "not_a_tensor", verbose)
    if loss.numel() != 1:
        return _finish(name, False, f"the loss should be one number (a scalar), got shape {tuple(loss.shape)}: "
                       f"{how}", "not_scalar", verbose)
    return None


# --------------------------------------------------------------------------
# Assignment 1: randomized response, selective (top-k, prior-based) RR, and the RR-channel loss
# --------------------------------------------------------------------------

_KEEP_MESSAGES = {
    "denominator_k": "your keep probability looks like e^ε/(e^ε+k): the denominator should count the k−1 *other* "
                     "answers, e^ε/(e^ε+k−1). (Try k = 1: with one possible answer RR must return it with "
                     "probability 1.)",
    "binary": "you return e^ε/(1+e^ε) for every k: that is binary RR (k = 2). With k answers the true one "
              "competes with k−1 others: e^ε/(e^ε+k−1).",
    "no_exp": "your formula uses ε where it needs e^ε: the ratio of keep to replace probabilities must be exactly "
              "e^ε, so the keep probability is e^ε/(e^ε+k−1).",
    "inverted": "your keep probability *falls* as ε grows. A larger ε means less privacy, so the true answer should "
                "be kept more often: check the sign in the exponent (e^ε/(e^ε+k−1) = 1/(1+(k−1)e^−ε)).",
    "other_answer": "you return 1/(e^ε+k−1), the probability of one particular *other* answer. The true answer gets "
                    "the e^ε in the numerator: e^ε/(e^ε+k−1).",
}


def check_rr_keep_probability(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(epsilon, k)`` = probability that k-ary RR returns the true answer, e^ε/(e^ε+k−1).

    Compared with the stored values on 24 (ε, k) pairs. Typical mistakes
    recognised: ``e^ε/(e^ε+k)``, the binary formula for all k, ε instead of
    e^ε, the sign of ε flipped, the probability of one *other* answer.
    """
    name = "keep probability"
    table = _table("keep_probability")
    cases = [tuple(c) for c in table["cases"]]
    values = []
    for e, k in cases:
        try:
            values.append(_float(_call(fn, e, k, call=f"{getattr(fn, '__name__', 'fn')}({e}, {k})")))
        except _LearnerError as err:
            return _raised(name, err, verbose)
        except (TypeError, ValueError):
            return _finish(name, False, f"for ε={e}, k={k} your function did not return a number.", "not_a_number",
                           verbose)
    ref = table["expected"]
    if _matches(values, ref):
        tip = ""
        try:
            big = _float(fn(800.0, 10))
            if not math.isfinite(big):
                raise OverflowError
        except Exception:  # noqa: BLE001 - only a tip
            tip = ("\n   Tip: at very large ε (try 800) e^ε overflows; 1/(1+(k−1)e^−ε) is the same number "
                   "and never does.")
        example = ref[cases.index((1.0, 10))]
        return _finish(name, True, f"correct on all {len(ref)} (ε, k) pairs, e.g. ε=1, k=10 → {example:.6f}.{tip}",
                       verbose=verbose)
    named = _named_mistake(values, table["mistakes"], _KEEP_MESSAGES)
    if named is not None:
        return _finish(name, False, *named, verbose)
    if any(math.isnan(v) or not 0.0 <= v <= 1.0 for v in values):
        bad = next((c, v) for c, v in zip(cases, values) if math.isnan(v) or not 0 <= v <= 1)
        return _finish(name, False, f"for ε={bad[0][0]}, k={bad[0][1]} you returned {bad[1]}, which is not a "
                       "probability (it must lie in [0, 1]).", "not_a_probability", verbose)
    i = _first_difference(values, ref)
    (e, k), v, r = cases[i], values[i], ref[i]
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


def _draw_labels(name, fn, args, num_classes, seed, call, verbose):
    """The learner's sampler ``fn(*args, generator=g)`` run on noise from ``seed`` (:func:`_seeded`); ``args[0]``
    are the true labels. Returns (released labels, None), or (None, the failed CheckResult) if it raised or
    returned no labels."""
    with _seeded(seed) as gen:
        try:
            out = _call(fn, *args, generator=gen, call=call)
        except _LearnerError as err:
            return None, _raised(name, err, verbose)
    out, problem = _as_labels(out, len(args[0]), num_classes)
    if problem:
        return None, _finish(name, False, problem, "bad_output", verbose)
    return out, None


def _rate_mistake(rate, n, candidates):
    """(message, code) of the first of ``candidates`` (code, rate, message: typical mistakes) whose rate the
    ``rate`` measured over ``n`` draws is within SIGMAS standard errors of, or None."""
    for code, value, msg in candidates:
        if abs(rate - value) <= SIGMAS * math.sqrt(max(value * (1 - value), 1e-12) / n) + 1e-12:
            return msg, code
    return None


def check_randomized_response(fn, verbose: bool = True, seed: int = 0) -> CheckResult:
    """Check a k-ary randomized response sampler, statistically.

    ``fn(labels, epsilon, num_classes, generator=None)`` gets a LongTensor of
    true labels and returns one released label per input. For K = 10, ε = 1
    and K = 3, ε = 2 (10,000–20,000 draws per true class) the empirical
    P(released = j | true = i) must match the keep probability p (stored) on
    the diagonal and (1−p)/(K−1) elsewhere within 5.5 standard errors.

    Typical mistakes recognised: no noise; keep e^ε/(e^ε+K); drawing the
    replacement from all K classes (the true one included); a uniform output;
    replacements that are not uniform over the other classes.
    """
    name = "randomized response"
    measured = []
    for case in _table("randomized_response")["cases"]:
        eps, K, per_class, p = case["epsilon"], case["num_classes"], case["per_class"], case["keep"]
        y = torch.arange(K).repeat_interleave(per_class)
        y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]
        out, failed = _draw_labels(
            name, fn, (y.clone(), eps, K), K, seed, verbose=verbose,
            call=f"{getattr(fn, '__name__', 'fn')}(labels, epsilon={eps}, num_classes={K}, generator=g)")
        if failed is not None:
            return failed
        obs, n = _transition(y, out, K)
        kept = float((out == y).double().mean())
        se = math.sqrt(p * (1 - p) / len(y))
        where = f"(ε={_fmt_eps(eps)}, K={K})"
        if abs(kept - p) > SIGMAS * se:
            e = math.exp(eps)
            mistake = _rate_mistake(kept, len(y), [  # keep rates of typical mistakes, written out (none is the answer)
                ("no_noise", 1.0, "every label came back unchanged: that releases the true answer, ε = ∞. "
                 f"Keep it with probability e^ε/(e^ε+K−1) = {p:.3f}, otherwise answer another class."),
                ("denominator_k", e / (e + K),
                 "your keep rate matches e^ε/(e^ε+K): the denominator should count the K−1 *other* answers."),
                ("replacement_includes_true", p + (1 - p) / K,
                 "when you replace the answer you draw from all K classes, so the true label also comes back "
                 f"'by chance': it is kept {100 * (p + (1 - p) / K):.1f}% of the time instead of {100 * p:.1f}%, and "
                 "the likelihood ratio exceeds e^ε (you leak more than ε). Draw the replacement from the K−1 "
                 "*other* classes."),
                ("uniform", 1.0 / K, "your output looks uniform (the true label is kept only at the chance rate "
                 "1/K): that is perfectly private but useless. Keep it with probability e^ε/(e^ε+K−1)."),
                ("binary", e / (1 + e),
                 "your keep rate matches e^ε/(1+e^ε), the binary formula: with K classes use e^ε/(e^ε+K−1)."),
                ("inverted", 1.0 / (1.0 + (K - 1) * e),
                 "your keep rate matches 1/(1+(K−1)e^ε): the sign of ε is flipped, so *more* ε gives *more* noise."),
            ])
            if mistake is not None:
                msg, code = mistake
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
        measured.append((eps, K, kept, p))
    lines = ", ".join(f"K={K}, ε={_fmt_eps(e)}: kept {100 * kept:.1f}% (expected {100 * p:.1f}%)"
                      for e, K, kept, p in measured)
    return _finish(name, True, f"the output distribution matches K-ary RR ({lines}).", verbose=verbose,
                   measured=measured)


_CHOOSE_K_MESSAGES = {
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


def check_choose_k(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(prior, epsilon)`` → k per row (LongTensor B), the RR-with-prior set size.

    The best k maximises (prior mass of the top-k classes) × e^ε/(e^ε+k−1)
    (Ghazi et al. 2021). Compared with the stored best k of 131 priors (4
    values of ε), chosen so that the best k wins by a clear margin. Typical
    mistakes recognised: always k = K, always k = 1, k off by one (a 0-based
    argmax), cumulative mass of an unsorted prior, keep e^ε/(e^ε+k).
    """
    name = "choose k"
    rows_total = 0
    diffs = []
    codes = []
    for case in _table("choose_k"):
        eps = case["epsilon"]
        prior = torch.tensor(case["prior"], dtype=torch.float32)
        want = torch.tensor(case["k"])
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
        rows_total += B
        bad = k != want
        if bad.any():
            i = int(bad.nonzero()[0])
            diffs.append((eps, prior[i], int(k[i]), int(want[i])))
            found = set()
            if torch.all(k == K):
                found.add("always_K")
            if torch.all(k == 1):
                found.add("always_1")
            if torch.all(k == want - 1):
                found.add("off_by_one")
            for code, ks in case["mistakes"].items():
                if torch.equal(k, torch.tensor(ks)):
                    found.add(code)
            codes.append(found)
    if not diffs:
        return _finish(name, True, f"your k maximises (top-k prior mass) × keep(k) on all {rows_total} priors.",
                       verbose=verbose)
    common = set.intersection(*codes) if codes else set()
    for code in ("always_1", "off_by_one", "unsorted", "denominator_k", "always_K"):
        if code in common:
            return _finish(name, False, _CHOOSE_K_MESSAGES[code], code, verbose)
    eps, p, k, want = diffs[0]
    shown = ", ".join(f"{v:.2f}" for v in p.tolist())
    msg = (f"for the prior [{shown}] at ε={_fmt_eps(eps)} the best k is {want}, but you returned {k}"
           + ("" if 1 <= k <= len(p) else ", which is not a set size in 1..K")
           + f". Compare score(k) = (mass of the top-k classes) × e^ε/(e^ε+k−1) at k = {want} and k = {k}.")
    return _finish(name, False, msg, "wrong_k", verbose)


def _rr_with_prior_distribution(true_label, in_set, k, keep):
    """K probabilities of the released label under RR-with-prior, for one true label (written out here).

    In the set: the true label with probability ``keep``, each other member
    with (1 − keep)/(k − 1). Outside the set: each member with 1/k.
    """
    K = len(in_set)
    w = torch.zeros(K, dtype=torch.float64)
    if in_set[true_label]:
        if k > 1:
            w[in_set] = (1 - keep) / (k - 1)
        w[true_label] = keep
    else:
        w[in_set] = 1.0 / k
    return w


def check_selective_rr(fn, verbose: bool = True, seed: int = 0, per_cell: int = 1000) -> CheckResult:
    """Check selective (top-k, prior-based) randomized response, statistically.

    ``fn(labels, prior, epsilon, generator=None)``: true labels (B), the prior
    (B×K, rows sum to 1) and ε; returns one released label per query. The set
    is the prior's top-k classes with k from :func:`check_choose_k`'s rule; a
    true label inside the set is kept with probability e^ε/(e^ε+k−1), else
    replaced by a uniform *other* member of the set; a true label outside the
    set is replaced by a uniform member of the set. Four priors (stored with
    their k = 2, 3, 10, 1 and sets) × 10 true labels × 1,000 draws at ε = 1,
    per-cell tolerance 5.5 s.e.

    Typical mistakes recognised: returning a true label outside the set (leak);
    ignoring the prior; keep probability with K instead of k; replacement
    drawn from the whole set; non-uniform answers for labels outside the set.
    """
    name = "selective RR"
    table = _table("selective_rr")
    eps, K = table["epsilon"], len(table["priors"][0])
    keep_of = {int(k): v for k, v in table["keep"].items()}
    priors = [torch.tensor(p) for p in table["priors"]]
    set_masks = []
    for members in table["sets"]:
        m = torch.zeros(K, dtype=torch.bool)
        m[members] = True
        set_masks.append(m)
    ks = table["k"]
    prior = torch.stack([p for p in priors for _ in range(K * per_cell)])
    y = torch.arange(K).repeat_interleave(per_cell).repeat(len(priors))
    group = torch.arange(len(priors)).repeat_interleave(K * per_cell)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    prior, y, group = prior[order], y[order], group[order]
    out, failed = _draw_labels(name, fn, (y.clone(), prior.clone(), eps), K, seed, verbose=verbose,
                               call=f"{getattr(fn, '__name__', 'fn')}(labels, prior, epsilon={eps}, generator=g)")
    if failed is not None:
        return failed
    mask = torch.stack(set_masks)[group]
    k = torch.tensor(ks)[group]
    in_set_out = mask[torch.arange(len(y)), out]
    y_in_set = mask[torch.arange(len(y)), y]
    if not in_set_out.all():
        outside = ~in_set_out
        leak = outside & ~y_in_set & (out == y)
        if leak.sum() > 0.5 * (outside & ~y_in_set).sum() and leak.any():
            return _finish(name, False, "when the true label is outside the top-k set you returned it unchanged. "
                           "That reveals it exactly (ε = ∞ for those queries). RR with a prior always answers "
                           "*inside* the set: return a uniformly random member of the set.", "leak_outside", verbose)
        plain = keep_of[K]
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
    for g_id, kk in enumerate(ks):
        if kk == 1:
            continue
        sel = (group == g_id) & y_in_set
        kept = float((out[sel] == y[sel]).double().mean())
        p = keep_of[kk]
        n = int(sel.sum())
        if abs(kept - p) > SIGMAS * math.sqrt(p * (1 - p) / n):
            e = math.exp(eps)
            mistake = _rate_mistake(kept, n, [
                ("keep_with_K", keep_of[K],
                 f"inside a top-{kk} set you keep the true label with probability e^ε/(e^ε+K−1) (K = {K}): "
                 f"RR runs over the k = {kk} classes of the set, so use e^ε/(e^ε+k−1)."),
                ("replacement_includes_true", p + (1 - p) / kk,
                 "when you replace a label inside the set you draw from the whole set, the true label included: it "
                 "comes back too often and the likelihood ratio exceeds e^ε. Draw from the k−1 *other* members."),
                ("denominator_k", e / (e + kk),
                 "inside the set your keep rate matches e^ε/(e^ε+k): the denominator counts the k−1 other answers."),
                ("no_noise", 1.0, "inside the set you always return the true label: RR must keep it only with "
                 "probability e^ε/(e^ε+k−1)."),
            ])
            if mistake is not None:
                return _finish(name, False, *mistake, verbose)
            return _finish(name, False, f"for a top-{kk} set the true label came back {100 * kept:.1f}% of the time; "
                           f"expected e^ε/(e^ε+k−1) = {100 * p:.1f}%.", "wrong_keep_rate", verbose)
    # full distribution, per prior and true label
    for g_id, (m, kk) in enumerate(zip(set_masks, ks)):
        sel = group == g_id
        obs, n = _transition(y[sel], out[sel], K)
        exp = torch.stack([_rr_with_prior_distribution(t, m, kk, keep_of[kk]) for t in range(K)])
        z, (i, j) = _worst_z(obs, exp, n)
        if z > SIGMAS:
            if not bool(m[i]):
                msg = (f"when the true label ({i}) is outside the top-{kk} set, answer with a *uniformly random* "
                       f"member of the set: you answered {j} {100 * float(obs[i, j]):.1f}% of the time, expected "
                       f"{100 * float(exp[i, j]):.1f}%.")
                return _finish(name, False, msg, "outside_not_uniform", verbose)
            msg = (f"with a top-{kk} set and true label {i}, you answered {j} {100 * float(obs[i, j]):.1f}% of the "
                   f"time; expected {100 * float(exp[i, j]):.1f}%. Replacements must be uniform over the other "
                   "members of the set.")
            return _finish(name, False, msg, "not_uniform", verbose)
    return _finish(name, True, f"answers stay in the top-k set and match RR-with-prior for k = "
                   f"{', '.join(map(str, sorted(set(ks))))} at ε = {_fmt_eps(eps)} ({len(y):,} draws).",
                   verbose=verbose)


_RR_LOSS_MESSAGES = {
    "clean_label": "you used the released label as if it were the teacher's true label (plain cross-entropy). "
                   "Under RR the released label is often a replacement; the loss must be the likelihood of the "
                   "*released* label: log Σ_y q(y)·P(released | y), with q the student's class probabilities.",
    "no_outside_rows": "you forgot the channel rows outside the answer set: if the true class y is outside the set, "
                       "RR still answers — each member with probability 1/k — so P(released | y) = 1/k there, not 0.",
    "outside_as_other": "for a true class outside the answer set you used (1−keep)/(k−1), the probability of one "
                        "*other* member. Outside the set RR answers a uniform member: P(released | y) = 1/k.",
    "keep_with_K": "your channel ignores the answer set: it is plain K-ary RR over all K classes. Use each query's "
                   "set: k = answer_set.sum(1) members, keep probability e^ε/(e^ε+k−1).",
    "log_inside": "you averaged the log of the channel over the student's classes, Σ_y q(y)·log P(released | y). "
                  "The likelihood is the log of the *mixture*: log Σ_y q(y)·P(released | y) (the true class is "
                  "unknown, so its probabilities are summed before the log).",
    "sum": "your loss is the sum over the queries: take the mean, so the step size does not depend on the batch.",
    "set_renormalised": "you restricted the student to the answer set and used the released label as if it were "
                        "clean. The released label may be a replacement (and the true class may be outside the "
                        "set): weigh every class y by the channel P(released | y).",
}


def check_rr_channel_loss(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(student_logits, released, answer_set, epsilon)`` → the RR-channel (forward-corrected) loss.

    ``student_logits`` (B×K, float64, requires grad), ``released`` (B,) the
    labels RR-with-prior released, ``answer_set`` (B×K bool) each query's
    top-k set (k = ``answer_set.sum(1)``, the released label is in it). The
    loss is −mean_b log Σ_y q_b(y)·P(released_b | y): the negative
    log-likelihood of the released label under the student's class
    probabilities q pushed through the known RR channel (P = keep for the
    released label, (1−keep)/(k−1) for the other members, 1/k outside the set).

    Compared with stored values on two fixed batches (ε = 1 and 3, sets of
    size 1 to K); the loss must be a scalar tensor with a gradient to the
    logits. Typical mistakes recognised: the released label used as if clean;
    the channel rows outside the set forgotten (0) or given (1−keep)/(k−1);
    plain K-ary RR ignoring the set; the log inside the sum; sum over the
    batch; the student renormalised on the set with the label taken as clean.
    """
    name = "RR-channel loss"
    cases = _table("rr_channel_loss")
    values, losses = [], []
    for case in cases:
        K = len(case["logits"][0])
        logits = torch.tensor(case["logits"], dtype=torch.float64, requires_grad=True)
        released = torch.tensor(case["released"])
        mask = torch.zeros(len(case["sets"]), K, dtype=torch.bool)
        for b, s in enumerate(case["sets"]):
            mask[b, s] = True
        eps = case["epsilon"]
        try:
            loss = _call(fn, logits, released.clone(), mask.clone(), eps,
                         call=f"{getattr(fn, '__name__', 'fn')}(student_logits, released, answer_set, epsilon={eps})")
        except _LearnerError as err:
            hint = ""
            if isinstance(err.exc, ZeroDivisionError):
                hint = ("A set of size k = 1 has no *other* members: guard (1−keep)/(k−1) (it is never used there, "
                        "since the only member is the released label).")
            return _raised(name, err, verbose, hint)
        failed = _not_a_scalar_loss(name, loss, "the student", "average over the queries.", verbose)
        if failed is not None:
            return failed
        values.append(_float(loss))
        losses.append((loss, logits))
    if any(math.isnan(v) for v in values):
        return _finish(name, False, "your loss is NaN. Check the sets of size k = 1: there (1−keep)/(k−1) is 0/0. "
                       "Such a set has no other members, so that entry is never needed; the released label's "
                       "channel entry is keep = 1 and every class outside the set has 1/k = 1.", "nan", verbose)
    expected = [c["expected"] for c in cases]
    if _matches(values, expected, rel=1e-6, abs_=1e-9):
        for loss, logits in losses:
            if not loss.requires_grad:
                return _finish(name, False, "the value is right, but no gradient can reach the student's logits: "
                               "don't detach them or compute the loss under torch.no_grad().", "no_grad", verbose)
            loss.backward()
            if logits.grad is None or not torch.isfinite(logits.grad).all():
                return _finish(name, False, "the value is right, but the gradient with respect to the logits is "
                               "missing or not finite.", "no_grad", verbose)
        return _finish(name, True, f"right on both test batches (ε = 1: loss {values[0]:.4f}; ε = 3: {values[1]:.4f}), "
                       "gradients reach the student's logits.", verbose=verbose)
    mistakes = {code: [c["mistakes"][code] for c in cases] for code in _RR_LOSS_MESSAGES}
    named = _named_mistake(values, mistakes, _RR_LOSS_MESSAGES, rel=1e-6, abs_=1e-9)
    if named is not None:
        return _finish(name, False, *named, verbose)
    i = _first_difference(values, expected, rel=1e-6, abs_=1e-9)
    return _finish(name, False, f"on test batch {i + 1} (ε = {_fmt_eps(cases[i]['epsilon'])}) your loss is "
                   f"{values[i]:.6f}, expected {expected[i]:.6f} = −mean log Σ_y q(y)·P(released | y).",
                   "wrong_value", verbose)


# --------------------------------------------------------------------------
# Assignment 2: calibrating Gaussian noise for (ε, δ)
# --------------------------------------------------------------------------

_DELTA_MESSAGES = {
    "no_exp": "the second term needs the factor e^ε: δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2).",
    "mu_is_sigma": "you used μ = σ. One release with noise multiplier σ is μ-GDP with μ = 1/σ: more noise, smaller μ.",
    "plus_sign": "the two terms are *subtracted*: δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2).",
    "swapped": "the ±μ/2 are swapped between the two Φ terms: first Φ(−ε/μ + μ/2), then e^ε·Φ(−ε/μ − μ/2).",
}


def check_gaussian_delta(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(sigma, epsilon)`` = δ(ε) of one Gaussian release with noise multiplier σ.

    The analytic Gaussian mechanism (Balle & Wang 2018) with μ = 1/σ,
    δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2), stored on 20 (σ, ε) pairs.
    Typical mistakes recognised: the e^ε factor missing, μ = σ instead of 1/σ,
    a + instead of the −, the two Φ arguments swapped.
    """
    table = _table("gaussian_delta")
    cases = [tuple(c) for c in table["cases"]]
    return _check_stored(
        "Gaussian δ(ε)", fn, table, cases, "sigma={}, epsilon={}", _DELTA_MESSAGES, verbose, rel=1e-6, abs_=1e-10,
        passed=lambda ref: f"matches the analytic Gaussian mechanism on all {len(ref)} (σ, ε) pairs "
                           f"(e.g. σ=1, ε=1 → δ = {ref[cases.index((1.0, 1.0))]:.6f}).",
        differs=lambda case, v, r: f"for σ={case[0]}, ε={case[1]} you returned δ = {v:.6g}, expected {r:.6g} "
                                   "(μ = 1/σ; δ = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2)).")


def _gdp_epsilon(sigma, delta):
    """ε of one Gaussian release from Opacus's GDP conversion (only to word a message)."""
    try:
        from opacus.accountants.analysis.gdp import eps_from_mu

        return float(eps_from_mu(mu=1.0 / sigma, delta=delta))
    except Exception:  # noqa: BLE001 - only for the message
        return math.nan


def _is_round(v) -> bool:
    """A number a bracket edge is typically made of: an integer, or a power of 10 or of 2."""
    if not (v > 0 and math.isfinite(v)):
        return False
    return (abs(v - round(v)) < 1e-9 * max(1.0, v) or abs(math.log10(v) - round(math.log10(v))) < 1e-9
            or abs(math.log2(v) - round(math.log2(v))) < 1e-9)


def check_gaussian_sigma(fn, verbose: bool = True, rel: float = 1e-3) -> CheckResult:
    """Check ``fn(epsilon, delta)`` = the smallest noise multiplier σ making one Gaussian release (ε, δ)-DP.

    Compared with the stored exact σ (analytic Gaussian mechanism) on 16
    (ε, δ) pairs, ε from 0.02 (σ ≈ 132) to 20 (σ ≈ 0.25), to relative tolerance
    ``rel``. Typical mistakes recognised: a bisection bracket that never
    contained the answer (σ stuck at a bracket edge: not widened, or the
    update reversed); the classic formula (valid only for ε < 1); μ = 1/σ
    returned instead of σ; σ growing with ε or with δ; too little noise (not
    private) or too much (private but wasteful).
    """
    name = "Gaussian σ for (ε, δ)"
    table = _table("gaussian_sigma")
    cases = [tuple(c) for c in table["cases"]]
    try:
        values = _numbers(fn, cases, name, "epsilon={}, delta={}")
    except _LearnerError as err:
        return _raised(name, err, verbose)
    ref = table["expected"]
    if _matches(values, ref, rel=rel):
        return _finish(name, True, f"exact calibration on all {len(ref)} (ε, δ) pairs "
                       f"(e.g. ε=1, δ=1e-5 → σ = {ref[cases.index((1.0, 1e-5))]:.4f}; ε=0.02 → "
                       f"{ref[cases.index((0.02, 1e-5))]:.1f}).", verbose=verbose)
    if any(not (v > 0 and math.isfinite(v)) for v in values):
        (e, d), v = next(((c, v) for c, v in zip(cases, values) if not (v > 0 and math.isfinite(v))))
        return _finish(name, False, f"for ε={e}, δ={d} you returned σ = {v}: a noise multiplier is a positive, "
                       "finite number.", "not_positive", verbose)
    wrong = [(c, v, r) for c, v, r in zip(cases, values, ref) if not _close(v, r, rel)]
    stuck = {round(v, 9) for _, v, _ in wrong}
    if len(stuck) == 1 and (len(wrong) > 1 or _is_round(wrong[0][1])):
        v0 = wrong[0][1]
        if all(r > v0 for _, _, r in wrong) or all(r < v0 for _, _, r in wrong):
            (e, d), _, r = wrong[0]
            side = "above" if r > v0 else "below"
            return _finish(name, False, f"your σ is {v0:g} whenever the answer lies {side} it (e.g. ε={e:g}, δ={d:g}: "
                           f"the exact σ is {r:.4f}): the bisection ran into the edge of its bracket. Make sure the "
                           "bracket contains the answer before halving it — widen it (double hi while δ(ε; hi) > δ) "
                           "— and check the update: if δ(ε; mid) > δ, mid is not private enough, so lo = mid.",
                           "bracket", verbose)
    if _matches(values, table["mistakes"]["classic"], rel=rel):
        return _finish(name, False, "you used the classic formula σ = √(2 ln(1.25/δ))/ε, valid only for ε < 1 "
                       "(Dwork & Roth prove it only there). It is loose everywhere (e.g. ε=0.1, δ=1e-5: 48.4 instead "
                       "of 30.7) and can even be too small at large ε. Calibrate with the exact δ(ε; σ) of the "
                       "analytic Gaussian mechanism: solve δ(ε; σ) = δ for σ by bisection.", "classic", verbose)
    if _matches(values, [1.0 / r for r in ref], rel=rel):
        return _finish(name, False, "you returned μ = 1/σ. The exercise asks for the noise multiplier σ (the "
                       "noise std per unit of sensitivity); μ is its reciprocal.", "returned_mu", verbose)
    by_delta = {}
    for (e, d), v in zip(cases, values):
        by_delta.setdefault(d, []).append((e, v))
    for d, pts in by_delta.items():
        if all(b[1] > a[1] for a, b in zip(pts, pts[1:])):
            return _finish(name, False, "your σ shrinks when ε shrinks: noise must scale with 1/ε (a smaller ε, "
                           "i.e. more privacy, needs *more* noise).", "scales_with_eps", verbose)
    for e in (0.5, 2.0):
        lo, hi = values[cases.index((e, 1e-5))], values[cases.index((e, 1e-3))]
        if hi > lo * (1 + rel):
            return _finish(name, False, f"at ε={e} your σ is larger for δ=1e-3 ({hi:.4f}) than for δ=1e-5 "
                           f"({lo:.4f}): a smaller δ (a stronger guarantee) needs more noise.", "delta_direction",
                           verbose)
    for (e, d), v, r in wrong:
        if v < r:
            return _finish(name, False, f"at ε={e}, δ={d} your σ = {v:.4f} is below the exact {r:.4f}: with it one "
                           f"release is only ({_gdp_epsilon(v, d):.3g}, {d:g})-DP, not ({e:g}, {d:g}). Too little "
                           "noise breaks the promise.", "too_small", verbose)
    (e, d), v, r = wrong[0]
    return _finish(name, False, f"at ε={e}, δ={d} your σ = {v:.4f} is above the exact {r:.4f} "
                   f"({100 * (v / r - 1):.1f}% too much noise). That is private but wasteful: find the *smallest* σ "
                   "with δ(ε; σ) ≤ δ (bisection works: δ(ε; σ) decreases in σ).", "too_large", verbose)


_LABEL_MESSAGES = {
    "no_sensitivity": "you returned the noise multiplier σ itself. The noise std is σ × the L2 sensitivity; two "
                      "top-k probability vectors can be √2 apart, so multiply by √2.",
    "sensitivity_squared": "you multiplied by Δ² = 2 (or Δ = 2). The std scales with the sensitivity itself, "
                           "Δ = √2, the distance between two different one-hot vectors (variance scales with Δ²).",
    "sensitivity_divided": "you divided by the sensitivity: a query that can change more needs *more* noise, "
                           "std = σ·Δ.",
    "classic": "the sensitivity is right but σ comes from the classic formula: use your exact calibration from "
               "exercise 2.2.",
}


def check_label_noise_std(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(epsilon, delta)`` = noise std of the ``label`` mechanism, σ(ε, δ)·Δ with Δ = √2.

    Compared with stored values on 6 (ε, δ) pairs. Typical mistakes
    recognised: sensitivity forgotten (Δ = 1), Δ² = 2 (or Δ = 2) instead of
    Δ = √2, dividing by Δ, the classic σ.
    """
    table = _table("label_noise_std")
    cases = [tuple(c) for c in table["cases"]]
    return _check_stored(
        "label-noise std", fn, table, cases, "epsilon={}, delta={}", _LABEL_MESSAGES, verbose, rel=1e-3,
        passed=lambda ref: f"σ·√2 right on {len(ref)} (ε, δ) pairs "
                           f"(ε=1, δ=1e-5 → {ref[cases.index((1.0, 1e-5))]:.4f}).",
        differs=lambda case, v, r: f"at ε={case[0]}, δ={case[1]} you returned {v:.4f}, expected σ·√2 = {r:.4f}.")


_COMPOSE_MESSAGES = {
    "linear": "you composed linearly, ε₁·T. That is a valid bound (basic composition) but very loose: after 100 "
              "releases at σ=1 it says 438 where the truth is 92. Let an accountant do it: Opacus's RDPAccountant "
              "with history [(σ, 1.0, T)], or exactly: T Gaussian releases are μ-GDP with μ = √T/σ.",
    "sqrt_t": "you multiplied ε₁ by √T. The √T rule holds for μ (Gaussian DP: μ = √T/σ) or for the noise, not for "
              "ε; your values are *below* the true ε, i.e. they overclaim privacy.",
    "ignores_steps": "your ε does not change with the number of steps: every release about the same record spends "
                     "budget.",
}


def check_composed_epsilon(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(sigma, steps, delta)`` = ε after ``steps`` Gaussian releases about the same record.

    Any valid accountant passes: on 9 (σ, steps) pairs at δ = 1e-5 the answer
    must lie between the stored exact value (μ-GDP with μ = √steps/σ) and the
    stored Opacus RDP bound (plus 2%). Typical mistakes recognised: linear
    composition ε₁·T (valid but very loose), ε₁·√T (not a bound: too small),
    ignoring ``steps``.
    """
    name = "composed ε"
    table = _table("composed_epsilon")
    delta = table["delta"]
    cases = [(s, int(t), delta) for s, t in table["cases"]]
    try:
        values = _numbers(fn, cases, name, "sigma={}, steps={}, delta={}")
    except _LearnerError as err:
        return _raised(name, err, verbose)
    exact, rdp = table["exact"], table["rdp"]
    ok = [x * (1 - 1e-3) <= v <= r * 1.02 for v, x, r in zip(values, exact, rdp)]
    at = cases.index((1.0, 100, delta))
    if all(ok):
        how = "exact (μ-GDP)" if _matches(values, exact, rel=1e-3) else "RDP (Opacus)" if _matches(
            values, rdp, rel=2e-2) else "a valid accountant"
        return _finish(name, True, f"your ε is {how} on all {len(ok)} (σ, steps) pairs (σ=1, 100 steps → ε = "
                       f"{values[at]:.2f}; exact {exact[at]:.2f}).", verbose=verbose)
    named = _named_mistake(values, table["mistakes"], _COMPOSE_MESSAGES, rel=1e-3)
    if named is not None:
        return _finish(name, False, *named, verbose)
    i = ok.index(False)
    (s, t, _), v = cases[i], values[i]
    steps = f"{t} step{'s' if t != 1 else ''}"
    if v < exact[i]:
        return _finish(name, False, f"for σ={s}, {steps} you returned ε = {v:.3f}, below the exact {exact[i]:.3f}: "
                       "that overclaims privacy.", "too_small", verbose)
    return _finish(name, False, f"for σ={s}, {steps} you returned ε = {v:.3f}; a good accountant gives between "
                   f"{exact[i]:.3f} (exact) and {rdp[i]:.3f} (RDP).", "too_large", verbose)


# --------------------------------------------------------------------------
# Assignment 3: the generator's objective, the student as discriminator
# --------------------------------------------------------------------------

class _TinyGenerator(nn.Module):
    """A fixed, tiny class-conditional generator G(z, c) → 1×2×3 "images" in (−1, 1), float64.

    Self-contained on purpose: the stored values must not change when the
    package's own generator classes do. Any module called as ``generator(z, c)``
    works with the learner's functions.
    """

    nz, num_classes = 3, 4

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(self.num_classes, self.nz)
        self.fc = nn.Linear(2 * self.nz, 6)

    def forward(self, z, c):
        return torch.tanh(self.fc(torch.cat([z, self.embed(c)], dim=1))).view(-1, 1, 2, 3)


class _TinyStudent(nn.Module):
    """A fixed, tiny classifier of 1×2×3 images into 4 classes, float64."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, _TinyGenerator.num_classes)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


def _fill(module, phase: float):
    """Deterministic weights from a formula (no random generator: the same on every machine and torch version)."""
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            t = torch.arange(p.numel(), dtype=torch.float64)
            p.copy_((0.8 * torch.sin(phase + 1.3 * i + 0.7 * t)).view_as(p))
    return module


def _tiny_players(seed=0, batch=8):
    """(student, generator, z, c): fixed tiny float64 networks and inputs; ``seed`` selects one of a few sets."""
    with torch.random.fork_rng(devices=[]):  # nn's default initialisation draws from the global generator
        student = _fill(_TinyStudent().double(), 0.4 + seed)
        generator = _fill(_TinyGenerator().double(), 1.1 + 2 * seed)
    t = torch.arange(batch * _TinyGenerator.nz, dtype=torch.float64)
    z = torch.sin(0.37 * t + seed).view(batch, _TinyGenerator.nz) * 1.5
    c = (torch.arange(batch) * (seed + 1) + seed) % _TinyGenerator.num_classes
    return student, generator, z, c


def _has_grad(module) -> bool:
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())


_GEN_LOSS_MESSAGES = {
    "nll_on_logits": "you passed raw logits to nll_loss. nll_loss expects log-probabilities; "
                     "F.cross_entropy(logits, c) applies log_softmax for you.",
    "own_prediction": "you used the student's own prediction as the target (DAFL's one-hot loss). The generator is "
                      "class-conditional: aim at the requested class c.",
    "double_softmax": "you applied softmax before F.cross_entropy, which applies log_softmax itself: pass the logits.",
}


def check_generator_loss(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(student, generator, z, c)`` → the generator's loss, a scalar tensor.

    The loss is ``F.cross_entropy(student(generator(z, c)), c)``, computed so
    that gradients reach the generator only (the generator phase of
    ``transcribe.py`` in the private modes). Checked on fixed tiny networks of
    this module against stored values: the value (to 1e-6), the gradient of
    every generator parameter, no gradient in the student's, and the student's
    ``requires_grad`` restored. Typical mistakes recognised: G(z, c) detached
    or under ``no_grad``; the student's parameters not frozen; the student
    left frozen; the sign flipped; sum instead of mean; ``nll_loss`` on raw
    logits; the student's own argmax as target; softmax applied twice.
    """
    name = "generator loss"
    stored = _table("generator")["loss"]
    ref = stored["expected"]
    s, g, z, c = _tiny_players(0)
    try:
        loss = _call(fn, s, g, z.clone(), c.clone(), call=f"{getattr(fn, '__name__', 'fn')}(student, generator, z, c)")
    except _LearnerError as err:
        return _raised(name, err, verbose)
    failed = _not_a_scalar_loss(name, loss, "the generator", "average over the batch (reduction='mean').", verbose)
    if failed is not None:
        return failed
    value = float(loss.detach())
    if not _close(value, ref, rel=1e-6, abs_=1e-9):
        cands = [("sign", -ref, "your loss has the opposite sign. The generator *minimises* the student's "
                  "cross-entropy on the requested class c: it looks for images the student assigns to c. "
                  "(Maximising it would make images the student fails on, with no class to aim for.)"),
                 ("sum", ref * len(c), "your loss is the sum over the batch: use the mean (F.cross_entropy's "
                  "default), so the step size does not depend on the batch size.")]
        cands += [(code, stored["mistakes"][code], msg) for code, msg in _GEN_LOSS_MESSAGES.items()]
        for code, v, msg in cands:
            if _close(value, v, rel=1e-6, abs_=1e-9):
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
    for p, want in zip(g.parameters(), stored["grad"]):
        if not torch.allclose(p.grad.reshape(-1), torch.tensor(want, dtype=p.grad.dtype), rtol=1e-5, atol=1e-9):
            return _finish(name, False, "the value is right but the generator's gradient is not: does part of the "
                           "computation bypass autograd (a .detach(), .data or a NumPy round trip)?",
                           "wrong_gradient", verbose)
    if left_frozen:
        return _finish(name, False, "the loss and gradients are right, but your function left the student frozen "
                       "(requires_grad=False): its next training step would silently learn nothing. Restore "
                       "student.requires_grad_(True) before returning (try/finally is a good habit).",
                       "left_frozen", verbose)
    return _finish(name, True, f"value {value:.4f} is right; the gradient reaches every generator parameter "
                   "and none of the student's.", verbose=verbose)


def check_generator_step(fn, verbose: bool = True, lr: float = 0.1) -> CheckResult:
    """Check ``fn(student, generator, optimizer, z, c)``: one generator update, returning the loss.

    One correct step (zero the generator's gradients, the loss of
    :func:`check_generator_loss`, backward, ``optimizer.step()``) with SGD
    moves every generator parameter by −lr × the stored gradient; the check
    gives the generator stale gradients first and compares. Typical mistakes
    recognised: no ``zero_grad`` (stale gradients added), no
    ``optimizer.step()``, gradient ascent, the student changed, the student
    left frozen, the wrong value returned.
    """
    name = "generator step"
    stored = _table("generator")["step"]
    s, g, z, c = _tiny_players(1)
    grads = [torch.tensor(v, dtype=torch.float64).view_as(p) for v, p in zip(stored["grad"], g.parameters())]
    for p in g.parameters():  # stale gradients from an earlier step
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
    step = [b - lr * gr for b, gr in zip(before, grads)]
    if all(torch.allclose(a, x, rtol=1e-6, atol=1e-9) for a, x in zip(after, step)):
        try:
            v = _float(out)
        except (TypeError, ValueError):
            v = math.nan
        if not _close(v, stored["expected"], rel=1e-6, abs_=1e-9):
            return _finish(name, False, f"the update is right, but return the loss you stepped on "
                           f"({stored['expected']:.4f}); you returned {out!r}.", "wrong_return", verbose)
        if any(not p.requires_grad for p in s.parameters()):
            return _finish(name, False, "the update is right, but the student was left frozen (requires_grad=False).",
                           "left_frozen", verbose)
        return _finish(name, True, f"one SGD step is right (loss {stored['expected']:.4f}); the student is "
                       "untouched.", verbose=verbose)
    stale = [b - lr * (gr + 0.05) for b, gr in zip(before, grads)]
    if all(torch.allclose(a, x, rtol=1e-6, atol=1e-9) for a, x in zip(after, stale)):
        return _finish(name, False, "your update includes stale gradients from an earlier step: call "
                       "optimizer.zero_grad() before loss.backward() (PyTorch *adds* new gradients to old ones).",
                       "no_zero_grad", verbose)
    ascent = [b + lr * gr for b, gr in zip(before, grads)]
    if all(torch.allclose(a, x, rtol=1e-6, atol=1e-9) for a, x in zip(after, ascent)):
        return _finish(name, False, "your step goes uphill (gradient ascent): minimise the loss from exercise 3.1, "
                       "don't negate it.", "ascent", verbose)
    return _finish(name, False, "the generator's parameters after your step differ from one correct step "
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
    baseline row, accuracies as fractions in [0, 1]. Typical mistakes
    recognised: ε not passed on (every run has the same ε), the ``none``
    baseline missing, accuracies in percent, ε values missing.
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
        return _finish(name, False, "add the non-private baseline (noise mode 'none'): a trade-off needs the "
                       "ε = ∞ end to compare with.", "no_baseline", verbose)
    runs = f"{len(private)} private run{'s' if len(private) != 1 else ''}"
    return _finish(name, True, f"{runs} (ε = {', '.join(_fmt_eps(e) for e in sorted(set(eps_seen)))}) "
                   "and the non-private baseline.", verbose=verbose)


def _smallest_epsilon_cases():
    """Three small sweeps (rows, fraction); each isolates one mistake: list order, the 'none' row, the teacher."""
    def sweep(teacher, *rows):
        return [{"noise_mode": m, "epsilon": e, "student_accuracy": a, "teacher_accuracy": teacher}
                for m, e, a in rows]

    return [
        (sweep(0.90, ("rr", 10, 0.9), ("rr", 2, 0.8), ("rr", 5, 0.87), ("none", math.inf, 0.95)), 0.9),
        (sweep(0.98, ("rr", 1, 0.3), ("rr", 2, 0.5), ("rr", 8, 0.7), ("none", math.inf, 0.96)), 0.9),
        (sweep(0.98, ("rr", 0.5, 0.2), ("rr", 1, 0.88), ("rr", 4, 0.93), ("none", math.inf, 0.94)), 0.9),
    ]


def check_smallest_epsilon(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(rows, fraction)`` → the smallest ε whose student reaches ``fraction`` × the non-private student.

    Rows are sweep rows (``noise_mode``, ``epsilon``, ``student_accuracy``,
    ``teacher_accuracy``); return ``None`` if no ε gets there. Three sweeps,
    expected answers stored. Typical mistakes recognised: comparing with the
    teacher instead of the non-private student, taking the first row in list
    order instead of the smallest ε, counting the ``none`` row (ε = ∞),
    returning an accuracy instead of an ε.
    """
    name = "smallest ε"
    cases = _smallest_epsilon_cases()
    values = []
    for rows, frac in cases:
        try:
            values.append(_call(fn, [dict(r) for r in rows], frac,
                                call=f"{getattr(fn, '__name__', 'fn')}(rows, {frac})"))
        except _LearnerError as err:
            return _raised(name, err, verbose)
    want = _table("smallest_epsilon")["expected"]

    def same(a, b):
        if a is None or b is None:
            return a is None and b is None
        try:
            return _close(float(a), float(b))
        except (TypeError, ValueError):
            return False

    if all(same(v, r) for v, r in zip(values, want)):
        return _finish(name, True, "right on all three sweeps, including the one where no ε gets there (None).",
                       verbose=verbose)
    if same(values[0], 10):
        return _finish(name, False, "you took the first qualifying row in list order; sort by ε (or take the "
                       "minimum ε) — sweeps are not always listed in ε order.", "unsorted", verbose)
    if same(values[1], math.inf):
        return _finish(name, False, "you returned ε = ∞ (the 'none' row): the non-private run is the baseline, not "
                       "a candidate; return None when no private ε gets there.", "counts_none", verbose)
    if same(values[2], 4):
        return _finish(name, False, "you compared with the teacher's accuracy. The question is how much of the "
                       "*non-private student* (mode 'none') survives: same student, same steps, no noise.",
                       "teacher_baseline", verbose)
    if values[0] is not None and not isinstance(values[0], bool) and same(values[0], 0.87):
        return _finish(name, False, "you returned an accuracy; return the ε of that row.", "returned_accuracy",
                       verbose)
    i = next(i for i, (v, r) in enumerate(zip(values, want)) if not same(v, r))
    return _finish(name, False, f"on test sweep {i + 1} you returned {values[i]!r}, expected {want[i]!r}.",
                   "wrong_value", verbose)


_LB_CASES = [  # (tpr, fpr, delta, what the case catches)
    (0.5, 0.1, 0.0, None),
    (0.95, 0.5, 0.0, "other_side"),
    (0.3, 0.3, 0.0, None),
    (0.1, 0.3, 0.0, "clip"),
    (0.02, 0.001, 0.01, "delta"),
    (0.6, 0.2, 1e-5, None),
    (0.01, 0.0, 1e-5, "fpr_zero"),
]

_LB_HINTS = {
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


def check_epsilon_lower_bound(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(tpr, fpr, delta)`` → the smallest ε consistent with an attack's TPR and FPR.

    (ε, δ)-DP forces TPR ≤ e^ε·FPR + δ and 1−FPR ≤ e^ε·(1−TPR) + δ (Kairouz et
    al. 2015); the stored answers on 7 cases are the bound these give. Each
    case targets a typical mistake: only the ln(TPR/FPR) side (the other side
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
    ref = _table("epsilon_lower_bound")["expected"]
    if _matches(values, ref, rel=1e-6, abs_=1e-9):
        return _finish(name, True, f"right on all {len(ref)} cases (e.g. TPR=0.5, FPR=0.1 → ε ≥ ln 5 = "
                       f"{ref[0]:.4f}; TPR=0.95, FPR=0.5 → ε ≥ {ref[1]:.4f} from the other side).",
                       verbose=verbose)
    finite = [(v, r) for v, r in zip(values, ref) if math.isfinite(r)]
    if all(_close(v, r / math.log(10), 1e-6, 1e-9) for v, r in finite):
        return _finish(name, False, "your values are ln(...)/ln(10): use the natural log — DP's e^ε is base e.",
                       "log10", verbose)
    if _close(values[0], -ref[0], 1e-6):
        return _finish(name, False, "your ratio is upside down: DP bounds TPR ≤ e^ε·FPR + δ, so ε ≥ ln((TPR−δ)/FPR).",
                       "inverted", verbose)
    for (tpr, fpr, delta, tag), v, r in zip(_LB_CASES, values, ref):
        if not _close(v, r, 1e-6, 1e-9):
            if tag in _LB_HINTS:
                code, msg = _LB_HINTS[tag]
                return _finish(name, False, msg, code, verbose)
            return _finish(name, False, f"for TPR={tpr}, FPR={fpr}, δ={delta} you returned {v:.4f}, expected "
                           f"{r:.4f} = max(ln((TPR−δ)/FPR), ln((1−FPR−δ)/(1−TPR)), 0).", "wrong_value", verbose)
    return _finish(name, False, "some values differ from the expected ones.", "wrong_value", verbose)  # pragma: no cover


_COUNT_MESSAGES = {
    "strict": "you computed P[W > v]; the p-value is the chance of *at least* v correct guesses, P[W ≥ v] "
              "(with scipy: binom.sf(v − 1, r, q)).",
    "lower_tail": "you computed the lower tail P[W ≤ v]. The evidence against ε-DP is *many* correct guesses, so "
                  "the p-value is the upper tail P[W ≥ v].",
    "inverted": "your success probability is 1/(1+e^ε): under ε-DP one guess is right with probability at most "
                "e^ε/(1+e^ε) (randomized response on one bit is the worst case).",
    "ignores_epsilon": "your p-value does not depend on ε: you used q = 1/2, the chance of a blind guess. The test "
                       "asks whether v is surprising *for an ε-DP algorithm*, where q = e^ε/(1+e^ε).",
    "pmf": "you computed P[W = v], one point of the distribution. The p-value sums the whole upper tail, P[W ≥ v].",
}


def check_counting_p_value(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(r, v, epsilon)`` = P[W ≥ v] with W ~ Binomial(r, e^ε/(1+e^ε)) (stretch exercise).

    The one-run audit's counting test with δ = 0 (Steinke, Nasr & Jagielski
    2023): r guesses, v of them correct, under the hypothesis "ε-DP".
    Compared with stored values on 7 cases. Typical mistakes recognised:
    P[W > v]; the lower tail; q = 1/(1+e^ε); q = 1/2; P[W = v].
    """
    table = _table("counting")["p_value"]
    cases = [(int(r), int(v), e) for r, v, e in table["cases"]]
    return _check_stored(
        "counting p-value", fn, table, cases, "r={}, v={}, epsilon={}", _COUNT_MESSAGES, verbose, rel=1e-6,
        abs_=1e-12,
        passed=lambda ref: f"right on all {len(ref)} cases (e.g. 70 of 100 guesses right at ε = 1: "
                           f"p = {ref[1]:.4f}; no guess right: p = 1).",
        differs=lambda case, got, want: f"for r={case[0]}, v={case[1]}, ε={case[2]} you returned {got:.6g}, "
                                        f"expected {want:.6g} = P[W ≥ v], W ~ Binomial(r, e^ε/(1+e^ε)).")


def check_counting_epsilon(fn, verbose: bool = True, tol: float = 2e-3) -> CheckResult:
    """Check ``fn(r, v, confidence)`` = the largest ε whose counting p-value is ≤ 1 − confidence (0 if none).

    The p-value grows with ε, so {ε : p(ε) ≤ β} is an interval [0, ε*] and
    the lower bound is its right end ε* (bisection). Stored values on 7 cases,
    absolute tolerance ``tol``. Typical mistakes recognised: the confidence
    used as the level (p ≤ 0.95); a bracket that never contained ε* (ε stuck
    at an edge); a negative or missing value when there is no evidence.
    """
    name = "counting ε lower bound"
    table = _table("counting")["epsilon"]
    cases = [(int(r), int(v), c) for r, v, c in table["cases"]]
    values = []
    for case in cases:
        call = f"{getattr(fn, '__name__', 'fn')}(r={case[0]}, v={case[1]}, confidence={case[2]})"
        try:
            out = _call(fn, *case, call=call)
        except _LearnerError as err:
            return _raised(name, err, verbose)
        if out is None:
            return _finish(name, False, f"for r={case[0]}, v={case[1]} you returned None. When the count is no "
                           "evidence at all (even ε = 0 is not rejected) the bound is 0: ε ≥ 0 always holds.",
                           "none_returned", verbose)
        values.append(_float(out))
    ref = table["expected"]
    if _matches(values, ref, rel=0, abs_=tol):
        return _finish(name, True, f"right on all {len(ref)} cases (e.g. 90 of 100 right at 95% confidence → "
                       f"ε ≥ {ref[1]:.3f}; 50 of 100 → 0).", verbose=verbose)
    if any(v < 0 for v in values):
        return _finish(name, False, "a lower bound on ε is never negative: if even ε = 0 is not rejected "
                       "(p-value > 1 − confidence), return 0.", "negative", verbose)
    if _matches(values, table["mistakes"]["confidence_as_level"], rel=0, abs_=tol):
        return _finish(name, False, "you compared the p-value with the confidence (0.95). Reject ε when the count "
                       "is *unlikely* under it: p-value ≤ β = 1 − confidence (0.05).", "confidence_as_level", verbose)
    wrong = [(c, v, r) for c, v, r in zip(cases, values, ref) if abs(v - r) > tol]
    if len({round(v, 6) for _, v, _ in wrong}) == 1 and all(r > wrong[0][1] for _, _, r in wrong) and \
            (len(wrong) > 1 or _is_round(wrong[0][1])):
        return _finish(name, False, f"your ε stops at {wrong[0][1]:g} whenever the answer is larger: widen the "
                       "bracket (double hi while p(hi) ≤ β) before bisecting.", "bracket", verbose)
    (r, v, c), got, want = wrong[0]
    return _finish(name, False, f"for r={r}, v={v}, confidence={c} you returned {got:.4f}, expected {want:.4f}: the "
                   "largest ε with P[W ≥ v] ≤ 1 − confidence.", "wrong_value", verbose)
