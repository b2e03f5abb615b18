"""The teacher: trained once on the private split, then frozen and cached.

The cache key names everything that determines the weights (dataset, its
sizes and a SHA-256 digest of its content, architecture, epochs, seed,
package version), so notebooks and the CLI reuse one teacher across every ε
and mode instead of retraining it, and a different data folder of the same
size never gets another folder's teacher.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass

import torch

from . import __version__
from .accounting import check_delta, check_epsilon
from .config import TEACHER_EPOCHS
from .data import DataSplits, augment_images
from .dpsgd import describe_pretraining, split_recipe, train_dpsgd
from .errors import DpsdError
from .generators import STROKE_FORMAT
from .models import Student, Teacher, fit_classifier, minibatches
from .public_data import public_pretrained_student
from .utils import accuracy, atomic_write, default_cache_dir, resolve_device, seed_everything  # noqa: F401


@dataclass
class TrainedTeacher:
    model: Teacher
    heldout_accuracy: float
    private_accuracy: float
    epochs: int
    seed: int
    cached: bool
    path: str | None = None
    # torch's CPU threads while it was trained: its floating-point sums, hence its weights, depend on them
    # (mnist-5k, seed 0: 98.0% held-out trained on 1 thread, 98.1% on 2). None: not recorded (older caches).
    threads: int | None = None
    # a teacher trained with DP-SGD: its record-level privacy report (ε, δ per private training record), which
    # everything transcribed from it inherits as post-processing. None: an ordinary (non-private) teacher.
    privacy: dict | None = None


def train_teacher_model(data: DataSplits, epochs: int = TEACHER_EPOCHS, seed: int = 0, device="auto",
                        batch_size: int = 128, lr: float = 2e-3, progress=None) -> Teacher:
    """Train a :class:`Teacher` on ``data.x_private`` (no held-out data is touched): ``epochs`` passes of
    augmented minibatches, Adam with a one-cycle schedule. ``progress(epoch, epochs, loss)`` after each epoch."""
    device = resolve_device(device)
    gen = seed_everything(seed)
    model = Teacher(data.image_shape, data.num_classes).to(device)
    per_epoch = math.ceil(len(data.y_private) / batch_size)
    batches = ((augment_images(data.x_private[idx], gen), data.y_private[idx])
               for idx in minibatches(len(data.y_private), batch_size, gen))

    def each_epoch(step, steps, loss):
        if step % per_epoch == 0:
            progress(step // per_epoch, epochs, loss)

    fit_classifier(model, batches, epochs * per_epoch, lr, schedule="one-cycle", device=device,
                   progress=each_epoch if progress is not None else None)
    return model


def _cache_path(data: DataSplits, epochs: int, seed: int, cache_dir: str, **extra) -> str:
    """The cache file of a teacher; ``extra`` names further training settings (e.g. a partition's batch size)."""
    key = json.dumps({"data": data.describe(), "epochs": epochs, "seed": seed, "version": __version__,
                      "arch": "Teacher-v2", **extra}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(cache_dir, "teachers", f"{data.name}-{digest}.pt")


def load_cached_teacher(path: str, data: DataSplits, epochs: int, seed: int, device) -> TrainedTeacher:
    """The teacher cached at ``path``; raises if the file is missing, corrupt or of another architecture."""
    blob = torch.load(path, map_location=device, weights_only=True)
    model = Teacher(data.image_shape, data.num_classes).to(device)
    model.load_state_dict(blob["state_dict"])
    return TrainedTeacher(model.eval(), blob["heldout_accuracy"], blob["private_accuracy"], epochs, seed, True, path,
                          blob.get("threads"))


def cache_trained_teacher(path: str, model, data: DataSplits, epochs: int, seed: int) -> TrainedTeacher:
    """Measure a just-trained teacher, note the thread count that trained it, and write it to the cache."""
    held = accuracy(model, data.x_heldout, data.y_heldout)
    priv = accuracy(model, data.x_private, data.y_private)
    threads = torch.get_num_threads()
    write_teacher_cache(path, model, held, priv, threads=threads)
    return TrainedTeacher(model, held, priv, epochs, seed, False, path, threads)


def get_teacher(data: DataSplits, epochs: int = TEACHER_EPOCHS, seed: int = 0, device="auto",
                cache_dir: str | None = None, retrain: bool = False, progress=None) -> TrainedTeacher:
    """Return the teacher for ``data``: from the cache if there, else trained and cached.

    A corrupt cache file is reported and replaced by a fresh training run.
    """
    device = resolve_device(device)
    cache_dir = cache_dir or default_cache_dir()
    path = _cache_path(data, epochs, seed, cache_dir)
    if os.path.exists(path) and not retrain:
        try:
            return load_cached_teacher(path, data, epochs, seed, device)
        except Exception as exc:  # corrupt or stale cache: retrain rather than fail
            warnings.warn(f"teacher cache {path} is unreadable ({exc.__class__.__name__}); retraining it")
    model = train_teacher_model(data, epochs=epochs, seed=seed, device=device, progress=progress)
    return cache_trained_teacher(path, model, data, epochs, seed)


def teacher_for(config, data: DataSplits, device="auto", cache_dir: str | None = None, progress=None,
                retrain: bool = False) -> TrainedTeacher:
    """The teacher a :class:`~dpsd_lite.transcribe.TranscribeConfig` asks for, from the cache or trained once.

    ``config.teacher_dp_epsilon`` set: a teacher trained with DP-SGD at that
    record-level ε (:func:`get_dp_teacher`); otherwise the
    ordinary teacher (:func:`get_teacher`).
    """
    if getattr(config, "teacher_dp_epsilon", None):
        return get_dp_teacher(data, config.teacher_dp_epsilon, config.delta, seed=config.seed, device=device,
                              cache_dir=cache_dir, retrain=retrain, progress=progress)
    return get_teacher(data, epochs=config.teacher_epochs, seed=config.seed, device=device, cache_dir=cache_dir,
                       retrain=retrain, progress=progress)


def write_teacher_cache(path: str, model, heldout_accuracy: float, private_accuracy: float,
                        threads: int | None = None) -> None:
    """Save a trained teacher's weights and accuracies atomically (a crash never leaves half a file)."""
    blob = {"state_dict": model.state_dict(), "heldout_accuracy": heldout_accuracy,
            "private_accuracy": private_accuracy, "threads": threads}
    try:
        atomic_write(path, lambda fh: torch.save(blob, fh))
    except OSError as exc:
        raise DpsdError(f"cannot write the teacher cache in {os.path.dirname(path)} ({exc}); "
                        f"set DPSD_CACHE_DIR to a writable folder") from exc


def get_dp_teacher(data: DataSplits, epsilon: float, delta: float = 1e-5, seed: int = 0, device="auto",
                   cache_dir: str | None = None, public_init: bool | None = None, retrain: bool = False,
                   progress=None):
    """A teacher trained with DP-SGD at record-level (ε, δ), from the cache or trained once and cached.

    Everything computed from it (its answers, a student transcribed from it
    in any noise mode, even ``none``) is post-processing of a record-level
    (ε, δ)-DP model, so it carries that guarantee per private training record
    (add/remove one record); a per-answer ε on top is optional. The network
    is the :class:`~dpsd_lite.models.Student` architecture (DP-SGD works best
    with small networks without BatchNorm), started from
    :func:`~dpsd_lite.public_data.public_pretrained_student` where the
    domain has public drawings (``public_init=None``: digits datasets), else
    from random weights, and trained with the recipe :data:`dpsd_lite.dpsgd.DP_TEACHER`
    (chosen on public data). The cache key holds the data's digest, ε, δ,
    the initialisation, the recipe and the seed.
    Returns a :class:`TrainedTeacher` whose ``privacy`` is
    the DP-SGD report.
    """
    epsilon, delta = check_epsilon(epsilon), check_delta(delta)
    device = resolve_device(device)
    if public_init is None:
        public_init = data.name in STROKE_FORMAT
    pretrain, recipe = split_recipe()
    epochs = recipe["epochs"]
    cache_dir = cache_dir or default_cache_dir()
    # the augmentation enters the key only when on, so teachers cached before it existed keep their names
    path = _cache_path(data, epochs, seed, cache_dir, arch="Student-dpsgd",
                       dp_epsilon=epsilon, dp_delta=delta, public_init=bool(public_init), pretrain=pretrain["steps"],
                       recipe=recipe, **({"pretrain_augment": True} if pretrain["augment"] else {}))
    if os.path.exists(path) and not retrain:
        try:
            blob = torch.load(path, map_location=device, weights_only=True)
            model = Student(data.image_shape, data.num_classes).to(device)
            model.load_state_dict(blob["state_dict"])
            return TrainedTeacher(model.eval(), blob["heldout_accuracy"], blob["private_accuracy"], blob["epochs"],
                                  seed, True, path, blob.get("threads"), privacy=blob["privacy"])
        except Exception as exc:  # corrupt or stale: train again
            warnings.warn(f"DP teacher cache {path} is unreadable ({exc.__class__.__name__}); training it again")
    init, what = None, None
    if public_init:
        init = public_pretrained_student(data.name, seed=seed, device=device, cache_dir=cache_dir, **pretrain)
        what = describe_pretraining(pretrain)
    step_progress = None if progress is None else (lambda e, n, h: progress(e, n, h["loss"]))
    res = train_dpsgd(data, epsilon, delta, seed=seed, device=device, progress=step_progress, init=init,
                      init_description=what, **recipe)
    report = res.privacy_report()
    report["mechanism"] = "DP-SGD teacher: " + report["mechanism"]
    blob = {"state_dict": res.model.state_dict(), "heldout_accuracy": res.heldout_accuracy,
            "private_accuracy": res.private_accuracy, "epochs": res.epochs, "threads": torch.get_num_threads(),
            "privacy": report}
    try:
        atomic_write(path, lambda fh: torch.save(blob, fh))
    except OSError as exc:
        raise DpsdError(f"cannot write the teacher cache in {os.path.dirname(path)} ({exc}); "
                        f"set DPSD_CACHE_DIR to a writable folder") from exc
    return TrainedTeacher(res.model.eval(), res.heldout_accuracy, res.private_accuracy, res.epochs, seed, False, path,
                          torch.get_num_threads(), privacy=report)
