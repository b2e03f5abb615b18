"""The generic-shapes prior (``generic_shapes``): a frozen public prior with no task in it that draws a share of the
learned generator's queries. What it draws, which rows it draws, that it learns nothing and reads nothing, and that
it is named wherever a run is shown (report, figures, sweep rows, the dashboard menu), and survives a save."""

from __future__ import annotations

import math

import pytest
import torch

from dpsd_lite import plots
from dpsd_lite.config import TranscribeConfig, resolve
from dpsd_lite.errors import DpsdError
from dpsd_lite.generators import Generator, GenericShapes, build_generator, shapes_rows
from dpsd_lite.names import generator_label, run_generator_label
from dpsd_lite.runs import load_run, save_run
from dpsd_lite.sweep import SWEEP_COLUMNS, format_table, run_sweep
from dpsd_lite.transcribe import transcribe
from dpsd_lite.widgets import LEARNED_WITH_SHAPES, Dashboard

NAME = "generic shapes (public prior, 50% of queries)"


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def test_shapes_are_images_of_z_alone_with_a_varying_number_of_shapes():
    shapes = GenericShapes((1, 28, 28))
    assert list(shapes.parameters()) == [] and shapes.state_dict() == {}  # nothing learned, nothing saved
    z = torch.randn(512, 64, generator=torch.Generator().manual_seed(0))
    x = shapes(z)
    assert x.shape == (512, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, shapes(z.clone()))  # a function of z: no hidden randomness
    ink = (x > -0.9).float().mean(dim=(1, 2, 3))
    assert 0.02 < ink.mean() < 0.5  # shapes on a dark background, not noise or a blank
    assert ink.std() > 0.03  # two shapes or eight, small or large: the share of ink varies
    fewer, more = z.clone(), z.clone()
    fewer[:, -1], more[:, -1] = -4.0, 4.0  # the last entry of z sets the count: 2 shapes against 8
    assert (shapes(fewer) > -0.9).float().mean() < (shapes(more) > -0.9).float().mean()
    assert shapes(z[:1].repeat(3, 1)).unique(dim=0).shape[0] == 1


def test_shapes_are_the_same_picture_at_another_resolution():
    z = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    big, small = GenericShapes((1, 28, 28))(z), GenericShapes((3, 8, 8))(z)
    assert small.shape == (64, 3, 8, 8) and torch.equal(small[:, 0], small[:, 2])  # grey in every channel
    pooled = torch.nn.functional.adaptive_avg_pool2d(big, 8)
    corr = torch.corrcoef(torch.stack([pooled.flatten(), small[:, :1].flatten()]))[0, 1]
    assert corr > 0.6


@pytest.mark.parametrize("n, share", [(256, 0.5), (64, 0.25), (9, 0.5), (2, 0.5), (1, 0.5)])
def test_the_prior_draws_its_share_of_each_half_and_same_class_pairs_share_a_source(n, share):
    rows = shapes_rows(n, share)
    half = max(n // 2, 1)
    assert rows[:half].sum() == math.floor(share * half + 1e-9)  # a batch of one or two: all learned
    if n >= 2:
        assert torch.equal(rows[:half], rows[half:2 * half])  # rows i and i + n/2 ask for the same class
    assert not shapes_rows(n, 0.0).any()


def test_the_learned_rows_learn_and_the_shapes_rows_carry_no_gradient():
    config = resolve(TranscribeConfig(dataset="mnist-5k", generic_shapes=0.5))
    generator = build_generator(config, (1, 28, 28), 10)
    plain = build_generator(config.replace(generic_shapes=0.0), (1, 28, 28), 10)
    assert generator.state_dict().keys() == plain.state_dict().keys()  # the checkpoint holds only what learns
    z, c = torch.randn(32, 64), torch.arange(16).remainder(10).repeat(2)
    x = generator(z, c)
    rows = shapes_rows(32, 0.5)
    assert torch.equal(x[rows], GenericShapes((1, 28, 28))(z)[rows])
    x[rows].sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in generator.parameters())
    generator(z, c)[~rows].sum().backward()
    assert generator.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("settings, match", [
    ({"generic_shapes": 1.0}, "generic_shapes is the share"),
    ({"generic_shapes": -0.1}, "generic_shapes is the share"),
    ({"generic_shapes": float("nan")}, "generic_shapes is the share"),
    ({"generic_shapes": 0.5, "generator": "strokes"}, "does not take it"),
    ({"generic_shapes": 0.5, "nz": 32}, "nz must be at least 64"),
])
def test_bad_shares_are_refused_with_one_line(settings, match):
    with pytest.raises(DpsdError, match=match):
        TranscribeConfig(dataset="digits", **settings).validate()


