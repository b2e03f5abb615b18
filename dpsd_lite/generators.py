"""The generator: where the synthetic queries come from (both kinds, and how a run picks one).

* :class:`Generator`: a class-conditional convolutional G(z, c) from noise
  (DAFL/DFAD-style), trained in the loop with the student as discriminator.
* :class:`GenericShapes`: a frozen public prior with no task in it, random
  filled ellipses and pen strokes painted over each other ("dead leaves");
  the learned generator can hand it a share of its queries (``generic_shapes``).
* :class:`StrokeGenerator`: a generator that *draws* handwritten digits with
  pen strokes and copybook skeletons (:mod:`dpsd_lite.skeletons`): a public
  prior written by hand, for digit domains.
* :func:`build_generator`: the one a :class:`~dpsd_lite.config.TranscribeConfig`
  asks for, with each domain's published format (:data:`PUBLIC_INK`,
  :data:`PUBLIC_MARGIN`, :data:`STROKE_FORMAT`).

Everything a generator assumes is public knowledge about the domain; none of it
is a statistic of the private split. In a private mode the generator never sees
the teacher: its only training signal is the student (see :mod:`dpsd_lite.phases`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import require_resolved
from .errors import DpsdError
from .models import _check_shape
from .names import GENERATOR_KINDS  # noqa: F401  (re-exported: generators.GENERATOR_KINDS)
from .skeletons import skeleton_bank
from .utils import channels_last

# Mean pixel brightness (in [0, 1]) of each domain's images: the widely published
# normalisation constants (MNIST 0.1307, Fashion-MNIST 0.2860), a public fact
# about the domain, not a statistic of our private split. The generator is
# nudged toward it so its first images are sparse strokes on a dark background,
# on which the teacher gives varied answers (on dense noise it says "8" to all).
PUBLIC_INK = {"mnist-5k": 0.1307, "mnist": 0.1307, "fashion-mnist": 0.2860, "digits": 0.3}
# MNIST's published format: digits are size-normalised into a 20×20 box centred
# in the 28×28 frame, so a 4-pixel border is always background.
PUBLIC_MARGIN = {"mnist-5k": 4, "mnist": 4}
# Handwritten-digit domains are drawn with a pen: the stroke generator's public
# prior (see :class:`StrokeGenerator`), with each domain's published format: MNIST
# size-normalises digits into a 20×20 box and puts their centre of mass at the
# centre of the 28×28 frame; scikit-learn's digits are 32×32 bitmaps averaged down
# to 8×8. The MNIST pen is a thin Gaussian of 0.7–1.4 pixels standard deviation
# (0.07–0.14 box units), a width chosen on mnist-5k's private split (disclosed in
# every report; the measurements are in benchmarks/RESULTS.md, "Design history").
MNIST_FORMAT = {"box": 20 / 28, "centre_of_mass": True, "pen": (0.07, 0.14)}
STROKE_FORMAT = {"mnist-5k": MNIST_FORMAT, "mnist": MNIST_FORMAT, "digits": {"box": 0.9, "supersample": 4}}


def build_generator(config, image_shape, num_classes):
    """The generator a config asks for: ``learned`` (DPSD's own conv G(z, c) from noise, the default) or
    ``strokes`` (the renderer, a public prior for digit domains)."""
    require_resolved(config, "build_generator")
    if config.generator == "strokes":
        if config.dataset not in STROKE_FORMAT or image_shape[0] != 1:
            raise DpsdError(f"the stroke generator draws handwritten digits; dataset {config.dataset!r} needs "
                            f"generator='learned'")
        return StrokeGenerator(image_shape, num_classes, nz=config.nz, skeletons=config.skeletons,
                               **STROKE_FORMAT.get(config.dataset, {}))
    # channels-last: its 28×28 convolutions run about twice as fast on CPU (see upsample2)
    return channels_last(Generator(image_shape, num_classes, nz=config.nz, ink=PUBLIC_INK.get(config.dataset),
                                   margin=PUBLIC_MARGIN.get(config.dataset, 0),
                                   sharpness=config.generator_sharpness,
                                   generic_shapes=config.generic_shapes,
                                   generic_shapes_end=config.generic_shapes_end))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour ×2 upsampling (``F.interpolate``), keeping a channels-last input channels-last.

    The generator's own upsampling: on torch 2.14's CPU kernels ``interpolate`` takes forward and backward
    together about a tenth of the time of a broadcast-and-reshape (whose backward is a strided sum), in both
    float32 and bfloat16 (``benchmarks/RESULTS.md``, "Speed of the learned generator's loop").
    """
    return F.interpolate(x, scale_factor=2, mode="nearest")


class Generator(nn.Module):
    """Class-conditional DAFL/DFAD-style generator G(z, c) → images in the data's range [-1, 1].

    Linear → BatchNorm → (upsample ×2, 3×3 conv, BatchNorm, LeakyReLU 0.2) ×2 →
    3×3 conv → tanh. ``z`` is B×nz standard normal, ``c`` B class indices;
    the class is fed in as a one-hot vector concatenated to z.

    ``generic_shapes`` (in [0, 1), default 0: off) hands that share of every batch to the frozen
    :class:`GenericShapes` prior, drawn from the same z: the last rows of each half of the batch, so the
    two images of a same-class pair (rows i and i + B/2, see :func:`dpsd_lite.phases.draw`) come from the
    same source. Those images carry no gradient; the network is still run on the whole batch, so its
    BatchNorm statistics are those of the batch it was given. With ``generic_shapes_end`` the share moves
    linearly from ``generic_shapes`` to it as the run's progress (a buffer, ``shapes_progress``, that the loop
    sets with :meth:`set_progress` and that every checkpoint and snapshot keeps) goes from 0 to 1.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes=10, nz=64, width=32, ink=None, sharpness=4.0,
                 margin=0, generic_shapes=0.0, generic_shapes_end=None):
        super().__init__()
        self.ink, self.sharpness, self.margin = ink, sharpness, int(margin)
        self.generic_shapes = float(generic_shapes)
        self.generic_shapes_end = None if generic_shapes_end is None else float(generic_shapes_end)
        self.architecture = {"image_shape": list(image_shape), "num_classes": num_classes, "nz": nz,
                             "width": width, "ink": ink, "sharpness": sharpness, "margin": int(margin),
                             "generic_shapes": self.generic_shapes,
                             **({} if self.generic_shapes_end is None else
                                {"generic_shapes_end": self.generic_shapes_end})}
        self.shapes = GenericShapes(image_shape, nz) if self.generic_shapes or self.generic_shapes_end else None
        if self.generic_shapes_end is not None:  # where the run is in its schedule: saved with the weights
            self.register_buffer("shapes_progress", torch.zeros(()))
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
        x = self._learned(z, c, ink_scale)
        if self.shapes is None:
            return x
        rows = shapes_rows(len(z), self.shapes_share(), z.device)
        with torch.no_grad():  # only the rows the prior draws are rendered (each row depends on its own z alone)
            y = self.shapes(z[rows]).to(x.dtype)
        return x.index_put((rows,), y)  # out of place: the learned rows keep their gradient

    def shapes_share(self) -> float:
        """The share of a batch the generic-shapes prior draws now (``generic_shapes``, or on its way to
        ``generic_shapes_end`` as far as the run's progress has gone)."""
        if self.generic_shapes_end is None:
            return self.generic_shapes
        return self.generic_shapes + (self.generic_shapes_end - self.generic_shapes) * float(self.shapes_progress)

    def set_progress(self, fraction: float) -> None:
        """Tell a generator with a share schedule how far through the run it is (0 … 1; nothing without one)."""
        if self.generic_shapes_end is not None:
            self.shapes_progress.fill_(min(max(float(fraction), 0.0), 1.0))

    def _learned(self, z, c, ink_scale=None):
        onehot = F.one_hot(c, self.num_classes).to(z.dtype)
        x = self.fc(torch.cat([z, onehot], 1)).view(-1, self.width, *self.init_hw)
        x = self.bn0(x)
        x = self.block1(upsample2(x))
        x = self.block2(upsample2(x))
        a = self.out(x).float()  # under bfloat16 autocast: the ink threshold and edges in full precision
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
        thr = ink_threshold(flat.detach(), frac)
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


class StrokeGenerator(nn.Module):
    """Class-conditional generator that *draws*: G(z, c) → pen strokes → images in [-1, 1].

    For handwritten-digit domains. A DAFL-style MLP (Linear → BatchNorm →
    LeakyReLU 0.2, twice, → Linear) maps z and the one-hot class to the
    parameters of ``strokes`` pen strokes of ``points`` points each (start,
    heading, per-segment turn and length, an intensity per stroke) and one pen
    width; a differentiable renderer stamps Gaussian pen dabs along every
    segment (:meth:`render`), so gradients reach every stroke parameter. Everything it assumes is public knowledge about the
    domain, none of it a statistic of the private split: digits are drawn with
    one or two pen strokes, inside a centred box (MNIST's published format:
    20×20 of 28×28), with a pen 2–3 pixels wide; scikit-learn's digits are
    32×32 bitmaps averaged down by 4, which ``supersample=4`` mirrors.

    With ``centre_of_mass`` the drawing is then shifted so that its ink's
    centre of mass sits at the centre of the frame, as in MNIST's published
    preprocessing (size-normalised into the 20×20 box, then centred by mass
    in the 28×28 frame); without it only the bounding box is centred, which
    leaves the ink 1.5 to 3.3 pixels off on average.

    With ``skeletons`` > 0 that share of the images (chosen by z) is instead a
    *bent digit skeleton*: the copybook drawing of the requested digit
    (:mod:`dpsd_lite.skeletons`, written by hand, no data), bent at four knots
    per stroke, rotated, sheared and stretched at random (all from z), plus a
    learnt correction that starts at zero, then size-normalised into the box.
    The teacher's answer, not the requested digit, is what the student learns:
    a bent 9 may well be a 4. Free strokes and skeletons together beat either
    alone (benchmarks/RESULTS.md, "Design history").
    """

    # the random bending of a skeleton: knots per stroke, and the ranges of its random affine map
    SKELETON_KNOTS = 4
    SKELETON_JITTER = 0.25  # knot displacement, standard deviation in box units
    SKELETON_ROTATE = 0.35  # radians, uniform in ±
    SKELETON_SHEAR = 0.4  # uniform in ±
    SKELETON_SCALE_X = (0.7, 1.2)  # before size normalisation: narrow to wide
    SKELETON_SCALE_Y = (0.85, 1.1)

    def __init__(self, image_shape=(1, 28, 28), num_classes=10, nz=64, width=256, strokes=2, points=7,
                 box=20 / 28, pen=(0.09, 0.16), supersample=1, turn=1.0, normalize=False,
                 skeletons=0.0, skeleton_points=12, centre_of_mass=False):
        super().__init__()
        c, h, w = image_shape
        if c != 1:
            raise ValueError(f"the stroke generator draws grey-scale images, got {c} channels")
        if not 0 <= skeletons <= 1:
            raise ValueError(f"skeletons is a share of the images, in [0, 1]; got {skeletons}")
        self.architecture = {"image_shape": list(image_shape), "num_classes": num_classes, "nz": nz,
                             "width": width, "strokes": strokes, "points": points, "box": box,
                             "pen": list(pen), "supersample": supersample, "turn": turn,
                             "normalize": normalize, "skeletons": skeletons, "skeleton_points": skeleton_points,
                             "centre_of_mass": bool(centre_of_mass)}
        self.centre_of_mass = bool(centre_of_mass)
        self.skeletons = float(skeletons)
        self.nz, self.num_classes, self.image_shape = nz, num_classes, (c, h, w)
        self.n_strokes, self.n_points, self.pen, self.supersample, self.turn = strokes, points, tuple(pen), supersample, turn
        self.normalize = normalize
        per_stroke = 2 + 1 + 1 + 2 * (points - 1)  # start (x, y), heading, intensity, turn and length per segment
        self.net = nn.Sequential(
            nn.Linear(nz + num_classes, width), nn.BatchNorm1d(width), nn.LeakyReLU(0.2),
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.LeakyReLU(0.2),
            nn.Linear(width, strokes * per_stroke + 1),
        )
        self._free_outputs = strokes * per_stroke + 1
        if self.skeletons:
            self._init_skeletons(num_classes, nz, width, strokes, skeleton_points)
        hh, ww = h * supersample, w * supersample
        # pixel centres in box units ([-1, 1] = the box), one row and one column
        self.register_buffer("ys", (((torch.arange(hh) + 0.5) / hh * 2 - 1) / box).view(1, 1, -1), persistent=False)
        self.register_buffer("xs", (((torch.arange(ww) + 0.5) / ww * 2 - 1) / box).view(1, 1, -1), persistent=False)

    def _init_skeletons(self, num_classes, nz, width, strokes, points):
        bank, alpha, digit = skeleton_bank(strokes, points, num_classes)
        missing = sorted(set(range(num_classes)) - set(digit.tolist()))
        if missing:
            raise ValueError(f"no digit skeleton for class(es) {missing}: skeletons need the ten digit classes")
        self._n_knot = strokes * self.SKELETON_KNOTS * 2
        if nz < self._n_knot + 6:
            raise ValueError(f"skeletons need nz >= {self._n_knot + 6}, got {nz}")
        order = torch.argsort(digit, stable=True)
        counts = torch.bincount(digit, minlength=num_classes)
        self.register_buffer("skeleton_points", bank[order], persistent=False)
        self.register_buffer("skeleton_alpha", alpha[order], persistent=False)
        self.register_buffer("skeleton_start", counts.cumsum(0) - counts, persistent=False)
        self.register_buffer("skeleton_count", counts, persistent=False)
        # linear interpolation from the knots to every point of a stroke
        t = torch.linspace(0, self.SKELETON_KNOTS - 1, points)
        lo = t.floor().clamp_max(self.SKELETON_KNOTS - 2).long()
        w = torch.zeros(points, self.SKELETON_KNOTS)
        w[torch.arange(points), lo] = 1 - (t - lo)
        w[torch.arange(points), lo + 1] = t - lo
        self.register_buffer("knot_weights", w, persistent=False)
        # the learnable correction starts at zero: at first the skeletons are bent only by the random draw
        self.skeleton_head = nn.Linear(width, self._n_knot + 4)
        nn.init.zeros_(self.skeleton_head.weight)
        nn.init.zeros_(self.skeleton_head.bias)

    def raw(self, z, c):
        """The MLP's output for (z, c): every stroke parameter before squashing (and the skeleton corrections)."""
        h = torch.cat([z, F.one_hot(c, self.num_classes).to(z.dtype)], 1)
        if not self.skeletons:
            return self.net(h)
        h = self.net[:-1](h)
        return torch.cat([self.net[-1](h), self.skeleton_head(h)], 1)

    def uses_skeleton(self, z):
        """Which images of a batch are bent digit skeletons (the rest are free strokes): a function of z."""
        if not self.skeletons:
            return torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
        return torch.special.ndtr(z[:, self._n_knot + 5]) < self.skeletons

    def skeleton_strokes(self, z, c, o=None):
        """A randomly bent skeleton of digit c: points B×S×P×2 in box units, intensities B×S.

        The bending comes from z (knot displacements, rotation, shear, stretch,
        which variant of the digit) plus the generator's learnt correction.
        """
        if o is None:
            o = self.raw(z, c)
        o = o[:, self._free_outputs:]
        B, S, n = z.shape[0], self.n_strokes, self._n_knot
        u = torch.special.ndtr(z[:, n : n + 6])  # uniforms
        variant = self.skeleton_start[c] + (u[:, 4] * self.skeleton_count[c]).long().clamp_max(self.skeleton_count[c] - 1)
        knots = (self.SKELETON_JITTER * z[:, :n] + o[:, :n]).view(B, S, self.SKELETON_KNOTS, 2)
        points = self.skeleton_points[variant] + torch.einsum("pk,bskd->bspd", self.knot_weights, knots)
        angle = self.SKELETON_ROTATE * (2 * u[:, 0] - 1) + o[:, n]
        shear = self.SKELETON_SHEAR * (2 * u[:, 1] - 1) + o[:, n + 1]
        (x0, x1), (y0, y1) = self.SKELETON_SCALE_X, self.SKELETON_SCALE_Y
        sx = (x0 + (x1 - x0) * u[:, 2]) * o[:, n + 2].exp()
        sy = (y0 + (y1 - y0) * u[:, 3]) * o[:, n + 3].exp()
        cos, sin = angle.cos(), angle.sin()
        # rotation · [[sx, shear], [0, sy]]
        A = torch.stack([torch.stack([cos * sx, cos * shear - sin * sy], 1),
                         torch.stack([sin * sx, sin * shear + cos * sy], 1)], 1)
        points = torch.einsum("bij,bspj->bspi", A, points)
        alpha = self.skeleton_alpha[variant]
        return self._size_normalise(points, alpha), alpha

    def strokes(self, z, c, o=None):
        """Free stroke parameters: points B×S×P×2 in box units, intensities B×S, pen widths B×1."""
        B, S, P = z.shape[0], self.n_strokes, self.n_points
        if o is None:
            o = self.raw(z, c)
        o = o[:, : self._free_outputs]
        pen_raw, o = o[:, -1:], o[:, :-1].view(B, S, -1)
        start = 0.7 * torch.tanh(o[..., 0:2])
        heading = o[..., 2:3] * math.pi
        # the first stroke is always drawn; later ones may fade out (one-stroke digits)
        alpha = torch.cat([torch.ones_like(o[:, :1, 3]), torch.sigmoid(2 + o[:, 1:, 3])], 1)
        # bounded turns and a minimum segment length: a pen moves on, it does not scribble a dot
        turns = self.turn * torch.tanh(o[..., 4 : 4 + P - 1])
        lengths = 0.15 + 0.3 * torch.sigmoid(o[..., 4 + P - 1 : 4 + 2 * (P - 1)])
        angle = heading + turns.cumsum(-1)
        moves = torch.stack([angle.cos(), angle.sin()], -1) * lengths.unsqueeze(-1)
        points = torch.cat([start.unsqueeze(2), start.unsqueeze(2) + moves.cumsum(2)], 2)
        if self.normalize:
            points = self._size_normalise(points, alpha)
        else:
            points = points.clamp(-1, 1)
        return points, alpha, self._pen_width(pen_raw)

    def _pen_width(self, pen_raw):
        """The pen's Gaussian width (box units, B×1) from its raw MLP output, in the range ``pen``."""
        return self.pen[0] + (self.pen[1] - self.pen[0]) * torch.sigmoid(pen_raw)

    @staticmethod
    def _size_normalise(points, alpha):
        """MNIST's published preprocessing: scale the drawing so its larger side fills the box, centred.

        The bounding box counts only strokes that are drawn (intensity > 1/2).
        """
        B = points.shape[0]
        drawn = (alpha.detach() > 0.5).unsqueeze(-1).unsqueeze(-1)  # B×S×1×1
        big = torch.finfo(points.dtype).max / 4
        lo = torch.where(drawn, points, big).reshape(B, -1, 2).amin(1)
        hi = torch.where(drawn, points, -big).reshape(B, -1, 2).amax(1)
        centre = (lo + hi) / 2
        scale = 2.0 / (hi - lo).amax(1).clamp_min(0.2)
        return (points - centre.view(B, 1, 1, 2)) * scale.view(B, 1, 1, 1)

    # Gaussian pen dabs stamped along each segment: enough that neighbouring dabs are at most about
    # 1.8 pen widths apart on the longest segments drawn (free strokes: ≤ 0.41 box units; bent skeletons:
    # 99% ≤ 0.77, all ≤ 1.2), where the ripple along a stroke is below 0.5%
    DABS_FREE, DABS_SKELETON = 4, 6

    def render(self, points, alpha, pen, dabs=DABS_SKELETON):
        """Batched, differentiable: Gaussian pen dabs along every segment, B×1×H×W in [-1, 1].

        A stroke is the line integral of a Gaussian pen along its polyline,
        approximated by ``dabs`` dabs per segment, each weighted by
        its share of the segment's length, so a straight stroke has the
        profile exp(-d²/2σ²) across it whatever its length. A 2-D Gaussian is
        the product of two 1-D ones, so the image is one small matrix product
        per image (dabs × rows times dabs × columns) instead of a distance
        from every pixel to every segment. Where strokes cross, ink saturates
        at 1. Exponents are clamped at -20 (exp is slow for very negative
        arguments and gives nothing there anyway).
        """
        B, S, P, _ = points.shape
        n = int(dabs)
        a, b = points[:, :, :-1], points[:, :, 1:]  # B×S×(P-1)×2 segment ends
        t = (torch.arange(n, dtype=points.dtype, device=points.device) + 0.5) / n
        dabs = (a.unsqueeze(3) + (b - a).unsqueeze(3) * t.view(1, 1, 1, n, 1)).reshape(B, -1, 2)
        sigma = pen.view(B, 1, 1)
        # each dab carries its share of the segment's length (and its stroke's intensity), over the
        # Gaussian's 1-D normaliser, so the sum along a line is exp(-d²/2σ²) across it
        weight = ((b - a).norm(dim=-1) / n * alpha.unsqueeze(-1)).unsqueeze(-1).expand(B, S, P - 1, n)
        weight = weight.reshape(B, -1, 1) / (sigma * math.sqrt(2 * math.pi))
        if self.centre_of_mass:
            # MNIST's published format: the ink's centre of mass sits at the centre of the frame. The
            # ink is a sum of Gaussian dabs, so its centre of mass is the dabs' weighted mean.
            dabs = dabs - (weight * dabs).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp_min(1e-12)
        gx = torch.exp((-(self.xs - dabs[..., :1]).square() / (2 * sigma**2)).clamp(min=-20))  # B×dabs×W
        gy = torch.exp((-(self.ys - dabs[..., 1:]).square() / (2 * sigma**2)).clamp(min=-20))  # B×dabs×H
        ink = torch.bmm((gy * weight).transpose(1, 2), gx).clamp(max=1.0)  # B×H×W
        img = ink.unsqueeze(1)
        if self.supersample > 1:
            img = F.avg_pool2d(img, self.supersample)
        return img * 2 - 1

    def set_progress(self, fraction: float) -> None:  # the common interface: no share schedule to move here
        pass

    def forward(self, z, c, ink_scale=None):  # ink_scale: accepted for the common interface, unused
        if not self.skeletons:
            return self.render(*self.strokes(z, c), dabs=self.DABS_FREE)
        o = self.raw(z, c)
        use = self.uses_skeleton(z)
        free, skel = (~use).nonzero().flatten(), use.nonzero().flatten()
        parts = []
        if len(free):
            parts.append(self.render(*self.strokes(z[free], c[free], o[free]), dabs=self.DABS_FREE))
        if len(skel):
            parts.append(self.draw_skeletons(z[skel], c[skel], o[skel]))
        return torch.cat(parts)[torch.argsort(torch.cat([free, skel]))]

    def draw_skeletons(self, z, c, o=None):
        """Every row drawn as a bent skeleton of digit c (whatever :meth:`uses_skeleton` says), B×1×H×W."""
        if o is None:
            o = self.raw(z, c)
        points, alpha = self.skeleton_strokes(z, c, o)
        pen = self._pen_width(o[:, self._free_outputs - 1 : self._free_outputs])
        return self.render(points, alpha, pen, dabs=self.DABS_SKELETON)

    sample = Generator.sample


GENERATORS = {"Generator": Generator, "StrokeGenerator": StrokeGenerator}


def shapes_rows(n: int, share: float, device="cpu") -> torch.Tensor:
    """Which of a batch's n rows the :class:`GenericShapes` prior draws (a bool vector): the last ``share`` of
    each half, so rows i and i + n/2 (a same-class pair) always come from the same source."""
    half = max(n // 2, 1)
    return (torch.arange(n, device=device) % half).float() / half >= 1 - share


class GenericShapes(nn.Module):
    """A frozen public prior with no task in it: images of random filled ellipses and pen strokes painted over
    each other, in random grey on black ("dead leaves", after the occlusion model of natural images).

    Every choice is a function of z alone (the class is not used: nothing here knows what a class looks like):
    SHAPES slots of eight uniforms each, Φ(z) of z's first SHAPES·8 entries, of which the first 2–8 are painted
    (the count from the last entry of z, whose fractional part also serves as the last slot's pen width).
    Per slot: ellipse or stroke; a centre at least 5 px inside the frame; ellipse radii 1.5–9 px, or a stroke
    4–20 px long and 0.7–2.2 px wide; an angle; a grey of 0.3–1; soft edges (sigmoid of −2 × the distance in
    pixels). Sizes are in pixels of a 28×28 frame; other sizes are drawn in the same frame, scaled. It has no
    parameters and learns nothing. What it was measured to do, alone and beside the learned generator, is in
    benchmarks/RESULTS.md ("Design history", and the ``generic_shapes=0.5`` arms of the private-split comparisons).
    """

    SHAPES = 8

    def __init__(self, image_shape=(1, 28, 28), nz=64):
        super().__init__()
        c, h, w = _check_shape(image_shape)
        if nz < self.SHAPES * 8:
            raise DpsdError(f"generic shapes draw {self.SHAPES} shapes of 8 numbers each from z; nz must be at least "
                            f"{self.SHAPES * 8}, got {nz}")
        self.image_shape = (c, h, w)
        # pixel centres in the units of a 28×28 frame (its own pixels at 28×28), so every size in the docstring
        # holds at any resolution: an 8×8 image is the same picture, point-sampled
        frame = lambda n: (torch.arange(n, dtype=torch.float32) + 0.5) * (28.0 / n) - 0.5  # noqa: E731
        yy, xx = torch.meshgrid(frame(h), frame(w), indexing="ij")
        self.register_buffer("yy", yy, persistent=False)  # not saved: a checkpoint holds only what was learned
        self.register_buffer("xx", xx, persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.float()
        n, (c, h, w), S = len(z), self.image_shape, self.SHAPES
        u = torch.special.ndtr(z[:, :S * 8]).view(n, S, 8).clamp(1e-4, 1 - 1e-4)
        last = torch.special.ndtr(z[:, -1]) * (S - 1)
        active = 2 + last.floor()  # 2..8 shapes
        u[:, S - 1, 7] = last.frac().clamp(1e-4, 1 - 1e-4)  # z's last entry also gave the count: its own width
        img = torch.zeros(n, h, w, device=z.device)
        for s in range(S):  # eight slots, each batched over the whole batch
            kind, cx, cy, r1, r2, ang, grey, thick = [u[:, s, i, None, None] for i in range(8)]
            dx, dy = self.xx - (5 + cx * 18), self.yy - (5 + cy * 18)  # a centre at least 5 px inside
            ca, sa = torch.cos(ang * math.pi), torch.sin(ang * math.pi)
            px, py = dx * ca + dy * sa, -dx * sa + dy * ca
            a1, a2 = 1.5 + r1 * 7.5, 1.5 + r2 * 7.5  # ellipse radii
            d_ellipse = (torch.sqrt((px / a1) ** 2 + (py / a2) ** 2) - 1) * torch.minimum(a1, a2)
            half_length = 2 + r1 * 8
            d_stroke = torch.sqrt((px - px.clamp(-half_length, half_length)) ** 2 + py ** 2) - (0.7 + thick * 1.5)
            d = torch.where(kind < 0.5, d_ellipse, d_stroke)
            m = torch.sigmoid(-2.0 * d) * (s < active)[:, None, None].float()
            img = img * (1 - m) + m * (0.3 + 0.7 * grey)
        return (img * 2 - 1)[:, None].expand(n, c, h, w).contiguous()


def ink_threshold(flat: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """Per row of ``flat`` (B×n), the value at ascending rank round((1 − frac)·(n − 1)): the brightest ``frac``
    of the row lies at or above it (``frac`` B×1).

    The same value as sorting each row, from a ``topk`` of only as many of the largest values as the
    brightest row needs: the ink is a small share of an image, and sorting whole rows took a third of the
    learned generator's forward pass on CPU (256 images of 28×28: 6.5 ms sorted, 2.8 ms by topk).
    """
    n = flat.shape[1]
    rank_from_top = (n - 1) - ((1 - frac) * (n - 1)).round().long()
    k = int(rank_from_top.max()) + 1
    return flat.topk(k, dim=1).values.gather(1, rank_from_top)


def draw_ink_scale(n, generator=None):
    """Per-image stroke-weight factor in [1/2, 2] (log-uniform), n×1."""
    return 2.0 ** (torch.rand(n, 1, generator=generator) * 2 - 1)
