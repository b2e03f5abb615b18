"""Synthetic data from a finished run, and what it is worth downstream.

A run's generator is itself a product: it can release a synthetic data set.

* :func:`sample_synthetic` draws ``n`` images from a run's generator (by default
  in equal parts from the generator at a quarter, half and three quarters of
  the run), asking for every class equally often, and labels them with the
  run's **student**: its argmax label and its class probabilities (softened
  at ``config.SYNTHESIS_TEMPERATURE``), which teach a fresh classifier more.
  The teacher is not queried again: in the private modes the student and the
  generator are post-processing of the mechanism's releases, so the synthetic
  set costs no privacy beyond the run's ε (with the run's unit of privacy).
* :func:`save_synthetic` writes a directory: ``synthetic.npz`` (a compressed
  NumPy archive: ``images`` N×C×H×W float32 in [-1, 1], ``labels`` and
  ``classes`` int64, ``probabilities`` N×K float32, ``class_names``), ``contact_sheet.png`` and
  ``privacy.json`` (the run's privacy report, plus where the labels come
  from). :func:`load_synthetic` reads it back exactly.
* :func:`train_classifier` / :func:`downstream_comparison` train a fresh
  :class:`~dpsd_lite.models.Student` on a synthetic set only (its probabilities
  when it has them, else its labels) and report its
  accuracy on the real held-out split, beside one trained on the real
  private split (the non-private reference).

The re-identification filter lives in :mod:`dpsd_lite.reid_filter`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import SYNTHESIS_TEMPERATURE
from .errors import DpsdError, RunDirectoryError
from .models import Student, Teacher, fit_classifier, minibatches
from .names import run_generator_label
from .plots import image_grid
from .reid_filter import closest_pairs_figure
from .runs import _read_json, _write_json, atomic_directory
from .utils import accuracy, resolve_device, seed_everything

ARCHIVE = "synthetic.npz"
CONTACT_SHEET = "contact_sheet.png"
PRIVACY_JSON = "privacy.json"
AUDIT_DIR = "filter_audit"  # closest pairs with private images: for the data owner, never for release

LABEL_NOTE = (
    "Labels are the run's student's predictions on the generator's images: `labels` its argmax, `probabilities` "
    "its softmax at the temperature in synthetic.label_temperature. No teacher was queried "
    "to make this set: in the private modes the student and the generator are post-processing of the "
    "mechanism's releases, so the set carries the run's epsilon, with the run's unit of privacy, and no more."
)
SNAPSHOTS_CHOSEN_NOTE = (
    "Where in the run the generator's snapshots are taken (a quarter, half and three quarters of its iterations) "
    "was chosen by comparing synthetic sets on the private splits of mnist-5k and Fashion-MNIST; that choice is "
    "a release no epsilon covers. `dpsd-lite synthesize --source final` draws from the final generator instead."
)
TEMPERATURE_CHOSEN_NOTE = (
    "The temperature of the stored probabilities was chosen by comparing fresh classifiers trained on them, on the "
    "private splits of mnist-5k and Fashion-MNIST; that choice is a release no epsilon covers."
)
NOT_PRIVATE_NOTE = (
    "The run used noise mode 'none': its generator and student saw the teacher's raw outputs, so this "
    "synthetic set carries no privacy guarantee."
)


def _check_label_kind(labels) -> None:
    if labels not in ("soft", "hard"):
        raise DpsdError(f"unknown kind of synthetic labels {labels!r}; choose soft or hard")


@dataclass
class SyntheticSet:
    """N synthetic images with the student's labels and the classes the generator was asked for."""

    images: torch.Tensor  # N×C×H×W float32 in [-1, 1]
    labels: torch.Tensor  # N int64: the student's label (what a downstream user trains on)
    classes: torch.Tensor  # N int64: the class requested from the generator G(z, c)
    class_names: list
    privacy: dict = field(default_factory=dict)  # the run's privacy report
    meta: dict = field(default_factory=dict)
    #: N×K float32: the student's softmax at ``meta["label_temperature"]`` (None in archives written before
    #: probabilities were stored); what :func:`downstream_comparison` trains on when present
    probabilities: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep) -> "SyntheticSet":
        """The samples selected by ``keep`` (bool mask, indices or a slice); privacy and meta are shared."""
        keep = keep if isinstance(keep, slice) else torch.as_tensor(keep)
        probabilities = None if self.probabilities is None else self.probabilities[keep]
        return SyntheticSet(self.images[keep], self.labels[keep], self.classes[keep], list(self.class_names),
                            self.privacy, dict(self.meta), probabilities)

    def targets(self, labels: str = "soft") -> torch.Tensor:
        """What a classifier learns from: ``soft`` the probabilities (the labels if the set has none), ``hard``
        the labels."""
        _check_label_kind(labels)
        return self.probabilities if labels == "soft" and self.probabilities is not None else self.labels

    def label_counts(self) -> list:
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()

    @property
    def agreement(self) -> float:
        """Fraction of samples whose student label is the class requested from the generator."""
        return float((self.labels == self.classes).float().mean()) if len(self) else math.nan


