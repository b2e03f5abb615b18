"""The two classifiers: the teacher (trained on private data) and the student (the private model), and
:func:`fit_classifier`, the one supervised training loop every non-private training run calls.

The third player, the generator, lives in :mod:`dpsd_lite.generators`.

All are sized from the data's image shape (C, H, W) with H and W divisible by 4
(28×28 MNIST, 8×8 digits) and kept small so the CPU path is fast.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _check_shape(image_shape):
    c, h, w = image_shape
    if h % 4 or w % 4:
        raise ValueError(f"image height and width must be divisible by 4, got {h}×{w}")
    return c, h, w


class Teacher(nn.Module):
    """The model trained on private data: three conv layers with BatchNorm (two pools), two linear layers.

    Pooling comes before ReLU, as in :class:`Student` (the same function: max and ReLU commute). The layers
    with weights keep their indices either way, so teachers cached in the other order load unchanged.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes=10, width=32):
        super().__init__()
        c, h, w = _check_shape(image_shape)
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(4 * width * (h // 4) * (w // 4), 128), nn.ReLU(),
            nn.Dropout(0.3), nn.Linear(128, num_classes),
        )

    def embed(self, x):
        """Penultimate features (B×128), e.g. for nearest-neighbour filters."""
        return self.head[:-1](self.features(x))

    def forward(self, x):
        return self.head(self.features(x))


def for_queries(model: nn.Module) -> nn.Module:
    """The frozen teacher as the loop queries it: the same function, computed with fewer operations.

    For an eval-mode :class:`Teacher`, a copy in which each BatchNorm is folded into the convolution before it
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``). Its outputs equal the teacher's up to float rounding; the teacher itself is not changed. Any other model
    (a user's, the ensemble, a model in training mode) is returned as it is.
    """
    if type(model) is not Teacher or model.training:
        return model
    fast = copy.deepcopy(model)
    layers, out, i = list(fast.features), [], 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d):
            layer, i = fuse_conv_bn_eval(layer, layers[i + 1]), i + 1
        out.append(layer)
        i += 1
    fast.features = nn.Sequential(*out)
    return fast.eval().requires_grad_(False)


class Student(nn.Module):
    """The privacy-preserving model: a LeNet-style CNN, no BatchNorm.

    Two 5×5 convolutions (``width`` and 2·``width`` channels), each followed
    by 2×2 max-pooling and ReLU, then a hidden linear layer of ``hidden``
    units and the output layer. The convolutions are "valid" on images of at
    least 20 pixels (28×28 → 24 → 12 → 8 → 4) and padded on smaller ones
    (8×8 → 4 → 2). About 1.1 M multiply-adds per 28×28 image: small, so a
    CPU gets many updates in the time a run has (benchmarks/RESULTS.md,
    "Design history", for the comparison with the wider CNN it replaced).
    Pooling comes before ReLU (the same function, as max and ReLU commute,
    on a quarter of the values).

    No BatchNorm on purpose: the student trains on synthetic batches and is
    evaluated on real ones, and batch statistics would differ between the two.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes=10, width=16, hidden=128):
        super().__init__()
        c, h, w = _check_shape(image_shape)
        self.architecture = {"width": int(width), "hidden": int(hidden)}
        pad = 0 if min(h, w) >= 20 else 2
        side_h, side_w = h, w
        for _ in range(2):
            side_h, side_w = (side_h + 2 * pad - 4) // 2, (side_w + 2 * pad - 4) // 2
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 5, padding=pad), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 5, padding=pad), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * side_h * side_w, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.net(x)


# ---------------------------------------------------------------------------- supervised training

#: learning-rate schedules of :func:`fit_classifier`, by name
SCHEDULES = (None, "cosine", "one-cycle")


def fit_classifier(model: nn.Module, batches, steps: int, lr: float, schedule: str | None = None, device=None,
                   progress=None) -> float:
    """Train ``model`` for ``steps`` steps of Adam on the cross-entropy; returns the last step's loss.

    ``batches`` yields ``(x, y)``: images (B×C×H×W) and either class indices (B, int64) or class
    probabilities (B×K, soft labels, rows summing to 1). Exactly one batch is taken per step and none after the
    last, so a caller's random draws (its shuffles, augmentations, generator samples) happen in the order of a
    hand-written loop. Each caller keeps its own data source: the private split with augmentation
    (:func:`minibatches`), a generator's samples, a synthetic set.

    ``schedule``: ``None`` (constant ``lr``), ``"cosine"`` (annealed to 0 over ``steps``) or ``"one-cycle"``
    (warm up to ``lr``, then anneal). ``device``: where x and y go (default: the model's). ``progress(step,
    steps, loss)``, if given, is called after every step with the loss as a float.

    The model trains in train mode and is left in eval mode.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    device = device if device is not None else next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if schedule == "cosine" else
             torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps) if schedule == "one-cycle" else
             None)
    batches = iter(batches)
    loss = torch.tensor(math.nan)
    model.train()
    for step in range(1, steps + 1):
        x, y = next(batches)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if progress is not None:
            progress(step, steps, float(loss.detach()))
    model.eval()
    return float(loss.detach())


def minibatches(n: int, batch_size: int, generator: torch.Generator):
    """Index batches over ``n`` records, epoch after epoch, for ever: each epoch a fresh permutation drawn
    from ``generator``, cut into consecutive batches of ``batch_size`` (an epoch's last batch may be smaller).
    ``math.ceil(n / batch_size)`` batches make one epoch."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            yield perm[i : i + batch_size]
