"""Notebook widgets: thin controls and live views over the one library path.

Three pieces, each a front on functions the CLI also calls:

``LiveMonitor``
    A progress bar, a live accuracy curve and a grid of the current synthetic
    images, attached to :func:`~dpsd_lite.transcribe.transcribe` through its
    ``callbacks`` (``transcribe(..., callbacks=monitor.callbacks)``). The
    training loop knows nothing about widgets.
``Dashboard``
    ε slider (log scale), noise-mode dropdown, steps, Run and Stop buttons, a
    :class:`LiveMonitor`, the privacy report and a growing table and plot of
    every run so far (accuracy vs ε per mode). Each Run calls
    :func:`~dpsd_lite.sweep.run_sweep` for one (mode, ε), the function behind
    ``dpsd-lite sweep``, in a background thread, so the notebook stays
    responsive; the teacher is trained (or loaded from the disk cache) once.
``MechanismExplorer``
    ε slider and mode dropdown over one fixed batch of teacher answers: how
    noisy the released answers become and what the accountant says.

Widgets that the background thread updates are changed only through their
traits (``value``, ``outputs``), which ipywidgets sends to the browser from
any thread; figures are drawn with matplotlib's object API (no pyplot), which
is safe off the main thread. Everything works headless (no browser, no
kernel), which is how the tests drive it: set ``dashboard.epsilon_slider.value``,
``dashboard.mode_dropdown.value``, call ``dashboard.run(wait=True)`` (or
``dashboard.run_button.click(); dashboard.wait()``), then read
``dashboard.runs``.
"""

from __future__ import annotations

import base64
import html
import math
import struct
import threading
import time

import ipywidgets as W
import torch

from . import plots
from .accounting import whole_run_epsilon
from .config import GENERIC_SHAPES_SCHEDULE, TranscribeConfig, resolve
from .data import load_dataset
from .generators import STROKE_FORMAT
from .mechanisms import make_mechanism
from .names import GENERATOR_LABELS, generator_label, mode_name, mode_settings, run_generator_label
from .report import format_report, privacy_report, privacy_summary
from .sweep import eps_cell, run_sweep
from .teacher import teacher_for
from .utils import resolve_device

__all__ = ["LiveMonitor", "Dashboard", "MechanismExplorer", "show_figure", "MODE_LABELS", "DASHBOARD_FRACTION",
           "dashboard_steps"]

MODE_LABELS = {
    "none": "none: no privacy (reference)",
    "label": "label: Gaussian noise on top-k softmax",
    "rr": "rr: selective randomized response",
    "rr-top2": "rr, top two: randomized response on the ordered top two",
    "data": "data: noisy normalised gradients (DPDFD)",
}

#: The dropdowns' choices, in order: the four noise modes, with rr's top-two release after rr.
DROPDOWN_MODES = ("none", "label", "rr", "rr-top2", "data")
#: The record-level route's choices: a DP-SGD teacher at these ε per private record (the CLI's --dp-epsilon)
TEACHER_DP_EPSILONS = (1.0, 10.0)


def show_figure(output: W.Output, fig, dpi: int = 90) -> None:
    """Replace what ``output`` shows by ``fig`` rendered as a PNG (thread-safe: one trait update).

    The PNG carries its size in pixels, so the front end draws it at that size
    instead of scaling it to whatever room a crowded row leaves it.
    """
    raw = plots.figure_to_png(fig, dpi=dpi)
    width, height = struct.unpack(">II", raw[16:24])  # the PNG header's IHDR chunk
    png = base64.b64encode(raw).decode("ascii")
    output.outputs = ({"output_type": "display_data",
                       "metadata": {"image/png": {"width": int(width), "height": int(height)}},
                       "data": {"image/png": png, "text/plain": f"<figure {fig.get_label() or ''}>"}},)


def _row(children, text=()) -> W.HBox:
    """Side by side where there is room, wrapped onto the next line where there is not: no figure is squeezed.

    (A plain HBox shrinks a figure next to a long text to a thumbnail.) Children in ``text`` take the
    room that is left, at least 420 px, and their lines wrap inside it.
    """
    for child in children:
        child.layout.flex = "1 1 420px" if child in text else "0 0 auto"
        if child in text:
            child.layout.min_width = "420px"
    return W.HBox(children, layout=W.Layout(flex_flow="row wrap", align_items="flex-start"))


