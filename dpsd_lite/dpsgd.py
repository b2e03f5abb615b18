"""The DP-SGD baseline: the student's architecture trained directly on the private split with Opacus.

This is the classic answer to "compared with what?": instead of transcribing
a teacher, train the :class:`~dpsd_lite.models.Student` network on the
teacher's private training records with DP-SGD (per-example gradient clipping
to norm C, Gaussian noise of std σ·C on the summed clipped gradients, Poisson
subsampling with rate q), using Opacus's ``PrivacyEngine`` and
``make_private_with_epsilon`` to pick σ for a target (ε, δ).

Unit of privacy: **each private training record** (add/remove one record, the
neighbouring relation Opacus's accountants use). Unlike the per-query ε of the
``label``, ``rr`` and ``data`` transcription modes, this ε bounds what any one
training record can do to the released model, so a membership-inference
audit of the DP-SGD model is bounded by it (see :mod:`dpsd_lite.audit`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .accounting import check_delta, check_epsilon
from .data import DataSplits, augment_images
from .errors import DpsdError
from .models import Student
from .noise import NoiseSource
from .utils import accuracy, resolve_device, seed_everything

__all__ = ["DPSGDResult", "train_dpsgd", "dpsgd_noise", "UNIT_RECORD", "format_dpsgd_report",
           "DP_TEACHER", "split_recipe", "describe_pretraining", "ParameterAverage", "augment_copies",
           "average_copies"]

UNIT_RECORD = (
    "each private training record (add/remove one record of the private split): the epsilon bounds "
    "what any single training record can change in the released model"
)


@dataclass
class DPSGDResult:
    """A model trained with DP-SGD and everything needed to state its guarantee."""

    model: Student
    heldout_accuracy: float
    private_accuracy: float
    target_epsilon: float
    epsilon: float  # spent, from the accountant; ≤ target_epsilon
    delta: float
    noise_multiplier: float
    sample_rate: float
    epochs: int
    steps: int
    batch_size: int  # expected batch size (Poisson sampling: q · N)
    max_grad_norm: float
    accountant: str
    seconds: float
    history: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)  # noise source (and a warning if reproducible), initialisation

    def privacy_report(self) -> dict:
        """JSON-ready report in the same spirit as :func:`dpsd_lite.report.privacy_report`."""
        return {
            "noise_mode": "dpsgd",
            "mechanism": "DP-SGD (Opacus): per-example gradients clipped to norm C, Gaussian noise sigma*C, "
                         "Poisson-subsampled batches",
            "private": True,
            "epsilon": self.epsilon,
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "epochs": self.epochs,
            "steps": self.steps,
            "expected_batch_size": self.batch_size,
            "clip_norm": self.max_grad_norm,
            "accountant": _ACCOUNTANT_NAMES[self.accountant],
            "composition": f"{self.steps} subsampled Gaussian steps composed by the accountant",
            "neighbouring": "add/remove one private training record",
            "unit": "record",
            "unit_of_privacy": UNIT_RECORD,
            **self.notes,
        }

    def summary(self) -> dict:
        return {"noise_mode": "dpsgd", "epsilon": self.epsilon, "delta": self.delta,
                "unit": "record", "heldout_accuracy": self.heldout_accuracy,
                "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "epochs": self.epochs, "seconds": self.seconds}


_ACCOUNTANT_NAMES = {
    "rdp": "Opacus RDP accountant (Renyi DP of the subsampled Gaussian, converted to (eps, delta) "
           "with Opacus's current conversion, Balle et al. 2020)",
    "prv": "Opacus PRV accountant (numerical privacy-loss random variables)",
}


def dpsgd_noise(seed: int, reproducible_noise: bool = False):
    """The noise source of DP-SGD and what the report says about it: ``(NoiseSource, secure_mode, description)``.

    Both the Gaussian noise and the Poisson sampling of the batches are part
    of the mechanism (the accountant's subsampling amplification assumes
    nobody knows which records a batch holds), so both draw from it. Opacus's
    ``secure_mode`` (a cryptographic generator and noise hardened against
    floating-point attacks) is used when its dependency ``torchcsprng``
    imports; otherwise a torch generator seeded from the operating system's
    entropy. ``reproducible_noise`` (lessons, tests) derives both from ``seed``.
    """
    if reproducible_noise:
        source = NoiseSource.from_seed(seed)
        return source, False, source.describe()
    try:
        import torchcsprng  # noqa: F401

        return None, True, {"noise_source": "secret: Opacus secure_mode (torchcsprng, a cryptographic generator "
                                            "reading /dev/urandom), noise hardened against floating-point attacks",
                            "reproducible_noise": False}
    except ImportError:
        source = NoiseSource.secret()
        desc = source.describe()
        desc["noise_source"] = ("secret: noise and Poisson sampling from torch generators seeded with 64 bits of the "
                                "operating system's entropy, stored nowhere; Opacus secure_mode (torchcsprng) is "
                                "not installed, so the noise is not hardened against floating-point attacks")
        return source, False, desc


def train_dpsgd(data: DataSplits, epsilon: float, delta: float = 1e-5, epochs: int = 30,
                batch_size: int = 256, lr: float = 4e-3, max_grad_norm: float = 0.5,
                accountant: str = "rdp", seed: int = 0, device="auto", progress=None,
                reproducible_noise: bool = False, init=None, init_description: str | None = None,
                augmult: int = 0, ema: float | None = None, train_last: int | None = None,
                **student_kwargs) -> DPSGDResult:
    """Train a :class:`Student` on ``data.x_private`` with DP-SGD at a target record-level (ε, δ).

    ``batch_size`` is the *expected* batch size: Opacus samples each record
    independently with probability ``q = batch_size / N`` (Poisson sampling,
    which the accountant assumes). σ is chosen by Opacus so that ``epochs``
    epochs of such steps spend at most ``epsilon``; the returned ``epsilon``
    is what the accountant reports afterwards. Adam on the noisy clipped
    gradients (post-processing, costs no privacy). Held-out data is only
    used for the final accuracy. The defaults were chosen on public data,
    not on any private or held-out image: ``benchmarks/record_level_settings.py
    dpsgd`` varies one setting at a time on 4,000 + 1,000 public digit drawings
    (:func:`dpsd_lite.public_data.drawn_digits`) and keeps the best mean
    held-out accuracy *on the drawings* over ε = 1 and 10 (the table is in
    benchmarks/RESULTS.md). ``init``: a Student (or its state_dict) to start
    from instead of random weights; it must not depend on the private data
    (e.g. :func:`dpsd_lite.public_data.public_pretrained_student`), and
    ``init_description`` says in the report what it is. ``student_kwargs``
    (``width``, ``hidden``) size the network. ``seed`` sets the model's initialisation
    and the augmentations; the noise and the batches' Poisson sampling are secret (see
    :func:`dpsgd_noise`) unless ``reproducible_noise``.

    Three additions from the DP-SGD literature, off by default here (plain
    DP-SGD is the baseline) and used by the DP teacher's recipe
    :data:`DP_TEACHER`:

    * ``augmult`` = K ≥ 1: augmentation multiplicity (De et al. 2022). Each
      sampled record is shifted and rotated K times; its per-example gradient
      is the *mean* of its K copies' gradients, clipped once to C. One record
      still moves the noisy sum by at most C, so σ, q, the steps and the
      accountant's ε are exactly those of plain DP-SGD.
    * ``ema``: the released weights are an exponential moving average of the
      noisy iterates with this decay (:class:`ParameterAverage`): computed from
      the iterates alone, post-processing, no privacy cost.
    * ``train_last``: only the last ``train_last`` layers with weights learn
      (the others stay as ``init`` gave them); fewer noisy coordinates.
    """
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    epsilon = check_epsilon(epsilon)
    delta = check_delta(delta)
    if accountant not in _ACCOUNTANT_NAMES:
        raise DpsdError(f"unknown accountant {accountant!r}; use 'rdp' or 'prv'")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise DpsdError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(augmult, bool) or int(augmult) != augmult or augmult < 0:
        raise DpsdError(f"augmult (augmented copies per record) must be a whole number >= 0, got {augmult!r}")
    augmult = int(augmult)
    if ema is not None and not (isinstance(ema, (int, float)) and 0.0 <= ema < 1.0):
        raise DpsdError(f"ema (the decay of the weights' moving average) must be in [0, 1) or None, got {ema!r}")
    n = len(data.y_private)
    if delta >= 1.0 / n:
        warnings.warn(f"delta={delta:g} is not below 1/N = {1 / n:.2g}: a mechanism that publishes one "
                      f"record outright would meet it")
    device = resolve_device(device)
    aug_gen = seed_everything(seed)  # the augmentations' draws: the run's seed (they are not the DP noise)
    model = Student(data.image_shape, data.num_classes, **student_kwargs).to(device)
    if init is not None:  # a public initialisation: post-processing of public data costs nothing
        model.load_state_dict(init.state_dict() if hasattr(init, "state_dict") else init)
    if train_last is not None:  # only the last layers learn from the private data; the others stay as given
        layers = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
        if isinstance(train_last, bool) or int(train_last) != train_last or not 1 <= train_last <= len(layers):
            raise DpsdError(f"train_last must be a whole number from 1 to {len(layers)} (the layers with weights), "
                            f"got {train_last!r}")
        for layer in layers[:len(layers) - int(train_last)]:
            layer.requires_grad_(False)
    average = ParameterAverage(model, ema) if ema is not None else None
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    source, secure_mode, noise_desc = dpsgd_noise(seed, reproducible_noise)
    # Opacus's Poisson sampler draws from this loader's generator: the privacy noise's, never the run's seed
    loader = DataLoader(TensorDataset(data.x_private, data.y_private), batch_size=int(batch_size),
                        shuffle=True, generator=source.generator("cpu") if source is not None else None)
    engine = PrivacyEngine(accountant=accountant, secure_mode=secure_mode)
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off; the privacy report says which noise source was used instead
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        warnings.filterwarnings("ignore", message=".*full_backward_hook.*")
        model, optimizer, loader = engine.make_private_with_epsilon(
            module=model, optimizer=optimizer, data_loader=loader, target_epsilon=epsilon,
            target_delta=delta, epochs=int(epochs), max_grad_norm=float(max_grad_norm),
            noise_generator=source.generator(device) if source is not None else None,
        )
    t0 = time.perf_counter()
    history = []
    steps = 0
    model.train()
    with warnings.catch_warnings():
        # Opacus's hooks fire on the first layer's input, which needs no gradient: harmless
        warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
        steps = _train_epochs(model, optimizer, loader, engine, delta, int(epochs), device, history, progress,
                              augmult=augmult, gen=aug_gen, average=average)
    spent = float(engine.get_epsilon(delta))
    student = model._module if hasattr(model, "_module") else model
    student = _plain_copy(student, data, **student_kwargs)
    if average is not None:  # the released weights: the average of the noisy iterates (post-processing)
        student.load_state_dict({k: v.to(next(student.parameters()).device) for k, v in average.state.items()})
    return DPSGDResult(
        model=student,
        heldout_accuracy=accuracy(student, data.x_heldout, data.y_heldout),
        private_accuracy=accuracy(student, data.x_private, data.y_private),
        target_epsilon=epsilon, epsilon=spent, delta=delta,
        noise_multiplier=float(optimizer.noise_multiplier),
        sample_rate=float(getattr(loader, "sample_rate", 1.0 / len(loader))),
        epochs=int(epochs), steps=steps, batch_size=int(batch_size), max_grad_norm=float(max_grad_norm),
        accountant=accountant, seconds=time.perf_counter() - t0, history=history,
        notes={**noise_desc, "initialisation": init_description or ("random" if init is None else
                                                                    "given by the caller (must be public)"),
               **_recipe_notes(augmult, ema, train_last)},
    )


def _recipe_notes(augmult: int, ema: float | None, train_last: int | None) -> dict:
    """What the privacy report says about the recipe's parts that do not change the accounting."""
    notes = {"augmult": augmult,
             "augmentation": (f"{augmult} randomly shifted and rotated copies of each record per step; the record's "
                              f"per-example gradient is the mean over its copies, clipped once to C (sensitivity "
                              f"unchanged)") if augmult else "none",
             "weights": (f"exponential moving average of the noisy iterates (decay {ema:g}): post-processing, no "
                         f"privacy cost") if ema is not None else "the last noisy iterate"}
    if train_last is not None:
        notes["trained_layers"] = f"the last {train_last} layer(s) with weights; the others kept as initialised"
    return notes


