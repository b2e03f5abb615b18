"""Invariants of the transcription loop: in a private mode the teacher reaches the
student (and the generator) only through the mechanism's release.

Method: run ``transcribe`` twice, changing only the teacher, and compare the
final student and generator weights bit for bit.

* A change to the teacher's logits that the mechanism cannot see (softmax- or
  argmax-preserving) must leave everything identical in the modes whose
  mechanism only reads that; in mode ``none`` a change to the softmax must show.
* With the mechanism patched to answer from a fixed stand-in instead of the
  teacher, two different teachers must give identical students; unpatched, they
  must not (so the comparison is able to fail).

Runs are tiny (digits, 4 steps, batch 64, cpu), single-threaded and in float32: the invariants are about
where the teacher's answers go, and bfloat16 rounding of a perturbed teacher would change its answers themselves
(a shifted row of logits rounds differently). They run the default generator, DPSD's learned one.
"""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

import dpsd_lite.phases as P
import dpsd_lite.transcribe as T
from dpsd_lite.mechanisms import make_mechanism as real_make_mechanism
from dpsd_lite.models import Teacher, for_queries
from dpsd_lite.teacher import TrainedTeacher, train_teacher_model

PRIVATE_MODES = ("rr", "label", "data")
# reproducible_noise: these are bit-for-bit comparisons, so the privacy noise comes from the seed (the opt-in)
RUN = dict(dataset="digits", epsilon=2.0, delta=1e-5, steps=4, student_steps=1, batch_size=64,
           eval_every=100, device="cpu", reproducible_noise=True, precision="float32")
_FIELDS = {f.name for f in fields(T.TranscribeConfig)}
if "ink_pretrain_steps" in _FIELDS:  # optional knob (not in every version of the loop): keep the runs short
    RUN["ink_pretrain_steps"] = 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-for-bit comparisons want a fixed thread count; also much faster on a busy box
    yield
    torch.set_num_threads(old)


class Perturbed(torch.nn.Module):
    """Wraps a teacher and transforms its logits row by row."""

    def __init__(self, model, kind):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x):
        logits = self.model(x)
        if self.kind == "softmax-preserving":
            # per-row constant shift; subtracting the row max is bit-exact for softmax (torch subtracts the max too)
            return logits - logits.max(1, keepdim=True).values
        if self.kind == "argmax-preserving":
            # increasing affine map with a different offset per row: hard labels unchanged, softmax changed
            rows = torch.arange(len(logits), dtype=logits.dtype).view(-1, 1)
            return 3.0 * logits + 7.0 * torch.sin(rows) + 20.0
        if self.kind == "second-swapping":
            # each row's second and third class trade places: the argmax stays, the second choice changes
            top = logits.topk(3, dim=1)
            rows = torch.arange(len(logits))
            out = logits.clone()
            out[rows, top.indices[:, 1]], out[rows, top.indices[:, 2]] = top.values[:, 2], top.values[:, 1]
            return out
        raise ValueError(self.kind)


class Spy(torch.nn.Module):
    """Counts teacher calls and records whether autograd was on (a graph through the teacher)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x):
        self.calls.append(torch.is_grad_enabled())
        return self.model(x)


@pytest.fixture(scope="module")
def teachers(digits):
    """Two genuinely different teachers: one trained for an epoch on digits, one at random init."""
    trained = train_teacher_model(digits, epochs=1, seed=0, device="cpu")
    torch.manual_seed(1234)
    random_init = Teacher(digits.image_shape, digits.num_classes).eval()
    return {"A": trained, "B": random_init}


def _wrap(model):
    return TrainedTeacher(model, heldout_accuracy=0.5, private_accuracy=0.5, epochs=1, seed=0, cached=True)


STANDIN = torch.randn(RUN["batch_size"], 10, generator=torch.Generator().manual_seed(99)) * 3


def _fixed_answer_make_mechanism(*args, **kwargs):
    """The real mechanism, but it answers from a fixed stand-in instead of the teacher's logits."""
    mech = real_make_mechanism(*args, **kwargs)
    real_release = mech.release

    def release(teacher_logits, prior=None, student_logits=None):
        return real_release(STANDIN[: len(teacher_logits)].clone(), prior=prior, student_logits=student_logits)

    mech.release = release
    return mech


_RUNS: dict = {}


