"""The stroke generator, its anchor to the random initial draw, and replay of earlier releases."""

import pytest
import torch

from dpsd_lite.mechanisms import Release, make_mechanism
from dpsd_lite.generators import Generator, StrokeGenerator, upsample2
from dpsd_lite.config import resolve
from dpsd_lite.transcribe import ReplayBuffer, TranscribeConfig, build_generator, transcribe


def test_stroke_images_are_strokes_on_a_dark_background_inside_the_box():
    torch.manual_seed(0)
    g = StrokeGenerator((1, 28, 28), 10, box=20 / 28)
    x, c = g.sample(64, generator=torch.Generator().manual_seed(0))
    assert x.shape == (64, 1, 28, 28) and c.shape == (64,)
    assert x.min() >= -1 and x.max() <= 1
    ink = (x + 1) / 2
    # sparse: a pen line, not a filled frame; every image has some ink
    assert 0.02 < ink.mean() < 0.3
    assert (ink.flatten(1).amax(1) > 0.5).all()
    # MNIST's 20×20 box: stroke centres stay inside it, only the pen's soft edge reaches the 4-pixel border
    with torch.no_grad():
        points, alpha, pen = g.strokes(torch.randn(64, g.nz), c)
    assert points.abs().max() <= 1 and (alpha[:, 0] == 1).all() and ((pen >= 0.09) & (pen <= 0.16)).all()
    assert ink[..., 0, :].max() < 0.05 and ink[..., :, 0].max() < 0.05


def _centre_of_mass_offset(x):
    """Distance (pixels, rows and columns) of each image's ink centre of mass from the frame's centre."""
    ink = (x + 1) / 2
    H, W = x.shape[-2:]
    mass = ink.sum((1, 2, 3))
    rows = (ink.sum(3).squeeze(1) * (torch.arange(H) + 0.5)).sum(1) / mass - H / 2
    cols = (ink.sum(2).squeeze(1) * (torch.arange(W) + 0.5)).sum(1) / mass - W / 2
    return rows, cols


@pytest.mark.parametrize("skeletons", [0.0, 0.5, 1.0])
def test_centre_of_mass_option_puts_the_ink_at_the_frame_centre(skeletons):
    """MNIST's format centres each digit's centre of mass; the bounding-box centring alone leaves it pixels off."""
    offsets = {}
    for com in (False, True):
        torch.manual_seed(0)
        g = StrokeGenerator((1, 28, 28), 10, box=20 / 28, skeletons=skeletons, centre_of_mass=com).eval()
        assert g.architecture["centre_of_mass"] is com
        with torch.no_grad():
            x, _ = g.sample(256, generator=torch.Generator().manual_seed(1))
        rows, cols = _centre_of_mass_offset(x)
        offsets[com] = max(rows.abs().mean().item(), cols.abs().mean().item())
        if com:  # on average within a fraction of a pixel; ink saturating where strokes cross, or cut off
            # by the frame, moves single images by up to about a pixel
            assert rows.abs().max() < 1.5 and cols.abs().max() < 1.5
    assert offsets[True] < 0.2 < 0.5 < offsets[False]


def test_mnist_domains_draw_centred_by_mass_and_digits_does_not():
    cfg = TranscribeConfig(generator="strokes")
    assert build_generator(resolve(cfg.replace(dataset="mnist-5k")), (1, 28, 28), 10).centre_of_mass
    assert build_generator(resolve(cfg.replace(dataset="mnist")), (1, 28, 28), 10).centre_of_mass
    assert not build_generator(resolve(cfg.replace(dataset="digits")), (1, 8, 8), 10).centre_of_mass


