"""The ``dpsd-lite`` command line: a thin front over the library.

Subcommands::

    dpsd-lite teacher     train (or load from the cache) the teacher, print its held-out accuracy
    dpsd-lite transcribe  one transcription; prints the privacy report; saves a run directory
    dpsd-lite sweep       every (mode, ε) combination; table, sweep.csv, accuracy_vs_epsilon.png
    dpsd-lite report RUN  privacy report and accuracies of a saved run
    dpsd-lite synthesize RUN --n N --out DIR [--filter]   synthetic images labelled by the run's student
    dpsd-lite audit RUN   membership-inference audit (loss, offline LiRA) of a run's teacher and student

Adding a subcommand: write ``add_<name>(subparsers)`` that creates its parser
and sets ``run=<function(args) -> int>``, then add it to :data:`SUBCOMMANDS`.

User errors (:class:`~dpsd_lite.errors.DpsdError`, bad arguments) are
printed as one line ``dpsd-lite: error: ...`` on stderr with exit code 2,
never as a traceback; Ctrl-C prints ``dpsd-lite: interrupted`` and exits with
130, as shells expect. Importing this module does not import torch, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from . import __version__
from .accounting import check_delta, check_epsilon
from .errors import DpsdError

PROG = "dpsd-lite"
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """Raised instead of argparse's multi-line usage message; printed as one line by main."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage and exit; we want one line
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------ argument types
def _wrap(check):
    def convert(text):
        try:
            return check(text)
        except DpsdError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__
    return convert


epsilon_arg = _wrap(check_epsilon)
delta_arg = _wrap(check_delta)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def epsilon_list(text):
    """``1,2,10`` (or one value per argument) → list of checked ε."""
    items = [t for t in text.replace(",", " ").split() if t]
    if not items:
        raise argparse.ArgumentTypeError("expected epsilon values such as 1,2,10")
    return [epsilon_arg(t) for t in items]


def mode_list(text):
    from .names import SWEEP_MODES

    items = [t for t in text.replace(",", " ").split() if t]
    for m in items:
        if m not in SWEEP_MODES:
            raise argparse.ArgumentTypeError(f"unknown noise mode {m!r}; choose from {', '.join(SWEEP_MODES)}")
    return items


def setting_arg(text):
    """``KEY=VALUE`` for any TranscribeConfig field; the value is typed by the field's annotation."""
    from dataclasses import fields

    from .config import TranscribeConfig

    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    known = {f.name: f for f in fields(TranscribeConfig)}
    if not sep or key not in known:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY one of {', '.join(known)}, got {text!r}")
    # the field's annotation ("int", "bool | None", ...): its type, and whether "none" is a value
    kind, _, optional = str(known[key].type).partition("|")
    kind = kind.strip()
    raw = raw.strip()
    try:
        if optional and raw.lower() in ("none", "null", ""):  # left to the generator's or dataset's default
            value = None
        elif kind == "bool":
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            value = raw.lower() in ("true", "1", "yes")
        elif kind == "int":
            value = int(raw)
        elif kind == "float":
            value = float(raw)
        else:
            value = raw
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad value for {key}: {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{key} must be a finite number, got {raw!r}")
    return key, value


# --------------------------------------------------------- shared arguments
def _add_data_args(p):
    from .names import DATASETS

    p.add_argument("--dataset", default="mnist-5k", choices=DATASETS,
                   help="dataset (default: mnist-5k, embedded, works offline)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder with torchvision files (mnist, fashion-mnist); default $DPSD_DATA_ROOT or ~/.cache/dpsd_lite/data")
    p.add_argument("--download", action="store_true", help="download torchvision datasets if missing (needs network)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the run and of its teacher (default: 0); it sets every random choice "
                        "but the privacy noise, which is secret")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="teacher cache (default: $DPSD_CACHE_DIR or ~/.cache/dpsd_lite)")


