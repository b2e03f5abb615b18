"""The ``dpsd-lite`` command line: a thin front over the library.

Subcommands::

    dpsd-lite teacher     train (or load from the cache) the teacher, print its held-out accuracy
    dpsd-lite transcribe  one transcription; prints the privacy report; saves a run directory
    dpsd-lite sweep       every (mode, ε) combination; table, sweep.csv, accuracy_vs_epsilon.png
    dpsd-lite report RUN  privacy report and accuracies of a saved run
    dpsd-lite synthesize RUN --n N --out DIR [--filter]   synthetic images labelled by the run's student
    dpsd-lite audit RUN   membership-inference audit (loss, offline LiRA) of a run's teacher and student

This module holds the parser, the argument types and :func:`main`; what each
subcommand does (``run_<name>(args) -> int``) lives in :mod:`dpsd_lite.commands`,
which ``main`` imports only after the arguments are parsed.

Adding a subcommand: write ``add_<name>(subparsers)`` that creates its parser
and sets ``run=`` to a function ``(args) -> int`` or to the name of one in
:mod:`dpsd_lite.commands`, then add it to :data:`SUBCOMMANDS`.

User errors (:class:`~dpsd_lite.errors.DpsdError`, bad arguments) are
printed as one line ``dpsd-lite: error: ...`` on stderr with exit code 2,
never as a traceback; Ctrl-C prints ``dpsd-lite: interrupted`` and exits with
130, as shells expect. Importing this module does not import torch, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields

from . import __version__
from .accounting import check_delta, check_epsilon
from .config import TranscribeConfig
from .errors import DpsdError
from .names import DATASETS, GENERATOR_KINDS, NOISE_MODES, RR_ANSWERS, SWEEP_MODES

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
    items = [t for t in text.replace(",", " ").split() if t]
    for m in items:
        if m not in SWEEP_MODES:
            raise argparse.ArgumentTypeError(f"unknown noise mode {m!r}; choose from {', '.join(SWEEP_MODES)}")
    return items


def setting_arg(text):
    """``KEY=VALUE`` for any TranscribeConfig field; the value is typed by the field's annotation."""
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
    p.set_defaults(run="run_teacher")


def add_transcribe(sub):
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
    p.set_defaults(run="run_transcribe")


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
    p.set_defaults(run="run_sweep_cmd")


def add_report(sub):
    p = sub.add_parser("report", help="print the privacy report and accuracies of a saved run",
                       description="Print the privacy report and accuracies of a saved run directory.")
    p.add_argument("run_dir", metavar="RUN", help="a run directory written by 'dpsd-lite transcribe'")
    p.set_defaults(run="run_report")


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
    p.set_defaults(run="run_synthesize")


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
    p.set_defaults(run="run_audit")


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
        run = args.run
        if isinstance(run, str):  # named in commands.py: imported only now, so --help never waits for torch
            from . import commands

            run = getattr(commands, run)
        return run(args)
    except (DpsdError, _UsageError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
    except KeyboardInterrupt:  # the shell's convention: 128 + SIGINT
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
