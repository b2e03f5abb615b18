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


# ------------------------------------------------------------ the DP teacher's recipe: augmult, averaging, layers
def _tiny_clipped_step(x, y, copies, clip, augment):
    """One Opacus DPOptimizer step (no noise) on a tiny linear model with ``copies`` augmented copies per record."""
    import warnings

    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    from dpsd_lite.dpsgd import average_copies

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 3))
    reference = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = GradSampleModule(model, loss_reduction="mean")
    opt = DPOptimizer(torch.optim.SGD(wrapped.parameters(), lr=1.0), noise_multiplier=0.0, max_grad_norm=clip,
                      expected_batch_size=len(x))
    xa = augment(x)  # len(x) * copies rows, the copies of record i at rows i*copies ... i*copies + copies - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus's hook on an input that needs no gradient: harmless
        torch.nn.functional.cross_entropy(wrapped(xa), y.repeat_interleave(copies)).backward()
    average_copies(wrapped, len(x), copies)
    opt.step()  # p <- p - (sum of clipped per-record gradients) / B
    return model, reference, xa


def test_augmult_clips_the_mean_over_copies_of_one_record_once():
    """The per-record gradient is the mean of its copies' gradients (by hand, one backward per copy), clipped once."""
    torch.manual_seed(1)
    x, y = torch.randn(3, 1, 2, 2), torch.tensor([0, 2, 1])
    copies, clip = 4, 0.3
    shifts = torch.randn(len(x) * copies, 1, 2, 2)

    def augment(batch):
        return batch.repeat_interleave(copies, dim=0) + shifts

    model, start, xa = _tiny_clipped_step(x, y, copies, clip, augment)
    W, b = start
    expected_w, expected_b = torch.zeros_like(W), torch.zeros_like(b)
    for i in range(len(x)):
        gw, gb = torch.zeros_like(W), torch.zeros_like(b)
        for k in range(copies):  # each copy's own gradient, by hand: softmax minus one-hot
            xi = xa[i * copies + k].flatten()
            p = torch.softmax(W @ xi + b, 0)
            p[y[i]] -= 1
            gw += torch.outer(p, xi) / copies
            gb += p / copies
        norm = torch.sqrt(gw.square().sum() + gb.square().sum())
        factor = min(1.0, clip / (float(norm) + 1e-6))  # one clip of the record's mean gradient
        expected_w += factor * gw / len(x)
        expected_b += factor * gb / len(x)
    new_w, new_b = [p.detach() for p in model.parameters()]
    assert torch.allclose(W - new_w, expected_w, atol=1e-6)
    assert torch.allclose(b - new_b, expected_b, atol=1e-6)
    # each record's clipped contribution is at most C however many copies it has: the sensitivity stays C
    assert float(torch.sqrt(((W - new_w) * len(x)).square().sum() + ((b - new_b) * len(x)).square().sum())) \
        <= len(x) * clip + 1e-5


def test_average_copies_refuses_a_batch_that_is_not_records_times_copies():
    from dpsd_lite.dpsgd import average_copies

    p = torch.nn.Parameter(torch.zeros(2))
    p.grad_sample = torch.zeros(5, 2)
    module = torch.nn.Module()
    module.p = p
    with pytest.raises(DpsdError, match="per-sample gradients"):
        average_copies(module, 2, 2)


def test_augmented_copies_stay_with_their_record():
    from dpsd_lite.dpsgd import augment_copies

    x = torch.stack([torch.full((1, 8, 8), -1.0), torch.full((1, 8, 8), 1.0)])
    out = augment_copies(x, 3, torch.Generator().manual_seed(0))
    assert out.shape == (6, 1, 8, 8)
    assert (out[:3] <= -0.99).all() and (out[3:].amax((1, 2, 3)) > 0.9).all()  # record 0's copies are record 0's


@pytest.fixture(scope="module")
def recipe_run(digits):
    return train_dpsgd(digits, epsilon=3.0, delta=1e-5, epochs=2, batch_size=128, device="cpu", seed=0,
                       augmult=2, ema=0.9, reproducible_noise=True)  # seeded noise: the accuracy check cannot flake


