"""What each ``dpsd-lite`` subcommand does, once :mod:`dpsd_lite.cli` has parsed its arguments.

``run_<name>(args) -> int`` (the exit code) for each subcommand, and the helpers they share: load the data
and the teacher with a progress bar, build a config from the arguments, refuse an existing output directory.
The parser, the argument types and ``main`` live in :mod:`dpsd_lite.cli`, which imports this module only
after parsing, so ``--help`` and argument errors never wait for torch.
"""

from __future__ import annotations

import math
import os
import sys

from tqdm.auto import tqdm

from .audit import audit_run, format_audit
from .config import TranscribeConfig, resolve
from .data import load_dataset
from .ensemble import train_teacher_ensemble, transcribe_with_ensemble
from .errors import DpsdError, RunDirectoryError
from .names import run_generator_label
from .reid_filter import check_percentile, reid_filter
from .report import format_report, privacy_summary, three_levels, with_dp_teacher
from .runs import atomic_directory, load_run, save_run
from .sweep import format_table, plot_sweep, run_sweep, write_csv
from .synthetic import AUDIT_DIR, sample_synthetic, save_synthetic
from .teacher import teacher_for
from .transcribe import transcribe
from .utils import ProgressBar, resolve_device

# --mode ensemble's teachers and query budget, chosen on public drawings: benchmarks/record_level_settings.py
ENSEMBLE_TEACHERS, ENSEMBLE_QUERIES = 50, 256


# ------------------------------------------------------------------ shared
def _config_from_args(args, **extra):
    changes = dict(dataset=args.dataset, data_root=args.data_root, download=args.download, seed=args.seed,
                   device=args.device, delta=args.delta, reproducible_noise=args.reproducible_noise)
    for name in ("steps", "batch_size", "teacher_epochs", "generator"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    changes.update(dict(args.settings))
    changes.update(extra)
    return TranscribeConfig().replace(**changes)


def _check_out(out, force):
    if os.path.lexists(out) and not force:
        raise RunDirectoryError(
            f"output directory {out} already exists; pass --force to replace it, or choose another --out")


def _pct(x, decimals: int = 1):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{decimals}f}%"


def _eps_name(eps):
    return "inf" if math.isinf(eps) else f"{eps:g}"


def _load_teacher(config, cache_dir, retrain=False):
    """Load the data and the teacher (training it with a progress bar if not cached)."""
    data = load_dataset(config.dataset, root=config.data_root, download=config.download)
    device = resolve_device(config.device)
    kind = f"a DP-SGD teacher at eps={config.teacher_dp_epsilon:g}" if config.teacher_dp_epsilon else "the teacher"
    # shown only if training takes a while (a cached teacher loads without a bar)
    bar = tqdm(total=config.teacher_epochs, desc=f"training {kind} ({config.dataset}, once; then cached)",
               unit="epoch", file=sys.stderr, delay=2)

    def progress(epoch, epochs, loss):
        bar.total = epochs
        bar.update(epoch - bar.n)
        bar.set_postfix(loss=f"{loss:.3f}")

    try:
        teacher = teacher_for(config, data, device=device, cache_dir=cache_dir, retrain=retrain, progress=progress)
    finally:
        bar.close()
    return data, teacher


def _progress_callbacks(desc):
    """A tqdm bar driven by the loop's on_step_end callback, showing held-out accuracy (on stderr)."""
    bar = ProgressBar(desc, file=sys.stderr)
    return bar.callbacks, bar.close


# ------------------------------------------------------------- subcommands
def run_teacher(args):
    """``dpsd-lite teacher``: train (or load) the teacher, print its held-out accuracy and cache file."""
    changes = dict(dataset=args.dataset, data_root=args.data_root, download=args.download, seed=args.seed,
                   device=args.device, teacher_dp_epsilon=args.dp_epsilon, delta=args.delta)
    if args.epochs is not None:
        changes["teacher_epochs"] = args.epochs
    config = TranscribeConfig().replace(**changes)
    _, teacher = _load_teacher(config, args.cache_dir, retrain=args.retrain)
    how = "loaded from cache" if teacher.cached else "trained and cached"
    kind = "DP-SGD teacher" if teacher.privacy else "teacher"
    print(f"{kind} ({config.dataset}, {teacher.epochs} epochs, seed {teacher.seed}): {how}")
    if teacher.privacy:
        print("\n".join(format_report(with_dp_teacher({"private": False, "teacher_queries": 0}, teacher.privacy))
                        .splitlines()[1:3]))
    print(f"held-out accuracy: {_pct(teacher.heldout_accuracy)}"
          + ("" if teacher.privacy else " (a non-private statistic of the teacher)"))
    print(f"cache file: {teacher.path}")
    return 0


