"""The tqdm bar of notebooks and the command line (``utils.ProgressBar``): shown at once where asked."""

from __future__ import annotations

import io
import types

from dpsd_lite.transcribe import TranscribeConfig
from dpsd_lite.utils import ProgressBar


def _state(step, total=3, **config):
    return types.SimpleNamespace(config=TranscribeConfig(**config), step=step, total_steps=total, queries=8 * step,
                                 student_accuracy=0.5 if step == total else float("nan"))


def test_a_started_bar_says_what_the_run_is_doing_before_its_first_step():
    out = io.StringIO()
    bar = ProgressBar(file=out, start=True)
    assert bar.bar is not None and "transcription" in out.getvalue() and "starting…" in out.getvalue()
    for step in (1, 2, 3):
        bar.update(_state(step, noise_mode="rr", epsilon=1.0))
    text = out.getvalue()
    assert "rr, ε=1, learned generator (DPSD)" in text and "3/3" in text and "acc=50.0%" in text
    assert bar.bar is None  # closed at the last step


def test_on_a_terminal_the_bar_waits_for_the_first_step():
    out = io.StringIO()
    bar = ProgressBar(file=out)  # not in a notebook: start defaults to off
    assert bar.bar is None and out.getvalue() == ""
    bar.update(_state(1, generator="strokes", noise_mode="none"))
    assert "none, stroke renderer (public prior)" in out.getvalue()
    bar.close()
