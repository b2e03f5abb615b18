"""Figures for the notebooks and the dashboard: images, curves, ε trade-offs, noisy answers.

Every figure of a run names what made its queries (:func:`generator_name`: the learned generator, DPSD's
own, or the stroke renderer, a public prior), read from the run's config, so no notebook writes it by hand.

Every function draws with matplotlib's object API (``matplotlib.figure.Figure``,
never ``pyplot``), so it is safe to call from the dashboard's background
thread and never changes a notebook's backend. Each returns the ``Figure``;
in a notebook, ``%matplotlib inline`` (first cell) makes a returned Figure
display as a picture. Pass ``ax`` (or ``fig`` for multi-panel figures) to draw
into an existing figure instead.

Conventions: accuracies are plotted in percent, ε is per teacher answer (the
unit of privacy of the ``label``, ``rr`` and ``data`` modes), images are
N×C×H×W tensors in [-1, 1] as everywhere in the package.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure

from .accounting import classic_gaussian_noise_multiplier, gaussian_noise_multiplier
from .names import generator_label, mode_name, run_generator_label
from .report import format_report
from .sweep import plot_sweep

__all__ = [
    "generator_name",
    "run_title",
    "add_run_title",
    "run_report",
    "plot_pipeline",
    "new_figure",
    "figure_to_png",
    "image_grid",
    "plot_image_evolution",
    "plot_accuracy_curves",
    "plot_losses",
    "plot_accuracy_vs_epsilon",
    "plot_histograms",
    "plot_label_confusion",
    "plot_noise_calibration",
    "plot_private_step",
    "plot_weight_change",
]

MODE_COLOURS = {"none": "tab:gray", "label": "tab:blue", "rr": "tab:orange", "rr-top2": "tab:red", "data": "tab:green"}

def _config_of(run):
    """The config of a run, a result, a loaded run or the loop's players; a config as it is; None otherwise."""
    if isinstance(run, (str, dict)) or run is None:
        return None
    return getattr(run, "config", run)


def generator_name(run) -> str:
    """What made a run's queries, in words (:func:`dpsd_lite.names.generator_label`: ``learned generator
    (DPSD)``, the default, or ``stroke renderer (public prior)``), with ``, frozen at its initialisation`` when
    the run froze it (``freeze_generator``).

    ``run``: a :class:`~dpsd_lite.transcribe.TranscribeConfig`, anything with a ``.config`` (a transcription
    result, a loaded run, the loop's players), a sweep row (its ``generator`` column) or a generator kind.
    """
    if isinstance(run, str):
        kind, name, frozen = run, generator_label(run), False
    elif isinstance(run, dict):
        kind, name, frozen = run.get("generator"), run_generator_label(run), bool(run.get("freeze_generator", False))
    else:
        config = _config_of(run)
        kind, name = getattr(config, "generator", None), run_generator_label(config)
        frozen = bool(getattr(config, "freeze_generator", False))
    name = name if kind not in (None, "—") else "no generator"
    return name + (", frozen at its initialisation" if frozen else "")


def run_title(run) -> str:
    """One line naming a run: dataset · noise mode (and ε per teacher answer) · the generator.

    ``run``: a config, or anything with a ``.config`` (a transcription result, a loaded run)."""
    config = _config_of(run)
    mode = mode_name(config.noise_mode, getattr(config, "rr_answer", "top1"))
    privacy = "no privacy" if config.noise_mode == "none" else f"ε = {config.epsilon:g} per teacher answer"
    return f"{config.dataset} · {mode}, {privacy} · {generator_name(config)}"


def add_run_title(fig: Figure, run) -> Figure:
    """Name ``run`` (:func:`run_title`: its data, noise mode and ε, and generator) in a figure that another
    function drew without it: a line under the first axes' title (or the figure's suptitle). Returns ``fig``."""
    line = run_title(run)
    if getattr(fig, "_suptitle", None) is not None and fig._suptitle.get_text():
        fig.suptitle(f"{fig._suptitle.get_text()}\n{line}", fontsize=fig._suptitle.get_fontsize())
        return fig
    ax = fig.axes[0]
    title = ax.get_title()
    ax.set_title(f"{title}\n{line}" if title else line, fontsize=9)
    return fig