def run_transcribe(args):
    """``dpsd-lite transcribe``: one transcription; print its privacy report, save its run directory."""
    ensemble = args.mode == "ensemble"
    if (args.teachers or args.queries) and not ensemble:
        raise DpsdError("--teachers and --queries belong to --mode ensemble")
    if ensemble and args.teacher_dp_epsilon:
        raise DpsdError("--mode ensemble trains its own teachers; it cannot use --teacher-dp-epsilon")
    if args.rr_answer is not None and args.mode != "rr":
        raise DpsdError("--rr-answer belongs to --mode rr")
    config = _config_from_args(args, noise_mode="rr" if ensemble else args.mode, epsilon=args.epsilon,
                               teacher_dp_epsilon=args.teacher_dp_epsilon,
                               **({"rr_answer": args.rr_answer} if args.rr_answer else {})).validate()
    mode = args.mode
    eps_name = "inf" if mode == "none" else _eps_name(config.epsilon)
    tag = f"-dpteacher{_eps_name(config.teacher_dp_epsilon)}" if config.teacher_dp_epsilon else ""
    if ensemble:
        tag = f"-teachers{args.teachers or ENSEMBLE_TEACHERS}"
    out = args.out or os.path.join("runs", f"{config.dataset}-{mode}-eps{eps_name}{tag}-seed{config.seed}")
    _check_out(out, args.force)  # fail before minutes of work, not after

    callbacks, close = _progress_callbacks(f"{mode}, eps={eps_name}")
    if ensemble:
        result, data = _transcribe_ensemble(config, args, callbacks, close)
    else:
        data, teacher = _load_teacher(config, args.cache_dir)
        try:
            result = transcribe(config, data=data, teacher=teacher, callbacks=callbacks)
        finally:
            close()
    path = save_run(result, out, force=args.force)

    print(format_report(result.privacy))
    print()
    ratio = result.student_accuracy / result.teacher_accuracy if result.teacher_accuracy else float("nan")
    what = ("the ensemble's noise-free plurality vote, a non-private statistic" if ensemble
            else "a DP-SGD model, covered by its record-level epsilon"
            if config.teacher_dp_epsilon else "a non-private statistic of the teacher")
    print(f"teacher held-out accuracy: {_pct(result.teacher_accuracy)} ({what})")
    # two decimals: a ratio of 97.96% must not print as "98.0%", the accuracy target at ε = 10
    print(f"student held-out accuracy: {_pct(result.student_accuracy)} ({_pct(ratio, 2)} of the teacher) "
          f"after {result.history[-1]['step'] if result.history else 0} steps, {result.elapsed:.1f} s")
    print(f"queries from: {_generator_line(result.config)}")
    print(privacy_summary(result.privacy))
    print(f"run saved to {path}")
    return 0


def _generator_line(config) -> str:
    return ("the learned generator (DPSD's own, trained with the student as discriminator)"
            if config.generator == "learned"
            else "the stroke renderer (a hand-written public prior for digits, not DPSD's learned generator)")


def _transcribe_ensemble(config, args, callbacks, close):
    """--mode ensemble: train (or load) the partition teachers, then transcribe through their noisy votes."""
    data = load_dataset(config.dataset, root=config.data_root, download=config.download)
    n = args.teachers or ENSEMBLE_TEACHERS
    bar = tqdm(total=n, desc=f"teachers on disjoint partitions ({config.dataset}, once; then cached)",
               unit="teacher", file=sys.stderr, delay=2)
    try:
        ens = train_teacher_ensemble(data, n, seed=config.seed, device=resolve_device(config.device),
                                     cache_dir=args.cache_dir, progress=lambda i, total, acc: bar.update(i - bar.n))
    finally:
        bar.close()
    try:
        out = transcribe_with_ensemble(data, ens, config.epsilon, config.delta,
                                       query_budget=args.queries or ENSEMBLE_QUERIES, config=config,
                                       callbacks=callbacks)
    finally:
        close()
    out.result.privacy = out.privacy
    return out.result, data


