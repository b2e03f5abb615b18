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

#: Settings whose default depends on the generator (``None`` in a config means "the generator's default").
#: With good labels (ε ≥ ``LEARNED_CALM_EPSILON``, or mode none) the learned generator moves slowly (lr 3e-4)
#: and its queries are augmented; with noisy ones it moves at 1e-3 without augmentation, so new queries keep
#: coming while the student is still unsure. With its weaker prior, ``label`` keeps every class (top_k 10).
#: The learned generator sends every candidate to the teacher (query_pool 1): the renderer's pick of the least
#: sure half costs it a generator and a student pass over twice the queries, and the time that saves buys 200
#: iterations instead of 150 (rr ε = 1: +0.05 on mnist-5k, +0.07 on Fashion-MNIST, seeds 0–2). It asks for
#: the classes released least often more often (``class_balance`` 0.5): the teacher otherwise calls few of the
#: generated images 8s or 9s, or trousers (ε = 10 and none: +0.003 to +0.011 in the seed mean on both domains;
#: neutral at ε = 1). With good labels it also learns each release more often (``replay_steps`` 7 instead of 3:
#: post-processing, no new query): rr ε = 10, seeds 0–2, private splits, mnist-5k 0.968 → 0.978 and
#: Fashion-MNIST 0.931 → 0.949 (ε = 5: 0.965 → 0.975 and 0.922 → 0.935; none: 0.975 → 0.985 and 0.944 → 0.962),
#: better on every seed, for about 28% more time per run (32 → 41 s on 2 cores);
#: at ε = 1 more replay helped clothing and hurt digits (5 steps: +0.05 and −0.06), so noisy runs keep 3.
#: Chosen on the private splits of mnist-5k and Fashion-MNIST (disclosed in reports; the measurements are in
#: benchmarks/RESULTS.md, "Design history").
GENERATOR_DEFAULTS = {
    "strokes": {"lr_generator": 1e-3, "augment": False, "top_k": 2, "steps": 150, "query_pool": 2,
                "class_balance": 0.0, "replay_steps": 3},
    "learned": {"lr_generator": 3e-4, "augment": True, "top_k": 10, "steps": 200, "query_pool": 1,
                "class_balance": 0.5, "replay_steps": 7},
    "learned-noisy": {"lr_generator": 1e-3, "augment": False, "top_k": 10, "steps": 200, "query_pool": 1,
                      "class_balance": 0.5, "replay_steps": 3},
}
LEARNED_CALM_EPSILON = 5.0
#: Mode data's releases are noisy gradients, spent at once (``names.SPENT_AT_ONCE``): nothing to replay and no
#: labels to balance classes by. A run in such a mode resolves these to off, whatever is set, so its saved config
#: says what it did.
UNUSED_WHEN_SPENT_AT_ONCE = {"replay_steps": 0, "class_balance": 0.0}
#: In mode none, and only there (it reads the raw teacher), the learned generator's objective also seeks the
#: images where student and teacher disagree (DFAD's discrepancy, ``discrepancy_weight``): seeds 0–3, private
#: splits, mnist-5k 0.970 → 0.976 (better on 4 of 4 seeds), Fashion-MNIST 0.931 → 0.933 (3 of 4); weights 0.5
#: and 1 swung by ±2 points on clothing. The default is 0 for every other run, and ``resolved()`` sets any weight
#: to 0 in a private mode.
LEARNED_DISCREPANCY_WEIGHT = 0.1
#: The learned generator's iterations when the loop runs in bfloat16 (``precision``): they take a little less
#: time than its 200 float32 iterations on a CPU with native bfloat16 units (AMX / AVX-512 BF16), and reach as
#: far or further (seeds 0–2, private splits: rr ε = 1 +0.05 on mnist-5k and +0.04 on Fashion-MNIST).
LEARNED_BFLOAT16_STEPS = 340
PRECISIONS = ("auto", "float32", "bfloat16")
#: The learned generator's ink sharpness per dataset (tanh(sharpness·(a − threshold)/spread)): softer edges
#: for clothing. Chosen on Fashion-MNIST's private split; 4 elsewhere.
LEARNED_SHARPNESS = {"fashion-mnist": 1.5}
#: What of the learned generator's defaults was chosen on private splits, and on which data (reports disclose it).
LEARNED_CHOSEN_ON_PRIVATE_SPLIT = ("lr_generator, augment and replay_steps per noise level", "steps and query_pool",
                                   "label's top_k", "class_balance", "the bfloat16 budget",
                                   "the discrepancy weight in mode none",
                                   "the ink sharpness on Fashion-MNIST")