MAX_PHYSICAL_BATCH = 32  # per-sample gradients of at most this many records in memory at once


def augment_copies(x: torch.Tensor, copies: int, gen: torch.Generator | None) -> torch.Tensor:
    """``copies`` randomly augmented versions of every record of ``x``, record by record (B·K×C×H×W).

    Rows ``i·K … i·K + K − 1`` are the copies of record ``i``. The augmentation is the teacher's
    (:func:`dpsd_lite.data.augment_images`: shifts up to 1/8 of the image, ±10° rotations), drawn from
    ``gen``: a fixed, data-independent random transformation of one record, so a record's gradient still
    depends on that record only.
    """
    x = x.repeat_interleave(int(copies), dim=0)
    return augment_images(x, gen) if len(x) else x  # an empty Poisson batch stays empty


def average_copies(model, records: int, copies: int) -> None:
    """Augmentation multiplicity: replace each parameter's per-sample gradients (B·K rows) by their mean over
    the K copies of each record (B rows), *before* Opacus clips them.

    So the clipped quantity is one vector per private record, the mean of the gradients of its K augmented
    copies (De et al. 2022): clipping bounds it by C exactly as for one copy, the sensitivity of the noisy
    sum is C, and the accountant's (σ, q, steps) analysis is unchanged.
    """
    for p in model.parameters():
        g = getattr(p, "grad_sample", None)
        if g is None:
            continue
        if isinstance(g, list):  # Opacus accumulates a list when backward ran twice without zero_grad
            raise DpsdError("per-sample gradients accumulated over several backward passes; zero them first")
        if g.shape[0] != records * copies:
            raise DpsdError(f"expected {records * copies} per-sample gradients ({records} records x {copies} "
                            f"copies), got {g.shape[0]}")
        p.grad_sample = g.reshape(records, copies, *g.shape[1:]).mean(dim=1)


