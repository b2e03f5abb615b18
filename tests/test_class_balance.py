"""Class balancing: the learned generator asks for the classes the releases name least often more often.

It is post-processing of the releases: the shares are counted from what the mechanism let out, never from the
teacher, so it costs no privacy. Checked here: the weights' closed form, the moving average, the draw, which
runs balance (learned generator, not mode data, not the renderer), the history and the privacy report, and that
a teacher the mechanism hides stays hidden with balancing on.
"""

from __future__ import annotations

import math

import pytest
import torch

from dpsd_lite import phases
from dpsd_lite.config import GENERATOR_DEFAULTS, TranscribeConfig
from dpsd_lite.errors import DpsdError
from dpsd_lite.mechanisms import Release
from dpsd_lite.report import format_report
from dpsd_lite.transcribe import transcribe

K = 10


def players(share=None, balance=0.5, seed=0):
    """The few fields of Players that drawing and counting read."""
    cfg = TranscribeConfig(generator="learned", class_balance=balance, nz=4)
    return phases.Players(cfg, None, None, None, None, None, None, None, torch.Generator().manual_seed(seed),
                          torch.device("cpu"), K, released_share=None if share is None else share.clone())


def test_weights_are_uniform_without_shares_and_follow_the_closed_form_with_them():
    assert torch.allclose(phases.class_weights(players()), torch.full((K,), 0.1))
    share = torch.tensor([0.0, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.0])
    w = phases.class_weights(players(share))
    inverse = 1 / (share + phases.RARE_FLOOR)
    assert torch.allclose(w, 0.5 / K + 0.5 * inverse / inverse.sum())
    assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-6)
    assert w[0] == w[9] == w.max() and w[1] == w.min() and w.min() >= 0.5 / K  # half stays uniform
    # balanced shares give uniform weights, whatever the share balanced
    assert torch.allclose(phases.class_weights(players(torch.full((K,), 0.1), balance=1.0)), torch.full((K,), 0.1))


def test_the_shares_are_a_moving_average_of_the_released_labels_and_skip_declined_answers():
    p = players(torch.full((K,), 0.1))
    labels = torch.tensor([3, 3, 3, -1])  # the teacher ensemble may decline (-1): not counted
    phases.note_release(p, Release("rr", labels=labels))
    expected = torch.full((K,), 0.1 * phases.SHARE_DECAY)
    expected[3] += 1 - phases.SHARE_DECAY
    assert torch.allclose(p.released_share, expected)
    phases.note_release(p, Release("rr", labels=torch.tensor([-1, -1])))  # nothing answered: unchanged
    assert torch.allclose(p.released_share, expected)
    # soft releases count their hard label (argmax over the released classes)
    q = players(torch.full((K,), 0.1))
    values = torch.zeros(2, K)
    values[:, 7] = 1.0
    phases.note_release(q, Release("label", mask=torch.ones(2, K, dtype=torch.bool), values=values))
    assert q.released_share.argmax() == 7
    assert math.isclose(float(q.released_share.sum()), 1.0, rel_tol=1e-6)


def test_draw_asks_for_rare_classes_as_often_as_their_weight_and_keeps_pairs():
    share = torch.full((K,), 0.11)
    share[8] = 0.01
    p = players(share)
    _, c, _ = phases.draw(p, 20000)
    h = len(c) // 2
    assert torch.equal(c[:h], c[h:])  # the diversity term compares images asked for the same class
    freq = torch.bincount(c[:h], minlength=K).float() / h
    w = phases.class_weights(p)
    assert (freq - w).abs().max() < 0.015
    assert freq[8] > 2 * freq[0]  # the rarely released 8 is asked for far more than its uniform 10%
    # without shares: the uniform draw, as reproducible from the seed as before
    _, u1, _ = phases.draw(players(), 64)
    _, u2, _ = phases.draw(players(), 64)
    assert torch.equal(u1, u2)


@pytest.mark.parametrize("generator,mode,balanced", [("learned", "rr", True), ("learned", "label", True),
                                                     ("learned", "none", True), ("learned", "data", False),
                                                     ("strokes", "rr", False)])
def test_which_runs_balance_and_what_the_history_and_report_say(digits, digits_teacher, generator, mode, balanced):
    r = transcribe(data=digits, teacher=digits_teacher, dataset="digits", generator=generator, noise_mode=mode,
                   epsilon=5.0, steps=4, batch_size=32, generator_batch=16, eval_every=2, device="cpu",
                   warm_start_steps=0)
    expected = 0.0 if mode == "data" else GENERATOR_DEFAULTS[generator]["class_balance"]  # data: none to count
    assert r.config.class_balance == expected
    assert ("released_shares" in r.history[-1]) == balanced
    if balanced:
        shares = r.history[-1]["released_shares"]
        assert len(shares) == K and math.isclose(sum(shares), 1.0, abs_tol=1e-3)
        assert shares != r.history[0]["released_shares"]  # it moves with the releases
    if mode in ("rr", "label"):
        assert ("requested_classes" in r.privacy) == balanced
        assert ("requested classes:" in format_report(r.privacy)) == balanced
        if balanced:
            assert "no privacy cost" in r.privacy["requested_classes"]


def test_balancing_changes_the_requests_and_can_be_switched_off(digits, digits_teacher):
    seen = {}
    for balance in (0.0, 1.0):
        classes = []
        transcribe(data=digits, teacher=digits_teacher, dataset="digits", generator="learned", noise_mode="rr",
                   epsilon=5.0, steps=6, batch_size=32, generator_batch=16, device="cpu", class_balance=balance,
                   reproducible_noise=True,
                   callbacks={"on_step_end": lambda s, out=classes: out.append(s.last_classes.clone())})
        seen[balance] = torch.cat(classes)
    assert not torch.equal(seen[0.0], seen[1.0])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_class_balance_outside_0_1_is_refused(bad):
    with pytest.raises(DpsdError, match="class_balance"):
        TranscribeConfig(class_balance=bad).validate()
