"""The three players' networks: teacher, student and generator.

All are sized from the data's image shape (C, H, W) with H and W divisible by 4
(28×28 MNIST, 8×8 digits) and kept small so the CPU path is fast.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _check_shape(image_shape):
    c, h, w = image_shape
    if h % 4 or w % 4:
        raise ValueError(f"image height and width must be divisible by 4, got {h}×{w}")
    return c, h, w


class Teacher(nn.Module):
    """The model trained on private data: four conv layers with BatchNorm, two pools, two linear layers."""

    def __init__(self, image_shape=(1, 28, 28), num_classes=10, width=32):
        super().__init__()
        c, h, w = _check_shape(image_shape)
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(2 * width * (h // 4) * (w // 4), 128), nn.ReLU(),
            nn.Dropout(0.3), nn.Linear(128, num_classes),
        )

    def embed(self, x):
        """Penultimate features (B×128), e.g. for nearest-neighbour filters."""
        return self.head[:-1](self.features(x))

    def forward(self, x):
        return self.head(self.features(x))


class Student(nn.Module):
    """The privacy-preserving model: a three-layer CNN (two conv layers, one linear), no BatchNorm.

    No BatchNorm on purpose: the student trains on synthetic batches and is
    evaluated on real ones, and batch statistics would differ between the two.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes=10, width=32):
        super().__init__()
        c, h, w = _check_shape(image_shape)
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), num_classes),
        )

    def forward(self, x):
        return self.net(x)


class Generator(nn.Module):
    """Class-conditional DAFL/DFAD-style generator G(z, c) → images in the data's range [-1, 1].

    Linear → BatchNorm → (upsample ×2, 3×3 conv, BatchNorm, LeakyReLU 0.2) ×2 →
    3×3 conv → tanh. ``z`` is B×nz standard normal, ``c`` B class indices;
    the class is fed in as a one-hot vector concatenated to z.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes=10, nz=64, width=32, ink=None, sharpness=4.0,
                 margin=0):
        super().__init__()
        self.ink, self.sharpness, self.margin = ink, sharpness, int(margin)
        self.architecture = {"image_shape": list(image_shape), "num_classes": num_classes, "nz": nz,
                             "width": width, "ink": ink, "sharpness": sharpness, "margin": int(margin)}
        c, h, w = _check_shape(image_shape)
        self.nz, self.num_classes, self.image_shape = nz, num_classes, (c, h, w)
        self.init_hw = (h // 4, w // 4)
        self.width = width
        self.fc = nn.Linear(nz + num_classes, width * self.init_hw[0] * self.init_hw[1])
        self.bn0 = nn.BatchNorm2d(width)
        self.block1 = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2)
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(width, width // 2, 3, padding=1), nn.BatchNorm2d(width // 2), nn.LeakyReLU(0.2)
        )
        self.out = nn.Conv2d(width // 2, c, 3, padding=1)

    def forward(self, z, c, ink_scale=None):
        onehot = F.one_hot(c, self.num_classes).to(z.dtype)
        x = self.fc(torch.cat([z, onehot], 1)).view(-1, self.width, *self.init_hw)
        x = self.bn0(x)
        x = self.block1(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = self.block2(F.interpolate(x, scale_factor=2, mode="nearest"))
        a = self.out(x)
        if self.ink is None:
            return torch.tanh(a)
        # Sparse-ink output: per image, the brightest fraction of pixels are lit
        # and the rest fall to the dark background, smoothly (tanh). The
        # fraction varies per image around `ink` (×0.5 … ×2) so thin and bold
        # strokes are both explored.
        if self.margin:
            # format prior: nothing is drawn within `margin` pixels of the border
            m = self.margin
            inside = torch.zeros_like(a[:1], dtype=torch.bool)
            inside[..., m:-m, m:-m] = True
            a = torch.where(inside, a, a.detach().amin() - 10.0)
        flat = a.flatten(1)
        n = flat.shape[1]
        if ink_scale is None:
            ink_scale = draw_ink_scale(flat.shape[0]).to(flat.device)
        frac = (self.ink * ink_scale).clamp(1.0 / n, 1.0)
        idx = ((1 - frac) * (n - 1)).round().long()
        thr = flat.detach().sort(dim=1).values.gather(1, idx)
        drawable = a[..., m:-m, m:-m].flatten(1) if self.margin else flat  # spread of the drawable area
        scale = drawable.std(dim=1, keepdim=True).detach().clamp_min(1e-6)
        return torch.tanh(self.sharpness * (flat - thr) / scale).view_as(a)

    def sample(self, n, generator=None, device="cpu", classes=None):
        """Draw n synthetic images (and the classes they were asked for), without gradients.

        Every random choice (z, classes, stroke weight) comes from ``generator``.
        """
        z = torch.randn(n, self.nz, generator=generator).to(device)
        if classes is None:
            classes = torch.randint(0, self.num_classes, (n,), generator=generator)
        ink_scale = draw_ink_scale(n, generator).to(device)
        with torch.no_grad():
            return self(z, classes.to(device), ink_scale), classes.to(device)


def draw_ink_scale(n, generator=None):
    """Per-image stroke-weight factor in [1/2, 2] (log-uniform), n×1."""
    return 2.0 ** (torch.rand(n, 1, generator=generator) * 2 - 1)