def run_report(result) -> str:
    """A run's privacy report (:func:`dpsd_lite.report.format_report`) under a first line naming the run
    (:func:`run_title`: dataset, noise mode and ε, and the generator that made the queries)."""
    return f"run: {run_title(result)}\n{format_report(result.privacy)}"


def new_figure(width: float = 6.4, height: float = 4.0, nrows: int = 1, ncols: int = 1):
    """A Figure with ``nrows × ncols`` axes (constrained layout); returns ``(fig, axes)``.

    ``axes`` is a single Axes for 1×1, else a 2-D array, as ``pyplot.subplots`` does.
    """
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True)
    return fig, axes


def _axes(ax, width=6.4, height=4.0):
    if ax is not None:
        return ax.figure, ax
    return new_figure(width, height)


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a Figure to PNG bytes (for widgets and files)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _to_numpy_images(images) -> np.ndarray:
    """N×C×H×W in [-1, 1] (tensor or array) → N×H×W (grey) or N×H×W×3 in [0, 1]."""
    x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    x = np.clip((x.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)
    if x.ndim == 3:  # N×H×W already
        return x
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def _name(class_names, c) -> str:
    c = int(c)
    return str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)


def _montage(x: np.ndarray, nrows: int, ncols: int, gap: int) -> np.ndarray:
    """Tile N×H×W(×3) images into one array with ``gap`` pixels of mid-grey between tiles."""
    n, h, w = x.shape[:3]
    shape = (nrows * (h + gap) + gap, ncols * (w + gap) + gap) + x.shape[3:]
    canvas = np.full(shape, 0.5, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = gap + r * (h + gap), gap + c * (w + gap)
        canvas[top:top + h, left:left + w] = x[i]
    return canvas


def image_grid(images, classes=None, labels=None, class_names=None, ncols: int = 8, title: str | None = None,
               label_name: str = "label", ax=None, cell_size: float = 0.85,
               class_name: str = "requested class") -> Figure:
    """A grid of images, each titled with its class.

    ``classes`` (N,) is what each image is *meant* to be (the class the
    generator was asked for, or a real image's true label); ``labels`` (N,) is
    what someone said it is (the released private label, or a model's
    prediction), named ``label_name`` in the caption; ``class_name`` names
    ``classes`` there ("requested class" for synthetic images, "true label"
    for real ones). With both, each title reads ``c→y``, green where they
    agree and red where they do not.

    The images are tiled into one picture on one axes (fast enough to redraw
    live: one ``imshow`` instead of one axes per image).
    """
    x = _to_numpy_images(images)
    n = len(x)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    h, w = x.shape[1:3]
    gap = max(2, h // 3)  # room for each tile's title, in pixels of the tiles
    canvas = _montage(x, nrows, ncols, gap)
    width = cell_size * ncols + 0.2
    fig, ax = _axes(ax, width, width * canvas.shape[0] / canvas.shape[1] + (0.55 if title else 0.35))
    ax.imshow(canvas, cmap="gray" if canvas.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    agree = 0
    fontsize = 7 if ncols > 8 else 8
    for i in range(n):
        r, c = divmod(i, ncols)
        if classes is not None and labels is not None:
            ok = int(classes[i]) == int(labels[i])
            agree += ok
            text, colour = f"{_name(class_names, classes[i])}→{_name(class_names, labels[i])}", \
                ("tab:green" if ok else "tab:red")
        elif classes is not None or labels is not None:
            text, colour = _name(class_names, (classes if classes is not None else labels)[i]), "black"
        else:
            continue
        ax.text(gap + c * (w + gap) + w / 2 - 0.5, r * (h + gap) + gap - 0.6, text, ha="center", va="bottom",
                fontsize=fontsize, color=colour, fontweight="bold",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.3, "alpha": 0.85})
    caption = title or ""
    if classes is not None and labels is not None:
        key = f"titles: {class_name} → {label_name} ({agree}/{n} agree)"
        caption = f"{caption}\n{key}" if caption else key
    if caption:
        ax.set_title(caption, fontsize=9)
    return fig


def plot_image_evolution(snapshots, n_images: int = 10, class_names=None, fig: Figure | None = None) -> Figure:
    """Synthetic images at several moments of a run: one row per snapshot.

    ``snapshots`` is a list of dicts with ``step``, ``images`` (N×C×H×W),
    ``classes`` (requested) and optionally ``labels`` (released) and
    ``generator`` (its name, for the title), as recorded by
    :class:`dpsd_lite.widgets.LiveMonitor` with ``keep_snapshots=True``.
    Each row shows the first image requested for each class (up to
    ``n_images`` classes), so rows can be compared column by column.
    """
    if not snapshots:
        raise ValueError("no snapshots to show: run with LiveMonitor(keep_snapshots=True) first")
    rows = len(snapshots)
    if fig is None:
        fig = Figure(figsize=(0.9 * n_images + 0.9, 0.95 * rows + 0.7), layout="constrained")
    axes = fig.subplots(rows, n_images, squeeze=False)
    for r, snap in enumerate(snapshots):
        imgs = _to_numpy_images(snap["images"])
        classes = np.asarray(snap["classes"])
        labels = np.asarray(snap["labels"]) if snap.get("labels") is not None else None
        # first image for each class in order, then fill with whatever is left
        order = [int(np.flatnonzero(classes == c)[0]) for c in range(n_images) if (classes == c).any()]
        order += [i for i in range(len(imgs)) if i not in order]
        for j, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j >= len(order):
                continue
            i = order[j]
            ax.imshow(imgs[i], cmap="gray" if imgs[i].ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            text = _name(class_names, classes[i])
            colour = "black"
            if labels is not None:
                text += f"→{_name(class_names, labels[i])}"
                colour = "tab:green" if labels[i] == classes[i] else "tab:red"
            ax.set_title(text, fontsize=8, color=colour, pad=2)
            if j == 0:
                ax.set_ylabel(f"step {snap['step']}", fontsize=8)
    made_by = snapshots[-1].get("generator")
    fig.suptitle("synthetic images as the run goes on" + (f", {made_by}" if made_by else "")
                 + " (titles: requested class → released label)", fontsize=9)
    return fig


def _run_label(run, runs) -> str:
    """A legend name for one of several results: what tells it apart from the others (mode and ε, generator)."""
    config, configs = _config_of(run), [_config_of(r) for r in runs]
    parts = []
    if len({(c.noise_mode, c.epsilon if c.noise_mode != "none" else None) for c in configs}) > 1:
        mode = mode_name(config.noise_mode, getattr(config, "rr_answer", "top1"))
        privacy = " (no privacy)" if config.noise_mode == "none" else f", ε = {config.epsilon:g} per answer"
        parts.append(mode + privacy)
    if len({generator_name(c) for c in configs}) > 1:
        parts.append(generator_name(config))
    return ", ".join(parts) or "student"


def _as_runs(histories):
    """One history (list of dicts), a result, a list of results, or {name: history or result}
    → ({name: history}, {name: generator name or None})."""
    if isinstance(histories, dict):
        runs = dict(histories)
    elif isinstance(histories, (list, tuple)) and histories and hasattr(histories[0], "history"):
        runs = {_run_label(r, histories): r for r in histories}
    else:
        runs = {"student": histories}
    made_by = {name: generator_name(r) if hasattr(r, "history") else None for name, r in runs.items()}
    return {name: getattr(r, "history", r) for name, r in runs.items()}, made_by


def plot_accuracy_curves(histories, teacher_accuracy: float | None = None, x: str = "step", ax=None,
                         title: str | None = None, agreement: bool = True) -> Figure:
    """Student held-out accuracy (%) against ``x`` (``step`` or ``queries``), one line per run.

    ``histories`` is a run's ``history`` (list of dicts with ``step``,
    ``queries``, ``student_accuracy``), a transcription result, a list of
    results, or a dict ``{legend name: history or result}``. Results name
    their generator: in the title when they share one, in the legend when they
    do not. The teacher's held-out accuracy, if given, is a dashed reference
    line, and 10% marks chance for ten classes. With ``agreement`` (and one
    run), a dotted line shows the share of queries whose released label is the
    class the generator was asked for: it rises when the generator learns what
    the teacher calls each class. The legend sits outside the axes, on the
    right, so it never hides a curve.
    """
    fig, ax = _axes(ax, 8.0, 4.0)  # room for the legend beside the axes
    runs, made_by = _as_runs(histories)
    names = set(made_by.values()) - {None}
    if len(names) > 1:  # different generators: the legend says which line is which
        runs = {(f"{name} ({made_by[name]})" if made_by[name] and made_by[name] not in name else name): hist
                for name, hist in runs.items()}
    for name, hist in runs.items():
        if not hist:
            continue
        xs = [h[x] for h in hist]
        ys = [100 * h["student_accuracy"] for h in hist]
        line, = ax.plot(xs, ys, marker="o", markersize=3, label=name)
        shares = [h.get("agreement") for h in hist]
        if agreement and len(runs) == 1 and any(a is not None and a == a for a in shares):
            ax.plot(xs, [100 * a if a is not None else float("nan") for a in shares], linestyle=":", marker=".",
                    color=line.get_color(), label="released label = requested class")
    if teacher_accuracy is not None:
        ax.axhline(100 * teacher_accuracy, color="black", linestyle="--", linewidth=1,
                   label=f"teacher ({100 * teacher_accuracy:.1f}%)")
    ax.axhline(10, color="grey", linestyle=":", linewidth=1, label="chance (10 classes)")
    ax.set_ylim(0, 102)
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # steps and queries are whole numbers; queries run to six figures, so fewer ticks, with thousands separators
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5 if x == "queries" else "auto", integer=True))
    if x == "queries":
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.set_xlabel("generator iterations (steps)" if x == "step" else "teacher queries answered")
    ax.set_ylabel("student held-out accuracy (%)")
    if title is None:
        title = "student accuracy during transcription" + (f" ({names.pop()})" if len(names) == 1 else "")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    _legend_outside(ax)
    return fig


def _legend_outside(ax) -> None:
    """The legend to the right of the axes (constrained layout makes room for it): it covers no line."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")


def plot_losses(history, ax=None, title: str | None = None) -> Figure:
    """Student and generator losses (at each evaluation) against steps.

    ``history``: a run's history, or a transcription result (the title then names the run and its generator).

    The two losses have different units (the student's loss depends on the
    noise mode; the generator's is its objective in ``transcribe``: the
    student's cross-entropy on the requested classes, plus the terms that push
    it towards inputs the students still get wrong), so they get separate y axes.
    """
    fig, ax = _axes(ax)
    if hasattr(history, "history"):
        title = title or f"the two players' losses\n{run_title(history)}"
        history = history.history
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["student_loss"] for h in history], color="tab:blue", marker="o", markersize=3,
            label="student loss (on the released labels)")
    ax.set_xlabel("generator iterations (steps)")
    ax.set_ylabel("student loss (mode-specific)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["generator_loss"] for h in history], color="tab:red", marker="s", markersize=3,
             label="generator loss (its objective: lower is better for it)")
    ax2.set_ylabel("generator loss (nats)", color="tab:red")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize="small")
    ax.set_title(title or "the two players' losses")
    ax.grid(True, alpha=0.3)
    return fig


def plot_accuracy_vs_epsilon(rows, path=None) -> Figure:
    """Student accuracy against ε per noise mode, from sweep rows.

    The same figure the CLI's ``dpsd-lite sweep`` saves: this calls
    :func:`dpsd_lite.sweep.plot_sweep`, so notebooks, dashboard and CLI draw
    the trade-off one way (its title names the generator of the rows).
    """
    return plot_sweep(rows, path)


def plot_histograms(series: dict, xlabel: str, title: str | None = None, bins: int = 40, ax=None,
                    value_range=None, ylabel: str = "share of answers (%)", log_scale: bool = False) -> Figure:
    """Overlaid histograms, one per entry of ``series`` ({legend name: 1-D values}), in percent.

    ``log_scale=True`` uses logarithmic bins and x axis, for positive values
    spread over orders of magnitude (e.g. losses of a confident model).
    """
    fig, ax = _axes(ax)
    arrays = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=float).ravel()
              for k, v in series.items()}
    if log_scale:
        arrays = {k: np.maximum(a, 1e-12) for k, a in arrays.items()}
    if value_range is None:
        lo = min(float(a.min()) for a in arrays.values() if a.size)
        hi = max(float(a.max()) for a in arrays.values() if a.size)
        value_range = (lo, hi if hi > lo else lo + 1.0)
    if log_scale:
        edges = np.logspace(np.log10(value_range[0]), np.log10(value_range[1]), bins + 1)
        ax.set_xscale("log")
    else:
        edges = np.linspace(value_range[0], value_range[1], bins + 1)
    for name, a in arrays.items():
        a = np.clip(a, value_range[0], value_range[1])
        weights = np.full(a.shape, 100.0 / max(1, a.size))
        ax.hist(a, bins=edges, weights=weights, alpha=0.55, label=name, histtype="stepfilled",
                edgecolor="black", linewidth=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_label_confusion(teacher_labels, released_labels, class_names=None, ax=None,
                         title: str | None = None) -> Figure:
    """How often each teacher label comes out as each released label (row-normalised, %)."""
    fig, ax = _axes(ax, 5.2, 4.4)
    t = np.asarray(teacher_labels.cpu() if hasattr(teacher_labels, "cpu") else teacher_labels).astype(int)
    r = np.asarray(released_labels.cpu() if hasattr(released_labels, "cpu") else released_labels).astype(int)
    K = len(class_names) if class_names is not None else int(max(t.max(), r.max())) + 1
    m = np.zeros((K, K))
    np.add.at(m, (t, r), 1)
    m = 100 * m / np.maximum(m.sum(1, keepdims=True), 1)
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=100)
    names = [_name(class_names, c) for c in range(K)]
    ax.set_xticks(range(K), names, fontsize=8)
    ax.set_yticks(range(K), names, fontsize=8)
    ax.set_xlabel("released label")
    ax.set_ylabel("teacher's label")
    kept = 100 * float((t == r).mean()) if t.size else float("nan")
    ax.set_title(title or f"teacher label → released label ({kept:.1f}% kept)", fontsize=10)
    fig.colorbar(im, ax=ax, label="share of the teacher's label (%)")
    return fig


def plot_noise_calibration(epsilons=None, delta: float = 1e-5, ax=None) -> Figure:
    """Gaussian noise multiplier σ against ε: exact (analytic) calibration vs the classic formula.

    The classic σ = √(2 ln(1.25/δ))/ε is proven only for ε < 1 (shaded where
    it does not apply); the package always uses the analytic one.
    """
    fig, ax = _axes(ax)
    eps = np.asarray(epsilons if epsilons is not None else np.logspace(-1, 1.5, 40), dtype=float)
    ax.plot(eps, [gaussian_noise_multiplier(e, delta) for e in eps], label="analytic Gaussian (used here)")
    ax.plot(eps, [classic_gaussian_noise_multiplier(e, delta) for e in eps], linestyle="--",
            label="classic √(2 ln(1.25/δ))/ε")
    ax.axvspan(1.0, float(eps.max()), color="grey", alpha=0.12, label="classic formula not proven (ε ≥ 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ε per teacher answer (log scale)")
    ax.set_ylabel("noise multiplier σ (noise std / L2 sensitivity)")
    ax.set_title(f"how much Gaussian noise one answer needs (δ = {delta:g})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_private_step(trace, n: int = 6, class_names=None, run=None) -> Figure:
    """One private step, query by query (a :class:`dpsd_lite.phases.PrivateStepTrace`): n columns.

    Top: the query x and the class it was asked for. Middle, in red: the teacher's probabilities, what the
    mechanism reads and nothing outside it ever sees (shown for the lesson only). Bottom: the prior π (the
    tempered, smoothed student prediction), the classes of the answer set in blue, and what the mechanism
    released; without a prior, the released values if the mode has any. ``run`` (a config, a result, the
    loop's players) names the run and its generator in the title.
    """
    n = min(int(n), len(trace.x))
    K = trace.teacher_probabilities.shape[1]
    fig = Figure(figsize=(1.55 * n + 0.9, 5.2), layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    imgs = _to_numpy_images(trace.x[:n])
    rel = trace.release
    names = [_name(class_names, k) for k in range(K)]
    released = rel.hard_labels[:n].cpu()
    k = rel.extra.get("k")
    mask = rel.mask[:n].cpu() if rel.mask is not None else None
    bottom = trace.prior if trace.prior is not None else (rel.values.detach().float().cpu()
                                                          if rel.values is not None else None)
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(imgs[i], cmap="gray" if imgs[i].ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"asked for {_name(class_names, trace.c[i])}", fontsize=8)
        ax = axes[1, i]
        ax.bar(range(K), trace.teacher_probabilities[i].numpy(), color="#c33")
        ax.set_ylim(0, 1)
        ax.set_xticks(range(K), names, fontsize=6)
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title(f"teacher's top: {names[int(trace.teacher_probabilities[i].argmax())]}", fontsize=8,
                     color="#a33")
        ax = axes[2, i]
        if bottom is not None:
            colours = ["tab:blue" if mask is None or mask[i, j] else "lightgrey" for j in range(K)]
            ax.bar(range(K), bottom[i].numpy(), color=colours)
        ax.set_xticks(range(K), names, fontsize=6)
        ax.tick_params(axis="y", labelsize=6)
        text = f"released {_name(class_names, released[i])}"
        if k is not None:
            text = f"k = {int(k[i])}, {text}"
        ok = int(released[i]) == int(trace.c[i])
        ax.set_title(text, fontsize=8, color="tab:green" if ok else "tab:red")
    axes[1, 0].set_ylabel("teacher p\n(inside the\nmechanism only)", fontsize=8, color="#a33")
    axes[2, 0].set_ylabel("prior π\n(blue: the\nanswer set)" if trace.prior is not None else
                          ("released\nvalues" if rel.values is not None else ""), fontsize=8)
    head = "one private step, query by query: the red row never leaves the mechanism; the rest is public"
    fig.suptitle(head + (f"\n{run_title(run)}" if run is not None else ""), fontsize=9)
    return fig


def plot_weight_change(change: dict, title: str | None = None, ax=None) -> Figure:
    """How far each layer moved in one step: ‖ΔW‖ / ‖W‖ in percent, one bar per layer.

    ``change``: :func:`dpsd_lite.phases.weight_change` ({layer: {"norm", "change", "relative"}}).
    """
    fig, ax = _axes(ax, 6.4, 0.45 * len(change) + 1.2)
    layers = list(change)
    values = [100 * change[k]["relative"] for k in layers]
    ax.barh(range(len(layers)), values, color="tab:purple")
    ax.set_yticks(range(len(layers)), layers, fontsize=8)
    ax.invert_yaxis()  # the first layer on top
    for i, k in enumerate(layers):
        ax.text(values[i], i, f"  ‖ΔW‖ = {change[k]['change']:.2g} of ‖W‖ = {change[k]['norm']:.3g}",
                va="center", fontsize=7)
    ax.set_xlim(0, 1.6 * max(values + [1e-9]))
    ax.set_xlabel("relative change of the layer's weights in this step, ‖ΔW‖ / ‖W‖ (%)")
    ax.set_ylabel("layer")
    ax.set_title(title or "how far one step moved each layer", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


#: The pipeline's boxes: (x, y) centre in axes units, label, and which part of the method it is.
_PIPELINE_BOXES = {
    "private": ((0.08, 0.78), "private\ndata", "private"),
    "teacher": ((0.30, 0.78), "teacher T\n(frozen)", "private"),
    "generator": ((0.08, 0.25), "generator\nG(z, c)", "public"),
    "queries": ((0.30, 0.25), "synthetic\nqueries x", "public"),
    "mechanism": ((0.54, 0.78), "mechanism\n(noise mode)", "mechanism"),
    "release": ((0.76, 0.78), "release\n(noisy labels)", "public"),
    "student": ((0.76, 0.25), "student S", "public"),
    "report": ((0.54, 0.42), "privacy report\n(ε, δ, unit)", "public"),
}
_PIPELINE_ARROWS = [  # (from, to, label, style)
    ("private", "teacher", "trained once", "-"),
    ("generator", "queries", "draws", "-"),
    ("queries", "teacher", "asks", "-"),
    ("teacher", "mechanism", "raw answers", "-"),
    ("mechanism", "release", "ε, δ", "-"),
    ("release", "student", "learns from", "-"),
    ("queries", "student", "", "-"),
    ("student", "generator", "gradient: the student\nas discriminator", "--"),
    ("mechanism", "report", "", ":"),
]


def plot_pipeline(highlight=None, ax=None, title: str | None = None) -> Figure:
    """The three players and the mechanism, drawn: where the private data is, where the noise is added.

    Red: what touches private data (the data, the teacher); blue: the
    mechanism, the only door between them and everything else; grey: public
    (post-processing). ``highlight`` (a box name or a list of them, e.g.
    ``"mechanism"``, ``"generator"``) draws those boxes bold, to show which part
    a notebook is about. The dashed arrow is the generator's only signal: the
    student's gradient, never the teacher's.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = _axes(ax, 8.0, 4.0)
    marked = {highlight} if isinstance(highlight, str) else set(highlight or ())
    colours = {"private": "#f6d5d5", "mechanism": "#d5e4f6", "public": "#ececec"}
    w, h = 0.14, 0.22
    for name, ((x, y), label, kind) in _PIPELINE_BOXES.items():
        bold = name in marked
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.01",
                                    facecolor=colours[kind], edgecolor="black", linewidth=2.2 if bold else 0.8))
        ax.text(x, y, label, ha="center", va="center", fontsize=9, fontweight="bold" if bold else "normal")
    for a, b, label, style in _PIPELINE_ARROWS:
        (xa, ya), (xb, yb) = _PIPELINE_BOXES[a][0], _PIPELINE_BOXES[b][0]
        dx, dy = xb - xa, yb - ya
        # leave and enter each box at its edge
        sa = min((w / 2 + 0.012) / abs(dx) if dx else 9, (h / 2 + 0.012) / abs(dy) if dy else 9)
        start, end = (xa + dx * sa, ya + dy * sa), (xb - dx * sa, yb - dy * sa)
        rad = -0.3 if (a, b) == ("student", "generator") else 0.0  # bows below the bottom row
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linestyle=style,
                                     connectionstyle=f"arc3,rad={rad}", color="black", linewidth=1.0))
        if label:
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + (-0.29 if rad else 0.04)
            ax.text(mx, my, label, ha="center", va="bottom", fontsize=7.5, style="italic")
    ax.text(0.19, 0.98, "touches private data", ha="center", va="top", fontsize=8, color="#a33")
    ax.text(0.54, 0.98, "the only door: noise added here", ha="center", va="top", fontsize=8, color="#2a5a9a")
    ax.text(0.98, 0.52, "public: post-processing\nof releases, no privacy cost", ha="right", va="center",
            fontsize=8, color="#555")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(-0.2, 1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return fig
