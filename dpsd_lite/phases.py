"""One step of each player: the phases the transcription loop is made of.

:func:`dpsd_lite.transcribe.transcribe` is a short loop over these functions,
and notebook 05 calls the same ones, one at a time. Every phase takes the
:class:`Players` (the three networks, the mechanism, the optimisers and the
run's random generator) that :func:`setup` builds.

One iteration of the loop::

    for each of config.student_steps:          private_step   the only phase that asks the teacher
    for each of config.replay_steps:           replay_step    earlier releases again: no privacy cost
    once:                                      generator_step the student is the discriminator

Where the teacher is, and where it is not: :func:`private_step` hands the
teacher's raw answers to ``mechanism.release`` and nothing else; the student
and the generator see only the release. In mode ``none`` the generator
objective also reads the teacher (DFAD's discrepancy); in every private mode
it never does.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import require_resolved
from .data import augment_images
from .errors import DpsdError
from .generators import StrokeGenerator, build_generator, draw_ink_scale
from .mechanisms import Mechanism, Release, make_mechanism
from .models import Student, fit_classifier, for_queries
from .utils import channels_last, seed_everything

__all__ = ["Players", "setup", "ReplayBuffer", "draw", "balances_classes", "class_weights", "note_release",
           "warm_start", "start_from_dp_teacher", "pick_uncertain", "student_prior", "private_step", "replay_step",
           "generator_objective", "generator_step", "PrivateStepTrace", "GeneratorStepTrace", "trace_private_step",
           "trace_generator_step", "generator_images", "parameter_snapshot", "weight_change"]



class ReplayBuffer:
    """A fixed-size ring of earlier (query, release) pairs, kept as preallocated tensors.

    Training on them again is post-processing of the releases: no teacher
    query, no privacy cost.
    """

    def __init__(self, capacity: int):
        self.capacity, self.size, self.pos = int(capacity), 0, 0
        self.x = None
        self.fields = {}

    def _rows(self, rel: Release) -> dict:
        out = {name: getattr(rel, name) for name in ("mask", "labels", "values") if getattr(rel, name) is not None}
        out.update({"extra:" + k: v for k, v in rel.extra.items()})
        return out

    def add(self, x: torch.Tensor, rel: Release) -> None:
        rows = self._rows(rel)
        if self.x is None:
            self.mode = rel.mode
            self.x = x.new_empty((self.capacity, *x.shape[1:]))
            self.fields = {k: v.new_empty((self.capacity, *v.shape[1:])) for k, v in rows.items()}
        idx = (self.pos + torch.arange(len(x), device=x.device)) % self.capacity
        self.x[idx] = x
        for k, v in rows.items():
            self.fields[k][idx] = v
        self.pos = (self.pos + len(x)) % self.capacity
        self.size = min(self.capacity, self.size + len(x))

    def sample(self, n: int, gen: torch.Generator):
        idx = torch.randint(0, self.size, (n,), generator=gen).to(self.x.device)
        f = {k: v[idx] for k, v in self.fields.items()}
        extra = {k[len("extra:"):]: v for k, v in f.items() if k.startswith("extra:")}
        return self.x[idx], Release(self.mode, f.get("mask"), f.get("labels"), f.get("values"), extra)


@dataclass
class Players:
    """What every phase works on: the three players, the mechanism, their optimisers, the run's randomness."""

    config: object  # TranscribeConfig
    teacher_model: torch.nn.Module  # frozen; read only by private_step (and, in mode none, the generator)
    mechanism: Mechanism
    student: Student
    generator: torch.nn.Module
    opt_student: torch.optim.Optimizer
    sched_student: torch.optim.lr_scheduler.LRScheduler
    opt_generator: torch.optim.Optimizer
    rng: torch.Generator  # every random choice but the privacy noise (the mechanism has its own, secret)
    device: torch.device
    num_classes: int
    buffer: ReplayBuffer | None = None
    anchor: torch.nn.Module | None = None  # strokes: the generator's random initial draw, to stay near
    # how often each class has been released lately (a moving average of shares; None: classes drawn uniformly)
    released_share: torch.Tensor | None = None

    def autocast(self):
        """The forward passes' arithmetic: bfloat16 autocast when the run's precision is bfloat16, else a no-op."""
        on = self.config.precision == "bfloat16"
        return torch.autocast(self.device.type if on else "cpu", dtype=torch.bfloat16, enabled=on)

    @property
    def replay_steps(self) -> int:
        """Replay only where a release can be learnt from again (not ``data``: a gradient of its moment)."""
        return self.config.replay_steps if self.buffer is not None else 0


