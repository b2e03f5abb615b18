"""Run directories: save a transcription to disk and load it back, safely.

A run directory holds everything needed to reuse or audit a student::

    student.pt       student state_dict
    generator.pt     generator state_dict
    generator_snapshots.pt
                     the generator part-way through the run, for synthetic data (optional: a run saved
                     without it loads, and its synthetic data comes from the final generator)
    config.json      the full TranscribeConfig
    meta.json        versions, seed, time, accuracies, queries, architecture, SHA-256 of the weights
    history.json     one dict per held-out evaluation
    privacy.json     the privacy report (ε, δ, mechanism, unit of privacy)

Writing is atomic: everything goes into a hidden temporary sibling directory
that is renamed into place only once it is complete, so a crash never leaves a
half-written run behind. An existing directory is never overwritten unless
``force=True``, and then only after the new one is complete.

Loading checks everything it can (files present, JSON readable, schema
version, checksums, weights that fit the architecture) and refuses a bad
directory with one :class:`~dpsd_lite.errors.RunDirectoryError` line.

JSON files are strict JSON: non-finite floats (ε = ∞ in mode ``none``, a NaN
loss) are written as the strings ``"Infinity"``, ``"-Infinity"``, ``"NaN"``
and turned back into floats by :func:`load_run`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import shutil
import secrets
from dataclasses import dataclass, field

import torch

from . import __version__
from .config import TranscribeConfig
from .errors import DpsdError, RunDirectoryError
from .generators import GENERATORS
from .models import Student
from .noise import REPRODUCIBLE_NOISE_WARNING
from .utils import channels_last

__all__ = ["SCHEMA_VERSION", "LoadedRun", "save_run", "load_run", "atomic_directory"]

SCHEMA_VERSION = 1
WEIGHT_FILES = ("student.pt", "generator.pt")
JSON_FILES = ("config.json", "meta.json", "history.json", "privacy.json")
RUN_FILES = WEIGHT_FILES + JSON_FILES
SNAPSHOT_FILE = "generator_snapshots.pt"  # optional: {"steps": [...], "states": [state_dict, ...]}

_NONFINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


# --------------------------------------------------------------------- helpers
def _encode(obj):
    """Make ``obj`` strict-JSON-ready: tensors/numpy scalars to numbers, ±inf/nan to strings."""
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if torch.is_tensor(obj):
        return _encode(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item) and not isinstance(obj, (str, bytes)):  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, str) and obj in _NONFINITE:
        return _NONFINITE[obj]
    return obj


def _write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_encode(obj), f, indent=2, allow_nan=False)
        f.write("\n")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (e.g. Windows)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _refuse_existing(out_dir: str) -> None:
    raise RunDirectoryError(
        f"output directory {out_dir} already exists; pass --force (force=True) to replace it, or choose another name"
    )


def _make_sibling(parent: str, prefix: str) -> str:
    """A fresh directory in ``parent`` (unlike mkdtemp, with the usual umask permissions, not 0700)."""
    for _ in range(100):
        path = os.path.join(parent, prefix + secrets.token_hex(4))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary directory in {parent}")


@contextlib.contextmanager
def atomic_directory(out_dir, force: bool = False):
    """Yield a temporary sibling directory; on success rename it to ``out_dir``.

    On any exception (or KeyboardInterrupt) the temporary directory is removed
    and ``out_dir`` is left exactly as it was. An existing ``out_dir`` raises
    :class:`RunDirectoryError` unless ``force``; with ``force`` the old
    directory is swapped out only after the new one is complete. Used by
    :func:`save_run` and by the sweep.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.lexists(out_dir) and not force:
        _refuse_existing(out_dir)
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise RunDirectoryError(f"{out_dir} exists and is not a directory; remove it or choose another name")
    parent, name = os.path.split(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = _make_sibling(parent, f".{name}.tmp-")
    except OSError as exc:
        raise RunDirectoryError(f"cannot create {out_dir} ({exc.strerror or exc}); choose a writable location") from None
    try:
        yield tmp
        for entry in os.scandir(tmp):  # contents on disk before the rename makes them visible
            if entry.is_file():
                _fsync_file(entry.path)
        _fsync_dir(tmp)
        if os.path.lexists(out_dir):
            if not force:  # appeared while we were writing
                _refuse_existing(out_dir)
            # rename() cannot replace a non-empty directory: move the old one
            # aside, move the new one in, then delete the old one.
            old = _make_sibling(parent, f".{name}.old-")
            os.replace(out_dir, os.path.join(old, name))
            try:
                os.replace(tmp, out_dir)
            except BaseException:
                os.replace(os.path.join(old, name), out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
        _fsync_dir(parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, DpsdError):
            raise RunDirectoryError(f"cannot write {out_dir} ({exc.strerror or exc})") from exc
        raise


# ------------------------------------------------------------------------ save
def save_run(result, out_dir, force: bool = False) -> str:
    """Write a :class:`~dpsd_lite.transcribe.TranscriptionResult` to ``out_dir``; return its absolute path.

    Raises :class:`RunDirectoryError` if ``out_dir`` exists (unless ``force``)
    or cannot be written. The directory appears complete or not at all.
    """
    student, generator = result.student, result.generator
    image_shape = [int(s) for s in generator.image_shape]
    num_classes = int(generator.num_classes)
    data = getattr(result, "data", None)
    class_names = list(data.class_names) if data is not None else [str(k) for k in range(num_classes)]
    teacher = result.teacher
    config = result.config.to_dict()

    with atomic_directory(out_dir, force=force) as tmp:
        # weights first (CPU tensors, so a GPU run loads anywhere)
        for fname, module in (("student.pt", student), ("generator.pt", generator)):
            state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            torch.save(state, os.path.join(tmp, fname))
        snapshots = list(getattr(result, "generator_snapshots", None) or [])
        if snapshots:
            torch.save({"steps": [int(step) for step, _ in snapshots],
                        "states": [{k: v.detach().cpu() for k, v in state.items()} for _, state in snapshots]},
                       os.path.join(tmp, SNAPSHOT_FILE))
        meta = {
            "schema_version": SCHEMA_VERSION,
            "dpsd_lite_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            # a seed reproduces a CPU run for the same torch version and thread count (float sums depend on it)
            "torch_threads": torch.get_num_threads(),
            "device": str(next(student.parameters()).device),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dataset": result.config.dataset,
            "noise_mode": result.config.noise_mode,
            "seed": result.config.seed,
            "teacher": {
                # held-out accuracy only: the teacher's accuracy on its private
                # training split is a statistic of private data and stays out.
                "heldout_accuracy": teacher.heldout_accuracy if teacher is not None else None,
                "epochs": teacher.epochs if teacher is not None else None,
                "seed": teacher.seed if teacher is not None else None,
                "trained_with_threads": getattr(teacher, "threads", None),
            },
            "teacher_accuracy": teacher.heldout_accuracy if teacher is not None else None,
            "student_accuracy": result.student_accuracy,
            "queries": result.queries,
            "elapsed_seconds": result.elapsed,
            "architecture": {
                "image_shape": image_shape,
                "num_classes": num_classes,
                "class_names": class_names,
                "student": {"class": type(student).__name__, **getattr(student, "architecture", {})},
                # every constructor argument, as resolved by the loop (ink, margin from the dataset)
                "generator": {"class": type(generator).__name__, **generator.architecture},
            },
            "sha256": {fname: _sha256(os.path.join(tmp, fname))
                       for fname in WEIGHT_FILES + ((SNAPSHOT_FILE,) if snapshots else ())},
            "generator_snapshots": [int(step) for step, _ in snapshots],  # iterations they were taken after
        }
        _write_json(os.path.join(tmp, "config.json"), config)
        _write_json(os.path.join(tmp, "history.json"), list(result.history))
        _write_json(os.path.join(tmp, "privacy.json"), result.privacy)
        _write_json(os.path.join(tmp, "meta.json"), meta)
    return os.path.abspath(os.fspath(out_dir))


# ------------------------------------------------------------------------ load
@dataclass
class LoadedRun:
    """A run directory read back by :func:`load_run` (modules in eval mode)."""

    path: str
    config: object  # TranscribeConfig
    student: torch.nn.Module
    generator: torch.nn.Module
    history: list
    privacy: dict
    meta: dict = field(repr=False)
    # [(iteration, state_dict)] of the generator part-way through the run (empty for runs saved without them)
    generator_snapshots: list = field(repr=False, default_factory=list)

    @property
    def student_accuracy(self) -> float:
        return self.meta.get("student_accuracy")

    @property
    def teacher_accuracy(self) -> float:
        return self.meta.get("teacher_accuracy")

    @property
    def image_shape(self) -> tuple:
        return tuple(self.meta["architecture"]["image_shape"])

    @property
    def class_names(self) -> list:
        return list(self.meta["architecture"]["class_names"])

    def summary(self) -> dict:
        return {
            "path": self.path,
            "dataset": self.config.dataset,
            "noise_mode": self.config.noise_mode,
            "epsilon": self.privacy.get("epsilon"),
            "delta": self.privacy.get("delta"),
            "student_accuracy": self.student_accuracy,
            "teacher_accuracy": self.teacher_accuracy,
            "queries": self.meta.get("queries"),
            "seconds": self.meta.get("elapsed_seconds"),
        }


def _read_json(path: str, run_dir: str):
    try:
        with open(path, encoding="utf-8") as f:
            return _decode(json.load(f))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirectoryError(
            f"{path} is not valid JSON ({exc.__class__.__name__}); the run directory {run_dir} is corrupt"
        ) from None
    except OSError as exc:
        raise RunDirectoryError(f"cannot read {path} ({exc.strerror or exc})") from None


def _read_torch(fpath: str, device):
    """``torch.load`` of a run's weight file, tensors only; any failure is one corrupt-file line."""
    try:
        return torch.load(fpath, map_location=device, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise RunDirectoryError(f"cannot read {fpath} ({exc.__class__.__name__}); the file is corrupt") from None


def _load_weights(module: torch.nn.Module, fpath: str, what: str, meta: dict, device) -> None:
    _fit_state(module, _read_torch(fpath, device), fpath, f"{what} weights", what, meta)


def _fit_state(module: torch.nn.Module, state, fpath: str, what: str, architecture: str, meta: dict) -> None:
    """Load ``state`` into ``module`` strictly, or refuse in one line naming ``what`` and the ``architecture``."""
    if not isinstance(state, dict):
        raise RunDirectoryError(f"{fpath} does not hold a state_dict; the run directory is corrupt")
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        # torch says "Error(s) in loading state_dict for X:" then one line per problem
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        details = lines[1:] or lines or [exc.__class__.__name__]
        first = details[0].rstrip(".") + (f" (and {len(details) - 1} more)" if len(details) > 1 else "")
        raise RunDirectoryError(
            f"the {what} in {fpath} do not fit the {architecture} architecture of dpsd_lite {__version__} "
            f"(saved by {meta.get('dpsd_lite_version')}): {first}"
        ) from None


# A run saved before a setting existed behaved as this value of it (before 0.3.0 the privacy noise came from the
# run's seed, so those runs are marked reproducible and their report gets the warning).
SETTINGS_BEFORE_THEY_EXISTED = {"skeletons": 0.0, "warm_start_steps": 0, "prior_temperature": 1.0,
                                "reproducible_noise": True}
# Settings that no longer exist, with the value at which they did nothing: a run saved with that value loads.
# (0.4: the settings of experiments tried and dropped, benchmarks/RESULTS.md, "Design history")
SETTINGS_REMOVED = {"disagreement_weight": 0.0, "ink": None, "warmup_fraction": 0.0, "generator_objective": "class",
                    "contrastive_weight": 0.0, "contrastive_memory": 2048}
RENAMED_VALUES = {"generator": {"conv": "learned"}}  # the conv generator is now called "learned"


def load_run(path, device="cpu") -> LoadedRun:
    """Read a run directory written by :func:`save_run`, verifying it; modules come back in eval mode.

    Raises :class:`RunDirectoryError` (one line) for a missing directory or
    file, bad JSON, a schema-version mismatch, a checksum mismatch, or weights
    that do not fit the architecture.
    """
    run_dir = os.path.abspath(os.fspath(path))
    if not os.path.isdir(run_dir):
        raise RunDirectoryError(f"run directory {run_dir} does not exist (or is not a directory)")
    missing = [f for f in RUN_FILES if not os.path.isfile(os.path.join(run_dir, f))]
    if missing:
        raise RunDirectoryError(f"{run_dir} is not a complete run directory: missing {', '.join(missing)}")

    meta = _read_json(os.path.join(run_dir, "meta.json"), run_dir)
    if not isinstance(meta, dict):
        raise RunDirectoryError(f"{run_dir}/meta.json does not hold a JSON object; the run directory is corrupt")
    schema = meta.get("schema_version")
    if schema != SCHEMA_VERSION:
        raise RunDirectoryError(
            f"{run_dir} has run-directory schema version {schema!r} (written by dpsd_lite "
            f"{meta.get('dpsd_lite_version', '?')}), but dpsd_lite {__version__} reads version {SCHEMA_VERSION}"
        )
    config_dict = _read_json(os.path.join(run_dir, "config.json"), run_dir)
    history = _read_json(os.path.join(run_dir, "history.json"), run_dir)
    privacy = _read_json(os.path.join(run_dir, "privacy.json"), run_dir)
    if not isinstance(config_dict, dict) or not isinstance(history, list) or not isinstance(privacy, dict):
        raise RunDirectoryError(f"{run_dir} has JSON files of the wrong shape; the run directory is corrupt")

    try:
        arch = meta["architecture"]
        image_shape = tuple(int(s) for s in arch["image_shape"])
        num_classes = int(arch["num_classes"])
        gen_arch = arch["generator"]
        checksums = meta["sha256"]
        if len(image_shape) != 3 or num_classes < 1:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise RunDirectoryError(f"{run_dir}/meta.json lacks the architecture or checksums; the run directory is corrupt") from None

    snapshot_files = (SNAPSHOT_FILE,) if meta.get("generator_snapshots") else ()  # listed by meta.json: required
    for fname in snapshot_files:
        if not os.path.isfile(os.path.join(run_dir, fname)):
            raise RunDirectoryError(f"{run_dir} is not a complete run directory: missing {fname}")
    for fname in WEIGHT_FILES + snapshot_files:
        expected = checksums.get(fname) if isinstance(checksums, dict) else None
        actual = _sha256(os.path.join(run_dir, fname))
        if expected != actual:
            raise RunDirectoryError(
                f"checksum mismatch for {os.path.join(run_dir, fname)}: the file was changed or damaged after saving"
            )

    # settings added after a run was saved take the value that reproduces it, not today's default
    config_dict = {**SETTINGS_BEFORE_THEY_EXISTED, **config_dict}
    for key, inert in SETTINGS_REMOVED.items():
        if key in config_dict:
            value = config_dict.pop(key)
            if value != inert:
                raise RunDirectoryError(f"{run_dir} was made with {key}={value!r}, a setting dpsd_lite {__version__} "
                                        f"no longer has; load it with the version that saved it "
                                        f"({meta.get('dpsd_lite_version')})")
    for key, renamed in RENAMED_VALUES.items():
        config_dict[key] = renamed.get(config_dict.get(key), config_dict.get(key))
    if config_dict.get("generator") == "auto":  # before 0.4: the generator a run on this data used by default
        config_dict["generator"] = "strokes" if gen_arch.get("class") == "StrokeGenerator" else "learned"
    try:
        config = TranscribeConfig().replace(**config_dict)
    except Exception as exc:  # unknown keys from another version
        raise RunDirectoryError(f"{run_dir}/config.json does not match dpsd_lite {__version__}: {exc}") from None

    try:
        student_arch = {k: v for k, v in arch.get("student", {}).items() if k != "class"}
        student = Student(image_shape, num_classes, **student_arch)
        gen_kwargs = {k: v for k, v in gen_arch.items() if k not in ("class", "image_shape", "num_classes")}
        generator = GENERATORS[gen_arch.get("class", "Generator")](image_shape, num_classes, **gen_kwargs)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise RunDirectoryError(
            f"cannot rebuild the networks of {run_dir} (saved by dpsd_lite {meta.get('dpsd_lite_version')}) "
            f"with dpsd_lite {__version__}: {exc}"
        ) from None

    if config.reproducible_noise and privacy.get("private") and "warning" not in privacy:
        privacy = {"warning": REPRODUCIBLE_NOISE_WARNING.format(seed=config.seed) + (
            f" (Saved by dpsd_lite {meta.get('dpsd_lite_version')}, which drew the noise from the seed.)"),
            "reproducible_noise": True, **privacy}
    _load_weights(student, os.path.join(run_dir, "student.pt"), "student", meta, device)
    _load_weights(generator, os.path.join(run_dir, "generator.pt"), "generator", meta, device)
    # the same memory layout as in the loop, so the loaded student computes exactly what the saved one did
    channels_last(student.to(device)).eval()
    if type(generator).__name__ == "Generator":  # the learned generator runs channels-last (generators.build_generator)
        channels_last(generator)
    generator.to(device).eval()
    snapshots = _load_snapshots(run_dir, generator, meta, device)
    return LoadedRun(run_dir, config, student, generator, history, privacy, meta, snapshots)


def _load_snapshots(run_dir: str, generator: torch.nn.Module, meta: dict, device) -> list:
    """The generator snapshots meta.json lists ([] if none), each fitted to the generator's architecture.
    (load_run has already checked that the file is there and matches its checksum.)"""
    import copy

    if not meta.get("generator_snapshots"):
        return []
    fpath = os.path.join(run_dir, SNAPSHOT_FILE)
    saved = _read_torch(fpath, device)
    try:
        steps, states = [int(s) for s in meta["generator_snapshots"]], list(saved["states"])
        ok = [int(s) for s in saved["steps"]] == steps and len(states) == len(steps)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise RunDirectoryError(f"{fpath} does not hold the snapshots meta.json lists; the run directory is corrupt")
    probe = copy.deepcopy(generator)
    for state in states:
        _fit_state(probe, state, fpath, "generator snapshots", "generator", meta)
    return list(zip(steps, states))
