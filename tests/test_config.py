"""TranscribeConfig: what rr releases (``rr_answer``), and its checks."""

from __future__ import annotations

import pytest

from dpsd_lite.config import TranscribeConfig
from dpsd_lite.errors import DpsdError
from dpsd_lite.phases import setup


def test_rr_releases_the_top_class_unless_asked_for_the_top_two():
    assert TranscribeConfig().rr_answer == "top1"
    for generator in ("learned", "strokes", "auto"):
        for eps in (1.0, 10.0):
            cfg = TranscribeConfig(generator=generator, epsilon=eps, precision="float32").validate().resolved()
            assert cfg.rr_answer == "top1"
            assert cfg.replace(rr_answer="top2").resolved().rr_answer == "top2"


def test_the_run_builds_the_mechanism_the_config_names(digits, digits_teacher):
    from dpsd_lite.mechanisms import SelectiveRR, TopTwoRR

    cfg = TranscribeConfig(dataset="digits", device="cpu", precision="float32")
    assert type(setup(cfg, digits, digits_teacher, "cpu").mechanism) is SelectiveRR
    two = setup(cfg.replace(rr_answer="top2", epsilon=4.0), digits, digits_teacher, "cpu").mechanism
    assert type(two) is TopTwoRR and two.epsilon == 4.0 and two.num_classes == digits.num_classes


@pytest.mark.parametrize("bad", ["top3", "", "Top2", None, "auto"])
def test_an_unknown_rr_answer_is_a_clear_error(bad):
    with pytest.raises(DpsdError, match="unknown rr answer .*; choose one of top1, top2"):
        TranscribeConfig(rr_answer=bad).validate()