#: Where ``sample_synthetic`` draws its images from: the generator part-way through the run (the default; a
#: run without snapshots falls back to its final generator) or the final generator.
SOURCES = ("snapshots", "final")


def source_generators(run, source: str = "snapshots", device="cpu") -> list:
    """[(iteration or None for the final one, generator)] that ``source`` names for ``run``.

    ``snapshots``: copies of the run's generator at the iterations it kept (``config.SYNTHESIS_SNAPSHOTS``),
    or the final generator if the run has none (saved before they were kept, or too short); ``final``: the
    generator as the run ended.
    """
    import copy

    if source not in SOURCES:
        raise DpsdError(f"unknown synthetic-data source {source!r}; choose one of {', '.join(SOURCES)}")
    snapshots = list(getattr(run, "generator_snapshots", None) or [])
    if source == "final" or not snapshots:
        return [(None, run.generator.to(device))]
    out = []
    for step, state in snapshots:
        g = copy.deepcopy(run.generator)
        g.load_state_dict(state)
        out.append((int(step), g.to(device)))
    return out


def sample_synthetic(run, n: int, seed: int = 0, device="cpu", batch_size: int = 1000,
                     class_names=None, source: str = "snapshots", temperature: float | None = None) -> SyntheticSet:
    """Draw ``n`` images from the run's generator, classes balanced, labelled by ``run.student``.

    ``run`` is a :class:`~dpsd_lite.transcribe.TranscriptionResult` or a loaded
    :class:`~dpsd_lite.runs.LoadedRun` (``.generator``, ``.student``, ``.privacy``, ``.config``).
    ``source="snapshots"`` (the default) draws equal parts from the generator as it was at a quarter, half and
    three quarters of the run (:func:`source_generators`): those images teach a fresh classifier more than the
    final generator's (``config.SYNTHESIS_SNAPSHOTS``); ``source="final"`` draws from the final generator.
    Each image gets the student's argmax label and its softmax at ``temperature`` (default
    ``config.SYNTHESIS_TEMPERATURE``). Only generators and the final student are used; the teacher is never
    touched.
    """
    n = int(n)
    if n < 1:
        raise DpsdError(f"the number of synthetic images must be a positive integer, got {n}")
    temperature = SYNTHESIS_TEMPERATURE if temperature is None else float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise DpsdError(f"the label temperature must be a positive number, got {temperature}")
    device = resolve_device(device)
    generators = source_generators(run, source, device)
    student = run.student.to(device)
    K = generators[0][1].num_classes
    if class_names is None:  # a TranscriptionResult has .data, a LoadedRun .class_names
        data = getattr(run, "data", None)
        class_names = list(data.class_names) if data is not None else getattr(run, "class_names", None)
        class_names = class_names or [str(k) for k in range(K)]
    gen = torch.Generator().manual_seed(int(seed))
    # every class equally often (up to n mod K), in random order; consecutive parts to each generator
    classes = (torch.arange(n) % K)[torch.randperm(n, generator=gen)]
    bounds = [round(i * n / len(generators)) for i in range(len(generators) + 1)]
    was_training = [g.training for _, g in generators], student.training
    student.eval()
    images, labels, probabilities = [], [], []
    try:
        # Generator.sample draws every random choice from `gen`
        with torch.no_grad():
            for (_, generator), lo, hi in zip(generators, bounds[:-1], bounds[1:]):
                generator.eval()  # BatchNorm running statistics
                for i in range(lo, hi, batch_size):
                    c = classes[i : min(i + batch_size, hi)].to(device)
                    x, _ = generator.sample(len(c), generator=gen, device=device, classes=c)
                    logits = student(x).float()
                    images.append(x.float().cpu())
                    labels.append(logits.argmax(1).cpu())
                    probabilities.append((logits / temperature).softmax(1).cpu())
    finally:
        for (_, generator), training in zip(generators, was_training[0]):
            generator.train(training)
        student.train(was_training[1])
    privacy = dict(getattr(run, "privacy", None) or {})
    steps = [step for step, _ in generators]
    meta = {
        "n_sampled": n,
        "seed": int(seed),
        "dataset": run.config.dataset,
        "noise_mode": run.config.noise_mode,
        "epsilon": privacy.get("epsilon", run.config.epsilon),
        "label_source": "student",
        "label_temperature": temperature,
        "requested_classes": "balanced",
        # which generator drew the images: the iterations of the snapshots, in equal parts, or the final one
        "generator": "final" if steps == [None] else f"snapshots after iterations {steps} of {run.config.steps}",
        "snapshot_steps": [] if steps == [None] else steps,
        # what draws the images, by name: DPSD's learned generator, with any public prior beside it
        "drawn_by": run_generator_label(run.config) if getattr(run, "config", None) is not None else "unknown",
    }
    return SyntheticSet(torch.cat(images), torch.cat(labels).long(), classes.long(), list(class_names),
                        privacy, meta, torch.cat(probabilities))