def test_recipe_run_spends_what_opacus_rdp_accountant_says(recipe_run, digits):
    """Augmentation multiplicity and averaging leave the accounting as it is: (σ, q, steps) through Opacus."""
    from opacus.accountants import RDPAccountant

    r = recipe_run
    n = len(digits.y_private)
    assert r.steps == 2 * math.ceil(n / 128) and r.sample_rate == pytest.approx(1 / math.ceil(n / 128))
    acc = RDPAccountant()
    acc.history = [(r.noise_multiplier, r.sample_rate, r.steps)]
    assert acc.get_epsilon(1e-5) == pytest.approx(r.epsilon, rel=1e-9)
    assert 0.9 * 3.0 < r.epsilon <= 3.0
    rep = r.privacy_report()
    assert rep["augmult"] == 2 and "mean" in rep["augmentation"] and "clipped once" in rep["augmentation"]
    assert "post-processing" in rep["weights"] and rep["epsilon"] == r.epsilon and rep["delta"] == 1e-5
    assert type(r.model) is Student and r.heldout_accuracy > 0.3


def test_parameter_average_is_the_moving_average_of_the_iterates():
    """EMA weights are computed from the released noisy iterates alone (post-processing): check the arithmetic."""
    from dpsd_lite.dpsgd import ParameterAverage

    m = torch.nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.fill_(0.0), m.bias.fill_(0.0)
    avg = ParameterAverage(m, 0.5)
    expected = torch.zeros(1, 2)
    for t, value in enumerate([1.0, 2.0, 3.0], start=1):
        with torch.no_grad():
            m.weight.fill_(value)
        avg.update(m)
        d = min(0.5, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * value
        assert torch.allclose(avg.state["weight"], expected)


@pytest.mark.parametrize("kwargs", [{"augmult": -1}, {"augmult": 1.5}, {"augmult": True}, {"ema": 1.0},
                                    {"ema": -0.1}, {"ema": "yes"}, {"train_last": 0}, {"train_last": 5}])
def test_bad_recipe_input_is_one_clear_error(digits, kwargs):
    with pytest.raises(DpsdError):
        train_dpsgd(digits, epsilon=1.0, device="cpu", **kwargs)


def test_train_last_leaves_the_other_layers_as_given(digits):
    from dpsd_lite.public_data import public_pretrained_student

    init = public_pretrained_student("digits", steps=5, batch_size=32)
    r = train_dpsgd(digits, epsilon=5.0, epochs=1, batch_size=256, device="cpu", init=init, train_last=2)
    before, after = init.state_dict(), r.model.state_dict()
    for name in ("net.0.weight", "net.3.weight"):  # the two convolutions
        assert torch.equal(before[name], after[name])
    assert not torch.equal(before["net.9.weight"], after["net.9.weight"])


def test_dp_teacher_uses_the_recipe_and_its_cache_key_names_it(digits, tmp_path, monkeypatch):
    """get_dp_teacher trains with DP_TEACHER's recipe; a teacher of another recipe is never taken from the cache."""
    from dpsd_lite import dpsgd, teacher

    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_steps", 5)
    monkeypatch.setitem(dpsgd.DP_TEACHER, "epochs", 1)
    monkeypatch.setitem(dpsgd.DP_TEACHER, "augmult", 2)
    monkeypatch.setitem(dpsgd.DP_TEACHER, "ema", 0.9)
    first = teacher.get_dp_teacher(digits, 5.0, seed=0, device="cpu", cache_dir=str(tmp_path))
    assert not first.cached and first.privacy["augmult"] == 2 and "moving average" in first.privacy["weights"]
    assert first.privacy["unit"] == "record" and first.privacy["delta"] == 1e-5 and first.privacy["epsilon"] <= 5.0
    assert teacher.get_dp_teacher(digits, 5.0, seed=0, device="cpu", cache_dir=str(tmp_path)).cached
    monkeypatch.setitem(dpsgd.DP_TEACHER, "ema", None)
    other = teacher.get_dp_teacher(digits, 5.0, seed=0, device="cpu", cache_dir=str(tmp_path))
    assert not other.cached and other.path != first.path and other.privacy["weights"] == "the last noisy iterate"
    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_augment", not dpsgd.DP_TEACHER.get("pretrain_augment", False))
    third = teacher.get_dp_teacher(digits, 5.0, seed=0, device="cpu", cache_dir=str(tmp_path))
    assert not third.cached and third.path not in (first.path, other.path)
    assert ("shifted and rotated" in third.privacy["initialisation"]) == dpsgd.DP_TEACHER["pretrain_augment"]


def test_dp_teacher_spends_what_opacus_prv_accountant_says(digits, tmp_path, monkeypatch):
    """The recipe's accountant is PRV: the DP teacher's report names it, and its ε is the PRV accountant's upper
    bound for the run's (σ, q, steps), below the target; RDP would have needed more noise for the same target."""
    from opacus.accountants import PRVAccountant

    from dpsd_lite import dpsgd, teacher
    from dpsd_lite.accounting import composed_epsilon

    assert dpsgd.DP_TEACHER["accountant"] == "prv"
    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_steps", 5)
    monkeypatch.setitem(dpsgd.DP_TEACHER, "epochs", 2)
    t = teacher.get_dp_teacher(digits, 2.0, seed=0, device="cpu", cache_dir=str(tmp_path))
    rep = t.privacy
    assert "PRV" in rep["accountant"] and 0.9 * 2.0 < rep["epsilon"] <= 2.0
    acc = PRVAccountant()
    acc.history = [(rep["noise_multiplier"], rep["sample_rate"], rep["steps"])]
    assert acc.get_epsilon(1e-5) == pytest.approx(rep["epsilon"], rel=1e-6)
    # the same noise is worth more ε under RDP's looser bound: PRV buys less noise per target
    assert composed_epsilon(rep["noise_multiplier"], rep["sample_rate"], rep["steps"], 1e-5, "rdp") > rep["epsilon"]


def test_recipe_noise_is_secret_and_its_augmentations_follow_the_seed(digits):
    """With augmentation multiplicity and averaging, the DP noise still comes from the secret source: two runs at
    one seed differ; with reproducible noise (a lesson) they repeat exactly, augmentations included."""
    def weights(**kw):
        res = train_dpsgd(digits, epsilon=5.0, epochs=1, batch_size=256, seed=0, device="cpu", augmult=2, ema=0.9,
                          **kw)
        return torch.cat([p.detach().flatten() for p in res.model.parameters()]), res

    (a, ra), (b, _) = weights(), weights()
    assert not torch.equal(a, b) and ra.privacy_report()["reproducible_noise"] is False
    (c, _), (d, _) = weights(reproducible_noise=True), weights(reproducible_noise=True)
    assert torch.equal(c, d)


def test_public_initialisation_learns_digits_from_drawings_alone_and_follows_its_seed(digits):
    """The DP teacher's public start: trained on drawings only, it already reads real digits; same seed, same
    weights; no drawings for a domain without them."""
    from dpsd_lite.errors import DpsdError
    from dpsd_lite.public_data import public_pretrained_student
    from dpsd_lite.utils import accuracy

    a = public_pretrained_student("digits", steps=60, batch_size=64, seed=1)
    b = public_pretrained_student("digits", steps=60, batch_size=64, seed=1)
    assert not a.training and all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert accuracy(a, digits.x_heldout, digits.y_heldout) > 0.3  # chance is 0.1; no real image was seen
    with pytest.raises((ValueError, DpsdError), match="digits only"):
        public_pretrained_student("fashion-mnist", steps=1)


def test_public_start_is_kept_in_the_cache_and_a_corrupt_copy_is_trained_again(tmp_path, monkeypatch):
    """With ``cache_dir`` the public start is trained once per arguments and reused (both ε of a route start from
    it); other arguments get their own file; an unreadable file is reported and replaced."""
    from dpsd_lite import public_data

    calls = []
    fit = public_data.fit_classifier
    monkeypatch.setattr(public_data, "fit_classifier", lambda *a, **k: (calls.append(1), fit(*a, **k))[1])
    a = public_data.public_pretrained_student("digits", steps=5, batch_size=16, seed=1, cache_dir=str(tmp_path))
    b = public_data.public_pretrained_student("digits", steps=5, batch_size=16, seed=1, cache_dir=str(tmp_path))
    assert len(calls) == 1 and not b.training
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    files = list((tmp_path / "public-starts").iterdir())
    assert len(files) == 1 and not any(f.suffix == ".tmp" for f in files)
    public_data.public_pretrained_student("digits", steps=5, batch_size=16, seed=2, cache_dir=str(tmp_path))
    assert len(calls) == 2 and len(list((tmp_path / "public-starts").iterdir())) == 2
    files[0].write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        c = public_data.public_pretrained_student("digits", steps=5, batch_size=16, seed=1, cache_dir=str(tmp_path))
    assert len(calls) == 3 and all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_augmented_public_initialisation_sees_shifted_drawings_and_follows_its_seed(monkeypatch):
    """``augment``: the drawings are shifted and rotated (from the same seeded generator) before each step."""
    from dpsd_lite import public_data

    seen = []
    original = public_data.augment_images

    def spy(x, gen):
        out = original(x, gen)
        seen.append((x.clone(), out.clone()))
        return out

    monkeypatch.setattr(public_data, "augment_images", spy)
    a = public_data.public_pretrained_student("digits", steps=3, batch_size=16, seed=2, augment=True)
    assert len(seen) == 3 and all(not torch.equal(before, after) for before, after in seen)
    b = public_data.public_pretrained_student("digits", steps=3, batch_size=16, seed=2, augment=True)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    plain = public_data.public_pretrained_student("digits", steps=3, batch_size=16, seed=2)
    assert len(seen) == 6  # no augmentation asked: none done
    assert not all(torch.equal(v, plain.state_dict()[k]) for k, v in a.state_dict().items())


def test_split_recipe_reads_the_recipe_when_called_and_leaves_it_whole(monkeypatch):
    from dpsd_lite import dpsgd

    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_steps", 7)
    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_augment", True)
    pretrain, rest = dpsgd.split_recipe()
    assert pretrain == {"steps": 7, "augment": True} and rest["epochs"] == dpsgd.DP_TEACHER["epochs"]
    assert not {"pretrain_steps", "pretrain_augment"} & set(rest)  # train_dpsgd gets only its own arguments
    assert dpsgd.DP_TEACHER["pretrain_steps"] == 7  # not popped from the shipped recipe
    assert dpsgd.split_recipe({"pretrain_steps": 3, "epochs": 1}) == ({"steps": 3, "augment": False}, {"epochs": 1})
    assert "shifted and rotated" in dpsgd.describe_pretraining(pretrain)
    assert "shifted" not in dpsgd.describe_pretraining({"steps": 3, "augment": False})


def test_sweep_public_dpsgd_starts_from_the_recipe_pretraining_read_at_run_time(digits, digits_teacher, monkeypatch):
    """`--modes dpsgd-public` pretrains for the recipe's steps as the recipe says when the sweep runs."""
    from dpsd_lite import dpsgd, sweep

    seen = []

    class Stop(Exception):
        pass

    def fake_pretrained(dataset, steps, augment, **kwargs):
        seen.append((steps, augment))
        raise Stop

    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_steps", 11)
    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_augment", False)
    monkeypatch.setattr(sweep, "public_pretrained_student", fake_pretrained)
    with pytest.raises(Stop):
        sweep.run_sweep([4.0], ["dpsgd-public"], dataset="digits", data=digits, teacher=digits_teacher,
                        steps=4, batch_size=32, eval_every=4, device="cpu", teacher_epochs=3)
    assert seen == [(11, False)]