def setup(config, data, teacher, device, mechanism: Mechanism | None = None) -> Players:
    """Seed the run, build the student, the generator and the mechanism, and their optimisers."""
    require_resolved(config, "setup")  # its defaults are decided once, by config.resolve, and saved with the run
    teacher_model = channels_last(teacher.model.to(device)).eval().requires_grad_(False)
    teacher_model = channels_last(for_queries(teacher_model))  # BatchNorm folded: the same answers, sooner
    rng = seed_everything(config.seed)
    mech = mechanism if mechanism is not None else make_mechanism(
        config.noise_mode, config.epsilon, config.delta, top_k=config.top_k, k_min=config.k_min,
        clip_norm=config.clip_norm, answer=config.rr_answer, num_classes=data.num_classes,
        noise_seed=config.seed if config.reproducible_noise else None)
    K = data.num_classes
    student = channels_last(Student(data.image_shape, K).to(device))
    if config.student_init == "teacher":
        start_from_dp_teacher(student, teacher)
    generator = build_generator(config, data.image_shape, K).to(device)
    anchor = None
    if config.anchor_weight and isinstance(generator, StrokeGenerator):
        anchor = copy.deepcopy(generator).requires_grad_(False)
    opt_s = torch.optim.Adam(student.parameters(), lr=config.lr_student)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_generator, betas=(0.5, 0.999))
    buffer = ReplayBuffer(config.replay_buffer) if (mech.replayable and config.replay_buffer
                                                    and config.replay_steps) else None
    updates = config.steps * (config.student_steps + (config.replay_steps if buffer is not None else 0))
    # one cycle: warm up to lr_student, then anneal
    sched_s = torch.optim.lr_scheduler.OneCycleLR(opt_s, max_lr=config.lr_student, total_steps=updates)
    return Players(config, teacher_model, mech, student, generator, opt_s, sched_s, opt_g, rng, device, K,
                   buffer, anchor, torch.full((K,), 1.0 / K) if balances_classes(config, mech) else None)


def start_from_dp_teacher(student: Student, teacher) -> None:
    """Copy a DP-SGD teacher's weights into the student (``student_init`` teacher): post-processing of a model that
    is record-level DP itself. Refused, with one line, for an ordinary teacher or another architecture."""
    if getattr(teacher, "privacy", None) is None:
        raise DpsdError("student_init=teacher starts the student from a DP-SGD teacher's weights; this teacher was "
                        "not trained with DP-SGD (use --teacher-dp-epsilon, or student_init=random)")
    mine, theirs = student.state_dict(), teacher.model.state_dict()
    if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
        raise DpsdError("student_init=teacher needs a DP teacher of the student's architecture; this one differs "
                        "(use student_init=random)")
    student.load_state_dict(theirs)


def balances_classes(config, mechanism: Mechanism) -> bool:
    """Whether a run draws its requested classes by :func:`class_weights`: ``class_balance`` is set and the
    releases carry labels to count (mode data's, gradients, do not; they are not replayable either)."""
    return bool(config.class_balance) and mechanism.replayable


#: class balancing: the moving average keeps this much of its past at each release batch, and a class's weight
#: is 1 / (its share + RARE_FLOOR), so a class never released is asked for at most (1 + RARE_FLOOR·K)/(RARE_FLOOR·K)
#: times as often as one released at the uniform rate.
SHARE_DECAY, RARE_FLOOR = 0.9, 0.02


def class_weights(p: Players) -> torch.Tensor:
    """The distribution requested classes are drawn from: uniform, or with ``class_balance`` of it in inverse
    proportion to how often each class has been released lately (from the releases alone: post-processing)."""
    uniform = torch.full((p.num_classes,), 1.0 / p.num_classes)
    if p.released_share is None:
        return uniform
    inverse = 1.0 / (p.released_share + RARE_FLOOR)
    u = p.config.class_balance
    return (1 - u) * uniform + u * inverse / inverse.sum()