def _add_run_args(p):
    """Settings shared by transcribe and sweep."""
    from .names import GENERATOR_KINDS

    p.add_argument("--delta", type=delta_arg, default=1e-5, help="delta for the Gaussian modes (default: 1e-5)")
    p.add_argument("--steps", type=positive_int, default=None, help="generator iterations (default: the library's)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="synthetic queries per student step")
    p.add_argument("--teacher-epochs", type=positive_int, default=None,
                   help="epochs of the teacher (part of its cache key)")
    p.add_argument("--set", dest="settings", type=setting_arg, action="append", default=[], metavar="KEY=VALUE",
                   help="any other TranscribeConfig setting, e.g. --set lr_student=1e-3 (repeatable)")
    p.add_argument("--generator", default=None, choices=GENERATOR_KINDS,
                   help="where the queries come from: learned (the default: DPSD's own, trained with the student "
                        "as discriminator) or strokes (a hand-written public prior for handwritten digits, a "
                        "lesson beside it, not DPSD)")
    p.add_argument("--reproducible-noise", action="store_true",
                   help="lessons and tests only: derive the privacy noise from --seed, so a run repeats exactly; "
                        "the epsilon then does NOT hold against anyone who knows the seed (saved with the run), "
                        "and the report says so. Default: secret noise from the operating system's entropy")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")


def _config_from_args(args, **extra):
    from .transcribe import TranscribeConfig

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
        from .errors import RunDirectoryError

        raise RunDirectoryError(
            f"output directory {out} already exists; pass --force to replace it, or choose another --out")


def _pct(x, decimals: int = 1):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{decimals}f}%"


def _eps_name(eps):
    return "inf" if math.isinf(eps) else f"{eps:g}"


def _load_teacher(config, cache_dir, retrain=False):
    """Load the data and the teacher (training it with a progress bar if not cached)."""
    from tqdm.auto import tqdm

    from .data import load_dataset
    from .teacher import teacher_for
    from .utils import resolve_device

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
    from .utils import ProgressBar

    bar = ProgressBar(desc, file=sys.stderr)
    return bar.callbacks, bar.close


# ------------------------------------------------------------- subcommands
def add_teacher(sub):
    p = sub.add_parser("teacher", help="train (or load from the cache) the teacher and print its accuracy",
                       description="Train the teacher on the private split (or load it from the cache) "
                                   "and print its held-out accuracy.")
    _add_data_args(p)
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the library's)")
    p.add_argument("--dp-epsilon", type=epsilon_arg, default=None, metavar="E",
                   help="train the teacher with DP-SGD (Opacus) at this epsilon per private training record "
                        "(record-level privacy; every transcription from it inherits the guarantee)")
    p.add_argument("--delta", type=delta_arg, default=1e-5, help="delta of --dp-epsilon (default: 1e-5)")
    p.add_argument("--retrain", action="store_true", help="train again even if a cached teacher exists")
    p.set_defaults(run=run_teacher)


def run_teacher(args):
    from .transcribe import TranscribeConfig

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
        from .report import format_report, with_dp_teacher

        print("\n".join(format_report(with_dp_teacher({"private": False, "teacher_queries": 0}, teacher.privacy))
                        .splitlines()[1:3]))
    print(f"held-out accuracy: {_pct(teacher.heldout_accuracy)}"
          + ("" if teacher.privacy else " (a non-private statistic of the teacher)"))
    print(f"cache file: {teacher.path}")
    return 0


