"""The widgets and figures, headless: set the controls, click Run, wait, read what a learner would see.

Runs use scikit-learn digits, the session's cached teacher and a few dozen
steps (seconds each).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from matplotlib.figure import Figure

from dpsd_lite import plots
from dpsd_lite.errors import DpsdError
from dpsd_lite.config import resolve
from dpsd_lite.widgets import Dashboard, LiveMonitor, MechanismExplorer

STEPS = 40  # enough for a student well above chance on digits, a few seconds on one core
CHANCE = 0.10  # ten classes


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models on a shared CPU: one intra-op thread is faster than two that spin-wait."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def dashboard(digits, digits_teacher):
    return Dashboard(dataset="digits", data=digits, teacher=digits_teacher, steps=STEPS, batch_size=64,
                     teacher_epochs=3, device="cpu", seed=0, eval_every=10, refresh_seconds=0.0)


def _png(output):
    """The PNG an Output widget shows (there must be exactly one)."""
    assert len(output.outputs) == 1, output.outputs
    data = output.outputs[0]["data"]
    assert "image/png" in data and len(data["image/png"]) > 1000
    return data["image/png"]


def test_controls_start_from_the_config(dashboard):
    assert isinstance(dashboard.epsilon_slider.value, float)
    assert dashboard.epsilon_slider.base == 10  # log scale: 10^min .. 10^max
    assert 10 ** dashboard.epsilon_slider.min <= 0.1 and 10 ** dashboard.epsilon_slider.max >= 100
    assert set(dict(dashboard.mode_dropdown.options).values()) == {"none", "label", "rr", "rr-top2", "data"}
    assert dashboard.steps_slider.value == STEPS
    assert dashboard.runs == [] and "no runs yet" in dashboard.table.value
    assert not dashboard.run_button.disabled and dashboard.stop_button.disabled


def test_run_button_adds_a_run(dashboard):
    dashboard.epsilon_slider.value = 10.0
    dashboard.mode_dropdown.value = "rr"
    dashboard.steps_slider.value = STEPS
    states, statuses = [], []
    dashboard.run_button.observe(lambda change: states.append(change["new"]), names="disabled")
    dashboard.status.observe(lambda change: statuses.append(change["new"]), names="value")

    dashboard.run_button.click()
    result = dashboard.wait(timeout=300)

    assert states == [True, False], "Run is disabled during the run and enabled after it"
    assert len(dashboard.runs) == 1
    row = dashboard.runs[0]
    assert row["noise_mode"] == "rr" and row["epsilon"] == pytest.approx(10.0)
    assert row["steps"] == STEPS and row["queries"] == result.queries > 0
    assert row["student_accuracy"] == result.student_accuracy
    assert CHANCE + 0.05 < row["student_accuracy"] <= 1.0, "the student should be clearly above chance"
    assert dashboard.progress.value == STEPS
    # what the learner sees: live curve, image grid, trade-off plot, report, table
    for output in (dashboard.monitor.curve_output, dashboard.monitor.images_output, dashboard.tradeoff_output):
        _png(output)
    report = dashboard.report_output.outputs[0]["text"]
    assert "epsilon = 10 per teacher answer" in report and "unit of privacy" in report
    assert "answer sets used" in report and "mean keep probability" in report
    assert dashboard.table.value.count("<tr>") == 2  # header + one run
    assert "rr" in dashboard.table.value
    assert "done" in dashboard.status.value
    # during the run the status line shows how often the released label is the class asked for
    assert any(re.search(r"released = requested (\d+\.\d%|—)", s) for s in statuses), statuses[-3:]
    assert all(0 <= h["agreement"] <= 1 for h in result.history)


def test_a_second_run_at_another_mode_grows_the_table(dashboard):
    before = len(dashboard.runs)
    dashboard.mode_dropdown.value = "none"
    assert dashboard.epsilon_slider.disabled, "ε means nothing in mode none"
    result = dashboard.run(wait=True)
    assert len(dashboard.runs) == before + 1
    assert dashboard.runs[-1]["noise_mode"] == "none" and math.isinf(dashboard.runs[-1]["epsilon"])
    assert result.student_accuracy > CHANCE + 0.05
    assert dashboard.table.value.count("<tr>") == before + 2
    assert "NOT private" in dashboard.report_output.outputs[0]["text"]
    dashboard.mode_dropdown.value = "label"
    assert not dashboard.epsilon_slider.disabled


def test_the_top_two_choice_runs_rr_releasing_the_ordered_top_two(dashboard):
    dashboard.mode_dropdown.value = "rr-top2"
    assert not dashboard.epsilon_slider.disabled
    cfg = dashboard.current_config()
    assert (cfg.noise_mode, cfg.rr_answer) == ("rr", "top2")
    result = dashboard.run(wait=True)
    assert result.config.rr_answer == "top2" and result.privacy["answer"] == "top2"
    assert dashboard.runs[-1]["noise_mode"] == "rr-top2" and "rr-top2" in dashboard.table.value
    report = dashboard.report_output.outputs[0]["text"]
    assert "ordered top two classes, one of 90 pairs" in report and "answer sets used" not in report
    dashboard.mode_dropdown.value = "rr"
    assert dashboard.current_config().rr_answer == "top1"  # back to the papers' rr


def test_stop_ends_the_run_early(digits, digits_teacher):
    dash = Dashboard(dataset="digits", data=digits, teacher=digits_teacher, steps=1000, batch_size=32,
                     teacher_epochs=3, device="cpu", eval_every=1000, refresh_seconds=60.0, noise_mode="label",
                     epsilon=1.0)
    dash.monitor.progress.observe(lambda change: change["new"] >= 3 and dash.stop(), names="value")
    result = dash.run(wait=True)
    assert result.history[-1]["step"] < 1000
    assert len(dash.runs) == 1 and "stopped early" in dash.status.value
    assert dash.runs[0]["stopped_early"] and dash.runs[0]["steps"] == result.history[-1]["step"]
    assert f">{dash.runs[0]['steps']} (stopped)<" in dash.table.value
    assert not dash.run_button.disabled and dash.stop_button.disabled


def test_a_failing_run_is_shown_and_reraised(digits, digits_teacher, monkeypatch):
    import dpsd_lite.widgets

    def broken(*args, **kwargs):
        raise DpsdError("something the learner can fix")

    monkeypatch.setattr(dpsd_lite.widgets, "run_sweep", broken)  # the sweep the dashboard runs
    dash = Dashboard(dataset="digits", data=digits, teacher=digits_teacher, steps=10, device="cpu")
    with pytest.raises(DpsdError, match="learner can fix"):
        dash.run(wait=True)
    assert "something the learner can fix" in dash.status.value
    assert not dash.run_button.disabled and dash.runs == []


def test_the_teacher_is_loaded_once_from_the_cache(digits, digits_teacher, _session_cache):
    dash = Dashboard(dataset="digits", steps=10, batch_size=32, teacher_epochs=3, device="cpu", seed=0,
                     cache_dir=str(_session_cache))
    assert dash.teacher is None
    dash.run(wait=True)
    first = dash.teacher
    assert first.cached, "the session's teacher is on disk: the dashboard loads it rather than training"
    dash.run(wait=True)
    assert dash.teacher is first and len(dash.runs) == 2


def test_live_monitor_records_snapshots(digits, digits_teacher):
    from dpsd_lite.transcribe import transcribe

    live = LiveMonitor(teacher_accuracy=digits_teacher.heldout_accuracy, class_names=digits.class_names,
                       keep_snapshots=True, refresh_seconds=0.0)
    result = transcribe(dataset="digits", data=digits, teacher=digits_teacher, noise_mode="rr", epsilon=2.0,
                        steps=6, batch_size=32, eval_every=3, teacher_epochs=3, device="cpu",
                        callbacks=live.callbacks)
    assert [s["step"] for s in live.snapshots] == [h["step"] for h in result.history] == [3, 6]
    assert live.snapshots[0]["images"].shape[1:] == digits.image_shape
    assert live.progress.value == live.progress.max == 6
    _png(live.curve_output)
    _png(live.images_output)
    assert isinstance(plots.plot_image_evolution(live.snapshots, class_names=digits.class_names), Figure)


@pytest.mark.parametrize("mode", ["label", "rr", "rr-top2", "data"])
def test_mechanism_explorer_follows_the_slider(digits, digits_teacher, mode):
    with torch.no_grad():
        logits = digits_teacher.model(digits.x_heldout[:200])
    explorer = MechanismExplorer(logits, epsilon=1.0, noise_mode=mode, class_names=digits.class_names)
    first = _png(explorer.plot_output)
    assert "epsilon = 1 per teacher answer" in explorer.report_output.outputs[0]["text"]
    if mode == "rr":  # no prior here: every answer is 10-ary RR, kept with probability e/(e+9)
        assert "k=10: 100%" in explorer.report_output.outputs[0]["text"]
        assert "mean keep probability 0.2320" in explorer.report_output.outputs[0]["text"]
    explorer.epsilon_slider.value = 10.0
    assert "epsilon = 10 per teacher answer" in explorer.report_output.outputs[0]["text"]
    assert _png(explorer.plot_output) != first
    if mode == "rr":  # more of the teacher's labels survive at larger ε
        kept = (explorer.release.labels == logits.argmax(1)).float().mean()
        assert kept > 0.9
    if mode == "rr-top2":  # its pairs: kept with probability e^10/(e^10+89) = 0.996
        top = logits.topk(2, dim=1).indices
        kept = ((explorer.release.labels == top[:, 0]) & (explorer.release.extra["second"] == top[:, 1]))
        assert kept.float().mean() > 0.95
        assert "= 0.9960, else a uniform other pair" in explorer.report_output.outputs[0]["text"]


# ------------------------------------------------------------------ figures
def _labelled(fig):
    """Every plotted axis has a y label, and the x axis is labelled (twin axes share it)."""
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes[0].get_xlabel(), "the x axis is labelled"
    for ax in axes:
        assert ax.get_ylabel(), "every y axis is labelled"


def test_figures_are_labelled(digits):
    history = [{"step": s, "queries": 64 * s, "student_accuracy": 0.1 + s / 100, "student_loss": 1 / s,
                "generator_loss": 2 / s} for s in (10, 20, 30)]
    fig = plots.plot_accuracy_curves({"rr": history, "none": history}, teacher_accuracy=0.97)
    _labelled(fig)
    assert "%" in fig.axes[0].get_ylabel()
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} >= {"rr", "none", "teacher (97.0%)"}
    _labelled(plots.plot_losses(history))
    _labelled(plots.plot_noise_calibration(delta=1e-5))
    fig = plots.plot_histograms({"a": torch.randn(100), "b": torch.randn(100)}, xlabel="value (units)")
    _labelled(fig)
    assert fig.axes[0].get_legend() is not None
    fig = plots.plot_label_confusion(digits.y_heldout, digits.y_heldout, class_names=digits.class_names)
    _labelled(fig)
    assert "100.0% kept" in fig.axes[0].get_title()
    rows = [{"dataset": "digits", "noise_mode": m, "epsilon": e, "student_accuracy": 0.5, "teacher_accuracy": 0.9,
             "steps": 10, "seed": 0} for m, e in (("rr", 1.0), ("rr", 10.0), ("none", math.inf))]
    fig = plots.plot_accuracy_vs_epsilon(rows)
    _labelled(fig)
    assert "ε" in fig.axes[0].get_xlabel()


def test_image_grid_titles_show_class_and_label(digits):
    classes = digits.y_heldout[:16]
    labels = classes.clone()
    labels[0] = (labels[0] + 1) % 10
    fig = plots.image_grid(digits.x_heldout[:16], classes, labels, class_names=digits.class_names,
                           label_name="released label")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 16 and texts[0] == f"{int(classes[0])}→{int(labels[0])}"
    assert "15/16 agree" in fig.axes[0].get_title()
    assert len(plots.figure_to_png(fig)) > 1000


def test_the_steps_slider_starts_at_the_generators_own_budget(digits, digits_teacher):
    """Left open, the number of steps is the generator's default (the learned one takes more, cheaper ones)."""
    from dpsd_lite.config import GENERATOR_DEFAULTS, LEARNED_BFLOAT16_STEPS

    renderer = Dashboard(dataset="digits", data=digits, teacher=digits_teacher, device="cpu", generator="strokes")
    learned = Dashboard(dataset="digits", data=digits, teacher=digits_teacher, device="cpu")  # the default
    assert renderer.steps_slider.value == GENERATOR_DEFAULTS["strokes"]["steps"]
    # the learned generator's budget depends on the arithmetic this machine runs it in (precision auto)
    bf16 = resolve(learned.config).precision == "bfloat16"
    assert learned.steps_slider.value == (LEARNED_BFLOAT16_STEPS if bf16 else GENERATOR_DEFAULTS["learned"]["steps"])
    assert learned.current_config().steps == learned.steps_slider.value
    exact = Dashboard(dataset="digits", data=digits, teacher=digits_teacher, device="cpu", generator="learned",
                      precision="float32")
    assert exact.steps_slider.value == GENERATOR_DEFAULTS["learned"]["steps"]