def note_release(p: Players, release: Release) -> None:
    """Count the released labels for class balancing. Reads the release only, never the teacher."""
    if p.released_share is None:
        return
    labels = release.hard_labels
    labels = labels[labels >= 0].cpu()  # the teacher ensemble may decline to answer (-1)
    if len(labels):
        share = torch.bincount(labels, minlength=p.num_classes).float() / len(labels)
        p.released_share.mul_(SHARE_DECAY).add_((1 - SHARE_DECAY) * share)


def draw(p: Players, n: int):
    """n noise vectors z, requested classes c (consecutive pairs share a class) and ink weights.

    The classes are uniform, or drawn from :func:`class_weights` when the run balances classes."""
    z = torch.randn(n, p.config.nz, generator=p.rng).to(p.device)
    if p.released_share is None:
        c = torch.randint(0, p.num_classes, ((n + 1) // 2,), generator=p.rng)
    else:
        c = torch.multinomial(class_weights(p), (n + 1) // 2, replacement=True, generator=p.rng)
    c = c.repeat(2)[:n].to(p.device)
    return z, c, draw_ink_scale(n, p.rng).to(p.device)


def warm_start(p: Players) -> bool:
    """Before any query: the student learns the generator's own intentions (skeleton drawings labelled by the
    digit each was drawn as). Public, no teacher, no privacy cost; it gives the rr prior something to say.
    Only a generator that draws skeletons has intentions to learn: returns whether it ran."""
    if not (p.config.warm_start_steps and getattr(p.generator, "skeletons", 0)):
        return False
    mode = p.student.training
    fit_classifier(p.student, _skeleton_batches(p), p.config.warm_start_steps, p.config.lr_student)
    p.student.train(mode)  # the mode it came in (fit_classifier leaves eval mode)
    return True


def _skeleton_batches(p: Players):
    """Endless batches of the generator's skeleton drawings, each labelled by the digit it was drawn as."""
    while True:
        z, c, _ = draw(p, p.config.batch_size // 2)
        with torch.no_grad():
            x = p.generator.draw_skeletons(z, c)
        yield x, c


@torch.no_grad()
def pick_uncertain(student: Student, x: torch.Tensor, c: torch.Tensor, n: int):
    """The n candidates the student is least sure about (highest entropy): no teacher involved."""
    logp = student(x).log_softmax(1)
    keep = (logp.exp() * logp).sum(1).argsort()[:n]
    return x[keep], c[keep]


def student_prior(student_logits: torch.Tensor, temperature: float, smoothing: float) -> torch.Tensor:
    """The prior that picks rr's and label's top-k: the student's own prediction, tempered and smoothed.

    (1 − λ)·softmax(s / T) + λ/K. Computed from the student alone (post-processing of earlier releases), so
    choosing the answer set from it costs no privacy.
    """
    K = student_logits.shape[1]
    return (1 - smoothing) * (student_logits.detach() / temperature).softmax(1) + smoothing / K


def private_step(p: Players, use_prior: bool):
    """One batch of fresh queries: the teacher answers them through the mechanism, the student learns the release.

    Returns (queries x, requested classes c, the release, the student's loss). The teacher's raw answers go into
    ``mechanism.release`` and are dropped; nothing else reads them.
    """
    cfg, B = p.config, p.config.batch_size
    p.student.train()
    z, c, ink = draw(p, B * max(1, cfg.query_pool))
    with torch.no_grad(), p.autocast():
        x = p.generator(z, c, ink).float()
        if cfg.augment:  # random shifts/rotations widen the queries around each image (no teacher involved)
            x = augment_images(x, p.rng)
        if cfg.query_pool > 1:
            x, c = pick_uncertain(p.student, x, c, B)
        teacher_logits = p.teacher_model(x).float()
    with p.autocast():
        s = p.student(x).float()
    prior = student_prior(s, cfg.prior_temperature, cfg.prior_smoothing) if use_prior else None
    release = p.mechanism.release(teacher_logits, prior=prior, student_logits=s.detach())
    del teacher_logits  # nothing below may read the raw answers
    note_release(p, release)
    loss = _student_update(p, s, release)
    if p.buffer is not None:
        p.buffer.add(x, release)
    return x, c, release, loss


def replay_step(p: Players):
    """One more student step on a batch of earlier (query, release) pairs: no teacher, no privacy cost."""
    x, release = p.buffer.sample(p.config.batch_size, p.rng)
    with p.autocast():
        s = p.student(x).float()
    return _student_update(p, s, release)


def _student_update(p: Players, student_logits, release):
    loss = p.mechanism.student_loss(student_logits, release)
    p.opt_student.zero_grad(set_to_none=True)
    loss.backward()
    p.opt_student.step()
    p.sched_student.step()
    return loss.detach()


def generator_objective(p: Players, z, c, ink):
    """The generator's loss with the student as discriminator, one term per line; returns (loss, {term: value}).

    * class: the student should see the requested class c in G(z, c) (the student as auxiliary classifier);
    * diversity: two images asked for the same class should differ (mode seeking, per unit of z distance);
    * anchor (strokes): the stroke parameters stay near the generator's random initial draw;
    * discrepancy (mode ``none`` only, ``discrepancy_weight``; by default
      ``config.LEARNED_DISCREPANCY_WEIGHT`` for the learned generator, 0 for the strokes): DFAD's L1 between
      student and teacher logits, maximised. It reads the raw teacher, which no private mode may do.
    """
    cfg = p.config
    with p.autocast():
        x = p.generator(z, c, ink).float()
        s = p.student(x).float()
    terms = {"class": F.cross_entropy(s, c)}
    if cfg.diversity_weight:
        h = len(x) // 2
        dx, dz = (x[:h] - x[h:2 * h]).abs().mean((1, 2, 3)), (z[:h] - z[h:2 * h]).abs().mean(1)
        terms["diversity"] = -cfg.diversity_weight * (dx / dz).mean()
    if p.anchor is not None:
        with torch.no_grad():
            start = p.anchor.raw(z, c)
        terms["anchor"] = cfg.anchor_weight * F.mse_loss(p.generator.raw(z, c), start)
    if cfg.discrepancy_weight and not p.mechanism.private:  # never in a private mode
        with p.autocast():
            teacher_logits = p.teacher_model(x).float()
        terms["discrepancy"] = -cfg.discrepancy_weight * F.l1_loss(s, teacher_logits)
    return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}


def generator_step(p: Players):
    """One generator step against the frozen student; returns (loss, terms). The student is not changed."""
    p.student.eval().requires_grad_(False)
    try:
        z, c, ink = draw(p, p.config.generator_batch)
        loss, terms = generator_objective(p, z, c, ink)
        p.opt_generator.zero_grad(set_to_none=True)
        loss.backward()
        p.opt_generator.step()
    finally:
        p.student.requires_grad_(True)
    return float(loss.detach()) if torch.is_tensor(loss) else math.nan, terms


# ---------------------------------------------------------------------------- one iteration, opened up (notebook 05)

def parameter_snapshot(module: torch.nn.Module) -> dict:
    """A detached copy of every parameter of ``module``, {name: tensor}, to measure a step against."""
    return {name: w.detach().clone() for name, w in module.named_parameters()}


def weight_change(before: dict, module: torch.nn.Module) -> dict:
    """How far each layer of ``module`` moved since ``before`` (:func:`parameter_snapshot`).

    Returns {layer: {"norm": ‖W‖ before, "change": ‖W_now − W_before‖, "relative": change / norm}}, in the
    order of the module's parameters, where a layer's W is all its parameters (weight and bias) as one vector
    (L2 norms). Layer names are the module paths with the layer's type, e.g. ``net.0 (Conv2d)``.
    """
    kinds = {name: type(m).__name__ for name, m in module.named_modules()}
    sums: dict = {}
    for name, w in module.named_parameters():
        path = name.rpartition(".")[0]
        key = f"{path} ({kinds.get(path, '?')})" if path else name
        norm2, change2 = sums.get(key, (0.0, 0.0))
        old = before[name].to(w.device)
        sums[key] = (norm2 + float(old.double().pow(2).sum()),
                     change2 + float((w.detach() - old).double().pow(2).sum()))
    out = {}
    for key, (norm2, change2) in sums.items():
        norm, change = math.sqrt(norm2), math.sqrt(change2)
        out[key] = {"norm": norm, "change": change, "relative": change / norm if norm else math.nan}
    return out


@dataclass
class PrivateStepTrace:
    """What one :func:`private_step` computed on its way, kept for a lesson. Every tensor is on the CPU.

    ``teacher_probabilities`` is what ``mechanism.release`` read: in a run nothing outside the mechanism ever
    sees it. It is kept here only so that a lesson can put it beside the release.
    """

    z: torch.Tensor  # N×nz: the noise the generator was given (N = batch_size · query_pool)
    generated: torch.Tensor  # N×C×H×W: G(z, c), as the generator drew them
    x: torch.Tensor  # B×C×H×W: the queries the teacher answered (after augmentation and the uncertainty pick)
    c: torch.Tensor  # B: the class each query was asked for
    teacher_probabilities: torch.Tensor  # B×K: softmax of the teacher's logits, inside the mechanism only
    student_logits: torch.Tensor  # B×K: the student's logits on x, before its step
    prior: torch.Tensor | None  # B×K: π, the tempered and smoothed student prediction (None: no prior)
    release: Release  # what the mechanism let out (rr: labels, mask and ``extra["k"]``, the answer set sizes)
    loss: float  # the mechanism's student loss on the release, before the step
    student_change: dict  # :func:`weight_change` of the student over its step


def trace_private_step(p: Players, use_prior: bool) -> PrivateStepTrace:
    """Take one :func:`private_step`, unchanged, and keep what it computed along the way.

    The step is the library's own: the student learns, the replay buffer and the class shares are updated,
    the privacy noise is drawn, exactly as in a run. To see inside it, for this one call the generator's
    inputs and output are recorded with a forward hook, and the mechanism's ``release`` is wrapped to record
    its arguments (the teacher's logits, the prior, the student's logits) before passing them on unchanged.
    """
    seen = {}
    mech = p.mechanism
    own = "release" in vars(mech)  # already wrapped by someone else: put that back afterwards
    original = mech.release

    def record(teacher_logits, prior=None, student_logits=None):
        seen["teacher"] = teacher_logits.detach().float().softmax(1).cpu()
        seen["prior"] = None if prior is None else prior.detach().float().cpu()
        seen["student"] = None if student_logits is None else student_logits.detach().float().cpu()
        return original(teacher_logits, prior=prior, student_logits=student_logits)

    def look(_module, args, output):
        seen["z"], seen["generated"] = args[0].detach().cpu(), output.detach().float().cpu()

    before = parameter_snapshot(p.student)
    hook = p.generator.register_forward_hook(look)
    mech.release = record
    try:
        x, c, release, loss = private_step(p, use_prior)
    finally:
        hook.remove()
        if own:
            mech.release = original
        else:
            del mech.release  # the class's method again
    return PrivateStepTrace(seen["z"], seen["generated"], x.detach().cpu(), c.cpu(), seen["teacher"],
                            seen["student"], seen["prior"], release, float(loss), weight_change(before, p.student))


@torch.no_grad()
def generator_images(p: Players, z, c, ink=None) -> torch.Tensor:
    """G(z, c) as the loop draws it (training mode), for a look: the generator is left as it was (its
    BatchNorm running statistics are put back), and no gradient is kept."""
    buffers = {name: b.clone() for name, b in p.generator.named_buffers()}
    try:
        return p.generator(z, c, ink).float().cpu()
    finally:
        for name, b in p.generator.named_buffers():
            b.copy_(buffers[name])


@dataclass
class GeneratorStepTrace:
    """One :func:`generator_step` seen through a fixed (z, c): the images before and after, and what moved."""

    z: torch.Tensor  # n×nz, fixed
    c: torch.Tensor  # n requested classes, fixed
    before: torch.Tensor  # n×C×H×W: G(z, c) before the step
    after: torch.Tensor  # n×C×H×W: G(z, c) after it
    loss: float  # the objective of the step (on the step's own batch, drawn by generator_step)
    terms: dict  # {term: its value, weight included}, as generator_objective returns them
    generator_change: dict  # :func:`weight_change` of the generator over its step


def trace_generator_step(p: Players, n: int = 16) -> GeneratorStepTrace:
    """Take one :func:`generator_step`, unchanged, and look at n fixed (z, c) through it.

    The fixed (z, c) are drawn with :func:`draw` before the step (from the run's random generator, so the
    run's later draws differ from a run without the look); the step draws its own batch as always.
    """
    z, c, ink = draw(p, n)
    before_images = generator_images(p, z, c, ink)
    before = parameter_snapshot(p.generator)
    loss, terms = generator_step(p)
    after_images = generator_images(p, z, c, ink)
    return GeneratorStepTrace(z.cpu(), c.cpu(), before_images, after_images, loss, terms,
                              weight_change(before, p.generator))