def run_sweep_cmd(args):
    """``dpsd-lite sweep``: every (mode, ε) with one teacher; print the table, write sweep.csv and the plot."""
    epsilons = [e for group in args.epsilons for e in group]
    modes = [m for group in args.modes for m in group]
    config = _config_from_args(args, teacher_dp_epsilon=args.teacher_dp_epsilon)
    out = args.out or os.path.join("runs", f"sweep-{config.dataset}-seed{config.seed}")
    _check_out(out, args.force)

    data, teacher = _load_teacher(config, args.cache_dir)
    n_runs = sum(1 if m == "none" else len(dict.fromkeys(epsilons)) for m in dict.fromkeys(modes))
    done = []

    def on_result(row, result):
        done.append(row)
        print(f"[{len(done)}/{n_runs}] {row['noise_mode']:>5} eps={_eps_name(row['epsilon']):<5} "
              f"student {_pct(row['student_accuracy'])}", file=sys.stderr)

    rows = run_sweep(epsilons, modes, config=config, data=data, teacher=teacher, on_result=on_result)
    with atomic_directory(out, force=args.force) as tmp:
        write_csv(rows, os.path.join(tmp, "sweep.csv"))
        plot_sweep(rows, os.path.join(tmp, "accuracy_vs_epsilon.png"))
    steps = sorted({r["steps"] for r in rows})  # each row's own (left open, a generator's default)
    print(f"{config.dataset}, {'–'.join(str(n) for n in steps)} steps, seed {config.seed}; "
          f"teacher held-out accuracy {_pct(teacher.heldout_accuracy)}")
    print(format_table(rows))
    print(f"wrote {os.path.join(out, 'sweep.csv')} and {os.path.join(out, 'accuracy_vs_epsilon.png')}")
    return 0


def run_report(args):
    """``dpsd-lite report RUN``: a saved run's privacy report and accuracies."""
    run = load_run(args.run_dir)
    cfg, meta = run.config, run.meta
    if "epsilon_whole_run" not in run.privacy:  # saved before the three levels were recorded: computed now
        run.privacy.update(three_levels(run.privacy, delta=cfg.delta))
    print(f"run: {run.path}")
    print(f"dataset {cfg.dataset}, mode {cfg.noise_mode}, {resolve(cfg).steps} steps, seed {cfg.seed}; "
          f"saved {meta.get('created')} by dpsd_lite {meta.get('dpsd_lite_version')}")
    print(f"queries from: {_generator_line(cfg)}")
    print(format_report(run.privacy))
    print()
    print(f"teacher held-out accuracy: {_pct(run.teacher_accuracy)} (a non-private statistic of the teacher)")
    print(f"student held-out accuracy: {_pct(run.student_accuracy)}")
    return 0


def run_synthesize(args):
    """``dpsd-lite synthesize RUN``: synthetic images labelled by the run's student, optionally filtered."""
    _check_out(args.out, args.force)
    check_percentile(args.percentile)
    device = resolve_device(args.device)
    run = load_run(args.run_dir, device=device)
    synth = sample_synthetic(run, args.n, seed=args.seed, device=device, source=args.source)
    result = data = None
    if args.filter:
        data, teacher = _load_teacher(run.config.replace(device=str(device)), args.cache_dir)
        result = reid_filter(synth.images, data.x_private, data.x_heldout, teacher, percentile=args.percentile)
    path = save_synthetic(synth, args.out, force=args.force, filter_result=result,
                          x_private=data.x_private if data is not None else None)

    guarantee = (f"epsilon = {_eps_name(run.privacy['epsilon'])} per teacher answer" if run.privacy.get("private")
                 else "no privacy guarantee")
    if run.privacy.get("private") and run.privacy.get("reproducible_noise"):
        guarantee += "; reproducible noise: that epsilon does not hold against anyone who knows the run's seed"
    print(f"{len(synth)} synthetic images from {run.path} ({run.config.noise_mode}, {guarantee}); "
          f"generator: {synth.meta['generator']}")
    print(f"labels from the run's student (no teacher query): its argmax and its probabilities at temperature "
          f"{synth.meta['label_temperature']:g}; student agrees with the requested class on "
          f"{_pct(synth.agreement)}; label counts {synth.label_counts()}")
    if result is not None:
        print(result.format())
        print(f"{os.path.join(path, AUDIT_DIR)} shows private images: keep it internal, do not release it")
    print(f"wrote {path}: synthetic.npz, contact_sheet.png, privacy.json")
    return 0


def run_audit(args):
    """``dpsd-lite audit RUN``: membership-inference attacks on the run's teacher and student."""
    device = resolve_device(args.device)
    run = load_run(args.run_dir, device=device)
    data, teacher = _load_teacher(run.config.replace(device=str(device)), args.cache_dir)
    results = audit_run(run, data=data, teacher=teacher, num_shadows=args.shadows, shadow_epochs=args.shadow_epochs,
                        n_boot=args.bootstrap, seed=args.seed, device=device)
    print(f"run: {run.path} ({run.config.dataset}, mode {run.config.noise_mode}, queries from the "
          f"{run_generator_label(run.config)})")
    print(format_audit(results))
    return 0
