"""Everything that determines a transcription: :class:`TranscribeConfig`, its settings grouped by player.

Kept free of heavy imports (no torch), so the command line can check a
``--set KEY=VALUE`` at once. Why each default is what it is, with the numbers
measured, is in ``benchmarks/RESULTS.md``; this file says what each setting does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .accounting import check_delta, check_epsilon
from .errors import DpsdError
from .names import DATASETS, GENERATOR_KINDS, NOISE_MODES, RR_ANSWERS, SPENT_AT_ONCE

#: Epochs of the (non-private) teacher on the private split.
TEACHER_EPOCHS = 8

#: Defaults chosen by comparing transcriptions on mnist-5k's private split (the teacher's training images).
#: Selecting settings on private data is a release no ε covers (Papernot & Steinke 2022), so every privacy
#: report of a run on these datasets says so (mnist-5k's images are part of MNIST's training set).
CHOSEN_ON_PRIVATE_SPLIT = ("the budget (steps, student_steps, replay_steps, query_pool)", "lr_student",
                           "prior_temperature", "warm_start_steps", "the student's architecture",
                           "the MNIST stroke pen width")
SELECTION_DATASETS = ("mnist-5k", "mnist")

#: Settings whose default depends on the generator and the noise level (``None`` in a config: "resolve it",
#: :func:`resolve`). Why each value, with its measurements: benchmarks/RESULTS.md, "Design history".
#: * ``learned`` (ε ≥ ``LEARNED_CALM_EPSILON``: nearly clean labels): the generator moves slowly and its queries
#:   are shifted and rotated; one fresh batch per iteration, each release learnt seven times more from the
#:   replay buffer (post-processing), which kept as much of the teacher as two fresh batches, in less time and
#:   with half the answers (RESULTS.md, "Design history", "The main job's budget").
#: * ``learned-open`` (mode none, the non-private reference: clean answers): as ``learned``, with two fresh
#:   batches per iteration.
#: * ``learned-noisy`` (ε < 5): the generator moves faster, so new queries keep coming while the student is
#:   unsure; two fresh batches, three replays (more replay helped one domain and hurt the other).
#: * every learned run sends each candidate to the teacher (no pick of the least sure half, ``query_pool`` 1),
#:   keeps every class in ``label`` (its prior is weak: ``top_k`` 10) and asks for the classes released least
#:   often more often (``class_balance`` 0.5: the teacher rarely names some classes, 8s and 9s, trousers).
#: * ``strokes``: the renderer's own budget, with its pick of the least sure half of twice the candidates.
GENERATOR_DEFAULTS = {
    "strokes": {"lr_generator": 1e-3, "augment": False, "top_k": 2, "steps": 150, "query_pool": 2,
                "class_balance": 0.0, "student_steps": 2, "replay_steps": 3},
    "learned": {"lr_generator": 3e-4, "augment": True, "top_k": 10, "steps": 200, "query_pool": 1,
                "class_balance": 0.5, "student_steps": 1, "replay_steps": 7},
    "learned-open": {"lr_generator": 3e-4, "augment": True, "top_k": 10, "steps": 200, "query_pool": 1,
                     "class_balance": 0.5, "student_steps": 2, "replay_steps": 7},
    "learned-noisy": {"lr_generator": 1e-3, "augment": False, "top_k": 10, "steps": 200, "query_pool": 1,
                      "class_balance": 0.5, "student_steps": 2, "replay_steps": 3},
}
LEARNED_CALM_EPSILON = 5.0
#: Mode data's releases are noisy gradients, spent at once (``names.SPENT_AT_ONCE``): nothing to replay and no
#: labels to balance classes by. A run in such a mode resolves these to off, whatever is set, so its saved config
#: says what it did.
UNUSED_WHEN_SPENT_AT_ONCE = {"replay_steps": 0, "class_balance": 0.0}
#: In mode none, and only there (it reads the raw teacher), the learned generator's objective also seeks the
#: images where student and teacher disagree (DFAD's discrepancy, ``discrepancy_weight``); :func:`resolve` sets
#: any weight to 0 in a private mode. The weight: RESULTS.md, "Design history".
LEARNED_DISCREPANCY_WEIGHT = 0.1
#: The learned generator's iterations when the loop runs in bfloat16 (``precision``), on a CPU with native
#: bfloat16 units (AMX / AVX-512 BF16): more, cheaper iterations than its 200 float32 ones in about the same time.
LEARNED_BFLOAT16_STEPS = 340
PRECISIONS = ("auto", "float32", "bfloat16")
#: Where the student starts (``student_init``). ``teacher`` only for a DP-SGD teacher in mode none: that teacher is
#: itself record-level DP, so its weights are post-processing; an ordinary teacher's weights would hand the student
#: its private data, and in a noisy mode they would bypass the per-answer noise. :func:`resolve` picks ``teacher``
#: wherever it is allowed: on the public stand-in a student transcribed from random weights lost several points of
#: its DP teacher and one started from the teacher's weights kept nearly all (benchmarks/RESULTS.md, "Design
#: history"; the held-out figures: "The record-level route").
STUDENT_INITS = ("random", "teacher")
#: The learned generator's ink sharpness per dataset (tanh(sharpness·(a − threshold)/spread)): softer edges
#: for clothing. Chosen on Fashion-MNIST's private split; 4 elsewhere.
LEARNED_SHARPNESS = {"fashion-mnist": 1.5}
#: What of the learned generator's defaults was chosen on private splits, and on which data (reports disclose it).
LEARNED_CHOSEN_ON_PRIVATE_SPLIT = ("lr_generator, augment, student_steps and replay_steps per noise level",
                                   "steps and query_pool",
                                   "label's top_k", "class_balance", "the bfloat16 budget",
                                   "the discrepancy weight in mode none",
                                   "the ink sharpness on Fashion-MNIST")
LEARNED_SELECTION_DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
#: The generic-shapes schedule the dashboard offers beside DPSD's generator (the prior's share falling from 90% to
#: 10% of the queries over the run): chosen on the private splits of mnist-5k and Fashion-MNIST, level with a flat
#: 50% on digits and ahead of it on clothing (benchmarks/RESULTS.md, "Design history"); reports disclose it.
GENERIC_SHAPES_SCHEDULE = {"generic_shapes": 0.9, "generic_shapes_end": 0.1}

#: Where in a run the generator is kept for synthetic data (shares of its iterations): the longer a generator
#: trains against the student, the more its images are ones the student already names as asked, and the less
#: they teach a fresh classifier, so a synthetic set mixes three earlier copies (RESULTS.md, "Design history").
#: Chosen on the private splits (disclosed with every synthetic set).
SYNTHESIS_SNAPSHOTS = (0.25, 0.5, 0.75)

#: The temperature of the student's class probabilities stored with synthetic images (``probabilities`` in
#: ``synthetic.npz``): a fresh classifier learns more from the student's softened probabilities than from its
#: argmax labels (RESULTS.md, "Design history"). Chosen on the private splits (disclosed with every synthetic set).
SYNTHESIS_TEMPERATURE = 2.0


@dataclass
class TranscribeConfig:
    """Everything that determines a run. ``TranscribeConfig().replace(epsilon=1)`` gives a tweaked copy."""

    # --- the data, and the privacy claim -----------------------------------------------------------------
    dataset: str = "mnist-5k"
    data_root: str | None = None  # torchvision sets: the folder with their files
    download: bool = False  # torchvision sets: fetch them if missing (needs network)
    noise_mode: str = "rr"  # none | label | rr | data: the mechanism between the teacher and everything else
    epsilon: float = 10.0  # per teacher answer (see the privacy report)
    delta: float = 1e-5  # for the Gaussian modes (label, data) and a DP teacher; rr is pure ε-DP
    # lessons and tests only: the privacy noise derived from `seed`; the report then says the ε does not hold
    # against anyone who knows the seed (it is saved with the run)
    reproducible_noise: bool = False
    # record-level privacy: transcribe from a teacher trained with DP-SGD at this ε per private training
    # record (δ = delta); the run inherits that guarantee as post-processing (None: the ordinary teacher)
    teacher_dp_epsilon: float | None = None
    teacher_epochs: int = TEACHER_EPOCHS
    # where the student starts: random weights, or (mode none with a DP-SGD teacher only) the DP teacher's own
    # weights, which share the student's architecture: post-processing of the record-level DP model, and the
    # transcription refines a copy instead of learning it from nothing (STUDENT_INITS; None: resolve decides)
    student_init: str | None = None

    # --- the budget --------------------------------------------------------------------------------------
    # iterations of the loop: each is student_steps fresh queries, replay, one generator step (None: the
    # generator's default, GENERATOR_DEFAULTS)
    steps: int | None = None
    # student steps on fresh query batches per iteration (each asks the teacher; None: the generator's default)
    student_steps: int | None = None
    batch_size: int = 256  # synthetic queries per student step
    # candidates per query; the student keeps the ones it is least sure about (1: no pick; None: the generator's)
    query_pool: int | None = None
    # extra student steps per iteration on earlier releases (no new queries; None: the generator's default)
    replay_steps: int | None = None
    replay_buffer: int = 32768  # how many earlier (query, release) pairs are kept for replay
    eval_every: int = 50  # iterations between held-out evaluations (and at the end)

    # --- the student ---------------------------------------------------------------------------------------
    lr_student: float = 4e-3  # peak of the one-cycle schedule
    warm_start_steps: int = 100  # strokes: student steps on the skeletons' own digits before any query (public)

    # --- the mechanism's options -----------------------------------------------------------------------------
    k_min: int = 2  # rr: smallest answer set (k = 1 would return the prior's own guess)
    # rr: what each teacher answer releases, its top class (top1: selective RR with the prior, the mode as the
    # papers define it) or its ordered top two classes (top2: RR over the K(K-1) pairs, no prior; an extension
    # measured beside it in benchmarks/RESULTS.md); the same ε per teacher answer either way
    rr_answer: str = "top1"
    top_k: int | None = None  # label: classes of the prior kept (None: the generator's default)
    clip_norm: float = 1.0  # data: C, the norm each query's gradient is normalised to
    prior_temperature: float = 4.0  # rr, label: the prior is softmax(student logits / T); T > 1 tempers it
    prior_smoothing: float = 0.1  # rr, label: the prior mixed with uniform, (1 − λ)·p + λ/K

    # --- the generator -----------------------------------------------------------------------------------------
    generator: str = "learned"  # learned (DPSD's own) | strokes (a public prior for handwritten digits, a lesson)
    nz: int = 64  # size of the noise z
    generator_batch: int = 64  # images per generator step
    lr_generator: float | None = None  # None: the generator's default (GENERATOR_DEFAULTS)
    generator_sharpness: float | None = None  # learned: ink edges, tanh(sharpness·…) (None: per dataset)
    # learned: share of every batch of queries drawn by the frozen generic-shapes prior instead (random ellipses
    # and pen strokes, no shape of any task: generators.GenericShapes), a public prior named on every report and
    # figure of the run; 0: off, DPSD's generator alone (the default)
    generic_shapes: float = 0.0
    # learned: the share at the end of the run, reached linearly from generic_shapes over its iterations (a
    # curriculum: the public prior draws more while the learned generator is young); None: generic_shapes throughout
    generic_shapes_end: float | None = None
    # mode none only: DFAD's teacher–student discrepancy, maximised by the generator (it reads the raw teacher,
    # which no private mode may: there it resolves to 0, whatever is set, and the saved config says so).
    # None: LEARNED_DISCREPANCY_WEIGHT for the learned generator in mode none, 0 otherwise
    discrepancy_weight: float | None = None
    diversity_weight: float = 1.0  # mode seeking: two images asked for the same class should differ
    anchor_weight: float = 10.0  # strokes: pull the stroke parameters toward the generator's random initial draw
    skeletons: float = 0.5  # strokes: share of images drawn as bent digit skeletons (the rest free strokes)
    augment: bool | None = None  # random shifts/rotations of the queries (no privacy cost); None: per generator
    # share of the requested classes drawn in inverse proportion to how often each class has been released
    # lately (the rest uniform): rare answers get asked for more. Counted from the releases only (post-
    # processing: no privacy cost); not in mode data, whose releases carry no labels. None: per generator
    class_balance: float | None = None
    freeze_generator: bool = False  # ablation: the generator keeps its random initialisation (no generator steps)

    # --- the machine ---------------------------------------------------------------------------------------------
    seed: int = 0  # every random choice of the run except the privacy noise (secret unless reproducible_noise)
    device: str = "auto"
    # the loop's arithmetic: float32, or bfloat16 autocast for the forward passes of the teacher's queries and the
    # student's and generator's steps (weights, losses, the mechanism and every evaluation stay float32).
    # auto: bfloat16 for the learned generator on a CPU with native bfloat16 units, float32 otherwise
    precision: str = "auto"

    @property
    def uses_generic_shapes(self) -> bool:
        """Whether the generic-shapes prior draws any of the queries (a share now, or one the schedule reaches)."""
        return bool(self.generic_shapes or self.generic_shapes_end)

    def replace(self, **changes) -> "TranscribeConfig":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise DpsdError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return TranscribeConfig(**{**asdict(self), **changes})

    def validate(self) -> "TranscribeConfig":
        if self.dataset not in DATASETS:
            raise DpsdError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.noise_mode not in NOISE_MODES:
            raise DpsdError(f"unknown noise mode {self.noise_mode!r}; choose one of {', '.join(NOISE_MODES)}")
        if self.generator not in GENERATOR_KINDS:
            raise DpsdError(f"unknown generator {self.generator!r}; choose one of {', '.join(GENERATOR_KINDS)}")
        if self.noise_mode != "none":
            check_epsilon(self.epsilon)
            check_delta(self.delta)
        if self.teacher_dp_epsilon is not None:
            check_epsilon(self.teacher_dp_epsilon)
            check_delta(self.delta)
        counts = [(n, 1, "positive") for n in ("steps", "query_pool", "student_steps", "batch_size",
                                               "generator_batch", "eval_every", "teacher_epochs")]
        counts += [(n, 0, "non-negative") for n in ("replay_steps", "replay_buffer", "warm_start_steps")]
        for name, least, kind in counts:
            value = getattr(self, name)
            if value is None and name in GENERATOR_DEFAULTS["learned"]:  # None: the generator's default
                continue
            if int(value) < least:
                raise DpsdError(f"{name} must be a {kind} integer, got {value!r}")
        if not 0 <= self.skeletons <= 1:
            raise DpsdError(f"skeletons is a share of the images, in [0, 1]; got {self.skeletons}")
        if not 0 <= self.generic_shapes < 1:  # also refuses NaN
            raise DpsdError(f"generic_shapes is the share of the queries the generic-shapes prior draws, in [0, 1); "
                            f"got {self.generic_shapes}")
        if self.generic_shapes_end is not None and not 0 <= self.generic_shapes_end < 1:
            raise DpsdError(f"generic_shapes_end is the generic-shapes prior's share of the queries at the end of "
                            f"the run, in [0, 1) (or None: generic_shapes throughout); got {self.generic_shapes_end}")
        if self.uses_generic_shapes and self.generator != "learned":
            raise DpsdError(f"generic_shapes shares the learned generator's queries; generator {self.generator!r} "
                            f"does not take it (use generator='learned', or generic_shapes=0)")
        if self.uses_generic_shapes and self.nz < 64:
            raise DpsdError(f"generic_shapes draws its shapes from 64 entries of z; nz must be at least 64, got "
                            f"{self.nz}")
        if self.precision not in PRECISIONS:
            raise DpsdError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.class_balance is not None and not 0 <= self.class_balance <= 1:
            raise DpsdError(f"class_balance is a share of the requested classes, in [0, 1]; got {self.class_balance}")
        for name in ("discrepancy_weight", "diversity_weight"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise DpsdError(f"{name} must be non-negative, got {value}")
        if self.rr_answer not in RR_ANSWERS:
            raise DpsdError(f"unknown rr answer {self.rr_answer!r}; choose one of {', '.join(RR_ANSWERS)}")
        if self.student_init is not None and self.student_init not in STUDENT_INITS:
            raise DpsdError(f"unknown student_init {self.student_init!r}; choose one of {', '.join(STUDENT_INITS)}")
        if self.student_init == "teacher" and not may_start_from_teacher(self):
            raise DpsdError("student_init=teacher needs a DP-SGD teacher (teacher_dp_epsilon) and mode none: an "
                            "ordinary teacher's weights would hand the student its private data, and in a noisy "
                            "mode they would bypass the per-answer noise")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def is_resolved(self) -> bool:
        """Whether :func:`resolve` has filled in everything a run needs (no ``None`` default, no ``auto``
        precision): what :func:`~dpsd_lite.phases.setup` and the generator's builder ask for."""
        return self.precision != "auto" and all(getattr(self, k) is not None for k in RESOLVED_SETTINGS)


