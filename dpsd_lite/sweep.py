"""Sweeps: student accuracy across privacy budgets and noise modes.

The data and the teacher are loaded once and shared by every run, so a sweep
costs one teacher plus one transcription per (mode, ε). Mode ``none`` has no
ε and runs once, as the non-private reference. The CLI (``dpsd-lite sweep``),
notebooks and widgets all call :func:`run_sweep` and :func:`plot_sweep`::

    rows = run_sweep([1, 2, 5, 10], ["none", "rr", "label"], dataset="digits", steps=100)
    print(format_table(rows))
    plot_sweep(rows, "accuracy_vs_epsilon.png")
"""

from __future__ import annotations

import csv
import math

from .accounting import check_epsilon
from .config import TranscribeConfig, resolve
from .data import load_dataset
from .dpsgd import describe_pretraining, split_recipe, train_dpsgd
from .ensemble import train_teacher_ensemble, transcribe_with_ensemble
from .errors import DpsdError
from .names import (BASELINES, NOISE_MODES, SWEEP_MODES, generator_label, mode_name, mode_settings,  # noqa: F401
                    run_generator_label)
from .public_data import public_pretrained_student
from .teacher import teacher_for
from .transcribe import transcribe
from .utils import resolve_device

__all__ = ["SWEEP_COLUMNS", "run_sweep", "format_table", "write_csv", "plot_sweep"]

# epsilon: what the row's mechanism calibrates (per teacher answer for the DPSD modes, per private record for the
# record-level baselines); epsilon_whole_run: every answer composed (what one record can move through a
# non-private teacher); epsilon_per_record: the record-level guarantee, empty where there is none
# generic_shapes (generic_shapes_end): the public generic-shapes prior's share of the queries (at the run's end)
SWEEP_COLUMNS = ("dataset", "generator", "generic_shapes", "generic_shapes_end", "noise_mode", "epsilon", "delta",
                 "privacy_unit", "epsilon_whole_run", "epsilon_per_record", "noise", "student_accuracy",
                 "teacher_accuracy", "ratio_to_teacher", "queries", "steps", "seed", "seconds")


def _noise_column(config, private: bool) -> str:
    if not private:
        return "none"
    return f"reproducible from seed {config.seed} (eps does not hold against its holder)" \
        if config.reproducible_noise else "secret"


def run_sweep(epsilons, modes, config=None, data=None, teacher=None, cache_dir=None, on_result=None,
              callbacks=None, **overrides) -> list[dict]:
    """Transcribe once per (mode, ε) and return one row (dict, keys :data:`SWEEP_COLUMNS`) per run.

    ``config`` (a :class:`~dpsd_lite.transcribe.TranscribeConfig`) and
    ``overrides`` set everything but the mode and ε. ``on_result(row, result)``
    is called after each run (e.g. to update a plot live); ``callbacks`` is
    passed to every :func:`~dpsd_lite.transcribe.transcribe` call. All ε and
    modes are checked before any work starts.
    """
    config = (config or TranscribeConfig()).replace(**overrides)
    modes = list(dict.fromkeys(modes))  # unique, in order
    if not modes:
        raise DpsdError("a sweep needs at least one noise mode")
    for mode in modes:
        if mode not in SWEEP_MODES:
            raise DpsdError(f"unknown noise mode {mode!r}; choose one of {', '.join(SWEEP_MODES)}")
    epsilons = [check_epsilon(e) for e in dict.fromkeys(epsilons)]
    if not epsilons and any(m != "none" for m in modes):
        raise DpsdError("a sweep over private modes needs at least one epsilon")
    # validate the shared settings once (with a private mode, so ε/δ are checked too)
    config.replace(noise_mode=next((m for m in modes if m in NOISE_MODES), "rr"),
                   epsilon=epsilons[0] if epsilons else config.epsilon).validate()

    if data is None:
        data = load_dataset(config.dataset, root=config.data_root, download=config.download)
    if teacher is None:
        teacher = teacher_for(config, data, device=resolve_device(config.device), cache_dir=cache_dir)

    rows = []
    for mode in modes:
        if mode in ("dpsgd", "dpsgd-public"):
            rows.extend(_dpsgd_rows(epsilons, config, data, teacher, on_result, public_init=mode == "dpsgd-public"))
            continue
        if mode == "ensemble":
            rows.extend(_ensemble_rows(epsilons, config, data, teacher, on_result, cache_dir, callbacks))
            continue
        for eps in ([config.epsilon] if mode == "none" else epsilons):
            result = transcribe(config.replace(**mode_settings(mode), epsilon=eps), data=data, teacher=teacher,
                                callbacks=callbacks)
            summary = result.summary()
            row = {
                "dataset": config.dataset,
                "generator": config.generator,
                "generic_shapes": config.generic_shapes,  # share of queries from the public generic-shapes prior
                "generic_shapes_end": config.generic_shapes_end,
                "noise_mode": mode_name(result.config.noise_mode, result.config.rr_answer),
                "epsilon": summary["epsilon"],  # inf for mode none
                "delta": result.privacy.get("delta"),  # what the mechanism claims (rr: 0, none: None)
                "privacy_unit": "per teacher answer" if result.privacy.get("private") else "none (not private)",
                "epsilon_whole_run": result.privacy.get("epsilon_whole_run"),
                "epsilon_per_record": result.privacy.get("epsilon_per_record"),
                "noise": _noise_column(config, bool(result.privacy.get("private"))),
                "student_accuracy": result.student_accuracy,
                "teacher_accuracy": result.teacher_accuracy,
                "ratio_to_teacher": summary["ratio_to_teacher"],
                "queries": result.queries,
                "steps": result.config.steps,
                "seed": config.seed,
                "seconds": result.elapsed,
            }
            rows.append(row)
            if on_result is not None:
                on_result(row, result)
    return rows