class ParameterAverage:
    """An exponential moving average of the DP-SGD iterates (post-processing: it costs no privacy).

    After step t the average moves toward the new weights by ``1 − min(decay, (1 + t) / (10 + t))``
    (the usual warm-up, so early iterates do not dominate a short run). Buffers are copied as they are.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        decay = float(decay)
        if not 0.0 <= decay < 1.0:
            raise DpsdError(f"ema (the averaging decay) must be in [0, 1), got {decay!r}")
        self.decay, self.updates = decay, 0
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)


def _train_epochs(model, optimizer, loader, engine, delta, epochs, device, history, progress,
                  augmult: int = 0, gen: torch.Generator | None = None, average: ParameterAverage | None = None
                  ) -> int:
    """Train; returns the number of (logical, noisy) optimizer steps the accountant saw.

    Each Poisson-sampled (logical) batch is processed in physical chunks of at most MAX_PHYSICAL_BATCH
    records; Opacus's ``signal_skip_step`` makes every chunk but the last only clip and accumulate, so the
    noise is added and the step taken once per logical batch and the privacy analysis is unchanged, while
    the memory of per-sample gradients stays bounded (measured on mnist-5k at batch 256: +1.27 GB of peak
    RSS with whole batches, +0.45 GB with chunks of 32; same ε, accuracy and time). With ``augmult`` = K ≥ 1
    every record of a chunk is augmented K times and its per-sample gradient is the mean over its copies
    (:func:`average_copies`), clipped once. ``average``: updated after every noisy step.
    """
    copies = max(int(augmult), 1)
    for epoch in range(epochs):
        total, count = 0.0, 0
        for x, y in loader:
            chunks = list(zip(x.split(MAX_PHYSICAL_BATCH), y.split(MAX_PHYSICAL_BATCH))) or [(x, y)]
            for i, (xc, yc) in enumerate(chunks):
                xc, yc = xc.to(device), yc.to(device)
                if augmult:
                    xc, yk = augment_copies(xc, copies, gen), yc.repeat_interleave(copies)
                else:
                    yk = yc
                loss = F.cross_entropy(model(xc), yk)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if augmult:
                    average_copies(model, len(yc), copies)
                optimizer.signal_skip_step(do_skip=i < len(chunks) - 1)
                optimizer.step()
                if len(yc):  # an empty Poisson batch still takes its noisy step, but has no loss
                    total += loss.item() * len(yc)
                    count += len(yc)
            if average is not None:
                average.update(model._module if hasattr(model, "_module") else model)
        history.append({"epoch": epoch + 1, "loss": total / max(count, 1),
                        "epsilon": float(engine.get_epsilon(delta))})
        if progress is not None:
            progress(epoch + 1, epochs, history[-1])
    return int(sum(h[2] for h in engine.accountant.history))


def _plain_copy(module, data, **student_kwargs) -> Student:
    """A hook-free Student with the trained weights (Opacus leaves grad-sample hooks on the original)."""
    plain = Student(data.image_shape, data.num_classes, **student_kwargs)
    plain.load_state_dict({k: v.detach().cpu() for k, v in module.state_dict().items()})
    return plain.to(next(module.parameters()).device).eval()


def format_dpsgd_report(result: DPSGDResult) -> str:
    """Human-readable lines: ε with its δ and unit, accountant, σ, q, epochs."""
    r = result.privacy_report()
    warning = [f"WARNING: {r['warning']}"] if r.get("warning") else []
    return "\n".join(warning + [
        f"DP-SGD baseline (Student architecture trained on the private split): "
        f"epsilon = {r['epsilon']:.3g} (target {r['target_epsilon']:g}), delta = {r['delta']:g}, per private training record",
        f"noise multiplier sigma = {r['noise_multiplier']:.4f}, clip norm C = {r['clip_norm']:g}, "
        f"sample rate q = {r['sample_rate']:.4g}, {r['epochs']} epochs = {r['steps']} steps",
        f"accountant: {r['accountant']}",
        f"augmentation: {r.get('augmentation', 'none')}; weights: {r.get('weights', 'the last noisy iterate')}",
        f"noise: {r.get('noise_source', 'not recorded')}",
        f"unit of privacy: {r['unit_of_privacy']}",
        f"held-out accuracy: {result.heldout_accuracy:.4f}",
    ])


# ---------------------------------------------------------------------------- a DP teacher
#: The DP teacher's recipe, chosen on public data only (``benchmarks/record_level_settings.py dp-teacher``:
#: initialised on drawn digits, DP-SGD on scikit-learn's public handwriting in MNIST's format, scored on its
#: held-out part; the table is in benchmarks/RESULTS.md). The public initialisation, where the domain has
#: drawings (digits): ``pretrain_steps`` steps on them, each drawing also randomly shifted and rotated with
#: ``pretrain_augment`` (a longer, more varied public start was what helped most at eps = 1 on the stand-in;
#: much longer overfits the drawings). The rest are :func:`train_dpsgd`'s arguments: augmentation
#: multiplicity (``augmult`` copies per record, their mean gradient clipped once) and an exponential moving
#: average of the weights (``ema``, post-processing) on top of plain DP-SGD. ``accountant``: Opacus's PRV
#: accountant, which bounds the same mechanism more tightly than RDP (its upper estimate of ε is what is
#: reported), so the same (ε, δ) per record buys less noise: σ is chosen, not settled by a run on data. Every
#: entry is part of the cache key, so a teacher trained with another recipe is never reused.
DP_TEACHER = {"pretrain_steps": 3000, "pretrain_augment": True, "epochs": 30, "batch_size": 256, "lr": 4e-3,
              "max_grad_norm": 0.5, "augmult": 0, "ema": 0.95, "accountant": "prv"}


def split_recipe(recipe: dict | None = None) -> tuple[dict, dict]:
    """A DP teacher recipe (default: :data:`DP_TEACHER`, read now) as (the public initialisation's arguments,
    ``{"steps": ..., "augment": ...}`` for :func:`dpsd_lite.public_data.public_pretrained_student`; the rest:
    :func:`train_dpsgd`'s arguments). An absent ``pretrain_augment`` means no augmentation."""
    rest = dict(DP_TEACHER if recipe is None else recipe)
    pretrain = {"steps": rest.pop("pretrain_steps"), "augment": bool(rest.pop("pretrain_augment", False))}
    return pretrain, rest


def describe_pretraining(pretrain: dict) -> str:
    """What a report says about a public initialisation of :func:`split_recipe`'s first part."""
    shaken = " (each randomly shifted and rotated)" if pretrain.get("augment") else ""
    return (f"public: {pretrain['steps']} steps on freshly drawn digit skeletons{shaken} (dpsd_lite.public_data), "
            f"no private data")
