"""A schedule for the generic-shapes prior's share (``generic_shapes`` → ``generic_shapes_end`` over the run): the
share each iteration uses, that the schedule is kept with the weights (checkpoints, snapshots) and named wherever a
run is shown, that the no-teacher baseline follows it, and that bad schedules are refused with one line."""

from __future__ import annotations

import math

import pytest
import torch

from dpsd_lite import plots
from dpsd_lite.config import TranscribeConfig, resolve
from dpsd_lite.errors import DpsdError
from dpsd_lite.generators import Generator, GenericShapes, build_generator, shapes_rows
from dpsd_lite.names import generator_label, run_generator_label
from dpsd_lite.report import settings_selection
from dpsd_lite.runs import load_run, save_run
from dpsd_lite.sweep import SWEEP_COLUMNS, format_table, run_sweep
from dpsd_lite.transcribe import prior_only_student, transcribe
from dpsd_lite.widgets import LEARNED_WITH_SHAPES, Dashboard

NAME = "generic shapes (public prior, 90% → 10% of queries over the run)"
STEPS = 8


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.mark.parametrize("settings, match", [
    ({"generic_shapes": 0.9, "generic_shapes_end": 1.0}, "generic_shapes_end is the"),
    ({"generic_shapes": 0.9, "generic_shapes_end": -0.1}, "generic_shapes_end is the"),
    ({"generic_shapes": 0.9, "generic_shapes_end": float("nan")}, "generic_shapes_end is the"),
    ({"generic_shapes_end": 0.5, "generator": "strokes"}, "does not take it"),  # a schedule alone asks for it too
    ({"generic_shapes_end": 0.5, "nz": 32}, "nz must be at least 64"),
])
def test_bad_schedules_are_refused_with_one_line(settings, match):
    with pytest.raises(DpsdError, match=match):
        TranscribeConfig(dataset="digits", **settings).validate()


def test_the_label_names_the_schedule_and_a_flat_one_as_a_share():
    assert generator_label("learned", 0.9, 0.1) == "learned generator (DPSD) + " + NAME
    assert generator_label("learned", 0.5, 0.5) == generator_label("learned", 0.5)  # no schedule to name
    assert generator_label("learned", 0.5, None).endswith("(public prior, 50% of queries)")
    assert generator_label("learned", 0.0, 0.2).endswith("0% → 20% of queries over the run)")
    assert NAME in run_generator_label(TranscribeConfig(generic_shapes=0.9, generic_shapes_end=0.1))
    assert NAME in run_generator_label({"generator": "learned", "generic_shapes": 0.9, "generic_shapes_end": 0.1})


def test_the_share_moves_with_the_progress_and_the_rows_follow_it():
    g = Generator((1, 28, 28), 10, generic_shapes=0.9, generic_shapes_end=0.1)
    assert g.shapes_share() == pytest.approx(0.9)
    g.set_progress(0.5)
    assert g.shapes_share() == pytest.approx(0.5)
    g.set_progress(7.0)  # clamped: past the end is the end
    assert g.shapes_share() == pytest.approx(0.1)
    z, c = torch.randn(40, 64), torch.arange(40) % 10
    with torch.no_grad():
        x = g(z, c)
    drawn = (x == GenericShapes((1, 28, 28))(z)).flatten(1).all(1)
    assert torch.equal(drawn, shapes_rows(40, 0.1))  # 2 of each half of 20
    assert g.architecture["generic_shapes_end"] == 0.1 and "shapes_progress" in g.state_dict()
    flat = Generator((1, 28, 28), 10, generic_shapes=0.5)
    flat.set_progress(0.7)  # nothing to move without a schedule, and nothing added to its checkpoint
    assert flat.shapes_share() == 0.5 and "shapes_progress" not in flat.state_dict()
    assert "generic_shapes_end" not in flat.architecture


@pytest.fixture(scope="module")
def schedule_run(digits, digits_teacher):
    seen = []
    real_forward = Generator.forward

    def spy(self, z, c, ink_scale=None):  # the share each forward pass of the run draws with
        seen.append(round(self.shapes_share(), 6))
        return real_forward(self, z, c, ink_scale)

    Generator.forward = spy
    try:
        result = transcribe(dataset="digits", data=digits, teacher=digits_teacher, noise_mode="rr", epsilon=2.0,
                            steps=STEPS, batch_size=32, eval_every=4, device="cpu", seed=0, generic_shapes=0.9,
                            generic_shapes_end=0.1)
    finally:
        Generator.forward = real_forward
    return result, seen


