"""The transcription loop: generator ↔ mechanism ↔ student, read top to bottom.

One iteration (the phases are functions of :mod:`dpsd_lite.phases`, which
notebook 05 also calls one at a time)::

    for each of student_steps:   private_step    fresh synthetic queries; the teacher answers them through the
                                                 noise mode's mechanism only; the student takes a step on the release
    for each of replay_steps:    replay_step     a step on earlier releases (post-processing: no privacy cost)
    once:                        generator_step  the generator takes a step with the student as discriminator

Before the first iteration the student may warm up on the generator's own public drawings (``warm_start``:
no teacher). In ``rr`` and ``label`` the student's own prediction is the prior that picks the answer set (it
costs no privacy). The privacy report at the
end says what the run's ε covers.

UI code attaches from outside with ``callbacks``: ``on_step_end(state)`` after
every iteration, ``on_eval(state)`` after every evaluation on the held-out
split, and ``on_release(state, queries, release)`` after every release (what
the mechanism let out, public by definition: e.g. to log or show it).
Callbacks may set ``state.stop = True`` to end the run early.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .config import CHOSEN_ON_PRIVATE_SPLIT, SELECTION_DATASETS, SYNTHESIS_SNAPSHOTS, TranscribeConfig, resolve  # noqa: F401
from .data import DataSplits, load_dataset
from .generators import (GENERATOR_KINDS, MNIST_FORMAT, PUBLIC_INK, PUBLIC_MARGIN, STROKE_FORMAT,  # noqa: F401
                         Generator, build_generator)
from .mechanisms import Mechanism
from .models import Student, fit_classifier
from .phases import ReplayBuffer, generator_step, private_step, replay_step, setup, warm_start  # noqa: F401
from .report import privacy_report, with_dp_teacher
from .teacher import TrainedTeacher, teacher_for
from .utils import accuracy, flush_denormals, resolve_device, seed_everything, tune_allocator


@dataclass
class RunState:
    """What callbacks see. ``history`` holds one dict per evaluation."""

    config: TranscribeConfig
    step: int = 0
    total_steps: int = 0
    queries: int = 0
    student_loss: float = math.nan
    generator_loss: float = math.nan
    student_accuracy: float = math.nan
    # share of the queries since the last evaluation whose released label is the class the generator was asked for
    agreement: float = math.nan
    history: list = field(default_factory=list)
    last_images: torch.Tensor | None = None
    last_classes: torch.Tensor | None = None
    last_labels: torch.Tensor | None = None
    elapsed: float = 0.0
    stop: bool = False


@dataclass
class TranscriptionResult:
    config: TranscribeConfig
    student: Student
    generator: Generator
    teacher: TrainedTeacher
    mechanism: Mechanism
    history: list
    student_accuracy: float
    queries: int
    elapsed: float
    privacy: dict
    data: DataSplits = field(repr=False, default=None)
    # the generator's weights part-way through the run, [(iteration, state_dict)], for synthetic data
    # (config.SYNTHESIS_SNAPSHOTS); post-processing of the releases like the final generator
    generator_snapshots: list = field(repr=False, default_factory=list)

    @property
    def teacher_accuracy(self) -> float:
        return self.teacher.heldout_accuracy

    def summary(self) -> dict:
        return {
            "dataset": self.config.dataset,
            "noise_mode": self.privacy.get("noise_mode", self.config.noise_mode),
            "epsilon": self.privacy.get("epsilon", math.inf),  # what the mechanism claims
            "delta": self.privacy.get("delta"),  # rr: 0 (pure DP); none: None
            "student_accuracy": self.student_accuracy,
            "teacher_accuracy": self.teacher_accuracy,
            "ratio_to_teacher": self.student_accuracy / self.teacher_accuracy,
            "queries": self.queries,
            "seconds": self.elapsed,
        }


def transcribe(config: TranscribeConfig | None = None, data: DataSplits | None = None,
               teacher: TrainedTeacher | None = None, callbacks: dict | None = None,
               cache_dir: str | None = None, mechanism: Mechanism | None = None,
               **overrides) -> TranscriptionResult:
    """Transcribe the teacher into a student through the chosen noise mode.

    ``transcribe(epsilon=1, noise_mode="rr")`` works on the embedded default
    data; pass ``data``/``teacher`` to reuse loaded ones (e.g. in a sweep),
    ``mechanism`` to answer through another mechanism (the teacher ensemble).
    """
    config = resolve((config or TranscribeConfig()).replace(**overrides).validate())
    callbacks, device = callbacks or {}, resolve_device(config.device)
    tune_allocator()
    data = data if data is not None else load_dataset(config.dataset, root=config.data_root,
                                                      download=config.download)
    teacher = teacher if teacher is not None else teacher_for(config, data, device=device, cache_dir=cache_dir)
    p = setup(config, data, teacher, device, mechanism)
    state, t0 = RunState(config=config, total_steps=config.steps), time.perf_counter()
    set_sizes, agree = [], [0, 0]  # rr's answer-set sizes; released == requested, since the last evaluation
    snapshot_at, snapshots = snapshot_steps(config.steps), []

    def evaluate():
        state.student_accuracy = accuracy(p.student, data.x_heldout, data.y_heldout, device=device)
        state.agreement, agree[:] = (agree[0] / agree[1] if agree[1] else math.nan), [0, 0]
        state.history.append({"step": state.step, "queries": state.queries, "student_accuracy":
                              state.student_accuracy, "agreement": state.agreement, "student_loss":
                              state.student_loss, "generator_loss": state.generator_loss,
                              "seconds": time.perf_counter() - t0,
                              # class balancing: each class's recent share of the released labels
                              **({"released_shares": [round(float(v), 4) for v in p.released_share]}
                                 if p.released_share is not None else {})})
        callbacks.get("on_eval", lambda s: None)(state)

    with flush_denormals():  # CPU speed: see utils.flush_denormals
        warmed = warm_start(p)
        for step in range(1, config.steps + 1):
            state.step = step
            use_prior = p.mechanism.uses_prior
            for _ in range(config.student_steps):
                x, c, release, loss_s = private_step(p, use_prior)
                answered = release.labels >= 0 if release.labels is not None else torch.ones_like(c, dtype=bool)
                agree[0] += int((release.hard_labels[answered] == c[answered]).sum())
                agree[1] += int(answered.sum())
                state.queries += len(x)
                if "k" in release.extra:
                    set_sizes.append(release.extra["k"])
                callbacks.get("on_release", lambda *a: None)(state, x, release)
            for _ in range(p.replay_steps):
                replay_step(p)
            state.generator_loss = math.nan if config.freeze_generator else generator_step(p)[0]
            p.generator.set_progress(step / config.steps)  # a share schedule's next iteration (generic_shapes_end)
            state.student_loss, state.elapsed = float(loss_s), time.perf_counter() - t0
            state.last_images, state.last_classes = x[:64].cpu(), c[:64].cpu()
            state.last_labels = release.hard_labels[:64].cpu()
            if step in snapshot_at:
                snapshots.append((step, {k: v.detach().cpu().clone() for k, v in p.generator.state_dict().items()}))
            if step % config.eval_every == 0 or step == config.steps:
                evaluate()
            callbacks.get("on_step_end", lambda s: None)(state)
            if state.stop:
                if not state.history or state.history[-1]["step"] != step:
                    evaluate()
                break

    report = privacy_report(p.mechanism, queries=state.queries,
                            config=config if warmed else config.replace(warm_start_steps=0),
                            answer_set_sizes=torch.cat(set_sizes) if set_sizes else None)
    if getattr(teacher, "privacy", None):  # a DP-SGD teacher: the record-level guarantee everything inherits
        report = with_dp_teacher(report, teacher.privacy, config.student_init)
    return TranscriptionResult(config, p.student.eval(), p.generator.eval(), teacher, p.mechanism, state.history,
                               state.student_accuracy, state.queries, time.perf_counter() - t0, report, data,
                               snapshots)


def snapshot_steps(steps: int) -> list:
    """The iterations after which the loop keeps a copy of the generator (``SYNTHESIS_SNAPSHOTS`` of ``steps``),
    distinct and in order; none for a run too short to have an iteration before its last."""
    return sorted({max(1, round(f * steps)) for f in SYNTHESIS_SNAPSHOTS} - {steps})


def prior_only_student(config: TranscribeConfig | None = None, data: DataSplits | None = None,
                       **overrides) -> tuple[Student, float]:
    """What the generator's public prior teaches *without any teacher*: the baseline a privacy reviewer asks for.

    A student takes as many steps as a transcription with ``config`` would
    (``steps`` × (``student_steps`` + ``replay_steps``), batches of
    ``batch_size``) on the untrained generator's images, each labelled by the
    class the generator was asked for. No teacher is loaded or queried, so
    the gap between this and a transcription is what the teacher's (private)
    answers add. Returns the student and its held-out accuracy.
    """
    config = resolve((config or TranscribeConfig()).replace(**overrides).validate())
    device = resolve_device(config.device)
    if data is None:
        data = load_dataset(config.dataset, root=config.data_root, download=config.download)
    gen = seed_everything(config.seed)
    K = data.num_classes
    student = Student(data.image_shape, K).to(device)
    generator = build_generator(config, data.image_shape, K).to(device)
    updates = config.steps * (config.student_steps + config.replay_steps)

    def batches():  # a share schedule (generic_shapes_end) runs over these updates as it would over the loop's
        for i in range(updates):
            generator.set_progress(i / updates)
            yield generator.sample(config.batch_size, generator=gen, device=device)

    fit_classifier(student, batches(), updates, config.lr_student, schedule="cosine", device=device)
    return student, accuracy(student, data.x_heldout, data.y_heldout, device=device)