LEARNED_SELECTION_DATASETS = ("mnist-5k", "mnist", "fashion-mnist")

#: Where in a run the generator is kept for synthetic data (shares of its iterations). The longer a generator
#: trains against the student, the more its images are ones the student already names as asked, and the less
#: they teach a fresh classifier: images drawn in equal parts from the generator at a quarter, half and three
#: quarters of the run taught a fresh student more than the final generator's on every seed of both domains
#: (rr ε = 10, seeds 0–2, private splits: mnist-5k 0.606 → 0.750, Fashion-MNIST 0.534 → 0.606; benchmarks/
#: RESULTS.md, "Design history"). Chosen on the private splits (disclosed with every synthetic set).
SYNTHESIS_SNAPSHOTS = (0.25, 0.5, 0.75)

#: The temperature of the student's class probabilities stored with synthetic images (``probabilities`` in
#: ``synthetic.npz``). A fresh classifier that learns the student's probabilities softened at T = 2 learns more
#: than one that learns its argmax labels: rr ε = 10, seeds 0–2, 4,000 snapshot images, private splits,
#: mnist-5k 0.751 → 0.823 and Fashion-MNIST 0.640 → 0.708 (as a share of a real-data classifier), better on
#: every seed of both domains, and T = 2 beat T = 1 on every one (benchmarks/RESULTS.md, "Design history").
#: Chosen on the private splits (disclosed with every synthetic set).
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

    # --- the budget --------------------------------------------------------------------------------------
    # iterations of the loop: each is student_steps fresh queries, replay, one generator step (None: the
    # generator's default, GENERATOR_DEFAULTS)
    steps: int | None = None
    student_steps: int = 2  # student steps on fresh query batches per iteration (each asks the teacher)
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
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved(self) -> "TranscribeConfig":
        """A copy with every generator-dependent default (``None``) filled in: what a run really used."""
        kind = self.generator
        if kind == "learned" and self.noise_mode != "none" and self.epsilon < LEARNED_CALM_EPSILON:
            kind = "learned-noisy"
        precision = self.precision
        if precision == "auto":
            precision = "bfloat16" if kind.startswith("learned") and _native_bfloat16(self.device) else "float32"
        fill = {k: v for k, v in GENERATOR_DEFAULTS[kind].items() if getattr(self, k) is None}
        if self.noise_mode != "none":  # it reads the raw teacher: never in a private mode, even when set
            if self.discrepancy_weight != 0.0:
                fill["discrepancy_weight"] = 0.0
        elif self.discrepancy_weight is None:
            fill["discrepancy_weight"] = LEARNED_DISCREPANCY_WEIGHT if kind == "learned" else 0.0
        if self.noise_mode in SPENT_AT_ONCE:  # releases are gradients of their moment: no replay, no labels
            fill.update({k: v for k, v in UNUSED_WHEN_SPENT_AT_ONCE.items() if getattr(self, k) != v})
        if precision != self.precision:
            fill["precision"] = precision
        if "steps" in fill and precision == "bfloat16" and kind.startswith("learned"):
            fill["steps"] = LEARNED_BFLOAT16_STEPS
        if self.generator_sharpness is None:
            fill["generator_sharpness"] = LEARNED_SHARPNESS.get(self.dataset, 4.0)
        return self.replace(**fill) if fill else self


def _native_bfloat16(device: str) -> bool:
    from .utils import native_bfloat16, resolve_device  # torch: only once a run is being set up

    return native_bfloat16(resolve_device(device))