# --------------------------------------------------------------------------- files


def privacy_document(synth: SyntheticSet, filter_summary: dict | None = None) -> dict:
    """What ``privacy.json`` says: the run's report, where labels come from, and any filter applied."""
    private = bool(synth.privacy.get("private", True))
    doc = {
        "run_privacy": synth.privacy,
        "labels": LABEL_NOTE if private else NOT_PRIVATE_NOTE,
        "synthetic": synth.meta,
    }
    # archives written before "snapshot_steps" was recorded say it only in the "generator" text
    snapshots = synth.meta.get("snapshot_steps", str(synth.meta.get("generator", "final")).startswith("snapshots"))
    chosen = [SNAPSHOTS_CHOSEN_NOTE] if snapshots else []
    if synth.probabilities is not None:
        chosen.append(TEMPERATURE_CHOSEN_NOTE)
    if chosen:
        doc["chosen_on_private_split"] = " ".join(chosen)
    if filter_summary is not None:
        doc["reid_filter"] = filter_summary
    return doc


def save_synthetic(synth: SyntheticSet, out_dir: str, force: bool = False, filter_result=None,
                   x_private: torch.Tensor | None = None, contact_sheet_images: int = 100) -> str:
    """Write ``synthetic.npz``, ``contact_sheet.png`` and ``privacy.json`` into ``out_dir`` atomically.

    With ``filter_result`` (a :class:`~dpsd_lite.reid_filter.ReidFilterResult`
    computed on ``synth``) only the kept samples are written, ``privacy.json``
    records the filter (and that it is not DP), and the filter's audit (its
    report and, given ``x_private``, the closest pairs figure, which shows
    private images) goes into ``filter_audit/``: for the data owner, not for
    release. Returns the absolute path of ``out_dir``.
    """
    release = synth
    summary = None
    if filter_result is not None:
        if len(filter_result.keep) != len(synth):
            raise DpsdError("the filter result does not belong to this synthetic set (different sizes)")
        release = synth.subset(filter_result.keep)
        summary = filter_result.summary()
    if len(release) == 0:
        raise DpsdError("no synthetic image is left to write (the filter dropped all of them)")
    with atomic_directory(out_dir, force=force) as tmp:
        np.savez_compressed(
            os.path.join(tmp, ARCHIVE),
            images=release.images.numpy().astype(np.float32),
            labels=release.labels.numpy().astype(np.int64),
            classes=release.classes.numpy().astype(np.int64),
            class_names=np.array(release.class_names, dtype=str),
            **({} if release.probabilities is None else
               {"probabilities": release.probabilities.numpy().astype(np.float32)}),
        )
        fig = contact_sheet(release, max_images=contact_sheet_images)
        fig.savefig(os.path.join(tmp, CONTACT_SHEET), dpi=100)
        _write_json(os.path.join(tmp, PRIVACY_JSON), privacy_document(release, summary))
        if filter_result is not None:
            audit = os.path.join(tmp, AUDIT_DIR)
            os.makedirs(audit)
            _write_json(os.path.join(audit, "reid_filter.json"), filter_result.audit())
            if x_private is not None:
                closest_pairs_figure(filter_result, synth.images, x_private, labels=synth.labels,
                                     class_names=synth.class_names).savefig(
                    os.path.join(audit, "closest_pairs.png"), dpi=100)
    return os.path.abspath(out_dir)


