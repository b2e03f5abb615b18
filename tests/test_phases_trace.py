"""The lesson's view of one iteration (notebook 05): the traced steps are the library's steps, unchanged.

Two players built from one config (reproducible noise, float32, one thread) take the same steps, one
plainly and one traced: their students, generators, releases and replay buffers must agree bit for bit, and
what the trace kept must be what the step computed (the teacher's probabilities, the prior, the answer sets).
"""

from __future__ import annotations

import math

import pytest
import torch

from dpsd_lite import phases, plots
from dpsd_lite.mechanisms import select_rr_classes
from dpsd_lite.transcribe import TranscribeConfig, resolve

CONFIG = resolve(TranscribeConfig(dataset="digits", noise_mode="rr", epsilon=2.0, steps=10, batch_size=32,
                                  generator_batch=16, teacher_epochs=3, device="cpu", seed=0,
                                  reproducible_noise=True, precision="float32"))


@pytest.fixture
def twins(digits, digits_teacher, one_torch_thread):
    return [phases.setup(CONFIG, digits, digits_teacher, torch.device("cpu")) for _ in range(2)]


def _same_parameters(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_traced_private_step_is_the_private_step(twins):
    plain, traced = twins
    for _ in range(2):  # the second step has a trained student, so its prior is no longer flat
        x, c, release, loss = phases.private_step(plain, use_prior=True)
        trace = phases.trace_private_step(traced, use_prior=True)
    assert "release" not in vars(traced.mechanism), "the mechanism's own release is back"
    assert _same_parameters(plain.student, traced.student)
    assert _same_parameters(plain.generator, traced.generator)
    assert torch.equal(release.labels, trace.release.labels) and torch.equal(x, trace.x)
    assert float(loss) == trace.loss
    assert plain.buffer.size == traced.buffer.size == 2 * CONFIG.batch_size
    assert torch.equal(plain.released_share, traced.released_share)

    # what the trace kept is what the step computed
    B, K = trace.x.shape[0], 10
    assert trace.z.shape == (B, CONFIG.nz) and trace.generated.shape == trace.x.shape == (B, 1, 8, 8)
    with torch.no_grad():
        expected = traced.teacher_model(trace.x).softmax(1)
    assert torch.allclose(trace.teacher_probabilities, expected, atol=1e-6)
    prior = phases.student_prior(trace.student_logits, CONFIG.prior_temperature, CONFIG.prior_smoothing)
    assert torch.allclose(trace.prior, prior, atol=1e-6)
    mask, k = select_rr_classes(trace.prior, CONFIG.epsilon, CONFIG.k_min)
    assert torch.equal(k, trace.release.extra["k"]) and torch.equal(mask, trace.release.mask)
    assert set(trace.student_change) == {"net.0 (Conv2d)", "net.3 (Conv2d)", "net.7 (Linear)", "net.9 (Linear)"}
    assert all(v["change"] > 0 and v["norm"] > 0 for v in trace.student_change.values())


def test_a_traced_generator_step_is_the_generator_step(twins):
    plain, traced = twins
    phases.draw(plain, 8)  # the trace draws its fixed (z, c) first: the twin draws as many
    loss, terms = phases.generator_step(plain)
    trace = phases.trace_generator_step(traced, n=8)
    assert _same_parameters(plain.generator, traced.generator), "weights and BatchNorm statistics alike"
    assert trace.loss == loss and trace.terms == terms and set(terms) == {"class", "diversity"}
    assert trace.before.shape == trace.after.shape == (8, 1, 8, 8)
    assert not torch.equal(trace.before, trace.after), "one step moves the images"
    assert all(v["change"] > 0 for v in trace.generator_change.values())


def test_generator_images_leave_the_generator_as_it_was(twins):
    p = twins[0]
    before = {k: v.clone() for k, v in p.generator.state_dict().items()}
    z, c, ink = phases.draw(p, 8)
    a, b = phases.generator_images(p, z, c, ink), phases.generator_images(p, z, c, ink)
    assert torch.equal(a, b) and not a.requires_grad
    assert all(torch.equal(before[k], v) for k, v in p.generator.state_dict().items())


def test_weight_change_groups_a_layers_parameters():
    layer = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with torch.no_grad():
        layer[0].weight.fill_(1.0)
        layer[0].bias.zero_()
    before = phases.parameter_snapshot(layer)
    with torch.no_grad():
        layer[0].weight[0, 0] += 3.0
        layer[0].bias[1] += 4.0
    change = phases.weight_change(before, layer)
    assert list(change) == ["0 (Linear)"]
    assert change["0 (Linear)"]["norm"] == pytest.approx(math.sqrt(6))
    assert change["0 (Linear)"]["change"] == pytest.approx(5.0)
    assert change["0 (Linear)"]["relative"] == pytest.approx(5 / math.sqrt(6))


def test_the_trace_figures_name_what_they_show(twins, digits):
    p = twins[1]
    trace = phases.trace_private_step(p, use_prior=True)
    fig = plots.plot_private_step(trace, n=4, class_names=digits.class_names, run=p)
    assert "never leaves the mechanism" in fig._suptitle.get_text()
    title = fig._suptitle.get_text()
    assert "learned generator (DPSD)" in title and "rr, ε = 2 per teacher answer" in title
    bottom = [ax.get_title() for ax in fig.axes[8:12]]
    assert all(t.startswith("k = ") and "released" in t for t in bottom), bottom
    assert len(plots.figure_to_png(fig)) > 1000
    fig = plots.plot_weight_change(trace.student_change, title="the student's step")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(trace.student_change)