def _dpsgd_rows(epsilons, config, data, teacher, on_result, public_init=False):
    """DP-SGD baseline: the student's architecture trained on the private split at the same (ε, δ).

    Its ε is per private *training record* (a different, stronger unit than
    the DPSD modes' per-answer ε); rows say so in ``privacy_unit``. With
    ``public_init`` (``dpsgd-public``) it starts from weights trained on
    public digit drawings (:func:`dpsd_lite.public_data.public_pretrained_student`).
    """
    init = None
    if public_init:
        pretrain, _ = split_recipe()  # the DP teacher's public initialisation, as the recipe says now
        init = public_pretrained_student(config.dataset, seed=config.seed, device=config.device, **pretrain)
    rows = []
    for eps in epsilons:
        res = train_dpsgd(data, epsilon=eps, delta=config.delta, seed=config.seed, device=config.device,
                          reproducible_noise=config.reproducible_noise, init=init,
                          init_description=describe_pretraining(pretrain) if public_init else None)
        row = {
            "dataset": config.dataset, "generator": "—", "noise_mode": "dpsgd-public" if public_init else "dpsgd",
            "epsilon": eps,
            "delta": config.delta,
            "privacy_unit": "per private training record", "epsilon_whole_run": eps, "epsilon_per_record": eps,
            "noise": _noise_column(config, True),
            "student_accuracy": res.heldout_accuracy,
            "teacher_accuracy": teacher.heldout_accuracy,
            "ratio_to_teacher": res.heldout_accuracy / teacher.heldout_accuracy,
            "queries": 0, "steps": resolve(config).steps, "seed": config.seed, "seconds": res.seconds,
        }
        rows.append(row)
        if on_result is not None:
            on_result(row, res)
    return rows


def _ensemble_rows(epsilons, config, data, teacher, on_result, cache_dir, callbacks, num_teachers: int = 50,
                   query_budget: int = 256):
    """Teacher-ensemble baseline (PATE GNMax): ε per private training record, composed over its answers."""
    ens = train_teacher_ensemble(data, num_teachers, seed=config.seed, device=config.device, cache_dir=cache_dir)
    rows = []
    for eps in epsilons:
        out = transcribe_with_ensemble(data, ens, eps, config.delta, query_budget=query_budget, config=config,
                                       callbacks=callbacks)
        row = {
            "dataset": config.dataset, "generator": config.generator,
            "generic_shapes": config.generic_shapes, "generic_shapes_end": config.generic_shapes_end,
            "noise_mode": "ensemble", "epsilon": out.privacy["epsilon"],
            "delta": config.delta, "privacy_unit": "per private training record",
            "epsilon_whole_run": out.privacy["epsilon"], "epsilon_per_record": out.privacy["epsilon"],
            "noise": _noise_column(config, True), "student_accuracy": out.student_accuracy,
            "teacher_accuracy": teacher.heldout_accuracy,
            "ratio_to_teacher": out.student_accuracy / teacher.heldout_accuracy,
            "queries": out.privacy["queries_answered"], "steps": out.result.config.steps, "seed": config.seed,
            "seconds": out.seconds,
        }
        rows.append(row)
        if on_result is not None:
            on_result(row, out)
    return rows