def test_each_iteration_draws_with_its_share_from_start_to_end(schedule_run):
    result, seen = schedule_run
    expected = {round(0.9 - 0.8 * k / STEPS, 6) for k in range(STEPS)}  # iteration k + 1 uses progress k / STEPS
    assert set(seen) == expected and seen[0] == 0.9 and seen == sorted(seen, reverse=True)
    assert result.generator.shapes_share() == pytest.approx(0.1)  # the finished generator: the end of the schedule
    assert result.privacy["generator"] == "learned generator (DPSD) + " + NAME
    assert NAME in plots.run_title(result) and NAME in plots.generator_name(result)


def test_snapshots_and_a_saved_run_keep_where_the_schedule_was(tmp_path, schedule_run):
    result, _ = schedule_run
    assert result.generator_snapshots, "a run of several iterations keeps snapshots"
    for step, state in result.generator_snapshots:
        assert float(state["shapes_progress"]) == pytest.approx(step / STEPS)
    run = load_run(save_run(result, tmp_path / "run"))
    assert run.config.generic_shapes_end == 0.1 and run.generator.shapes_share() == pytest.approx(0.1)
    z, c = torch.randn(8, 64), torch.arange(8) % 10
    result.generator.eval()
    with torch.no_grad():
        assert torch.allclose(run.generator(z, c, torch.ones(8, 1)), result.generator(z, c, torch.ones(8, 1)))
    assert [s for s, _ in run.generator_snapshots] == [s for s, _ in result.generator_snapshots]
    for (step, state), (_, saved) in zip(run.generator_snapshots, result.generator_snapshots):
        assert torch.equal(state["shapes_progress"], saved["shapes_progress"])


def test_the_frozen_ablation_runs_the_same_schedule(digits, digits_teacher):
    result = transcribe(dataset="digits", data=digits, teacher=digits_teacher, noise_mode="rr", epsilon=2.0,
                        steps=4, batch_size=32, eval_every=4, device="cpu", seed=0, generic_shapes=0.9,
                        generic_shapes_end=0.1, freeze_generator=True)
    assert result.generator.shapes_share() == pytest.approx(0.1)
    fresh = build_generator(resolve(result.config), (1, 8, 8), 10)
    fresh.load_state_dict(result.generator.state_dict())
    assert fresh.fc.weight.equal(result.generator.fc.weight)  # frozen: the weights stayed, the schedule moved


def test_the_no_teacher_baseline_follows_the_schedule(digits, monkeypatch):
    fractions = []
    real = Generator.set_progress
    monkeypatch.setattr(Generator, "set_progress", lambda self, f: (fractions.append(f), real(self, f))[1])
    config = TranscribeConfig(dataset="digits", steps=3, student_steps=2, replay_steps=0, batch_size=16,
                              device="cpu", generic_shapes=0.9, generic_shapes_end=0.1)
    _, acc = prior_only_student(config, data=digits)
    assert fractions == [i / 6 for i in range(6)] and 0 <= acc <= 1


def test_a_sweep_row_carries_the_schedule_and_its_table_names_it(digits, digits_teacher):
    config = TranscribeConfig(dataset="digits", steps=4, batch_size=32, eval_every=2, device="cpu", seed=0,
                              generic_shapes=0.9, generic_shapes_end=0.1)
    rows = run_sweep([2.0], ["rr"], config=config, data=digits, teacher=digits_teacher)
    assert "generic_shapes_end" in SWEEP_COLUMNS and rows[0]["generic_shapes_end"] == 0.1
    assert NAME in format_table(rows)


def test_a_dashboard_built_with_a_schedule_offers_it_and_leaving_it_clears_it(digits, digits_teacher):
    dash = Dashboard(dataset="digits", data=digits, teacher=digits_teacher, device="cpu", generic_shapes=0.9,
                     generic_shapes_end=0.1)
    assert dash.generator_dropdown.value == LEARNED_WITH_SHAPES
    assert NAME in dict((v, k) for k, v in dash.generator_dropdown.options)[LEARNED_WITH_SHAPES]
    assert dash.current_config().generic_shapes_end == 0.1
    dash.generator_dropdown.value = "learned"  # DPSD's generator alone: no share, no schedule
    assert dash.current_config().generic_shapes == 0.0 and dash.current_config().generic_shapes_end is None
    dash.current_config().validate()


def test_reports_disclose_that_the_offered_schedule_was_chosen_on_private_splits():
    chosen = "the generic-shapes schedule (the prior's share falling from 90% to 10% of the queries) was chosen"
    for dataset in ("mnist-5k", "fashion-mnist"):
        assert any(n.startswith(chosen) for n in settings_selection(dataset, "learned", (0.9, 0.1)))
    assert not any(n.startswith(chosen) for n in settings_selection("mnist-5k", "learned", (0.5, None)))
    assert not any(n.startswith(chosen) for n in settings_selection("mnist-5k", "learned", (0.9, 0.2)))
    assert not any(n.startswith(chosen) for n in settings_selection("digits", "learned", (0.9, 0.1)))  # public data
