"""Digit skeletons: the stroke generator's public prior of how the ten digits are drawn."""

import pytest
import torch

from dpsd_lite.errors import DpsdError
from dpsd_lite.generators import StrokeGenerator
from dpsd_lite.skeletons import digit_skeletons, resample, skeleton_bank
from dpsd_lite.transcribe import TranscribeConfig, build_generator, resolve


def test_every_digit_has_a_skeleton_of_at_most_two_strokes():
    sk = digit_skeletons()
    assert sorted(sk) == list(range(10))
    for d, variants in sk.items():
        assert variants and all(1 <= len(v) <= 2 for v in variants), d
        for v in variants:
            for line in v:
                assert line.shape[1] == 2 and line.abs().max() <= 1.0 + 1e-6, d


def test_resample_spaces_points_evenly_along_the_stroke():
    line = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 3.0]])  # length 4
    p = resample(line, 9)
    steps = (p[1:] - p[:-1]).norm(dim=1)
    assert torch.allclose(p[0], line[0]) and torch.allclose(p[-1], line[-1])
    assert torch.allclose(steps, torch.full_like(steps, 0.5), atol=1e-5)


def test_bank_marks_unused_strokes_as_not_drawn():
    pts, alpha, digit = skeleton_bank(strokes=2, points=12)
    assert pts.shape == (len(digit), 2, 12, 2) and alpha.shape == (len(digit), 2)
    n_strokes = {(d, i): len(v) for d, vs in digit_skeletons().items() for i, v in enumerate(vs)}
    assert (alpha[:, 0] == 1).all()
    assert int(alpha[:, 1].sum()) == sum(1 for n in n_strokes.values() if n == 2)
    with pytest.raises(ValueError, match="strokes"):
        skeleton_bank(strokes=1)


def test_half_the_images_are_skeletons_and_the_choice_is_a_function_of_z():
    torch.manual_seed(0)
    g = StrokeGenerator(skeletons=0.5)
    z = torch.randn(4000, g.nz, generator=torch.Generator().manual_seed(0))
    share = g.uses_skeleton(z).float().mean().item()
    assert 0.46 < share < 0.54
    assert torch.equal(g.uses_skeleton(z), g.uses_skeleton(z.clone()))
    assert not StrokeGenerator(skeletons=0.0).uses_skeleton(z).any()
    assert StrokeGenerator(skeletons=1.0).uses_skeleton(z).all()


def test_an_unbent_skeleton_is_the_requested_digit_size_normalised_into_the_box():
    torch.manual_seed(0)
    g = StrokeGenerator(skeletons=1.0)
    bank, alpha, digit = skeleton_bank(2, 12)
    z = torch.zeros(10, g.nz)  # every uniform at 1/2: no bend, no rotation, no shear, mid stretch
    c = torch.arange(10)
    with torch.no_grad():
        points, a = g.skeleton_strokes(z, c)
    sx = sum(g.SKELETON_SCALE_X) / 2
    sy = sum(g.SKELETON_SCALE_Y) / 2
    for d in range(10):
        rows = (digit == d).nonzero().flatten()
        v = rows[len(rows) // 2]  # the middle variant of that digit
        expect = StrokeGenerator._size_normalise(bank[v : v + 1] * torch.tensor([sx, sy]), alpha[v : v + 1])
        assert torch.allclose(points[d : d + 1], expect, atol=1e-5), d
        assert torch.equal(a[d], alpha[v])
        # the larger side fills the box
        drawn = points[d][alpha[v] > 0.5].reshape(-1, 2)
        side = (drawn.amax(0) - drawn.amin(0)).max()
        assert abs(float(side) - 2.0) < 1e-4


def test_skeleton_images_are_deterministic_ink_on_dark_and_differentiable():
    torch.manual_seed(0)
    g = StrokeGenerator(skeletons=0.5)
    x1, _ = g.sample(64, generator=torch.Generator().manual_seed(5))
    x2, _ = g.sample(64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x1, x2) and x1.min() >= -1 and x1.max() <= 1
    ink = (x1 + 1) / 2
    assert (ink.flatten(1).amax(1) > 0.5).all() and 0.02 < ink.mean() < 0.3
    z, c = torch.randn(64, g.nz), torch.arange(64) % 10
    assert g.uses_skeleton(z).any() and (~g.uses_skeleton(z)).any()
    g(z, c).square().sum().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_batch_order_is_kept_when_the_two_kinds_are_mixed():
    torch.manual_seed(0)
    g = StrokeGenerator(skeletons=0.5).eval()
    z, c = torch.randn(32, g.nz), torch.arange(32) % 10
    with torch.no_grad():
        whole = g(z, c)
        one_by_one = torch.cat([g(z[i : i + 1], c[i : i + 1]) for i in range(32)])
    assert torch.allclose(whole, one_by_one, atol=1e-5)


def test_the_learnt_correction_starts_at_zero():
    torch.manual_seed(0)
    g = StrokeGenerator(skeletons=0.5)
    z, c = torch.randn(16, g.nz), torch.arange(16) % 10
    with torch.no_grad():
        assert g.raw(z, c)[:, g._free_outputs:].abs().max() == 0


def test_bad_skeleton_settings_are_refused():
    with pytest.raises(DpsdError, match="skeletons"):
        TranscribeConfig(skeletons=1.5).validate()
    with pytest.raises(ValueError, match="ten digit classes"):
        StrokeGenerator(num_classes=12, skeletons=0.5)
    with pytest.raises(ValueError, match="nz"):
        StrokeGenerator(nz=8, skeletons=0.5)
    StrokeGenerator(num_classes=12, skeletons=0.0)  # free strokes alone need no skeletons


def test_default_config_draws_skeletons_and_zero_gives_free_strokes_only():
    g = build_generator(resolve(TranscribeConfig(generator="strokes")), (1, 28, 28), 10)
    assert g.skeletons == 0.5 and g.architecture["skeletons"] == 0.5
    g0 = build_generator(resolve(TranscribeConfig(generator="strokes", skeletons=0.0)), (1, 28, 28), 10)
    assert g0.skeletons == 0.0 and not hasattr(g0, "skeleton_head")
    # a generator saved before skeletons existed rebuilds from its architecture without them
    arch = dict(g0.architecture)
    del arch["skeletons"], arch["skeleton_points"]
    old = StrokeGenerator(**{k: tuple(v) if k in ("image_shape", "pen") else v for k, v in arch.items()})
    old.load_state_dict(g0.state_dict())


def test_prior_only_baseline_trains_without_any_teacher(digits, monkeypatch):
    import dpsd_lite.teacher as teacher_mod
    from dpsd_lite.transcribe import prior_only_student

    def no_teacher(*a, **k):
        raise AssertionError("the prior-only baseline must not load or train a teacher")

    import dpsd_lite.transcribe as transcribe_mod

    monkeypatch.setattr(teacher_mod, "get_teacher", no_teacher)
    monkeypatch.setattr(transcribe_mod, "teacher_for", no_teacher)
    monkeypatch.setattr(teacher_mod, "teacher_for", no_teacher)
    student, acc = prior_only_student(data=digits, dataset="digits", steps=20, batch_size=64, device="cpu",
                                      generator="strokes")
    assert 0.0 <= acc <= 1.0
    # skeletons labelled by their own digit teach something (chance is 10%)
    assert acc > 0.2