def _pct(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _eps(x) -> str:
    return "∞" if x is None or math.isinf(x) else f"{x:g}"


def eps_cell(x, missing: str = "none") -> str:
    """A composed or record-level ε: 'none' where there is no such guarantee, 3 significant digits otherwise."""
    if x is None or x == "":
        return missing
    x = float(x)
    return "∞" if math.isinf(x) else (f"{x:.3g}" if x < 1e4 else f"{x:.2e}")


def format_table(rows) -> str:
    """A fixed-width text table of sweep rows: mode, generator, the three ε, δ, accuracies, queries, seconds."""
    header = ("mode", "generator", "ε per answer", "ε whole run", "ε per record", "delta", "student acc",
              "teacher acc", "ratio", "queries", "seconds")
    body = [
        (r["noise_mode"], run_generator_label(r),
         _eps(r["epsilon"]) if r.get("privacy_unit") != "per private training record" else "—",
         eps_cell(r.get("epsilon_whole_run"), "—"), eps_cell(r.get("epsilon_per_record")),
         "—" if r["delta"] is None else f"{r['delta']:g}",
         _pct(r["student_accuracy"]), _pct(r["teacher_accuracy"]), _pct(r["ratio_to_teacher"]),
         f"{r['queries']:,}", f"{r['seconds']:.1f}")
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
    lines.append("ε per answer: per teacher answer, what the mechanism calibrates (label/rr/data); ε whole run: "
                 "all the run's answers composed, what one private record can move through a non-private teacher; "
                 "ε per record: only a DP-SGD teacher or a teacher ensemble gives one. Mode none has no privacy.")
    modes = {r["noise_mode"] for r in rows}
    if modes & {"dpsgd", "dpsgd-public"}:
        lines.append("dpsgd: the student's architecture trained on the private split with DP-SGD (Opacus); "
                     "dpsgd-public: the same from weights trained on public digit drawings; "
                     "their epsilon is per private training record.")
    if "ensemble" in modes:
        lines.append("ensemble: students of a teacher ensemble's noisy votes (PATE GNMax); epsilon per private "
                     "training record, composed over the answers (teacher acc: the single teacher's, for scale).")
    return "\n".join(lines)


def write_csv(rows, path) -> None:
    """Write sweep rows as CSV (ε = inf for mode none, empty δ where there is none)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(SWEEP_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in SWEEP_COLUMNS})


def plot_sweep(rows, path=None):
    """Plot student accuracy against ε (log axis), one line per private mode; return the Figure.

    The teacher's accuracy is a dashed line and mode ``none`` a dotted
    horizontal reference; repeated (mode, ε) rows are averaged. Uses
    matplotlib's object API (no pyplot), so it never changes the notebook's
    backend; ``path`` (optional) saves a PNG.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    private = [r for r in rows if r["noise_mode"] != "none"]
    markers = dict(zip(("label", "rr", "rr-top2", "data", "dpsgd", "dpsgd-public", "ensemble"),
                       ("o", "s", "v", "^", "D", "P", "X")))
    record = {"dpsgd": "DP-SGD", "dpsgd-public": "DP-SGD from public init", "ensemble": "teacher ensemble"}
    for mode in dict.fromkeys(r["noise_mode"] for r in private):
        by_eps = {}  # repeated (mode, ε) runs, e.g. from a dashboard: plot their mean
        for r in private:
            if r["noise_mode"] == mode:
                by_eps.setdefault(r["epsilon"], []).append(100 * r["student_accuracy"])
        eps = sorted(by_eps)
        label = f"{record[mode]} (ε per training record)" if mode in record else mode
        ax.plot(eps, [sum(by_eps[e]) / len(by_eps[e]) for e in eps], marker=markers.get(mode, "o"), label=label,
                linestyle="--" if mode in record else "-")
    reference = [r["student_accuracy"] for r in rows if r["noise_mode"] == "none"]
    if reference:
        acc = sum(reference) / len(reference)
        ax.axhline(100 * acc, color="grey", linestyle=":", linewidth=1.5, label=f"none: no privacy ({_pct(acc)})")
    if rows:
        teacher = rows[-1]["teacher_accuracy"]
        ax.axhline(100 * teacher, color="black", linestyle="--", linewidth=1, label=f"teacher ({_pct(teacher)})")
    ax.set_xscale("log")
    if not private:
        ax.set_xlim(0.1, 100)
    # plain numbers on the log axis (1, 10, 0.5), not 10⁰ and 10¹: learners read ε values, not exponents
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0, 102)
    ax.set_xlabel("ε per teacher answer (log scale; per query, not per training record)"
                  + ("; dashed: per record" if any(r["noise_mode"] in record for r in rows) else ""))
    ax.set_ylabel("student held-out accuracy (%)")
    if rows:
        def same(key):
            values = list(dict.fromkeys(r[key] for r in rows))
            return values[0] if len(values) == 1 else "various"

        generators = [run_generator_label(r) for r in rows if r.get("generator") not in (None, "—")]
        generator = (generators[0] if len(set(generators)) == 1 else "several generators") if generators else ""
        ax.set_title(f"{same('dataset')}, {generator}: student accuracy vs ε\n({same('steps')} steps, "
                     f"seed {same('seed')})" if generator else
                     f"{same('dataset')}: student accuracy vs ε ({same('steps')} steps, seed {same('seed')})",
                     fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