def add_transcribe(sub):
    from .names import NOISE_MODES, RR_ANSWERS

    p = sub.add_parser("transcribe", help="transcribe the teacher into a private student and save the run",
                       description="Transcribe the teacher into a student through a noise mode; print the "
                                   "privacy report and save a run directory.")
    _add_data_args(p)
    p.add_argument("--epsilon", type=epsilon_arg, default=10.0,
                   help="privacy budget per teacher answer (default: 10; ignored by --mode none)")
    p.add_argument("--mode", default="rr", choices=NOISE_MODES + ("ensemble",),
                   help="noise mode: none (no privacy), label, rr (default) or data (epsilon per teacher answer); "
                        "ensemble: a teacher ensemble's noisy votes (PATE GNMax; epsilon per private training record)")
    p.add_argument("--rr-answer", default=None, choices=RR_ANSWERS,
                   help="--mode rr: release each teacher answer's top class (top1, the default: selective RR with "
                        "the student's prior) or its ordered top two classes (top2: RR over all 90 ordered pairs, "
                        "no prior), at the same epsilon per teacher answer")
    p.add_argument("--teachers", type=positive_int, default=None,
                   help="--mode ensemble: number of teachers on disjoint partitions of the private split (default: 50)")
    p.add_argument("--queries", type=positive_int, default=None,
                   help="--mode ensemble: query budget, every answer costs record-level privacy (default: 256)")
    p.add_argument("--teacher-dp-epsilon", type=epsilon_arg, default=None, metavar="E",
                   help="transcribe from a teacher trained with DP-SGD at this epsilon per private training record "
                        "(trained and cached first if needed); the run inherits that record-level guarantee in any "
                        "mode, --mode none included")
    _add_run_args(p)
    p.set_defaults(run=run_transcribe)


def run_transcribe(args):
    from .report import format_report, privacy_summary
    from .runs import save_run
    from .transcribe import transcribe

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


ENSEMBLE_TEACHERS, ENSEMBLE_QUERIES = 50, 256  # chosen on public drawings: benchmarks/record_level_settings.py


def _transcribe_ensemble(config, args, callbacks, close):
    """--mode ensemble: train (or load) the partition teachers, then transcribe through their noisy votes."""
    from tqdm.auto import tqdm

    from .data import load_dataset
    from .ensemble import train_teacher_ensemble, transcribe_with_ensemble
    from .utils import resolve_device

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


def add_sweep(sub):
    p = sub.add_parser("sweep", help="student accuracy for every (mode, epsilon); table, CSV and plot",
                       description="Run every combination of noise mode and epsilon with one shared teacher; "
                                   "print a table and write sweep.csv and accuracy_vs_epsilon.png.")
    _add_data_args(p)
    p.add_argument("--epsilons", type=epsilon_list, nargs="+", default=[[0.5, 1.0, 2.0, 5.0, 10.0]],
                   metavar="EPS", help="epsilons, e.g. 1,2,10 or 1 2 10 (default: 0.5,1,2,5,10)")
    p.add_argument("--modes", type=mode_list, nargs="+", default=[["none", "label", "rr", "data"]],
                   metavar="MODE", help="noise modes, e.g. none,rr (default: all four); add the record-level "
                                        "routes dpsgd, dpsgd-public (DP-SGD from public drawings, digits only) "
                                        "and ensemble (epsilon per private training record)")
    p.add_argument("--teacher-dp-epsilon", type=epsilon_arg, default=None, metavar="E",
                   help="transcribe every run from a teacher trained with DP-SGD at this record-level epsilon")
    _add_run_args(p)
    p.set_defaults(run=run_sweep_cmd)


def run_sweep_cmd(args):
    from .runs import atomic_directory
    from .sweep import format_table, plot_sweep, run_sweep, write_csv

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


def add_report(sub):
    p = sub.add_parser("report", help="print the privacy report and accuracies of a saved run",
                       description="Print the privacy report and accuracies of a saved run directory.")
    p.add_argument("run_dir", metavar="RUN", help="a run directory written by 'dpsd-lite transcribe'")
    p.set_defaults(run=run_report)


def run_report(args):
    from .config import resolve
    from .report import format_report, three_levels
    from .runs import load_run

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


