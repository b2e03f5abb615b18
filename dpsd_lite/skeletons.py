"""How the ten digits are drawn: pen-stroke skeletons, a public prior for the stroke generator.

Each digit is one or two pen strokes, written here by hand as polylines and
arcs in *box units* (x to the right, y downwards, the box is [-1, 1]²), the
way a school copybook shows them, with a few common variants (a 1 with or
without its flag, an open or closed 4, a 7 with or without a bar, a 2 with or
without a loop). None of it is a statistic of any dataset. The stroke
generator bends, rotates, shears and stretches them at random (and the
teacher, through the privacy mechanism, says what each drawing is: a bent 9
can well be a 4), then size-normalises each drawing into the box as MNIST
does.
"""

from __future__ import annotations

import math

import torch

PI = math.pi


def _arc(cx, cy, rx, ry, a0, a1, n=10):
    """Points on an ellipse arc from angle a0 to a1 (y down: angle π/2 is the bottom)."""
    t = torch.linspace(a0, a1, n)
    return torch.stack([cx + rx * torch.cos(t), cy + ry * torch.sin(t)], 1)


def _line(*points):
    return torch.tensor(points, dtype=torch.float32)


def _figure_eight(n=24):
    t = torch.linspace(0, 2 * PI, n)
    return torch.stack([0.5 * torch.sin(2 * t), -0.95 * torch.cos(t)], 1)


def _cat(*parts):
    return torch.cat(parts)


def digit_skeletons() -> dict[int, list[list[torch.Tensor]]]:
    """{digit: [variant, ...]}, each variant a list of strokes, each stroke an N×2 polyline."""
    return {
        0: [[_arc(0, 0, 0.55, 0.95, -PI / 2, 1.5 * PI + 0.2, 16)]],
        1: [[_line((0.12, -0.95), (-0.12, 0.95))],
            [_line((-0.25, -0.6), (0.12, -0.95), (-0.12, 0.95))]],
        2: [[_cat(_arc(0, -0.45, 0.55, 0.5, PI + 0.3, 2 * PI + 0.4, 8), _line((-0.6, 0.9), (0.65, 0.9)))],
            [_cat(_arc(0, -0.45, 0.55, 0.5, PI + 0.3, 2 * PI + 0.4, 8), _line((-0.55, 0.85)),
                  _arc(-0.35, 0.75, 0.25, 0.2, 1.5 * PI, -PI / 2 + 0.01, 6), _line((0.65, 0.9)))]],
        3: [[_cat(_arc(0, -0.5, 0.5, 0.45, PI + 0.5, 2.5 * PI, 9), _arc(0, 0.45, 0.55, 0.5, -PI / 2, 0.85 * PI, 9))]],
        4: [[_line((0.15, -0.95), (-0.6, 0.35), (0.65, 0.35)), _line((0.35, -0.55), (0.35, 0.95))],
            [_line((-0.5, -0.95), (-0.55, 0.2), (0.55, 0.2)), _line((0.45, -0.95), (0.45, 0.95))]],
        5: [[_cat(_line((0.55, -0.95), (-0.35, -0.95), (-0.45, -0.1)), _arc(0, 0.4, 0.55, 0.55, -0.6 * PI, 0.85 * PI, 10))]],
        6: [[_cat(_line((0.35, -0.95), (-0.2, -0.45)), _arc(0, 0.45, 0.5, 0.5, PI + 0.2, 3 * PI + 0.3, 14))]],
        7: [[_line((-0.6, -0.9), (0.6, -0.9), (-0.1, 0.95))],
            [_line((-0.6, -0.9), (0.6, -0.9), (-0.1, 0.95)), _line((-0.35, 0.05), (0.4, 0.05))]],
        8: [[_figure_eight(24)]],
        9: [[_cat(_arc(0, -0.45, 0.45, 0.45, 0.1, 2 * PI + 0.1, 14), _line((0.35, 0.95)))]],
    }


def resample(line: torch.Tensor, points: int) -> torch.Tensor:
    """``points`` points evenly spaced by arc length along a polyline."""
    seg = (line[1:] - line[:-1]).norm(dim=1)
    s = torch.cat([torch.zeros(1), seg.cumsum(0)])
    s = s / s[-1]
    t = torch.linspace(0, 1, points)
    i = torch.searchsorted(s, t, right=True).clamp(1, len(s) - 1)
    w = ((t - s[i - 1]) / (s[i] - s[i - 1]).clamp_min(1e-9)).unsqueeze(1)
    return line[i - 1] * (1 - w) + line[i] * w


def skeleton_bank(strokes: int = 2, points: int = 12, num_classes: int = 10):
    """Every variant as tensors: points V×S×P×2, stroke intensities V×S (0: not drawn), digit V.

    Digits beyond the ten written here (``num_classes`` > 10) have no skeleton.
    """
    pts, alpha, digit = [], [], []
    for d, variants in digit_skeletons().items():
        if d >= num_classes:
            continue
        for variant in variants:
            if len(variant) > strokes:
                raise ValueError(f"digit {d} needs {len(variant)} strokes, the generator has {strokes}")
            p, a = torch.zeros(strokes, points, 2), torch.zeros(strokes)
            for j, line in enumerate(variant):
                p[j], a[j] = resample(line, points), 1.0
            p[len(variant):] = p[0]  # unused strokes sit on the first one, at zero intensity
            pts.append(p)
            alpha.append(a)
            digit.append(d)
    return torch.stack(pts), torch.stack(alpha), torch.tensor(digit)
