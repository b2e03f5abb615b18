"""Where the student starts: random weights, or a DP-SGD teacher's own weights (mode none only)."""

import pytest
import torch

from dpsd_lite.config import STUDENT_INITS, TranscribeConfig, resolve
from dpsd_lite.errors import DpsdError
from dpsd_lite.report import format_report, with_dp_teacher
from dpsd_lite.teacher import TrainedTeacher


def test_resolve_starts_from_the_dp_teacher_only_where_that_is_post_processing():
    assert resolve(TranscribeConfig(noise_mode="none", teacher_dp_epsilon=1.0)).student_init == "teacher"
    assert resolve(TranscribeConfig(noise_mode="rr", teacher_dp_epsilon=1.0)).student_init == "random"
    assert resolve(TranscribeConfig(noise_mode="none")).student_init == "random"
    assert resolve(TranscribeConfig(noise_mode="none", teacher_dp_epsilon=1.0, student_init="random")
                   ).student_init == "random"  # asked for: kept
    assert set(STUDENT_INITS) == {"random", "teacher"}


@pytest.mark.parametrize("kwargs, match", [
    ({"student_init": "teacher"}, "needs a DP-SGD teacher"),  # an ordinary teacher: its weights are not private
    ({"student_init": "teacher", "teacher_dp_epsilon": 1.0, "noise_mode": "rr"}, "mode none"),
    ({"student_init": "copy"}, "unknown student_init"),
])
def test_bad_student_init_is_one_clear_error(kwargs, match):
    with pytest.raises(DpsdError, match=match):
        TranscribeConfig(**kwargs).validate()


def _dp_copy(model, **privacy):
    return TrainedTeacher(model, 0.9, 0.9, 1, 0, False, privacy={"epsilon": 1.0, "delta": 1e-5,
                                                                 "mechanism": "DP-SGD", "accountant": "RDP",
                                                                 **privacy})


def test_setup_copies_the_dp_teachers_weights_and_refuses_other_teachers(digits, digits_teacher):
    from dpsd_lite.models import Student
    from dpsd_lite.phases import setup

    dp_model = Student(digits.image_shape, digits.num_classes)
    torch.nn.init.constant_(dp_model.net[-1].bias, 0.25)  # a mark no random initialisation makes
    config = resolve(TranscribeConfig(dataset="digits", noise_mode="none", teacher_dp_epsilon=1.0, steps=2,
                                      device="cpu", seed=3))
    p = setup(config, digits, _dp_copy(dp_model), torch.device("cpu"))
    assert all(torch.equal(v, dp_model.state_dict()[k]) for k, v in p.student.state_dict().items())
    fresh = setup(config.replace(student_init="random"), digits, _dp_copy(dp_model), torch.device("cpu"))
    assert not torch.equal(fresh.student.net[-1].bias, dp_model.net[-1].bias)
    with pytest.raises(DpsdError, match="not trained with DP-SGD"):
        setup(config, digits, digits_teacher, torch.device("cpu"))  # an ordinary teacher, whatever the config says
    wide = Student(digits.image_shape, digits.num_classes, width=8)
    with pytest.raises(DpsdError, match="architecture"):
        setup(config, digits, _dp_copy(wide), torch.device("cpu"))


def test_a_run_from_the_dp_teacher_says_so_in_its_report(digits):
    from dpsd_lite.models import Student
    from dpsd_lite.transcribe import transcribe

    dp_model = Student(digits.image_shape, digits.num_classes)
    config = TranscribeConfig(dataset="digits", noise_mode="none", teacher_dp_epsilon=1.0, steps=2, eval_every=2,
                              device="cpu")
    result = transcribe(config, data=digits, teacher=_dp_copy(dp_model))
    assert result.config.student_init == "teacher"
    assert result.privacy["record_level"]["student_initialisation"].startswith("the DP teacher's weights")
    assert "the student started from: the DP teacher's weights" in format_report(result.privacy)
    assert "student_initialisation" not in with_dp_teacher({}, {"epsilon": 1.0, "delta": 1e-5, "mechanism": "m",
                                                                "accountant": "a"})["record_level"]
