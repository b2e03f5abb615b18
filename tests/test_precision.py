"""The loop's arithmetic: bfloat16 autocast where the CPU computes it natively, float32 everywhere it matters.

What stays float32 whatever the precision: the weights, the losses, what the mechanism reads (the teacher's
logits are cast back before the release), the queries kept for replay and shown, and every evaluation.
"""

from __future__ import annotations

import pytest
import torch

import dpsd_lite.config as config_module
from dpsd_lite import phases
from dpsd_lite.config import GENERATOR_DEFAULTS, LEARNED_BFLOAT16_STEPS, TranscribeConfig, resolve
from dpsd_lite.errors import DpsdError
from dpsd_lite.transcribe import transcribe
from dpsd_lite.utils import native_bfloat16

SMALL = dict(dataset="digits", generator="learned", noise_mode="rr", epsilon=5.0, steps=3, batch_size=32,
             generator_batch=16, device="cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bfloat16_only_for_the_learned_generator_on_a_native_cpu(monkeypatch, native):
    monkeypatch.setattr(config_module, "_native_bfloat16", lambda device: native)
    learned = resolve(TranscribeConfig(dataset="mnist-5k", generator="learned"))
    assert learned.precision == ("bfloat16" if native else "float32")
    # the budget is the one that takes about as long in either arithmetic
    assert learned.steps == (LEARNED_BFLOAT16_STEPS if native else GENERATOR_DEFAULTS["learned"]["steps"])
    assert resolve(learned) == learned  # resolving twice changes nothing
    strokes = resolve(TranscribeConfig(dataset="mnist-5k", generator="strokes"))
    assert strokes.precision == "float32" and strokes.steps == GENERATOR_DEFAULTS["strokes"]["steps"]


def test_an_explicit_precision_or_budget_is_kept(monkeypatch):
    monkeypatch.setattr(config_module, "_native_bfloat16", lambda device: False)
    forced = resolve(TranscribeConfig(dataset="mnist-5k", generator="learned", precision="bfloat16"))
    assert forced.precision == "bfloat16" and forced.steps == LEARNED_BFLOAT16_STEPS
    assert resolve(TranscribeConfig(generator="learned", precision="bfloat16", steps=7)).steps == 7
    assert resolve(TranscribeConfig(generator="strokes", precision="bfloat16")).steps == 150
    with pytest.raises(DpsdError, match="unknown precision 'half'"):
        TranscribeConfig(precision="half").validate()


def test_native_bfloat16_asks_the_cpu_and_says_no_for_other_devices():
    expected = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert native_bfloat16(torch.device("cpu")) == expected
    assert native_bfloat16(torch.device("meta")) is False


def test_a_bfloat16_run_keeps_everything_that_leaves_the_loop_in_float32(digits, digits_teacher, monkeypatch):
    seen = []
    real_setup = phases.setup

    def spying_setup(*args, **kwargs):
        p = real_setup(*args, **kwargs)
        real_release = p.mechanism.release

        def release(teacher_logits, prior=None, student_logits=None):
            seen.append((teacher_logits.dtype, None if prior is None else prior.dtype))
            return real_release(teacher_logits, prior=prior, student_logits=student_logits)

        p.mechanism.release = release
        return p

    monkeypatch.setattr("dpsd_lite.transcribe.setup", spying_setup)
    shown = []
    r = transcribe(data=digits, teacher=digits_teacher, precision="bfloat16", replay_steps=1,
                   callbacks={"on_release": lambda s, x, rel: shown.append((x.dtype, rel.labels.dtype))}, **SMALL)
    assert r.config.precision == "bfloat16"
    assert seen and all(t == torch.float32 and p in (None, torch.float32) for t, p in seen)
    assert all(x == torch.float32 for x, _ in shown)
    assert all(v.dtype == torch.float32 for v in r.student.state_dict().values() if v.is_floating_point())
    assert all(v.dtype == torch.float32 for v in r.generator.state_dict().values() if v.is_floating_point())
    assert 0.0 <= r.student_accuracy <= 1.0 and r.history[-1]["step"] == 3


def test_bfloat16_changes_the_arithmetic_and_float32_does_not_autocast(digits, digits_teacher):
    """The switch does something (the runs differ), and the float32 loop matches itself bit for bit."""
    runs = {}
    for precision in ("float32", "float32", "bfloat16"):
        r = transcribe(data=digits, teacher=digits_teacher, precision=precision, reproducible_noise=True, **SMALL)
        runs.setdefault(precision, []).append(r.student.state_dict())
    a, b = runs["float32"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = runs["bfloat16"][0]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_the_teachers_hard_labels_survive_bfloat16(digits, digits_teacher):
    """rr releases the teacher's top class: in bfloat16 it is the float32 one on nearly every query."""
    from dpsd_lite.models import for_queries

    model = for_queries(digits_teacher.model.eval())
    x = digits.x_heldout
    with torch.no_grad():
        exact = model(x).argmax(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = model(x).float().argmax(1)
    assert (exact == rounded).float().mean() >= 0.99