def add_synthesize(sub):
    p = sub.add_parser("synthesize", help="draw N synthetic images from a saved run, labelled by its student",
                       description="Draw N synthetic images from a run's generator, labelled by its student (no "
                                   "teacher query); write synthetic.npz, contact_sheet.png and privacy.json. "
                                   "--filter drops samples too close to a private image (not DP: it reads "
                                   "private data).")
    p.add_argument("run_dir", metavar="RUN", help="a run directory written by 'dpsd-lite transcribe'")
    p.add_argument("--n", type=positive_int, required=True, help="number of synthetic images")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not exist unless --force)")
    p.add_argument("--filter", action="store_true",
                   help="re-identification filter on the teacher's penultimate features, threshold calibrated "
                        "on held-out data; reads private data, carries no epsilon")
    p.add_argument("--percentile", type=float, default=95.0,
                   help="filter threshold: this percentile of held-out-to-private similarity (default: 95)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--source", choices=("snapshots", "final"), default="snapshots",
                   help="snapshots (default): equal parts from the generator at 1/4, 1/2 and 3/4 of the run, "
                        "which teach a fresh classifier more; final: the generator as the run ended")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="teacher cache, used by --filter only")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(run=run_synthesize)


def run_synthesize(args):
    from .reid_filter import check_percentile, reid_filter
    from .runs import load_run
    from .synthetic import AUDIT_DIR, sample_synthetic, save_synthetic
    from .utils import resolve_device

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


def add_audit(sub):
    p = sub.add_parser("audit", help="membership-inference audit of a saved run's teacher and student",
                       description="Attack a saved run's teacher and student (loss threshold, offline LiRA with "
                                   "small shadow models on the held-out split): ROC AUC and TPR at low FPR beside "
                                   "each model's claim. These are descriptive: the run's members were fixed by a "
                                   "split, not randomised, so no epsilon lower bound follows (for one, plant "
                                   "canaries with random membership: dpsd_lite.audit.one_run_audit or "
                                   "privacy_study). An audit is a lower bound on leakage, never a proof of privacy.")
    p.add_argument("run_dir", metavar="RUN", help="a run directory written by 'dpsd-lite transcribe'")
    p.add_argument("--shadows", type=int, default=8, help="shadow models, an even number; 0: loss attack only (default: 8)")
    p.add_argument("--shadow-epochs", type=positive_int, default=30, help="training epochs of each shadow model")
    p.add_argument("--bootstrap", type=positive_int, default=200, help="bootstrap resamples for the intervals")
    p.add_argument("--seed", type=int, default=0, help="seed of the member sample and the shadow models (default: 0)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="teacher cache (default: $DPSD_CACHE_DIR or ~/.cache/dpsd_lite)")
    p.set_defaults(run=run_audit)


def run_audit(args):
    from .audit import audit_run, format_audit
    from .names import generator_label
    from .runs import load_run
    from .utils import resolve_device

    device = resolve_device(args.device)
    run = load_run(args.run_dir, device=device)
    data, teacher = _load_teacher(run.config.replace(device=str(device)), args.cache_dir)
    results = audit_run(run, data=data, teacher=teacher, num_shadows=args.shadows, shadow_epochs=args.shadow_epochs,
                        n_boot=args.bootstrap, seed=args.seed, device=device)
    print(f"run: {run.path} ({run.config.dataset}, mode {run.config.noise_mode}, queries from the "
          f"{generator_label(run.config.generator)})")
    print(format_audit(results))
    return 0


#: Registered subcommands, in --help order. One line per subcommand.
SUBCOMMANDS = [
    add_teacher,
    add_transcribe,
    add_sweep,
    add_report,
    add_synthesize,
    add_audit,
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Differentially private synthetic distillation (DPSD), small enough to read.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _one_line(message) -> str:
    return " ".join(str(message).split()) or "unknown error"


def main(argv=None) -> int:
    """Entry point of ``dpsd-lite``; returns the exit code (0 ok, 2 user error)."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except (DpsdError, _UsageError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
    except KeyboardInterrupt:  # the shell's convention: 128 + SIGINT
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