def _show_text(output: W.Output, text: str) -> None:
    output.outputs = ({"output_type": "stream", "name": "stdout", "text": text},)


_CELL_STYLE = "padding:0 6px;white-space:nowrap"  # runs table: a squeezed cell must not wrap "1e-05" or "4 (stopped)"


def _pct(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


class LiveMonitor:
    """Live view of one or more transcriptions, attached through ``callbacks``.

    ``monitor.callbacks`` is the dict to pass to ``transcribe`` (or
    ``run_sweep``). The progress bar moves every step; the accuracy curve is
    redrawn at every held-out evaluation and the image grid at most every
    ``refresh_seconds`` (drawing costs time the training could use). A new
    run (a new ``RunState``) starts a new curve. Drawing never takes more
    than about a tenth of the run's time: after a slow redraw (a busy CPU)
    the next one waits ten times as long.

    With ``keep_snapshots=True``, the synthetic images at each evaluation are
    kept in ``monitor.snapshots`` (dicts ``step``, ``images``, ``classes``,
    ``labels``, ``generator``) for :func:`dpsd_lite.plots.plot_image_evolution`.

    Until the first step ends (the run loads its teacher, from the disk cache
    or by training it once, then builds its players and takes a step) the
    status line says so (``waiting``), so the bar is never a blank box. The
    figures name the generator that made the queries.
    """

    #: What the status line says from the moment the monitor is shown until the first step ends.
    WAITING = ("waiting for the run… once started it loads its teacher (from the disk cache, or trains it once: "
               "about a minute) and shows its first step here")

    def __init__(self, teacher_accuracy: float | None = None, class_names=None, n_images: int = 32,
                 refresh_seconds: float = 2.0, keep_snapshots: bool = False, show_images: bool = True,
                 waiting: str | None = None):
        self.teacher_accuracy = teacher_accuracy
        self.class_names = class_names
        self.n_images = int(n_images)
        self.refresh_seconds = float(refresh_seconds)
        self.keep_snapshots = keep_snapshots
        self.snapshots: list[dict] = []
        self.progress = W.IntProgress(value=0, min=0, max=1, description="transcription", bar_style="info",
                                      style={"description_width": "initial"}, layout=W.Layout(width="420px"))
        self.status = W.HTML(value=html.escape(self.WAITING if waiting is None else waiting))
        self.curve_output = W.Output(layout=W.Layout(min_height="40px"))
        self.images_output = W.Output(layout=W.Layout(min_height="40px"))
        panels = [self.curve_output] + ([self.images_output] if show_images else [])
        self.widget = W.VBox([W.HBox([self.progress, self.status]), _row(panels)])
        self._state = None
        self._next_draw = 0.0
        self.callbacks = {"on_step_end": self.on_step_end, "on_eval": self.on_eval}

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- callbacks --------------------------------------------------------
    def _maybe_new_run(self, state):
        if state is not self._state:
            self._state = state
            self.progress.max = max(1, state.total_steps)
            self.progress.bar_style = "info"
            self._next_draw = 0.0

    def on_step_end(self, state) -> None:
        self._maybe_new_run(state)
        self.progress.value = state.step
        acc = _pct(state.student_accuracy)
        self.status.value = (f"step {state.step}/{state.total_steps} · {state.queries:,} teacher queries · "
                             f"student {acc} · released = requested {_pct(state.agreement)} · "
                             f"{state.elapsed:.0f} s")
        if state.step >= state.total_steps:
            self.progress.bar_style = "success"
        if time.perf_counter() >= self._next_draw:
            self.draw_images(state)

    def on_eval(self, state) -> None:
        self._maybe_new_run(state)
        self.draw_curve(state.history, title=f"student accuracy · {plots.generator_name(state.config)}")
        if self.keep_snapshots and state.last_images is not None:
            self.snapshots.append({"step": state.step, "images": state.last_images.clone(),
                                   "classes": state.last_classes.clone(),
                                   "labels": None if state.last_labels is None else state.last_labels.clone(),
                                   "generator": plots.generator_name(state.config)})
        self.draw_images(state)

    # -- drawing ----------------------------------------------------------
    def draw_curve(self, history, title: str | None = None) -> None:
        fig, ax = plots.new_figure(7.4, 3.6)  # the legend sits to the right of the axes
        plots.plot_accuracy_curves(history, teacher_accuracy=self.teacher_accuracy, ax=ax, title=title)
        show_figure(self.curve_output, fig)

    def draw_images(self, state) -> None:
        if state.last_images is None:
            return
        start = time.perf_counter()
        n = min(self.n_images, len(state.last_images))
        fig = plots.image_grid(state.last_images[:n], classes=state.last_classes[:n],
                               labels=None if state.last_labels is None else state.last_labels[:n],
                               class_names=self.class_names, label_name="released label",
                               title=f"synthetic queries at step {state.step} "
                                     f"({plots.generator_name(state.config)})")
        show_figure(self.images_output, fig)
        now = time.perf_counter()
        self._next_draw = now + max(self.refresh_seconds, 10 * (now - start))


#: The dashboard's preset: a third of a default run (rounded to the steps slider's grid of 10), so that a
#: run adds its point quickly enough for a live lab (timed by benchmarks/notebooks_benchmark.py
#: --dashboard-only; figures in notebooks/LAB.md); the runs table shows each run's steps, and the steps slider
#: goes up to four default runs.
DASHBOARD_FRACTION = 1 / 3


def dashboard_steps(config: TranscribeConfig | None = None) -> int:
    """The dashboard's preset number of steps: :data:`DASHBOARD_FRACTION` of ``config``'s resolved steps."""
    steps = resolve(config or TranscribeConfig()).steps
    return max(10, int(round(steps * DASHBOARD_FRACTION / 10)) * 10)


#: The generator menu's entry for the learned generator with the generic-shapes prior beside it, drawing its
#: share of the queries on config.GENERIC_SHAPES_SCHEDULE (unless the dashboard was built with a share of its own).
LEARNED_WITH_SHAPES = "learned+shapes"


class Dashboard:
    """The interactive front of the package: pick ε and a noise mode, Run, watch, compare.

    ``Dashboard(dataset="mnist-5k")`` or ``Dashboard(config, data=data, teacher=teacher)``
    (reuse what the notebook already loaded). Keyword arguments are
    :class:`~dpsd_lite.transcribe.TranscribeConfig` settings; ``epsilon``,
    ``noise_mode`` and ``steps`` set the controls' starting values.

    Beside the ε slider, ``privacy_levels`` shows the three levels of the run the controls describe: ε per
    teacher answer, the whole run (every answer composed) and per private record (none for the ordinary
    teacher; the DP-SGD teacher's ε when ``teacher_dropdown`` picks the record-level route).

    Attributes for code and tests: ``epsilon_slider``, ``mode_dropdown``, ``generator_dropdown``
    (DPSD's learned generator; the same with the generic-shapes prior drawing a share of its queries,
    a lesson named as such; or the stroke renderer on digit data), ``teacher_dropdown`` (the ordinary
    teacher, or a DP-SGD teacher at ε per private record), ``privacy_levels``,
    ``steps_slider``, ``run_button``, ``stop_button``, ``progress``,
    ``monitor`` (a :class:`LiveMonitor`), ``table`` (HTML of all runs),
    ``tradeoff_output``, ``report_output``, ``runs`` (one sweep row per run,
    the columns of :data:`dpsd_lite.sweep.SWEEP_COLUMNS`), ``last_result``
    and ``error`` (the exception of a failed run, else None).
    """

    def __init__(self, config=None, data=None, teacher=None, cache_dir=None, epsilon_range=(0.1, 100.0),
                 max_steps: int | None = None, refresh_seconds: float = 2.0, **overrides):
        self.config = (config or TranscribeConfig()).replace(**overrides).validate()
        self.data, self.teacher, self.cache_dir = data, teacher, cache_dir
        self.runs: list[dict] = []
        self.last_result = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._state = None
        self._stop_requested = False

        lo, hi = (math.log10(e) for e in epsilon_range)
        eps0 = min(max(self.config.epsilon, epsilon_range[0]), epsilon_range[1])
        self.epsilon_slider = W.FloatLogSlider(value=eps0, base=10, min=lo, max=hi, step=0.05,
                                               description="ε per answer", readout_format=".3g",
                                               continuous_update=False, style={"description_width": "initial"},
                                               layout=W.Layout(width="360px"))
        self.mode_dropdown = W.Dropdown(options=[(MODE_LABELS[m], m) for m in DROPDOWN_MODES],
                                        value=mode_name(self.config.noise_mode, self.config.rr_answer),
                                        description="noise mode",
                                        style={"description_width": "initial"}, layout=W.Layout(width="440px"))
        # up to four times the library's default run: the default sits a quarter of the way along, not at the
        # far left of a long range
        steps = resolve(self.config).steps  # the generator's default at the starting ε, unless set
        max_steps = int(max_steps or max(4 * resolve(TranscribeConfig()).steps, steps))
        self.steps_slider = W.IntSlider(value=min(steps, max_steps), min=10, max=max_steps, step=10,
                                        description="generator steps", continuous_update=False,
                                        style={"description_width": "initial"}, layout=W.Layout(width="360px"))
        generators = [(GENERATOR_LABELS["learned"], "learned")]
        # a public prior beside DPSD's generator: named as such in the menu, the status line and every report
        self._shapes = ({"generic_shapes": self.config.generic_shapes,
                         "generic_shapes_end": self.config.generic_shapes_end} if self.config.uses_generic_shapes
                        else dict(GENERIC_SHAPES_SCHEDULE))
        generators.append((generator_label("learned", **self._shapes) + " — a lesson, not DPSD alone",
                           LEARNED_WITH_SHAPES))
        if self.config.dataset in STROKE_FORMAT:  # the renderer draws handwritten digits only
            generators.append((GENERATOR_LABELS["strokes"] + " — a lesson, not DPSD", "strokes"))
        start = LEARNED_WITH_SHAPES if self.config.uses_generic_shapes else self.config.generator
        self.generator_dropdown = W.Dropdown(options=generators, value=start, description="generator",
                                             style={"description_width": "initial"}, layout=W.Layout(width="440px"))
        routes = [("ordinary teacher (no ε per private record)", 0.0)]
        routes += [(f"DP-SGD teacher, ε = {e:g} per private record (trained once, then cached)", e)
                   for e in TEACHER_DP_EPSILONS]
        dp0 = self.config.teacher_dp_epsilon or 0.0
        if dp0 not in dict((v, k) for k, v in routes):
            routes.append((f"DP-SGD teacher, ε = {dp0:g} per private record", dp0))
        self.teacher_dropdown = W.Dropdown(options=routes, value=dp0, description="teacher",
                                           style={"description_width": "initial"}, layout=W.Layout(width="440px"))
        self.privacy_levels = W.HTML(layout=W.Layout(width="440px"))
        self._dp_teachers = {}  # record-level ε → its DP-SGD teacher, once loaded
        self.run_button = W.Button(description="Run", button_style="primary", icon="play",
                                   tooltip="transcribe the teacher with these settings (background thread)")
        self.stop_button = W.Button(description="Stop", button_style="warning", icon="stop", disabled=True,
                                    tooltip="stop after the current step and keep the result")
        self.run_button.on_click(lambda _b: self.run())
        self.stop_button.on_click(lambda _b: self.stop())
        self.mode_dropdown.observe(self._on_mode, names="value")
        self._on_mode({"new": self.mode_dropdown.value})
        for control in (self.epsilon_slider, self.mode_dropdown, self.steps_slider, self.teacher_dropdown):
            control.observe(lambda _change: self._show_levels(), names="value")
        self.generator_dropdown.observe(self._on_generator, names="value")
        self._show_levels()

        teacher_acc = teacher.heldout_accuracy if teacher is not None else None
        names = data.class_names if data is not None else None
        self.monitor = LiveMonitor(teacher_accuracy=teacher_acc, class_names=names, n_images=32,
                                   refresh_seconds=refresh_seconds,
                                   waiting="press Run: the curve, the images and the report of the run appear here")
        self.progress = self.monitor.progress
        self.status = self.monitor.status
        self.table = W.HTML(value=self._table_html())
        self.tradeoff_output = W.Output()
        self.report_output = W.Output()
        controls = W.VBox([W.HBox([self.epsilon_slider, self.privacy_levels]), self.mode_dropdown,
                           self.generator_dropdown, self.teacher_dropdown, self.steps_slider,
                           W.HBox([self.run_button, self.stop_button])])
        header = W.HTML(f"<b>dpsd_lite dashboard</b> · dataset <code>{html.escape(self.config.dataset)}</code> · "
                        f"δ = {self.config.delta:g} · the slider's ε is per teacher answer, not per private record")
        self.widget = W.VBox([
            header,
            controls,
            self.monitor.widget,
            W.HTML("<b>privacy report of the last run</b>"),
            self.report_output,
            W.HTML("<b>all runs so far</b>"),
            _row([self.table, self.tradeoff_output]),
        ])

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _on_mode(self, change) -> None:
        # ε means nothing without noise: grey the slider out for mode none
        self.epsilon_slider.disabled = change["new"] == "none"

    def _on_generator(self, change) -> None:
        """A generator of its own budget: the steps slider moves to the new generator's default (unless set)."""
        if self.config.steps is None:
            steps = resolve(self.config.replace(**self._generator_settings(change["new"]),
                                                epsilon=float(self.epsilon_slider.value),
                                                **mode_settings(self.mode_dropdown.value))).steps
            self.steps_slider.value = min(steps, self.steps_slider.max)
        self._show_levels()

    def _show_levels(self) -> None:
        """The three levels of ε for the run the controls describe (before it runs: its planned answers)."""
        cfg = resolve(self.current_config())
        answers = cfg.steps * cfg.student_steps * cfg.batch_size
        report = {"unit": "answer" if cfg.noise_mode != "none" else "none", "answers": answers,
                  "epsilon_per_answer": cfg.epsilon if cfg.noise_mode != "none" else math.inf,
                  "delta_per_answer": 0.0 if cfg.noise_mode == "rr" else cfg.delta,
                  "epsilon_per_record": cfg.teacher_dp_epsilon, "delta_per_record": cfg.delta}
        whole = whole_run_epsilon(cfg.noise_mode, answers, cfg.delta, epsilon=cfg.epsilon)
        report.update(epsilon_whole_run=whole["epsilon"], delta_whole_run=whole["delta"])
        lines = html.escape(privacy_summary(report)).split("\n")
        self.privacy_levels.value = ("<div style='font-size:90%;line-height:1.3'>" + "<br>".join(lines)
                                     + f"<br><i>{answers:,} answers planned: {cfg.steps} steps × "
                                     f"{cfg.student_steps} batches × {cfg.batch_size} queries</i></div>")

    # -- running ------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _generator_settings(self, choice: str) -> dict:
        """The settings a choice of the generator menu stands for (``learned+shapes``: the learned generator with
        the generic-shapes prior drawing its share of the queries)."""
        if choice == LEARNED_WITH_SHAPES:
            return {"generator": "learned", **self._shapes}
        return {"generator": choice, "generic_shapes": 0.0, "generic_shapes_end": None}

    def current_config(self):
        """The TranscribeConfig the controls describe now."""
        return self.config.replace(epsilon=float(self.epsilon_slider.value), **mode_settings(self.mode_dropdown.value),
                                   **self._generator_settings(self.generator_dropdown.value),
                                   teacher_dp_epsilon=float(self.teacher_dropdown.value) or None,
                                   steps=int(self.steps_slider.value),
                                   eval_every=max(1, min(self.config.eval_every, int(self.steps_slider.value) // 4 or 1)))

    def run(self, wait: bool = False):
        """Start one transcription with the controls' values in a background thread.

        Returns the thread; with ``wait=True`` blocks until it ends and
        returns the :class:`~dpsd_lite.transcribe.TranscriptionResult`
        (re-raising its error, if any). Ignored while a run is going on.
        """
        if self.running:
            return self._thread
        config = self.current_config().validate()
        self.error = None
        self._stop_requested = False
        # the previous run's "done: …" must not linger while this one starts
        self.status.value = f"starting: {html.escape(config.noise_mode)}" + (
            "" if config.noise_mode == "none" else f", ε = {config.epsilon:.3g}") + f", {config.steps} steps…"
        self.progress.value, self.progress.bar_style = 0, "info"
        self.run_button.disabled = True
        self.stop_button.disabled = False
        self.epsilon_slider.disabled = self.mode_dropdown.disabled = self.steps_slider.disabled = True
        self.generator_dropdown.disabled = self.teacher_dropdown.disabled = True
        self._thread = threading.Thread(target=self._work, args=(config,), name="dpsd-dashboard", daemon=True)
        self._thread.start()
        if wait:
            return self.wait()
        return self._thread

    def wait(self, timeout: float | None = None):
        """Block until the current run ends; return its result (or raise its error)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the run did not finish within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.last_result

    def stop(self) -> None:
        """Ask the running transcription to stop after its current step (it keeps what it learnt)."""
        self._stop_requested = True
        if self._state is not None:
            self._state.stop = True
        self.status.value = "stopping after this step…"

    def _teacher_for(self, config):
        """The ordinary teacher, or the DP-SGD teacher of the run's record-level ε (trained once, then cached)."""
        if not config.teacher_dp_epsilon:
            return self.teacher
        if config.teacher_dp_epsilon not in self._dp_teachers:
            self.status.value = (f"training the DP-SGD teacher at ε = {config.teacher_dp_epsilon:g} per private "
                                 "record once (a minute or two; then cached)…")

            def progress(epoch, epochs, loss):
                self.progress.max, self.progress.value = epochs, epoch
                self.status.value = f"training the DP-SGD teacher once: epoch {epoch}/{epochs}, loss {loss:.3f}"

            self._dp_teachers[config.teacher_dp_epsilon] = teacher_for(
                config, self.data, device=resolve_device(config.device), cache_dir=self.cache_dir, progress=progress)
        return self._dp_teachers[config.teacher_dp_epsilon]

    def _ensure_teacher(self) -> None:
        cfg = self.config.replace(teacher_dp_epsilon=None)
        if self.data is None:
            self.status.value = f"loading {html.escape(cfg.dataset)}…"
            self.data = load_dataset(cfg.dataset, root=cfg.data_root, download=cfg.download)
        if self.teacher is None:
            self.status.value = "loading the teacher from the cache, or training it once (a minute or two)…"
            self.progress.max, self.progress.value = cfg.teacher_epochs, 0

            def progress(epoch, epochs, loss):
                self.progress.value = epoch
                self.status.value = f"training the teacher once: epoch {epoch}/{epochs}, loss {loss:.3f}"

            self.teacher = teacher_for(cfg, self.data, device=resolve_device(cfg.device), cache_dir=self.cache_dir,
                                       progress=progress)
        self.monitor.teacher_accuracy = self.teacher.heldout_accuracy
        self.monitor.class_names = self.data.class_names

    def _work(self, config) -> None:
        def on_step_end(state):
            self._state = state
            if self._stop_requested:
                state.stop = True
            self.monitor.on_step_end(state)

        def on_result(row, result):
            done = result.history[-1]["step"] if result.history else 0
            if done < row["steps"]:  # stopped early: the row tells what ran, the trade-off plot leaves it out
                row = {**row, "steps": done, "stopped_early": True}
            self.last_result = result
            self.runs.append(row)

        try:
            self._ensure_teacher()
            teacher = self._teacher_for(config)
            self.status.value = (f"running: {config.noise_mode}, {run_generator_label(config)}, "
                                 f"{config.steps} steps…")
            run_sweep([config.epsilon], [mode_name(config.noise_mode, config.rr_answer)], config=config,
                      data=self.data, teacher=teacher, cache_dir=self.cache_dir, on_result=on_result,
                      callbacks={"on_step_end": on_step_end, "on_eval": self.monitor.on_eval})
            self._after_run()
        except BaseException as exc:  # shown in the dashboard and re-raised by wait()
            self.error = exc
            self.progress.bar_style = "danger"
            self.status.value = f"<span style='color:#b00'>error: {html.escape(str(exc))}</span>"
        finally:
            self._state = None
            self.run_button.disabled = False
            self.stop_button.disabled = True
            self.mode_dropdown.disabled = self.steps_slider.disabled = False
            self.generator_dropdown.disabled = self.teacher_dropdown.disabled = False
            self.epsilon_slider.disabled = self.mode_dropdown.value == "none"

    def _after_run(self) -> None:
        result, row = self.last_result, self.runs[-1]
        stopped = " (stopped early)" if row.get("stopped_early") else ""
        self.status.value = (f"done{stopped}: student {_pct(result.student_accuracy)} "
                             f"(teacher {_pct(result.teacher_accuracy)}) in {result.elapsed:.0f} s, "
                             f"{html.escape(run_generator_label(result.config))}")
        self.progress.bar_style = "success"
        _show_text(self.report_output, f"queries from: {run_generator_label(result.config)}\n"
                   + privacy_summary(result.privacy) + "\n\n" + format_report(result.privacy) + "\n")
        self.table.value = self._table_html()
        # a run stopped after a few steps is not a point of the trade-off: it would pull its (mode, ε) mean down
        show_figure(self.tradeoff_output,
                    plots.plot_accuracy_vs_epsilon([r for r in self.runs if not r.get("stopped_early")]))

    def _table_html(self) -> str:
        head = ("#", "mode", "generator", "ε per answer", "ε whole run", "ε per record", "δ", "steps", "student acc",
                "teacher acc", "queries", "seconds")
        rows = []
        for i, r in enumerate(self.runs, 1):
            eps = "∞ (no privacy)" if r["epsilon"] is None or math.isinf(r["epsilon"]) else f"{r['epsilon']:.3g}"
            delta = "—" if r.get("delta") is None else f"{r['delta']:g}"
            steps = f"{r['steps']} (stopped)" if r.get("stopped_early") else r["steps"]
            cells = (i, r["noise_mode"], run_generator_label(r), eps,
                     eps_cell(r.get("epsilon_whole_run"), "—"), eps_cell(r.get("epsilon_per_record")), delta, steps,
                     _pct(r["student_accuracy"]), _pct(r["teacher_accuracy"]), f"{r['queries']:,}",
                     f"{r['seconds']:.1f}")
            rows.append("<tr>" + "".join(f"<td style='{_CELL_STYLE}'>{html.escape(str(c))}</td>" for c in cells)
                        + "</tr>")
        if not rows:
            rows.append(f"<tr><td colspan='{len(head)}'><i>no runs yet: press Run</i></td></tr>")
        th = "".join(f"<th style='{_CELL_STYLE}'>{h}</th>" for h in head)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class MechanismExplorer:
    """How noisy one batch of teacher answers becomes under each mode, and what the accountant says.

    ``teacher_logits`` (B×K) are the teacher's raw answers to B queries. Move
    ``epsilon_slider`` or ``mode_dropdown`` and the figure and the privacy
    report are recomputed with :func:`~dpsd_lite.mechanisms.make_mechanism`
    and :func:`~dpsd_lite.report.privacy_report`. As a lesson it uses
    *reproducible* noise by default (``reproducible_noise=True``: derived from
    ``seed``, so moving ε rescales the same noise draw instead of drawing new
    noise), and its privacy report says that such an ε does not hold against
    anyone who knows the seed; ``reproducible_noise=False`` draws secret noise
    on every update, as a run does. No prior is used, so ``rr`` and
    ``label`` keep all K classes (k = K). A run differs: its student's prior
    picks the answer set from the first query on (an untrained student's
    tempered prior is nearly flat, so k = K by itself at first). The ``data`` mode takes the gradient against an
    untrained student (uniform prediction) unless ``student_logits`` is given.
    """

    def __init__(self, teacher_logits, epsilon: float = 1.0, noise_mode: str = "label", delta: float = 1e-5,
                 class_names=None, student_logits=None, seed: int = 0, epsilon_range=(0.1, 100.0),
                 reproducible_noise: bool = True):
        self.teacher_logits = teacher_logits.detach().cpu()
        self.student_logits = (torch.zeros_like(self.teacher_logits) if student_logits is None
                               else student_logits.detach().cpu())
        self.delta, self.class_names, self.seed = delta, class_names, seed
        self.reproducible_noise = bool(reproducible_noise)
        lo, hi = (math.log10(e) for e in epsilon_range)
        self.epsilon_slider = W.FloatLogSlider(value=epsilon, base=10, min=lo, max=hi, step=0.05,
                                               description="ε per answer", readout_format=".3g",
                                               continuous_update=False, style={"description_width": "initial"},
                                               layout=W.Layout(width="360px"))
        self.mode_dropdown = W.Dropdown(options=[(MODE_LABELS[m], m) for m in DROPDOWN_MODES if m != "none"],
                                        value=noise_mode, description="noise mode",
                                        style={"description_width": "initial"}, layout=W.Layout(width="360px"))
        self.plot_output = W.Output()
        self.report_output = W.Output()
        self.epsilon_slider.observe(lambda _c: self.update(), names="value")
        self.mode_dropdown.observe(lambda _c: self.update(), names="value")
        self.widget = W.VBox([W.HBox([self.epsilon_slider, self.mode_dropdown]),
                              _row([self.plot_output, self.report_output], text=(self.report_output,))])
        self.release = None
        self.update()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def update(self) -> None:
        """Release the answers again at the current ε and mode; redraw figure and report."""
        eps, mode = float(self.epsilon_slider.value), self.mode_dropdown.value
        settings = mode_settings(mode)
        mech = make_mechanism(settings["noise_mode"], eps, self.delta, answer=settings["rr_answer"],
                              num_classes=self.teacher_logits.shape[1],
                              noise_seed=self.seed if self.reproducible_noise else None)
        rel = mech.release(self.teacher_logits, prior=None, student_logits=self.student_logits)
        self.release = rel
        teacher_labels = self.teacher_logits.argmax(1)
        if mode == "rr-top2":
            top = self.teacher_logits.topk(2, dim=1).indices
            kept = (rel.labels == top[:, 0]) & (rel.extra["second"] == top[:, 1])
            fig = plots.plot_label_confusion(teacher_labels, rel.labels, class_names=self.class_names,
                                             title=f"rr, top two at ε = {eps:.3g}: "
                                                   f"{100 * float(kept.float().mean()):.1f}% of pairs kept")
        elif mode == "rr":
            fig = plots.plot_label_confusion(teacher_labels, rel.labels, class_names=self.class_names,
                                             title=f"rr at ε = {eps:.3g}: "
                                                   f"{100 * float((rel.labels == teacher_labels).float().mean()):.1f}% "
                                                   f"of labels kept")
        elif mode == "label":
            clean = self.teacher_logits.softmax(1)
            rows = torch.arange(len(clean))
            fig = plots.plot_histograms(
                {"teacher's probability of its top class (clean)": clean[rows, teacher_labels],
                 "released (noisy) value": rel.values[rows, teacher_labels]},
                xlabel="answer for the teacher's top class (probability units)",
                title=f"label at ε = {eps:.3g}: noise std {mech.noise_std:.3g}")
        else:
            clean = self.student_logits.softmax(1) - self.teacher_logits.softmax(1)
            clean = clean / clean.norm(dim=1, keepdim=True).clamp_min(1e-12) * mech.clip_norm
            fig = plots.plot_histograms(
                {"normalised gradient coordinates (clean)": clean, "released (noisy)": rel.values},
                xlabel="gradient coordinate w.r.t. the student's logits",
                title=f"data at ε = {eps:.3g}: noise std {mech.noise_std:.3g} (C = {mech.clip_norm:g})")
        show_figure(self.plot_output, fig)
        _show_text(self.report_output, format_report(privacy_report(
            mech, queries=len(self.teacher_logits), answer_set_sizes=rel.extra.get("k"))))