def run(digits, teachers, mode, teacher="A", perturb=None, fixed_release=False, seed=0, cached=True, **extra):
    key = (mode, teacher, perturb, fixed_release, seed, tuple(sorted(extra.items())))
    if cached and key in _RUNS:
        return _RUNS[key]
    model = teachers[teacher]
    if perturb:  # around the copy the loop queries (BatchNorm folded), so only the perturbation differs
        model = Perturbed(for_queries(model.eval()), perturb)
    with pytest.MonkeyPatch.context() as mp:
        if fixed_release:
            mp.setattr(P, "make_mechanism", _fixed_answer_make_mechanism)
        res = T.transcribe(data=digits, teacher=_wrap(model), noise_mode=mode, seed=seed, **{**RUN, **extra})
    out = {
        "student": {k: v.clone() for k, v in res.student.state_dict().items()},
        "generator": {k: v.clone() for k, v in res.generator.state_dict().items()},
        "history": res.history,
        "queries": res.queries,
        "privacy": res.privacy,
    }
    if cached:
        _RUNS[key] = out
    return out


def identical(a, b, part):
    return a[part].keys() == b[part].keys() and all(torch.equal(a[part][k], b[part][k]) for k in a[part])


def max_diff(a, b, part="student"):
    return max((a[part][k].float() - b[part][k].float()).abs().max().item() for k in a[part])


# --------------------------------------------------------------------------- invisible perturbations
@pytest.mark.parametrize("mode,perturb", [("rr", "argmax-preserving"), ("rr", "softmax-preserving"),
                                          ("label", "softmax-preserving"), ("data", "softmax-preserving")])
def test_private_mode_is_blind_to_what_its_mechanism_discards(digits, teachers, mode, perturb):
    base = run(digits, teachers, mode)
    pert = run(digits, teachers, mode, perturb=perturb)
    assert identical(base, pert, "student"), max_diff(base, pert)
    assert identical(base, pert, "generator")  # the generator never sees the teacher either
    assert base["history"][-1]["student_accuracy"] == pert["history"][-1]["student_accuracy"]


def test_mode_none_learns_the_teachers_softmax(digits, teachers):
    base = run(digits, teachers, "none")
    pert = run(digits, teachers, "none", perturb="argmax-preserving")
    assert not identical(base, pert, "student")
    assert max_diff(base, pert) > 1e-3
    assert not identical(base, pert, "generator")
    # the student's loss reads the softmax of the released logits: a shift that keeps it changes nothing (with
    # DFAD's discrepancy off: that generator term, on by default in mode none, reads the raw logits)
    off = dict(discrepancy_weight=0.0)
    assert identical(run(digits, teachers, "none", **off),
                     run(digits, teachers, "none", perturb="softmax-preserving", **off), "student")


def test_mode_nones_discrepancy_term_reads_the_raw_logits(digits, teachers):
    """DFAD's discrepancy (mode none only) compares logits: a softmax-preserving shift shows."""
    base = run(digits, teachers, "none", discrepancy_weight=1.0)
    pert = run(digits, teachers, "none", perturb="softmax-preserving", discrepancy_weight=1.0)
    assert not identical(base, pert, "generator")


def test_the_learned_generator_uses_the_discrepancy_in_mode_none_by_default(digits, teachers):
    """Its default weight (0.1) is on in mode none: the generator reads the raw logits, which a
    softmax-preserving shift reveals; at weight 0 the same shift changes nothing (the control)."""
    learned = dict(generator="learned")
    base = run(digits, teachers, "none", **learned)
    assert not identical(base, run(digits, teachers, "none", perturb="softmax-preserving", **learned), "generator")
    off = run(digits, teachers, "none", discrepancy_weight=0.0, **learned)
    assert identical(off, run(digits, teachers, "none", perturb="softmax-preserving", discrepancy_weight=0.0,
                              **learned), "generator")


TOP2 = dict(rr_answer="top2")


def test_top_two_rr_sees_the_second_choice_and_nothing_more(digits, teachers):
    """rr over the ordered top two: an order-preserving change of the logits changes nothing, student or
    generator (replay included); a swap of each row's second and third class shows, while the top-1 release
    stays blind to it (the control that makes the first check able to fail)."""
    base = run(digits, teachers, "rr", **TOP2)
    assert base["privacy"]["answer"] == "top2" and "k_used" not in base["privacy"] and "prior" not in base["privacy"]
    pert = run(digits, teachers, "rr", perturb="argmax-preserving", **TOP2)
    assert identical(base, pert, "student") and identical(base, pert, "generator")
    assert not identical(base, run(digits, teachers, "rr", perturb="second-swapping", **TOP2), "student")
    assert identical(run(digits, teachers, "rr"), run(digits, teachers, "rr", perturb="second-swapping"), "student")


