"""Public stand-ins for private data, for choosing settings without touching the private split.

Choosing a setting by comparing runs on private data is itself a release that
no ε covers (Papernot & Steinke 2022, "Hyperparameter tuning with Rényi DP"),
and the held-out split is for evaluation only. So settings of the record-level
baselines (DP-SGD, the teacher ensemble) are chosen on a *public* data set of
the same format and size instead: :func:`drawn_digits`, handwritten-digit
look-alikes drawn by the stroke renderer from its copybook skeletons
(:mod:`dpsd_lite.skeletons`, written by hand), each labelled by the digit it
was drawn as. No private image, label or statistic goes into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings

import torch
import torch.nn.functional as F

from . import __version__
from .data import DataSplits, _stratified_split, augment_images
from .generators import STROKE_FORMAT, StrokeGenerator
from .models import Student, fit_classifier
from .utils import atomic_write, resolve_device

__all__ = ["drawn_digits", "public_handwriting", "public_pretrained_student"]


@torch.no_grad()
def drawn_digits(n_private: int = 4000, n_heldout: int = 1000, dataset: str = "mnist-5k", seed: int = 0,
                 batch: int = 1000) -> DataSplits:
    """A public, MNIST-shaped classification set: bent copybook digits, balanced over the ten classes.

    Drawn by a randomly initialised :class:`~dpsd_lite.generators.StrokeGenerator`
    in ``dataset``'s published format (MNIST: 28×28, the 20×20 box, centred by
    mass), every image a randomly bent, rotated, sheared and stretched
    skeleton of its label. Named ``drawn-<dataset>`` so a teacher cache never
    mistakes it for the real thing. ``seed`` fixes the drawing.
    """
    if dataset not in STROKE_FORMAT:
        raise ValueError(f"no drawn stand-in for {dataset!r}: digits only ({', '.join(STROKE_FORMAT)})")
    shape = (1, 8, 8) if dataset == "digits" else (1, 28, 28)
    g = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    gen = StrokeGenerator(shape, 10, skeletons=1.0, **STROKE_FORMAT[dataset]).eval()
    n = int(n_private) + int(n_heldout)
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
    images = []
    for i in range(0, n, batch):
        c = labels[i:i + batch]
        z = torch.randn(len(c), gen.nz, generator=g)
        images.append(gen.draw_skeletons(z, c))
    x = torch.cat(images)
    return DataSplits(f"drawn-{dataset}", x[:n_private], labels[:n_private], x[n_private:], labels[n_private:],
                      [str(d) for d in range(10)])


def public_handwriting(heldout_fraction: float = 0.2) -> DataSplits:
    """Real handwriting that is public, in MNIST's format: scikit-learn's ``load_digits`` at 28×28.

    The 1,797 8×8 digits (UCI optical recognition of handwritten digits, shipped with scikit-learn) are
    resized to MNIST's 20×20 box, padded to 28×28 and shifted so that their ink's centre of mass is at the
    centre (MNIST's published preprocessing), then split 80/20 by class with the package's fixed split seed.
    A public stand-in for a *private* set of real handwriting when a setting of the record-level route
    that starts from :func:`public_pretrained_student` is chosen: pretrained on drawings, trained with
    DP-SGD on these, evaluated on their held-out part, the way the route goes from drawings to MNIST.
    Blurrier and thicker than MNIST (upsampled from 8×8) and smaller (1,437 training images): a
    harder stand-in, not a copy. Named ``public-digits-28`` so a cache never mistakes it for MNIST.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.pad(F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False).clamp(0, 1), (4, 4, 4, 4))
    rows = torch.arange(28, dtype=torch.float32)
    mass = x.sum((1, 2, 3))
    cy = (x[:, 0].sum(2) * rows).sum(1) / mass
    cx = (x[:, 0].sum(1) * rows).sum(1) / mass
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2], theta[:, 1, 2] = (cx - 13.5) * 2 / 28, (cy - 13.5) * 2 / 28
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False) * 2 - 1
    y = torch.as_tensor(d.target, dtype=torch.int64)
    private, heldout = _stratified_split(d.target, heldout_fraction)
    return DataSplits("public-digits-28", x[private], y[private], x[heldout], y[heldout], [str(c) for c in range(10)])


def public_pretrained_student(dataset: str = "mnist-5k", steps: int = 600, batch_size: int = 256, lr: float = 4e-3,
                              seed: int = 0, device="cpu", augment: bool = False, cache_dir: str | None = None,
                              **student_kwargs):
    """A :class:`~dpsd_lite.models.Student` trained on public digit drawings only: a public initialisation.

    Every step draws a fresh batch of bent copybook digits in ``dataset``'s
    format (as :func:`drawn_digits` does; unlimited public data), labelled by
    the digit drawn. No private image, label or statistic is touched, so a
    record-level DP training run that starts from these weights (DP-SGD,
    :func:`dpsd_lite.dpsgd.train_dpsgd` with ``init=``) keeps its guarantee:
    the initialisation is public. ``augment``: each drawing is also randomly
    shifted (up to 1/8 of the image) and rotated (up to 10 degrees) by
    :func:`dpsd_lite.data.augment_images`, drawn from the same seeded generator:
    more variety from the same public drawer.

    ``cache_dir``: keep the trained start under ``<cache_dir>/public-starts`` and reuse it for the same
    arguments and package version (both ε of a record-level route start from it). It holds no private data
    and no DP noise, so keeping it releases nothing.
    """
    if dataset not in STROKE_FORMAT:
        raise ValueError(f"no public drawings for {dataset!r}: digits only ({', '.join(STROKE_FORMAT)})")
    device = resolve_device(device)
    shape = (1, 8, 8) if dataset == "digits" else (1, 28, 28)
    path = None
    if cache_dir is not None:
        key = json.dumps({"dataset": dataset, "steps": int(steps), "batch_size": int(batch_size), "lr": float(lr),
                          "seed": int(seed), "augment": bool(augment), "student": student_kwargs,
                          "version": __version__}, sort_keys=True)
        path = os.path.join(cache_dir, "public-starts",
                            f"{dataset}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt")
        if os.path.exists(path):
            try:
                student = Student(shape, 10, **student_kwargs).to(device)
                student.load_state_dict(torch.load(path, map_location=device, weights_only=True))
                return student.eval()
            except Exception as exc:  # corrupt or stale: train it again
                warnings.warn(f"public start cache {path} is unreadable ({exc.__class__.__name__}); training it again")
    g = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    drawer = StrokeGenerator(shape, 10, skeletons=1.0, **STROKE_FORMAT[dataset]).to(device).eval()
    student = Student(shape, 10, **student_kwargs).to(device)

    def batches():  # unlimited public data: a fresh batch of drawings at every step
        while True:
            c = torch.randint(0, 10, (batch_size,), generator=g)
            z = torch.randn(batch_size, drawer.nz, generator=g)
            with torch.no_grad():
                x = drawer.draw_skeletons(z.to(device), c.to(device))
                if augment:
                    x = augment_images(x, g)
            yield x, c

    fit_classifier(student, batches(), int(steps), lr, schedule="one-cycle", device=device)
    if path is not None:
        try:
            atomic_write(path, lambda fh: torch.save(student.state_dict(), fh))
        except OSError as exc:  # only a cache: the start is still good
            warnings.warn(f"cannot keep the public start in {os.path.dirname(path)} ({exc})")
    return student  # fit_classifier leaves it in eval mode
