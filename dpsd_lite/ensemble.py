"""Record-level DP by a teacher ensemble: noisy vote aggregation (PATE's GNMax) behind the Mechanism interface.

The per-query modes (``label``, ``rr``, ``data``) protect each *answer* of one
teacher; one private training record may change every answer. Here the
private split is cut into ``n`` disjoint partitions and one teacher is trained
on each. A synthetic query is answered by the teachers' vote histogram
(B×K counts of each teacher's top-1 class) plus Gaussian noise, and only the
noisy arg-max (a hard label) is released (GNMax, Papernot et al. 2018).

Why this protects each private training record
----------------------------------------------
Each record is assigned to a teacher by a hash of its own content (its image
bytes and label, :func:`assign_partitions`), not by its position: adding or
removing one record leaves every other record where it was, so exactly one
teacher's training set changes (a partition by position in a random
permutation would move almost every record). Every teacher is trained with a
fixed number of epochs and its own seed, so nothing else depends on the data.
One changed teacher moves one vote from one class to another: the histogram
changes by −1 in one entry and +1 in another, an L2 sensitivity of √2. Each
answered query is therefore a Gaussian mechanism with noise multiplier σ
(noise std σ·√2 on every count) and no subsampling (q = 1). Every answered
query is about the same private records, so they compose: we account with
Opacus's RDP accountant over the queries *actually answered*, and stop
answering once the query budget the noise was calibrated for is spent. The
analysis is data-independent (no smooth-sensitivity refinement of PATE's
confident aggregator): looser, but nothing about the votes leaks through the
accounting itself. The neighbouring relation is add/remove one record.
Replacing a record is a removal and an addition, which may change two
teachers: that relation holds only as group privacy for two records (for
these Gaussian answers, as if σ were halved), not at the ε reported.

Wiring into the transcription loop
----------------------------------
The noisy vote is a release like every other, so it lives with them:
:class:`~dpsd_lite.mechanisms.EnsembleVote` is a :class:`~dpsd_lite.mechanisms.Mechanism`, its ε
comes from :mod:`dpsd_lite.accounting` and its report from :mod:`dpsd_lite.report`; the
ensemble's forward returns raw vote histograms, which reach nothing but
``EnsembleVote.release``: :func:`transcribe_with_ensemble` runs the unchanged
loop of :mod:`dpsd_lite.transcribe` with ``mechanism=EnsembleVote(...)``.
The vote noise is secret (operating-system entropy) unless the loop's config
asks for ``reproducible_noise``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TranscribeConfig, resolve
from .data import DataSplits
from .errors import DpsdError
from .mechanisms import EnsembleVote
from .models import fit_classifier, minibatches
from .noise import NoiseSource
from .report import ensemble_privacy_report
from .teacher import TrainedTeacher, _cache_path, cache_trained_teacher, load_cached_teacher, train_teacher_model
from .transcribe import transcribe
from .utils import accuracy, default_cache_dir, resolve_device

__all__ = [
    "ENSEMBLE_TEACHER_EPOCHS",
    "assign_partitions",
    "partition_private",
    "TeacherEnsemble",
    "train_teacher_ensemble",
    "EnsembleTranscription",
    "transcribe_with_ensemble",
]


#: Epochs of each partition teacher when not given: a constant, never computed from the partitions' sizes (one
#: record could then change every teacher's training). 34 epochs are about 100 optimiser steps for a partition
#: of 80 records at batch 32 (mnist-5k's 4,000 private records over 50 teachers).
ENSEMBLE_TEACHER_EPOCHS = 34
#: Fresh query batches per iteration of the ensemble's transcription (its budget of answers is split over them)
ENSEMBLE_STUDENT_STEPS = 2


# ---------------------------------------------------------------------------- the ensemble

def assign_partitions(x: torch.Tensor, num_teachers: int, y: torch.Tensor | None = None) -> torch.Tensor:
    """Each record's teacher (an int64 tensor of length N), from a hash of the record's own content.

    The hash (BLAKE2b) covers the record's image bytes and, if given, its
    label, so a record's teacher does not depend on any other record: adding
    or removing one record changes exactly one teacher's partition. Partition
    sizes are then random around N / ``num_teachers`` (binomial: a spread of
    about √(N / num_teachers)). Identical records share a teacher.
    """
    import hashlib

    import numpy as np

    num_teachers = int(num_teachers)
    if num_teachers < 1:
        raise DpsdError(f"num_teachers must be a positive integer, got {num_teachers}")
    rows = np.ascontiguousarray(x.detach().cpu().numpy()).reshape(len(x), -1)
    labels = None if y is None else np.asarray(y.detach().cpu().numpy(), dtype=np.int64)
    out = torch.empty(len(x), dtype=torch.int64)
    for i in range(len(x)):  # one short hash per record: ~1 µs each
        h = hashlib.blake2b(rows[i].tobytes(), digest_size=8)
        if labels is not None:
            h.update(labels[i].tobytes())
        out[i] = int.from_bytes(h.digest(), "little") % num_teachers
    return out


def partition_private(data: DataSplits, num_teachers: int) -> list[DataSplits]:
    """Cut ``data.x_private`` into ``num_teachers`` disjoint partitions by :func:`assign_partitions`.

    Each partition is a :class:`DataSplits` with the same held-out split and a
    name that identifies the partition; the teacher cache is keyed by content
    as well, so it never mixes them. An empty partition is refused.
    """
    n = len(data.y_private)
    if not 1 <= int(num_teachers) <= n:
        raise DpsdError(f"num_teachers must be between 1 and the private split's size ({n}), got {num_teachers}")
    owner = assign_partitions(data.x_private, num_teachers, data.y_private)
    parts = []
    for i in range(int(num_teachers)):
        idx = (owner == i).nonzero().flatten()
        if len(idx) == 0:
            raise DpsdError(f"teacher {i} of {num_teachers} got no records: use fewer teachers for "
                            f"{n} private records")
        parts.append(DataSplits(f"{data.name}.part{i}of{num_teachers}", data.x_private[idx], data.y_private[idx],
                                data.x_heldout, data.y_heldout, data.class_names))
    return parts


class TeacherEnsemble(nn.Module):
    """Teachers trained on disjoint partitions. ``forward(x)`` returns the B×K raw vote histogram.

    The raw votes are as sensitive as any teacher output: pass them only to
    :meth:`EnsembleVote.release`.
    """

    def __init__(self, teachers, num_classes: int):
        super().__init__()
        self.teachers = nn.ModuleList(teachers)
        self.num_classes = int(num_classes)

    @property
    def num_teachers(self) -> int:
        return len(self.teachers)

    @torch.no_grad()
    def votes(self, x: torch.Tensor) -> torch.Tensor:
        """B×K float counts: how many teachers give each class as their top-1 answer."""
        hist = torch.zeros(x.shape[0], self.num_classes, device=x.device)
        for t in self.teachers:
            hist += F.one_hot(t(x).argmax(1), self.num_classes).to(hist.dtype)
        return hist

    def forward(self, x):
        return self.votes(x)


def train_teacher_ensemble(data: DataSplits, num_teachers: int = 50, epochs: int | None = None,
                           batch_size: int = 32, seed: int = 0, device="auto", cache_dir: str | None = None,
                           progress=None) -> TrainedTeacher:
    """Train (or load from the teacher cache) one :class:`Teacher` per disjoint partition.

    Returns a :class:`~dpsd_lite.teacher.TrainedTeacher` whose ``model`` is a
    :class:`TeacherEnsemble`, so it slots in wherever a teacher does;
    ``heldout_accuracy`` is the *noise-free* plurality vote's (an evaluation
    figure, not a release). ``epochs=None`` means :data:`ENSEMBLE_TEACHER_EPOCHS`,
    a constant (small partitions need many passes; a number computed from the
    partitions would depend on every record). Teacher ``i`` is trained with
    seed ``seed + i``.
    """
    device = resolve_device(device)
    parts = partition_private(data, num_teachers)
    if epochs is None:
        epochs = ENSEMBLE_TEACHER_EPOCHS
    teachers, cached = [], True
    for i, part in enumerate(parts):
        tt = _get_part_teacher(part, epochs, batch_size, seed + i, device, cache_dir)
        teachers.append(tt.model.eval())
        cached = cached and tt.cached
        if progress is not None:
            progress(i + 1, len(parts), tt.heldout_accuracy)
    ens = TeacherEnsemble(teachers, data.num_classes).to(device).eval()
    return TrainedTeacher(ens, _vote_accuracy(ens, data.x_heldout, data.y_heldout),
                          _vote_accuracy(ens, data.x_private, data.y_private), int(epochs), int(seed), cached, None)


def _get_part_teacher(part, epochs, batch_size, seed, device, cache_dir) -> TrainedTeacher:
    """Like :func:`get_teacher` (same cache folder), with a batch size suited to small partitions."""
    path = _cache_path(part, epochs, seed, cache_dir or default_cache_dir(), batch_size=batch_size)
    if os.path.exists(path):
        try:
            return load_cached_teacher(path, part, epochs, seed, device)
        except Exception:  # corrupt or stale: retrain below
            pass
    model = train_teacher_model(part, epochs=epochs, seed=seed, device=device, batch_size=batch_size)
    return cache_trained_teacher(path, model, part, epochs, seed)


@torch.no_grad()
def _vote_accuracy(ensemble: TeacherEnsemble, x, y, batch_size: int = 128) -> float:
    dev = next(ensemble.parameters()).device
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (ensemble.votes(x[i:i + batch_size].to(dev)).argmax(1).cpu() == y[i:i + batch_size]).sum().item()
    return correct / max(1, len(x))


# ---------------------------------------------------------------------------- the mechanism

# ---------------------------------------------------------------------------- the loop

@dataclass
class EnsembleTranscription:
    """A transcription through the ensemble. ``result`` is the loop's result with the ensemble's report."""

    result: object  # dpsd_lite.transcribe.TranscriptionResult
    mechanism: EnsembleVote
    ensemble: TrainedTeacher
    privacy: dict
    student_accuracy: float
    loop_accuracy: float  # before the post-processing fine-tune on the released labels
    finetune_epochs: int
    seconds: float

    @property
    def student(self):
        return self.result.student

    def summary(self) -> dict:
        return {"dataset": self.result.config.dataset, "noise_mode": "ensemble",
                "epsilon": self.privacy["epsilon"], "delta": self.privacy["delta"], "unit": "record",
                "student_accuracy": self.student_accuracy, "ensemble_accuracy": self.ensemble.heldout_accuracy,
                "num_teachers": self.privacy["num_teachers"], "queries": self.privacy["queries_answered"],
                "seconds": self.seconds}


def transcribe_with_ensemble(data: DataSplits, ensemble: TrainedTeacher, epsilon: float, delta: float = 1e-5,
                             query_budget: int = 256, config=None, finetune_epochs: int = 30,
                             callbacks: dict | None = None, **overrides) -> EnsembleTranscription:
    """Transcribe a teacher ensemble into a student with record-level (ε, δ) (GNMax, RDP-accounted).

    The loop of :func:`dpsd_lite.transcribe.transcribe` runs unchanged; its
    number of steps is set so that it asks exactly as many queries as the
    budget allows (``steps = budget // (student_steps · batch_size)``, with the
    batch shrunk if the budget is smaller than one step). σ is calibrated for
    the queries that will be asked. Afterwards the student is trained
    ``finetune_epochs`` more epochs on the (synthetic query, released label)
    pairs: post-processing of the release, no extra privacy cost.

    Votes must outnumber the noise (std ≈ 92 votes for ε = 1 over 256
    answers): more teachers, fewer queries. The defaults (50 teachers, 256
    answers) were chosen on public drawings (benchmarks/RESULTS.md).
    """
    t0 = time.perf_counter()
    if not isinstance(ensemble.model, TeacherEnsemble):
        raise DpsdError("transcribe_with_ensemble needs a teacher ensemble (see train_teacher_ensemble)")
    cfg = (config or TranscribeConfig()).replace(**overrides)
    # the loop runs as rr at this ε; two fresh batches per iteration, as the ensemble's defaults were chosen with
    cfg = resolve(cfg.replace(noise_mode="rr", epsilon=epsilon, delta=delta,
                              student_steps=cfg.student_steps or ENSEMBLE_STUDENT_STEPS))
    budget = int(query_budget)
    if budget < cfg.student_steps:
        raise DpsdError(f"query budget {budget} is smaller than one query per student step ({cfg.student_steps})")
    ens = ensemble.model
    batch = min(cfg.batch_size, budget // cfg.student_steps)
    steps = max(1, budget // (cfg.student_steps * batch))
    cfg = cfg.replace(batch_size=batch, steps=steps, eval_every=min(cfg.eval_every, steps))
    noise = NoiseSource.from_seed(cfg.seed) if cfg.reproducible_noise else NoiseSource.secret()
    mech = EnsembleVote(epsilon, delta, steps * cfg.student_steps * batch, num_teachers=ens.num_teachers,
                        noise=noise)
    mech.record = True
    callbacks = dict(callbacks or {})
    recorder = _Recorder(ens)
    teacher = dataclasses.replace(ensemble, model=recorder)
    user_end = callbacks.get("on_step_end")

    def on_step_end(state):
        if user_end is not None:
            user_end(state)
        if mech.exhausted:
            state.stop = True

    callbacks["on_step_end"] = on_step_end
    result = transcribe(cfg.replace(noise_mode="rr", epsilon=epsilon, delta=delta), data=data,
                        teacher=teacher, callbacks=callbacks, mechanism=mech)
    queries, labels = recorder.queries, mech.released
    loop_acc = result.student_accuracy
    if finetune_epochs and queries:
        _finetune(result.student, torch.cat(queries), torch.cat(labels), finetune_epochs, cfg.lr_student, cfg.seed)
    acc = accuracy(result.student, data.x_heldout, data.y_heldout)
    report = ensemble_privacy_report(mech)
    report["teacher_queries"] = mech.answered
    report["student"] = (f"trained by the unchanged transcription loop on the released labels, then "
                         f"{finetune_epochs} epochs on the (synthetic query, released label) pairs: post-processing")
    # The loop's own config and report describe the loop's nominal mode, not the guarantee: replace them.
    result.privacy = report
    result.mechanism = mech
    result.student_accuracy = acc
    result.config = dataclasses.replace(result.config, noise_mode="ensemble", epsilon=report["epsilon"],
                                        delta=report["delta"])
    return EnsembleTranscription(result, mech, ensemble, report, acc, loop_acc, int(finetune_epochs),
                                 time.perf_counter() - t0)


class _Recorder(nn.Module):
    """For the ``mechanism=`` path: returns the raw votes (to the mechanism only) and keeps the queries."""

    def __init__(self, ensemble):
        super().__init__()
        self.ensemble = ensemble
        self.queries = []

    def forward(self, x):
        self.queries.append(x.detach().cpu())
        return self.ensemble.votes(x)


def _finetune(student, x, y, epochs, lr, seed, batch_size: int = 64):
    """Train the student further on released (query, label) pairs only: post-processing."""
    keep = y >= 0
    x, y = x[keep], y[keep]
    if len(y) == 0:
        return
    g = torch.Generator().manual_seed(seed)
    batches = ((x[idx], y[idx]) for idx in minibatches(len(y), batch_size, g))
    fit_classifier(student, batches, int(epochs) * math.ceil(len(y) / batch_size), lr)