#: What :func:`resolve` fills in: the settings whose default depends on the generator, the noise level or the CPU.
RESOLVED_SETTINGS = tuple(GENERATOR_DEFAULTS["learned"]) + ("discrepancy_weight", "generator_sharpness",
                                                            "precision")


def resolve(config: TranscribeConfig) -> TranscribeConfig:
    """The one place a config's open defaults are decided: a copy with every ``None`` filled in, for its generator,
    its noise level (``learned`` or ``learned-noisy``) and this CPU (``precision``). This is what a run uses and
    what its ``config.json`` saves; nothing downstream re-derives any of it.

    Filled in: the generator's budget and options (:data:`GENERATOR_DEFAULTS`: steps, student and replay steps,
    query pool, learning rate, augmentation, top_k, class balancing); the arithmetic (``precision`` auto:
    bfloat16 for the learned generator on a CPU with native bfloat16 units, which then takes
    :data:`LEARNED_BFLOAT16_STEPS` iterations); DFAD's discrepancy (mode none only, 0 in every private mode,
    whatever is set); what mode data cannot use (replay, class balancing: off); the learned generator's ink
    sharpness per dataset; where the student starts (``student_init``: the DP teacher's weights in mode none with
    a DP-SGD teacher, else random).
    """
    kind = config.generator
    if kind == "learned" and config.noise_mode == "none":
        kind = "learned-open"
    elif kind == "learned" and config.epsilon < LEARNED_CALM_EPSILON:
        kind = "learned-noisy"
    precision = config.precision
    if precision == "auto":
        precision = "bfloat16" if kind.startswith("learned") and _native_bfloat16(config.device) else "float32"
    fill = {k: v for k, v in GENERATOR_DEFAULTS[kind].items() if getattr(config, k) is None}
    if config.noise_mode != "none":  # it reads the raw teacher: never in a private mode, even when set
        if config.discrepancy_weight != 0.0:
            fill["discrepancy_weight"] = 0.0
    elif config.discrepancy_weight is None:
        fill["discrepancy_weight"] = LEARNED_DISCREPANCY_WEIGHT if kind == "learned-open" else 0.0
    if config.noise_mode in SPENT_AT_ONCE:  # releases are gradients of their moment: no replay, no labels
        fill.update({k: v for k, v in UNUSED_WHEN_SPENT_AT_ONCE.items() if getattr(config, k) != v})
    if precision != config.precision:
        fill["precision"] = precision
    if "steps" in fill and precision == "bfloat16" and kind.startswith("learned"):
        fill["steps"] = LEARNED_BFLOAT16_STEPS
    if config.generator_sharpness is None:
        fill["generator_sharpness"] = LEARNED_SHARPNESS.get(config.dataset, 4.0)
    if config.student_init is None:  # from the DP teacher wherever that is allowed (see STUDENT_INITS)
        fill["student_init"] = "teacher" if may_start_from_teacher(config) else "random"
    return config.replace(**fill) if fill else config


def may_start_from_teacher(config: TranscribeConfig) -> bool:
    """Whether ``student_init`` teacher is post-processing: a DP-SGD teacher (``teacher_dp_epsilon``) in mode none."""
    return config.teacher_dp_epsilon is not None and config.noise_mode == "none"


def require_resolved(config: TranscribeConfig, who: str) -> TranscribeConfig:
    """``config`` if :func:`resolve` has decided its defaults, else a one-line error naming the fix."""
    if not config.is_resolved():
        open_ = [k for k in RESOLVED_SETTINGS if getattr(config, k) is None] or ["precision"]
        raise DpsdError(f"{who} needs a resolved config ({', '.join(open_)} still open): pass "
                        f"dpsd_lite.config.resolve(config), which decides them once for the run")
    return config


def _native_bfloat16(device: str) -> bool:
    from .utils import native_bfloat16, resolve_device  # here, not at the top: config stays torch-free for the CLI

    return native_bfloat16(resolve_device(device))