def test_mnist_domains_draw_with_the_thin_pen_and_digits_keeps_the_generic_one():
    cfg = TranscribeConfig(generator="strokes")
    for dataset, shape, (lo, hi) in [("mnist-5k", (1, 28, 28), (0.07, 0.14)), ("mnist", (1, 28, 28), (0.07, 0.14)),
                                     ("digits", (1, 8, 8), (0.09, 0.16))]:
        torch.manual_seed(0)
        g = build_generator(resolve(cfg.replace(dataset=dataset)), shape, 10).eval()
        assert g.architecture["pen"] == [lo, hi]
        with torch.no_grad():
            _, _, pen = g.strokes(torch.randn(512, g.nz) * 3, torch.randint(0, 10, (512,)))
        assert ((pen >= lo) & (pen <= hi)).all()
        ends = g._pen_width(torch.tensor([[-50.0], [0.0], [50.0]])).flatten()  # the whole range is reachable
        assert torch.allclose(ends, torch.tensor([lo, (lo + hi) / 2, hi]))
    # a thinner pen puts less ink on the page (the same strokes, drawn by the two pens)
    torch.manual_seed(0)
    thin = build_generator(resolve(cfg), (1, 28, 28), 10).eval()
    torch.manual_seed(0)
    generic = StrokeGenerator((1, 28, 28), 10, box=20 / 28, skeletons=cfg.skeletons, centre_of_mass=True).eval()
    z, c = torch.randn(256, thin.nz), torch.randint(0, 10, (256,))
    with torch.no_grad():
        assert (thin(z, c) + 1).mean() < 0.9 * (generic(z, c) + 1).mean()