def test_top_two_rr_with_a_fixed_release_makes_two_teachers_indistinguishable(digits, teachers):
    a = run(digits, teachers, "rr", teacher="A", fixed_release=True, **TOP2)
    b = run(digits, teachers, "rr", teacher="B", fixed_release=True, **TOP2)
    assert identical(a, b, "student") and identical(a, b, "generator")
    assert not identical(run(digits, teachers, "rr", teacher="A", **TOP2),
                         run(digits, teachers, "rr", teacher="B", **TOP2), "student")

@pytest.mark.parametrize("mode", ["label", "data"])
def test_soft_modes_do_see_the_softmax(digits, teachers, mode):
    """Control: label/data read the softmax, so a softmax-changing perturbation must show (the check can fail)."""
    base = run(digits, teachers, mode)
    pert = run(digits, teachers, mode, perturb="argmax-preserving")
    assert not identical(base, pert, "student")


# --------------------------------------------------------------------------- the release is the only channel
@pytest.mark.parametrize("mode,precision", [("rr", "float32"), ("label", "float32"), ("rr", "bfloat16")])
def test_class_balancing_counts_the_release_not_the_teacher(digits, teachers, mode, precision):
    """With the learned generator's class balancing, what the generator is asked for follows the releases: a
    teacher change the mechanism hides stays hidden, and a fixed release makes two teachers indistinguishable
    (in bfloat16 too, the learned generator's arithmetic on CPUs that compute it natively)."""
    extra = dict(generator="learned", class_balance=1.0, precision=precision)
    base = run(digits, teachers, mode, **extra)
    assert "released_shares" in base["history"][-1]
    if mode == "rr" and precision == "float32":
        assert identical(base, run(digits, teachers, mode, perturb="argmax-preserving", **extra), "generator")
    a = run(digits, teachers, mode, teacher="A", fixed_release=True, **extra)
    b = run(digits, teachers, mode, teacher="B", fixed_release=True, **extra)
    assert identical(a, b, "student") and identical(a, b, "generator")
    assert not identical(base, run(digits, teachers, mode, teacher="B", **extra), "generator")  # control


@pytest.mark.parametrize("mode", PRIVATE_MODES)
def test_student_independent_of_teacher_when_release_is_fixed(digits, teachers, mode):
    a = run(digits, teachers, mode, teacher="A", fixed_release=True)
    b = run(digits, teachers, mode, teacher="B", fixed_release=True)
    assert identical(a, b, "student"), max_diff(a, b)
    assert identical(a, b, "generator")
    # control: with the real mechanism the two teachers do lead to different students
    real_a = run(digits, teachers, mode, teacher="A")
    real_b = run(digits, teachers, mode, teacher="B")
    assert not identical(real_a, real_b, "student")
    assert not identical(real_a, a, "student")


@pytest.mark.parametrize("mode", ["none", *PRIVATE_MODES])
def test_teacher_is_queried_only_in_the_student_phase_in_private_modes(digits, teachers, mode):
    """Even with DFAD's discrepancy term switched on, no private mode lets the generator read the teacher."""
    student_phase = RUN["steps"] * RUN["student_steps"]
    for weight in (0.0, 1.0):
        spy = Spy(teachers["A"])
        T.transcribe(data=digits, teacher=_wrap(spy), noise_mode=mode, seed=0,
                     **{**RUN, "discrepancy_weight": weight})
        if mode == "none" and weight:
            # DFAD: one extra differentiable query per generator step
            assert len(spy.calls) == student_phase + RUN["steps"]
            assert sum(spy.calls) == RUN["steps"]
        else:
            assert len(spy.calls) == student_phase
            assert not any(spy.calls), "an autograd graph through the teacher"


# --------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("mode", ["none", *PRIVATE_MODES])
def test_same_seed_same_run_different_seed_different_run(digits, teachers, mode):
    first = run(digits, teachers, mode)
    again = run(digits, teachers, mode, cached=False)
    assert identical(first, again, "student") and identical(first, again, "generator")
    assert [h["student_accuracy"] for h in first["history"]] == [h["student_accuracy"] for h in again["history"]]
    other = run(digits, teachers, mode, seed=1)
    assert not identical(first, other, "student")
    assert not identical(first, other, "generator")
    assert first["queries"] == other["queries"] == RUN["steps"] * RUN["student_steps"] * RUN["batch_size"]


