"""DP-SGD baseline: Opacus picks sigma for the target, the reported epsilon is record-level and <= target."""

import math

import pytest
import torch

from dpsd_lite.accounting import composed_epsilon
from dpsd_lite.dpsgd import UNIT_RECORD, format_dpsgd_report, train_dpsgd
from dpsd_lite.errors import DpsdError
from dpsd_lite.models import Student


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


@pytest.fixture(scope="module")
def dpsgd_run(digits):
    return train_dpsgd(digits, epsilon=4.0, delta=1e-5, epochs=3, batch_size=64, device="cpu", seed=0)


def test_epsilon_reported_is_at_most_target_and_matches_opacus(dpsgd_run, digits):
    r = dpsgd_run
    assert 0 < r.epsilon <= r.target_epsilon == 4.0
    assert r.epsilon > 0.9 * r.target_epsilon  # sigma is not needlessly large
    n = len(digits.y_private)
    assert r.sample_rate == pytest.approx(1 / math.ceil(n / 64))
    assert r.steps == 3 * math.ceil(n / 64)
    # the same (sigma, q, steps) through Opacus's RDP accountant gives the same epsilon
    assert composed_epsilon(r.noise_multiplier, r.sample_rate, r.steps, 1e-5, "rdp") == pytest.approx(r.epsilon, rel=1e-9)
    assert [h["epsilon"] for h in r.history] == sorted(h["epsilon"] for h in r.history)


def test_model_is_a_plain_student_that_learned(dpsgd_run, digits):
    assert type(dpsgd_run.model) is Student
    assert not any(hasattr(p, "grad_sample") and p.grad_sample is not None for p in dpsgd_run.model.parameters())
    assert dpsgd_run.heldout_accuracy > 0.3  # chance is 0.1


def test_report_names_epsilon_delta_and_record_unit(dpsgd_run):
    rep = dpsgd_run.privacy_report()
    assert rep["unit_of_privacy"] == UNIT_RECORD and "record" in UNIT_RECORD
    assert rep["delta"] == 1e-5 and rep["epsilon"] == dpsgd_run.epsilon
    assert "RDP" in rep["accountant"]
    for key in ("noise_multiplier", "sample_rate", "epochs", "steps"):
        assert rep[key] == getattr(dpsgd_run, key)
    text = format_dpsgd_report(dpsgd_run)
    assert "delta = 1e-05" in text and "per private training record" in text and "epsilon =" in text


@pytest.mark.parametrize("kwargs", [{"epsilon": 0}, {"epsilon": -1}, {"epsilon": 1, "delta": 0},
                                    {"epsilon": 1, "accountant": "moments"}, {"epsilon": 1, "epochs": 0}])
def test_bad_input_is_one_clear_error(digits, kwargs):
    with pytest.raises(DpsdError):
        train_dpsgd(digits, device="cpu", **kwargs)


def test_sweep_puts_dpsgd_beside_the_dpsd_modes(digits, digits_teacher, tmp_path):
    """`dpsd-lite sweep --modes rr,dpsgd` reports DP-SGD rows with their record-level unit, in table and plot."""
    from dpsd_lite.sweep import format_table, plot_sweep, run_sweep

    rows = run_sweep([4.0], ["rr", "dpsgd"], dataset="digits", data=digits, teacher=digits_teacher,
                     steps=4, batch_size=32, eval_every=4, device="cpu", teacher_epochs=3)
    by_mode = {r["noise_mode"]: r for r in rows}
    assert set(by_mode) == {"rr", "dpsgd"}
    assert by_mode["dpsgd"]["privacy_unit"] == "per private training record"
    assert by_mode["rr"]["privacy_unit"] == "per teacher answer"
    assert by_mode["dpsgd"]["epsilon"] == 4.0 and by_mode["dpsgd"]["queries"] == 0
    assert by_mode["dpsgd"]["student_accuracy"] > 0.3  # DP-SGD at eps=4 learns digits well above chance
    assert "per private training record" in format_table(rows)
    fig = plot_sweep(rows, tmp_path / "plot.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("DP-SGD" in t and "record" in t for t in labels)
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_opacus_per_sample_gradients_of_the_student_are_exact():
    """DP-SGD clips what Opacus computes per sample: it must equal each sample's own gradient.

    Guards the student's memory layout: with channels-last weights (the loop's CPU fast path)
    Opacus 1.6's per-sample gradient of the second convolution is wrong (off by up to 0.14),
    so the student handed to Opacus must stay in the default layout.
    """
    import warnings

    from opacus import GradSampleModule

    from dpsd_lite.models import Student

    torch.manual_seed(0)
    model = Student((1, 28, 28), 10)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = GradSampleModule(model, loss_reduction="sum")
    torch.nn.functional.cross_entropy(wrapped(x), y, reduction="sum").backward()
    per_sample = [p.grad_sample.clone() for p in wrapped.parameters()]
    wrapped.zero_grad()
    for i in range(len(x)):
        reference = Student((1, 28, 28), 10)
        reference.load_state_dict(model.state_dict())
        torch.nn.functional.cross_entropy(reference(x[i:i + 1]), y[i:i + 1], reduction="sum").backward()
        for g, p in zip(per_sample, reference.parameters()):
            assert torch.allclose(g[i], p.grad, atol=1e-5), "Opacus's per-sample gradient differs from the sample's own"