def load_synthetic(path: str) -> SyntheticSet:
    """Read a directory written by :func:`save_synthetic` (or a bare ``synthetic.npz``)."""
    archive = os.path.join(path, ARCHIVE) if os.path.isdir(path) else path
    if not os.path.isfile(archive):
        raise RunDirectoryError(f"no synthetic archive at {archive}; write one with `dpsd-lite synthesize`")
    try:
        with np.load(archive, allow_pickle=False) as z:
            images, labels, classes = z["images"], z["labels"], z["classes"]
            class_names = [str(s) for s in z["class_names"]]
            # archives written before probabilities were stored have none
            probabilities = z["probabilities"] if "probabilities" in z.files else None
    except (KeyError, ValueError, OSError) as exc:
        raise RunDirectoryError(f"{archive} is not a readable synthetic archive ({exc})") from exc
    if probabilities is not None and probabilities.shape != (len(labels), len(class_names)):
        raise RunDirectoryError(f"{archive} is not a readable synthetic archive (probabilities of shape "
                                f"{probabilities.shape} for {len(labels)} images and {len(class_names)} classes)")
    privacy_path = os.path.join(os.path.dirname(archive), PRIVACY_JSON)
    doc = _read_json(privacy_path, os.path.dirname(archive)) if os.path.isfile(privacy_path) else {}
    return SyntheticSet(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(classes), class_names,
                        doc.get("run_privacy", {}), doc.get("synthetic", {}),
                        None if probabilities is None else torch.from_numpy(probabilities))


def contact_sheet(synth: SyntheticSet, max_images: int = 100, columns: int = 10):
    """The first ``max_images`` images sorted by student label, titled ``requested class → student's label``.

    Returns a matplotlib Figure (drawn by :func:`dpsd_lite.plots.image_grid`).
    """
    n = min(len(synth), max_images)
    order = torch.argsort(synth.labels[:n], stable=True)
    eps, mode = synth.meta.get("epsilon"), synth.meta.get("noise_mode")
    where = f" ({mode}, ε = {eps:g} per teacher answer)" if isinstance(eps, (int, float)) and mode else ""
    return image_grid(synth.images[order], classes=synth.classes[order], labels=synth.labels[order],
                      class_names=synth.class_names, ncols=columns, label_name="student's label",
                      title=f"{n} of {len(synth)} synthetic images{where}")


