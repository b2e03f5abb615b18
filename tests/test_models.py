"""The teacher as the loop queries it (``models.for_queries``): the same answers from fewer operations."""

from __future__ import annotations

import torch
import torch.nn as nn

import dpsd_lite.phases as P
from dpsd_lite.config import TranscribeConfig, resolve
from dpsd_lite.models import Student, Teacher, for_queries
from dpsd_lite.teacher import TrainedTeacher


def _teacher_with_statistics(shape=(1, 28, 28)):
    torch.manual_seed(0)
    t = Teacher(shape, 10).eval()
    with torch.no_grad():  # BatchNorm far from the identity, so folding it wrongly would show
        for bn in (m for m in t.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.2, 3.0)
            bn.weight.normal_()
            bn.bias.normal_()
    return t


def test_same_answers_without_batchnorm_and_the_teacher_untouched():
    t = _teacher_with_statistics()
    before = {k: v.clone() for k, v in t.state_dict().items()}
    fast = for_queries(t)
    assert fast is not t
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    kinds = [type(m) for m in fast.features]
    assert all(not (a is nn.ReLU and b is nn.MaxPool2d) for a, b in zip(kinds, kinds[1:]))  # pooled before ReLU
    x = torch.randn(256, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        slow_out, fast_out = t(x), fast(x)
    torch.testing.assert_close(fast_out, slow_out, rtol=1e-5, atol=1e-5)
    assert torch.equal(fast_out.argmax(1), slow_out.argmax(1))
    assert all(torch.equal(v, before[k]) for k, v in t.state_dict().items())
    assert not t.training and not fast.training


def test_other_models_and_a_teacher_in_training_are_left_as_they_are():
    student = Student()
    assert for_queries(student) is student
    training = Teacher().train()
    assert for_queries(training) is training


def test_the_loop_queries_the_folded_copy(digits, digits_teacher):
    cfg = resolve(TranscribeConfig(dataset="digits", noise_mode="rr", steps=2, device="cpu").validate())
    teacher = TrainedTeacher(digits_teacher.model, heldout_accuracy=0.5, private_accuracy=0.5, epochs=1, seed=0,
                             cached=True)
    p = P.setup(cfg, digits, teacher, torch.device("cpu"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in p.teacher_model.modules())
    with torch.no_grad():
        torch.testing.assert_close(p.teacher_model(digits.x_heldout), digits_teacher.model(digits.x_heldout),
                                   rtol=1e-5, atol=1e-5)


def test_pooling_before_relu_is_the_same_teacher_and_loads_weights_saved_in_the_other_order():
    """Teachers cached before the swap (ReLU, then pooling) load unchanged and answer the same, bit for bit."""
    t = _teacher_with_statistics()
    f = t.features
    old_order = nn.Sequential(f[0], f[1], nn.ReLU(), nn.MaxPool2d(2), f[4], f[5], nn.ReLU(), nn.MaxPool2d(2),
                              *list(f)[8:])
    old = nn.Sequential(old_order, t.head).eval()
    saved = {k.replace("0.", "features.", 1) if k.startswith("0.") else k.replace("1.", "head.", 1): v
             for k, v in old.state_dict().items()}
    loaded = Teacher((1, 28, 28), 10).eval()
    loaded.load_state_dict(saved, strict=True)
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(x), old(x))


def test_the_ink_threshold_is_the_sorted_rows_value_at_the_inks_rank():
    """The learned generator's threshold from topk equals the value sorting each row would give, ties included."""
    from dpsd_lite.generators import draw_ink_scale, ink_threshold

    g = torch.Generator().manual_seed(0)
    flat = torch.randn(300, 784, generator=g)
    flat[:100] = flat[:100].round()  # many ties
    for ink in (0.01, 0.1307, 0.5, 1.0):
        frac = (ink * draw_ink_scale(300, g)).clamp(1 / 784, 1.0)
        idx = ((1 - frac) * 783).round().long()
        assert torch.equal(ink_threshold(flat, frac), flat.sort(dim=1).values.gather(1, idx))