# ------------------------------------------------------------------ what a learner sees before and during a run
def test_live_monitor_says_what_it_waits_for_before_the_first_step():
    """Shown before the run starts (the teacher may take a minute to load or train): never a blank bar."""
    live = LiveMonitor()
    assert live.progress.description == "transcription"
    assert "teacher" in live.status.value and "waiting" in live.status.value
    assert LiveMonitor(waiting="press Run").status.value == "press Run"


def test_live_monitor_names_the_generator(digits, digits_teacher):
    from dpsd_lite.transcribe import transcribe

    live = LiveMonitor(keep_snapshots=True, refresh_seconds=0.0)
    transcribe(dataset="digits", data=digits, teacher=digits_teacher, noise_mode="rr", epsilon=2.0, steps=4,
               batch_size=32, eval_every=4, teacher_epochs=3, device="cpu", callbacks=live.callbacks)
    assert live.snapshots[-1]["generator"] == "learned generator (DPSD)"
    fig = plots.plot_image_evolution(live.snapshots)
    assert "learned generator (DPSD)" in fig._suptitle.get_text()
    assert live.status.value.startswith("step 4/4")


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("shared", [False, True])
def test_the_accuracy_legend_covers_no_curve(shared):
    """The live curve's legend sits outside the axes (the released = requested line rises into any corner)."""
    history = [{"step": s, "queries": 64 * s, "student_accuracy": 0.1 + s / 50, "agreement": 0.2 + s / 60}
               for s in range(5, 50, 5)]
    if shared:  # as LiveMonitor draws it: into axes it made
        fig, ax = plots.new_figure(7.4, 3.6)
        plots.plot_accuracy_curves(history, teacher_accuracy=0.97, ax=ax)
    else:
        fig = plots.plot_accuracy_curves(history, teacher_accuracy=0.97)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "released label = requested class" in labels
    fig.draw_without_rendering()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert not _overlaps(legend, axes), (legend, axes)
    assert legend.x1 <= fig.bbox.x1 + 1, "and it is not cut off"