def test_sampling_is_reproducible_from_the_seed():
    torch.manual_seed(0)
    g = StrokeGenerator((1, 28, 28), 10)
    a, ca = g.sample(16, generator=torch.Generator().manual_seed(3))
    b, cb = g.sample(16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(ca, cb)


def test_renderer_is_differentiable_in_every_parameter():
    torch.manual_seed(0)
    g = StrokeGenerator((1, 28, 28), 10)
    z, c = torch.randn(32, g.nz), torch.arange(32) % 10
    g(z, c).sum().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_digits_format_is_supersampled_to_8x8():
    cfg = TranscribeConfig(dataset="digits", generator="strokes")
    g = build_generator(resolve(cfg), (1, 8, 8), 10)
    assert isinstance(g, StrokeGenerator) and g.supersample == 4
    x, _ = g.sample(4)
    assert x.shape == (4, 1, 8, 8)


def test_the_learned_generator_is_the_default_on_every_dataset_and_the_renderer_is_asked_for_by_name():
    for dataset, shape in [("mnist-5k", (1, 28, 28)), ("mnist", (1, 28, 28)), ("fashion-mnist", (1, 28, 28)),
                           ("digits", (1, 8, 8))]:
        assert isinstance(build_generator(resolve(TranscribeConfig(dataset=dataset)), shape, 10), Generator), dataset
    assert isinstance(build_generator(resolve(TranscribeConfig(generator="strokes")), (1, 28, 28), 10), StrokeGenerator)
    for bad in ("gan", "auto"):  # "auto" (strokes for digits) is gone: the learned generator is the default
        with pytest.raises(Exception, match="unknown generator"):
            TranscribeConfig(generator=bad).validate()


def _raw_drift(result):
    """How far the trained generator's stroke parameters moved from a fresh one with the same seed."""
    torch.manual_seed(result.config.seed)
    init = build_generator(resolve(result.config), result.data.image_shape, result.data.num_classes)
    z, c = torch.randn(256, init.nz, generator=torch.Generator().manual_seed(1)), torch.arange(256) % 10
    init.train(), result.generator.train()
    with torch.no_grad():
        return (result.generator.raw(z, c) - init.raw(z, c)).pow(2).mean().item()


def test_the_anchor_keeps_strokes_near_their_random_draw(digits, digits_teacher):
    common = dict(data=digits, teacher=digits_teacher, dataset="digits", noise_mode="rr", epsilon=5, steps=20,
                  batch_size=64, eval_every=20, device="cpu", seed=0, lr_generator=5e-3, reproducible_noise=True,
                  generator="strokes")
    free = transcribe(anchor_weight=0.0, **common)
    anchored = transcribe(anchor_weight=100.0, **common)
    assert _raw_drift(anchored) < 0.25 * _raw_drift(free)


def test_replay_buffer_keeps_rows_aligned_and_wraps():
    buf = ReplayBuffer(capacity=10)
    for start in range(0, 25, 5):  # 25 rows into 10 slots
        ids = torch.arange(start, start + 5)
        x = ids.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
        buf.add(x, Release("rr", mask=torch.ones(5, 3, dtype=torch.bool), labels=ids, extra={"k": ids + 100}))
    assert buf.size == 10
    x, rel = buf.sample(200, torch.Generator().manual_seed(0))
    ids = x[:, 0, 0, 0].long()
    assert torch.equal(rel.labels, ids) and torch.equal(rel.extra["k"], ids + 100)
    assert set(ids.tolist()) == set(range(15, 25))  # only the newest 10 rows are kept


def test_replay_is_off_in_data_mode(digits, digits_teacher):
    """A data-mode release is a gradient at the student of that moment: it is never replayed."""
    assert not make_mechanism("data", 1.0, 1e-5).replayable
    common = dict(data=digits, teacher=digits_teacher, dataset="digits", noise_mode="data", epsilon=5, steps=6,
                  batch_size=32, eval_every=6, device="cpu", seed=0, reproducible_noise=True)  # bit-for-bit
    a = transcribe(replay_steps=0, **common).student.state_dict()
    b = transcribe(replay_steps=3, **common).student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_replay_changes_training_but_not_the_queries(digits, digits_teacher):
    common = dict(data=digits, teacher=digits_teacher, dataset="digits", noise_mode="rr", epsilon=5, steps=6,
                  student_steps=2, batch_size=32, eval_every=6, device="cpu", seed=0,
                  reproducible_noise=True)  # so only the replay differs between the two runs
    a = transcribe(replay_steps=0, **common)
    b = transcribe(replay_steps=2, **common)
    assert a.queries == b.queries == 6 * 2 * 32  # replay asks the teacher nothing
    assert a.privacy["teacher_queries"] == b.privacy["teacher_queries"]
    assert any(not torch.equal(p, q) for p, q in zip(a.student.parameters(), b.student.parameters()))


def test_query_pool_sends_the_teacher_only_the_picked_queries(digits, digits_teacher):
    """With a pool, the student (not the teacher) picks the B least-sure candidates; the teacher sees B per step."""
    import dataclasses

    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            seen.append(len(x))
            return self.model(x)

    teacher = dataclasses.replace(digits_teacher, model=Spy(digits_teacher.model))
    r = transcribe(data=digits, teacher=teacher, dataset="digits", noise_mode="rr", epsilon=5, steps=4,
                   batch_size=32, query_pool=3, student_steps=2, eval_every=4, device="cpu", seed=0)
    assert seen == [32] * 4 * 2 and r.queries == 4 * 2 * 32 == r.privacy["teacher_queries"]


def test_the_generator_objective_trains_the_generator(digits, digits_teacher):
    with pytest.raises(Exception, match="unknown setting"):  # the entropy objective was tried and dropped
        TranscribeConfig().replace(generator_objective="boundary")
    common = dict(data=digits, teacher=digits_teacher, dataset="digits", noise_mode="rr", epsilon=5, steps=5,
                  batch_size=32, eval_every=5, device="cpu", seed=0, anchor_weight=0.0, lr_generator=1e-2,
                  generator="strokes")
    assert _raw_drift(transcribe(**common)) > 0


def test_freeze_generator_keeps_its_initialisation_and_history_counts_agreement(digits, digits_teacher):
    """The ablation: a frozen generator ends where it started (however long the run); the history reports the
    share of queries whose released label is the requested class."""
    common = dict(data=digits, teacher=digits_teacher, dataset="digits", noise_mode="rr", epsilon=5,
                  batch_size=32, eval_every=2, device="cpu", seed=0, reproducible_noise=True)

    def gen_weights(**kw):
        r = transcribe(**common, **kw)
        return [p.detach().clone() for p in r.generator.parameters()], r

    short, _ = gen_weights(steps=2, freeze_generator=True)
    long_, r = gen_weights(steps=6, freeze_generator=True)
    assert all(torch.equal(a, b) for a, b in zip(short, long_))
    trained, _ = gen_weights(steps=6, anchor_weight=0.0, lr_generator=1e-2)
    assert any(not torch.equal(a, b) for a, b in zip(short, trained))
    shares = [h["agreement"] for h in r.history]
    assert len(shares) == 3 and all(0.0 <= a <= 1.0 for a in shares)


@pytest.mark.parametrize("shape", [(3, 4, 7, 7), (2, 1, 5, 6)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_learned_generators_upsampling_is_nearest_neighbour_in_values_and_gradients(shape, layout):
    x = torch.randn(*shape).contiguous(memory_format=layout).requires_grad_(True)
    ref = x.detach().clone().requires_grad_(True)
    ours, theirs = upsample2(x), torch.nn.functional.interpolate(ref, scale_factor=2, mode="nearest")
    assert ours.shape == theirs.shape and torch.equal(ours, theirs)
    assert ours.is_contiguous(memory_format=layout)  # the layout is kept (channels-last: the fast one)
    weights = torch.randn_like(theirs)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    torch.testing.assert_close(x.grad, ref.grad)


def test_the_learned_generator_is_built_channels_last_and_keeps_the_layout_through_its_layers():
    g = build_generator(resolve(TranscribeConfig(dataset="mnist-5k", generator="learned")), (1, 28, 28), 10)
    assert g.block2[0].weight.is_contiguous(memory_format=torch.channels_last)
    feats = []
    g.block2.register_forward_hook(lambda mod, inp, out: feats.append(inp[0]))
    x, _ = g.sample(8, generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 28, 28) and feats[0].is_contiguous(memory_format=torch.channels_last)


def test_build_generator_fills_the_learned_generators_own_defaults():
    """Called directly with a config that leaves them open, it builds what a run on that dataset would use."""
    fashion = build_generator(resolve(TranscribeConfig(dataset="fashion-mnist")), (1, 28, 28), 10)
    assert isinstance(fashion, Generator) and fashion.sharpness == 1.5
    assert build_generator(resolve(TranscribeConfig(dataset="mnist", generator="learned")), (1, 28, 28), 10).sharpness == 4.0


@pytest.mark.parametrize("generator, mode, epsilon, steps, pool", [
    ("strokes", "rr", 1.0, 150, 2), ("strokes", "rr", 10.0, 150, 2),
    ("learned", "rr", 10.0, 200, 1), ("learned", "none", 1.0, 200, 1),
    ("learned", "rr", 1.0, 200, 1), ("learned", "label", 2.0, 200, 1),
])
def test_the_budget_is_the_generators_own_unless_set(generator, mode, epsilon, steps, pool):
    """The learned generator sends every candidate to the teacher (no pick) and spends the time that saves on
    more iterations; a value the user sets is kept."""
    cfg = TranscribeConfig(dataset="mnist-5k", generator=generator, noise_mode=mode, epsilon=epsilon,
                           precision="float32")
    assert cfg.steps is None and cfg.query_pool is None
    assert (resolve(cfg).steps, resolve(cfg).query_pool) == (steps, pool)
    mine = resolve(cfg.replace(steps=30, query_pool=3))
    assert (mine.steps, mine.query_pool) == (30, 3)


def test_a_run_takes_the_generators_number_of_steps_and_pool(digits, digits_teacher, monkeypatch):
    """A run whose config leaves steps and query_pool open runs the generator's own (shrunk here to stay fast)."""
    from dpsd_lite import config as config_module, phases

    monkeypatch.setitem(config_module.GENERATOR_DEFAULTS, "learned-noisy",
                        {**config_module.GENERATOR_DEFAULTS["learned-noisy"], "steps": 3, "query_pool": 1})
    drawn = []
    real_draw = phases.draw
    monkeypatch.setattr(phases, "draw", lambda p, n: drawn.append(n) or real_draw(p, n))
    r = transcribe(dataset="digits", data=digits, teacher=digits_teacher, generator="learned", noise_mode="rr",
                   epsilon=1.0, batch_size=16, generator_batch=8, student_steps=1, replay_steps=0, device="cpu",
                   precision="float32")
    assert r.config.steps == 3 and r.history[-1]["step"] == 3 and r.queries == 3 * 16
    assert drawn.count(16) == 3 and 32 not in drawn  # pool 1: as many candidates as queries