# --------------------------------------------------------------------------- downstream use


#: Downstream architectures: the student's (what DPSD transcribes into) and another, the teacher's (a wider CNN
#: with batch normalisation), so that a synthetic set is not judged only by the architecture it was made for.
DOWNSTREAM_ARCHS = {"student": Student, "teacher": Teacher}


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int = 500, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0, device="cpu", arch: str = "student") -> torch.nn.Module:
    """Train a fresh classifier on (x, y) for a fixed number of steps (same compute for any set size).

    ``y`` is either N class indices or N×``num_classes`` class probabilities (soft labels, rows summing to 1);
    the loss is the cross-entropy with either. ``arch``: a key of :data:`DOWNSTREAM_ARCHS`.
    """
    if arch not in DOWNSTREAM_ARCHS:
        raise DpsdError(f"unknown downstream architecture {arch!r}; choose one of {', '.join(DOWNSTREAM_ARCHS)}")
    if len(y) == 0:
        raise DpsdError("cannot train a classifier on an empty set")
    if len(y) != len(x) or not (y.dim() == 1 or (y.dim() == 2 and y.shape[1] == num_classes)):
        raise DpsdError(f"targets of shape {tuple(y.shape)} do not fit {len(x)} images and {num_classes} classes: "
                        f"give class indices (N) or class probabilities (N×{num_classes})")
    if y.dim() == 2 and not (y.is_floating_point() and bool((y >= 0).all())
                             and torch.allclose(y.sum(1), torch.ones_like(y[:, 0]), atol=1e-3)):
        raise DpsdError("soft labels must be class probabilities: non-negative floats whose rows sum to 1")
    device = resolve_device(device)
    gen = seed_everything(seed)
    model = DOWNSTREAM_ARCHS[arch](tuple(x.shape[1:]), num_classes).to(device)
    batches = ((x[idx], y[idx]) for idx in minibatches(len(y), batch_size, gen))
    loss = fit_classifier(model, batches, steps, lr, schedule="cosine", device=device)
    if not math.isfinite(loss):
        raise DpsdError("downstream training diverged (non-finite loss); lower lr")
    return model


def downstream_comparison(data, synthetic: SyntheticSet | None = None, filtered: SyntheticSet | None = None,
                          steps: int = 500, batch_size: int = 128, seed: int = 0, device="cpu",
                          include_real: bool = True, labels: str = "soft", arch: str = "student") -> list:
    """Held-out accuracy of fresh students trained on each training set, one dict per row.

    Rows: ``real private`` (non-private reference: trained on ``data.x_private``),
    ``synthetic`` and ``synthetic, filtered`` (whichever are given). Every
    student gets the same architecture, steps and seed; all are evaluated on
    ``data.x_heldout``, which none of them trained on. ``labels="soft"`` (the
    default) trains on a synthetic set's probabilities when it has them,
    ``"hard"`` on its argmax labels; each row says which (``labels``). ``arch``: the students' architecture
    (:data:`DOWNSTREAM_ARCHS`), named in each row.
    """
    _check_label_kind(labels)  # before any training, even when only the real row is trained
    sets = []
    if include_real:
        sets.append(("real private", data.x_private, data.y_private, "none (trained on private data)"))
    for name, s in (("synthetic", synthetic), ("synthetic, filtered", filtered)):
        if s is not None:
            sets.append((name, s.images, s.targets(labels), "run's epsilon" if name == "synthetic" else
                         "run's epsilon, then a non-DP filter that read private data (no epsilon for that step)"))
    rows = []
    for name, x, y, privacy in sets:
        model = train_classifier(x, y, data.num_classes, steps=steps, batch_size=batch_size, seed=seed, device=device,
                                 arch=arch)
        rows.append({"training set": name, "size": int(len(y)), "labels": "soft" if y.dim() == 2 else "hard",
                     "architecture": arch,
                     "heldout_accuracy": accuracy(model, data.x_heldout, data.y_heldout), "privacy": privacy})
    return rows