def test_figures_of_results_name_their_generator():
    import types

    from dpsd_lite.transcribe import TranscribeConfig

    history = [{"step": s, "queries": 64 * s, "student_accuracy": 0.5, "student_loss": 1.0, "generator_loss": 2.0,
                "agreement": 0.5} for s in (1, 2)]
    learned = types.SimpleNamespace(history=history, config=TranscribeConfig())
    frozen = types.SimpleNamespace(history=history, config=TranscribeConfig(freeze_generator=True))
    renderer = types.SimpleNamespace(history=history, config=TranscribeConfig(generator="strokes"))
    assert "(learned generator (DPSD))" in plots.plot_accuracy_curves(learned).axes[0].get_title()
    fig = plots.plot_accuracy_curves([learned, frozen, renderer])
    labels = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {"learned generator (DPSD)", "learned generator (DPSD), frozen at its initialisation",
            "stroke renderer (public prior)"} <= labels
    fig = plots.plot_accuracy_curves({"rr": learned, "renderer": renderer})
    labels = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {"rr (learned generator (DPSD))", "renderer (stroke renderer (public prior))"} <= labels
    title = plots.plot_losses(learned).axes[0].get_title()
    assert "mnist-5k · rr, ε = 10 per teacher answer · learned generator (DPSD)" in title
    assert plots.run_title(TranscribeConfig(noise_mode="none")) == \
        "mnist-5k · none, no privacy · learned generator (DPSD)"
    assert plots.generator_name({"generator": "strokes"}) == "stroke renderer (public prior)"
    rows = [{"dataset": "digits", "generator": "learned", "noise_mode": m, "epsilon": e, "student_accuracy": 0.5,
             "teacher_accuracy": 0.9, "steps": 10, "seed": 0} for m, e in (("rr", 1.0), ("none", math.inf))]
    assert "learned generator (DPSD)" in plots.plot_accuracy_vs_epsilon(rows).axes[0].get_title()


def test_a_runs_report_is_headed_by_the_run(tiny_run):
    text = plots.run_report(tiny_run)
    assert text.splitlines()[0] == "run: digits · rr, ε = 2 per teacher answer · learned generator (DPSD)"
    assert "unit of privacy" in text


def test_a_figure_drawn_elsewhere_can_name_its_run(tiny_run, digits):
    fig = plots.image_grid(digits.x_heldout[:4], title="four images")
    plots.add_run_title(fig, tiny_run)
    assert fig.axes[0].get_title() == "four images\ndigits · rr, ε = 2 per teacher answer · learned generator (DPSD)"
