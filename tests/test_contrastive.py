"""The contrastive diversity term (after CMI): InfoNCE in the student's hidden features, each generated image
against its own shifted copy, the batch's other copies and a memory of earlier images.

Checked here: the student's features and head compose to its forward pass, the loss against a direct
computation, that it is low for images the student tells apart and high for copies of one image, that the memory
keeps the newest features up to its size and holds no graph, and that the term reaches the generator's weights.
Its privacy (it reads the student only) is checked with the loop's invariants (tests/test_loop_invariants.py).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dpsd_lite import phases
from dpsd_lite.config import TranscribeConfig
from dpsd_lite.generators import build_generator
from dpsd_lite.models import Student

SHAPE = (1, 8, 8)


def players(memory=16, seed=0):
    torch.manual_seed(seed)
    cfg = TranscribeConfig(dataset="digits", generator="learned", contrastive_weight=1.0, contrastive_memory=memory,
                           precision="float32").resolved()
    student = Student(SHAPE, 10)
    gen = build_generator(cfg, SHAPE, 10)
    return phases.Players(cfg, None, None, student, gen, None, None, None, torch.Generator().manual_seed(seed),
                          torch.device("cpu"), 10)


def test_features_then_head_is_the_forward_pass():
    s = Student(SHAPE, 10)
    x = torch.randn(5, *SHAPE)
    f = s.features(x)
    assert f.shape == (5, s.architecture["hidden"])
    assert torch.allclose(s.head(f), s(x))


def test_the_loss_is_infonce_over_the_copies_and_the_memory():
    p = players()
    x = torch.randn(6, *SHAPE)
    f = p.student.features(x)
    p.memory = F.normalize(torch.randn(4, f.shape[1]), dim=1)
    old = p.memory.clone()
    rng = torch.Generator().manual_seed(7)
    p.rng = torch.Generator().manual_seed(7)
    loss = phases.contrastive_loss(p, x, f)
    copies = F.normalize(p.student.features(phases.augment_images(x, rng)), dim=1)  # the same draw of shifts
    a = F.normalize(f, dim=1)
    logits = torch.cat([a @ copies.t(), a @ old.t()], 1) / phases.CONTRASTIVE_TEMPERATURE
    expected = -(logits.log_softmax(1).diagonal()).mean()
    assert math.isclose(float(loss.detach()), float(expected.detach()), rel_tol=1e-5)


def test_copies_of_one_image_cost_more_than_images_the_student_tells_apart():
    """Six copies of one image cannot pick out their own copy (about log 6); six different images can."""
    p = players(memory=0)
    x = torch.randn(1, *SHAPE).repeat(6, 1, 1, 1)
    same = float(phases.contrastive_loss(p, x, p.student.features(x)).detach())
    y = torch.randn(6, *SHAPE) * 3
    apart = float(phases.contrastive_loss(p, y, p.student.features(y)).detach())
    assert same > math.log(6) - 0.1 and apart < same - 0.2  # (seeded: 1.84 and 1.47 for this untrained student)
    assert p.memory is None  # size 0: no memory


def test_the_memory_keeps_the_newest_features_up_to_its_size_without_a_graph():
    p = players(memory=10)
    for n, expect in ((4, 4), (4, 8), (4, 10)):
        x = torch.randn(n, *SHAPE)
        phases.contrastive_loss(p, x, p.student.features(x))
        assert p.memory.shape[0] == expect and not p.memory.requires_grad
    newest = p.memory[:4].clone()
    assert torch.allclose(newest.norm(dim=1), torch.ones(4), atol=1e-5)
    x = torch.randn(3, *SHAPE)
    phases.contrastive_loss(p, x, p.student.features(x))
    assert torch.equal(p.memory[3:7], newest)  # the older ones move back; the oldest drop out


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_the_term_is_in_the_generators_objective_when_weighted(weight):
    p = players()
    p.config = p.config.replace(contrastive_weight=weight)
    z, c, ink = phases.draw(p, 8)
    loss, terms = phases.generator_objective(p, z, c, ink)
    assert ("contrastive" in terms) == bool(weight)
    if weight:
        p.generator.zero_grad()
        x = p.generator(z, c, ink)
        phases.contrastive_loss(p, x, p.student.features(x)).backward()
        assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in p.generator.parameters())