def test_labels_name_the_prior_beside_dpsd_and_never_alone():
    assert generator_label("learned") == "learned generator (DPSD)"
    assert generator_label("learned", 0.5) == "learned generator (DPSD) + " + NAME
    assert run_generator_label(TranscribeConfig(generic_shapes=0.25)).endswith("(public prior, 25% of queries)")
    assert run_generator_label({"generator": "learned"}) == "learned generator (DPSD)"  # rows saved before it


@pytest.fixture(scope="module")
def shapes_run(digits, digits_teacher):
    return transcribe(dataset="digits", data=digits, teacher=digits_teacher, noise_mode="rr", epsilon=2.0,
                      steps=8, batch_size=32, eval_every=4, device="cpu", seed=0, generic_shapes=0.5)


def test_a_run_with_the_prior_names_it_in_its_report_and_figures(shapes_run):
    assert shapes_run.config.generic_shapes == 0.5
    assert shapes_run.privacy["generator"] == "learned generator (DPSD) + " + NAME
    assert NAME in plots.run_title(shapes_run) and NAME in plots.generator_name(shapes_run)
    assert NAME in plots.generator_name({"generator": "learned", "generic_shapes": 0.5})
    x, _ = shapes_run.generator.sample(16, torch.Generator().manual_seed(0))
    assert torch.equal(x[shapes_rows(16, 0.5)], GenericShapes((1, 8, 8))(
        torch.randn(16, 64, generator=torch.Generator().manual_seed(0)))[shapes_rows(16, 0.5)])


def test_synthetic_data_from_such_a_run_says_what_drew_it(shapes_run, tiny_run):
    from dpsd_lite.synthetic import sample_synthetic

    assert NAME in sample_synthetic(shapes_run, 20, seed=0).meta["drawn_by"]
    assert sample_synthetic(tiny_run, 20, seed=0).meta["drawn_by"] == "learned generator (DPSD)"


def test_a_saved_run_with_the_prior_loads_and_draws_what_it_drew(tmp_path, shapes_run):
    path = save_run(shapes_run, tmp_path / "run")
    run = load_run(path)
    assert run.config.generic_shapes == 0.5 and run.generator.generic_shapes == 0.5
    z, c = torch.randn(8, 64), torch.arange(8) % 10
    shapes_run.generator.eval()
    with torch.no_grad():
        assert torch.allclose(run.generator(z, c, torch.ones(8, 1)), shapes_run.generator(z, c, torch.ones(8, 1)))


def test_a_sweep_row_carries_the_share_and_its_table_names_the_prior(digits, digits_teacher):
    config = TranscribeConfig(dataset="digits", steps=4, batch_size=32, eval_every=2, device="cpu", seed=0,
                              generic_shapes=0.5)
    rows = run_sweep([2.0], ["rr"], config=config, data=digits, teacher=digits_teacher)
    assert "generic_shapes" in SWEEP_COLUMNS and rows[0]["generic_shapes"] == 0.5
    assert NAME in format_table(rows)


def test_the_dashboard_offers_the_prior_as_a_named_lesson_and_runs_it(digits, digits_teacher):
    dash = Dashboard(dataset="digits", data=digits, teacher=digits_teacher, steps=10, batch_size=32, device="cpu",
                     seed=0, eval_every=5, refresh_seconds=0.0)
    options = dict((value, label) for label, value in dash.generator_dropdown.options)
    assert dash.generator_dropdown.value == "learned"
    schedule = "generic shapes (public prior, 90% → 10% of queries over the run)"  # config.GENERIC_SHAPES_SCHEDULE
    assert schedule in options[LEARNED_WITH_SHAPES] and "a lesson" in options[LEARNED_WITH_SHAPES]
    assert dash.current_config().generic_shapes == 0.0
    dash.generator_dropdown.value = LEARNED_WITH_SHAPES
    config = dash.current_config()
    assert (config.generic_shapes, config.generic_shapes_end, config.generator) == (0.9, 0.1, "learned")
    dash.run(wait=True)
    assert dash.last_result.config.generic_shapes_end == 0.1
    assert dash.runs[-1]["generic_shapes"] == 0.9 and schedule in dash.table.value
    assert schedule in dash.report_output.outputs[0]["text"]
    dash.generator_dropdown.value = "learned"
    assert dash.current_config().generic_shapes == 0.0


def test_a_dashboard_built_with_the_prior_starts_on_that_choice(digits, digits_teacher):
    dash = Dashboard(dataset="digits", data=digits, teacher=digits_teacher, device="cpu", generic_shapes=0.25)
    assert dash.generator_dropdown.value == LEARNED_WITH_SHAPES
    assert dash.current_config().generic_shapes == 0.25
    assert "25% of queries" in dict((v, k) for k, v in dash.generator_dropdown.options)[LEARNED_WITH_SHAPES]


def test_the_generator_class_keeps_the_share_in_its_architecture():
    g = Generator((1, 28, 28), 10, generic_shapes=0.5)
    assert g.architecture["generic_shapes"] == 0.5
    assert Generator((1, 28, 28), 10).shapes is None  # off: nothing added to the default generator
