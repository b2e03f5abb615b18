"""The dashboard's choices beyond ε and mode: which generator (DPSD's learned one, or the renderer, a lesson),
which teacher (the ordinary one, or the record-level route: a DP-SGD teacher), and the three levels of ε it
shows beside the slider and in its table. Headless: controls are set, buttons clicked, results read."""

from __future__ import annotations

import math

import pytest
import torch

from dpsd_lite.accounting import pure_composition_epsilon
from dpsd_lite.config import resolve
from dpsd_lite.teacher import TrainedTeacher
from dpsd_lite.widgets import Dashboard

STEPS = 10


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _dashboard(digits, digits_teacher, **kw):
    return Dashboard(dataset="digits", data=digits, teacher=digits_teacher, steps=STEPS, batch_size=32,
                     device="cpu", seed=0, eval_every=5, refresh_seconds=0.0, **kw)


def test_the_learned_generator_is_the_default_and_the_renderer_a_named_choice(digits, digits_teacher):
    dash = _dashboard(digits, digits_teacher)
    assert dash.generator_dropdown.value == "learned"
    assert dict(dash.generator_dropdown.options)  # labels name both: DPSD's, and the renderer as a lesson
    labels = [label for label, _ in dash.generator_dropdown.options]
    assert labels[0] == "learned generator (DPSD)" and "not DPSD" in labels[1] and "not DPSD" in labels[2]
    dash.run_button.click()
    dash.wait(timeout=300)
    dash.generator_dropdown.value = "strokes"
    dash.run(wait=True)
    assert [r["generator"] for r in dash.runs] == ["learned", "strokes"]
    assert type(dash.last_result.generator).__name__ == "StrokeGenerator"
    assert "learned generator (DPSD)" in dash.table.value and "stroke renderer (public prior)" in dash.table.value
    assert "queries from: stroke renderer" in dash.report_output.outputs[0]["text"]


def test_the_renderer_is_not_offered_where_it_cannot_draw():
    dash = Dashboard(dataset="fashion-mnist", device="cpu")  # nothing is loaded before the first Run
    assert [v for _, v in dash.generator_dropdown.options] == ["learned", "learned+shapes"]


def test_three_levels_beside_the_slider_follow_the_controls(digits, digits_teacher):
    dash = _dashboard(digits, digits_teacher)
    dash.mode_dropdown.value, dash.epsilon_slider.value = "rr", 1.0
    answers = STEPS * resolve(dash.current_config()).student_steps * 32  # the run's own, for this ε
    text = dash.privacy_levels.value
    assert "ε per teacher answer: 1" in text and f"{answers:,} answers" in text
    whole = pure_composition_epsilon(1.0, answers, dash.config.delta)
    assert f"{whole:.3g}" in text
    assert "ε per private record: none" in text
    dash.teacher_dropdown.value = 10.0  # the record-level route
    assert "ε per private record: 10" in dash.privacy_levels.value
    dash.mode_dropdown.value = "none"
    assert "∞" in dash.privacy_levels.value


def test_the_record_level_route_transcribes_from_a_dp_teacher(digits, digits_teacher, monkeypatch):
    """Picking a DP-SGD teacher runs from it, and the run's row and report carry its ε per private record."""
    import dpsd_lite.widgets as widgets_mod
    from dpsd_lite.models import Student

    # a DP-SGD teacher has the student's architecture (its student starts from its weights in mode none)
    dp = TrainedTeacher(Student(digits.image_shape, digits.num_classes).eval(), heldout_accuracy=0.5,
                        private_accuracy=0.5, epochs=1, seed=0,
                        cached=True, privacy={"epsilon": 1.0, "delta": 1e-5, "mechanism": "DP-SGD (Opacus)",
                                              "accountant": "Opacus RDP"})
    asked = []

    def fake_teacher_for(config, data, **kw):
        asked.append(config.teacher_dp_epsilon)
        return dp

    monkeypatch.setattr(widgets_mod, "teacher_for", fake_teacher_for)  # where the dashboard looks it up
    dash = _dashboard(digits, digits_teacher)
    dash.teacher_dropdown.value = 1.0
    dash.mode_dropdown.value = "none"
    dash.run(wait=True)
    row = dash.runs[-1]
    assert asked == [1.0] and row["epsilon_per_record"] == 1.0 and math.isinf(row["epsilon_whole_run"])
    assert dash.last_result.privacy["epsilon_per_record"] == 1.0
    assert "ε per private record: 1" in dash.report_output.outputs[0]["text"]
    dash.run(wait=True)  # the DP teacher is loaded once
    assert asked == [1.0]


def test_the_dashboard_preset_is_a_third_of_a_run_on_the_steps_sliders_grid():
    from dpsd_lite.config import TranscribeConfig, resolve
    from dpsd_lite.widgets import DASHBOARD_FRACTION, dashboard_steps

    full = resolve(TranscribeConfig()).steps
    preset = dashboard_steps()
    assert preset % 10 == 0 and abs(preset - full * DASHBOARD_FRACTION) <= 5 and 10 <= preset < full
    assert dashboard_steps(TranscribeConfig(steps=15)) == 10  # never below the slider's minimum