@pytest.mark.parametrize("mode", ["none", *PRIVATE_MODES])
def test_default_noise_is_secret_so_same_seed_runs_differ_only_in_private_modes(digits, teachers, mode):
    """Without the opt-in the noise comes from the OS's entropy: two runs with one seed release different answers."""
    runs = []
    for _ in range(2):
        res = T.transcribe(data=digits, teacher=_wrap(teachers["A"]), noise_mode=mode, seed=0,
                           **{**RUN, "reproducible_noise": False})
        runs.append({"student": {k: v.clone() for k, v in res.student.state_dict().items()},
                     "privacy": res.privacy})
    if mode == "none":  # no noise at all: the seed fixes everything
        assert identical(runs[0], runs[1], "student")
    else:
        assert not identical(runs[0], runs[1], "student")
        assert runs[0]["privacy"]["reproducible_noise"] is False and "warning" not in runs[0]["privacy"]
        assert runs[0]["privacy"]["noise_source"].startswith("secret")


# --------------------------------------------------------------------------- warm start
def test_warm_start_learns_without_the_teacher(digits, teachers):
    """The renderer's warm start trains the student on its skeleton drawings: no teacher call, but a different
    student. (The learned generator draws no skeletons, so it has no warm start.)"""
    results = {}
    for steps in (0, 30):
        spy = Spy(teachers["A"])
        res = T.transcribe(data=digits, teacher=_wrap(spy), noise_mode="rr", seed=0,
                           **{**RUN, "steps": 1, "warm_start_steps": steps, "generator": "strokes"})
        assert len(spy.calls) == RUN["student_steps"]  # the one step's queries, nothing for the warm start
        assert res.queries == RUN["batch_size"]
        results[steps] = {"student": {k: v.clone() for k, v in res.student.state_dict().items()}}
        assert ("warm start" in res.privacy["prior"] or "skeleton" in res.privacy["prior"]) == bool(steps)
    assert not identical(results[0], results[30], "student")


# --------------------------------------------------------------------------- the answer sets the report shows
def _recording_rr(epsilon):
    from dpsd_lite.mechanisms import SelectiveRR

    class Recording(SelectiveRR):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.ks = []

        def release(self, teacher_logits, prior=None, student_logits=None):
            rel = super().release(teacher_logits, prior=prior, student_logits=student_logits)
            self.ks += rel.extra["k"].tolist()
            return rel

    return Recording(epsilon, k_min=2)


def test_rr_report_counts_the_answer_sets_the_run_used(digits, teachers):
    from collections import Counter

    from dpsd_lite.accounting import rr_keep_probability
    from dpsd_lite.report import format_report

    mech = _recording_rr(RUN["epsilon"])
    res = T.transcribe(data=digits, teacher=_wrap(teachers["A"]), noise_mode="rr", seed=0, mechanism=mech, **RUN)
    rep = res.privacy
    assert len(mech.ks) == res.queries == sum(rep["k_used"].values())
    assert rep["k_used"] == {str(k): n for k, n in sorted(Counter(mech.ks).items())}
    assert min(mech.ks) >= 2 and max(mech.ks) == digits.num_classes  # the untrained student's flat prior: every class
    expected = sum(rr_keep_probability(RUN["epsilon"], k) for k in mech.ks) / len(mech.ks)
    assert rep["mean_keep_probability"] == pytest.approx(expected, rel=1e-12)
    assert rep["mean_k"] == pytest.approx(sum(mech.ks) / len(mech.ks))
    assert "answer sets used" in format_report(rep) and "mean keep probability" in format_report(rep)


def test_uniform_prior_answers_among_all_classes_at_the_k_ary_keep_probability(digits, teachers):
    """With the prior uniform throughout (tempered flat), every answer is K-ary RR: e^1/(e^1+9) = 0.231969."""
    res = T.transcribe(data=digits, teacher=_wrap(teachers["A"]), noise_mode="rr", seed=0,
                       **{**RUN, "epsilon": 1.0, "prior_temperature": 1e9})
    assert res.privacy["k_used"] == {"10": res.queries}
    assert res.privacy["mean_keep_probability"] == pytest.approx(0.231969, abs=1e-6)


def test_modes_without_answer_sets_report_none(digits, teachers):
    for mode in ("label", "data", "none"):
        assert "k_used" not in run(digits, teachers, mode)["privacy"]
