"""Privacy claims that hold against anyone who reads a run.

* The noise is secret by default: the replay attack (recompute a release's
  noise from the run's saved seed and subtract it) succeeds only with the
  explicit ``reproducible_noise`` opt-in, whose report says so.
* ``rr`` never answers outside its answer set, whatever the uniform draw.
* The teacher cache is keyed by the data's content, not its name and size.
* DP-SGD's noise and Poisson sampling are secret unless asked otherwise.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from dpsd_lite.mechanisms import LabelNoise, SelectiveRR, make_mechanism, rr_output_distribution, rr_sample
from dpsd_lite.noise import NoiseSource, replay_label_noise, reproducible_noise_seed
from dpsd_lite.report import format_report, privacy_report
from dpsd_lite.runs import load_run, save_run
from dpsd_lite.transcribe import TranscribeConfig, transcribe

K = 10
# float32: the attack's ground truth is the teacher's float32 answer (in bfloat16 the loop's teacher rounds)
TINY = dict(dataset="digits", noise_mode="label", epsilon=2.0, steps=3, batch_size=32, student_steps=1,
            eval_every=100, teacher_epochs=3, device="cpu", seed=0, precision="float32")


# --------------------------------------------------------------------------- the noise source
def test_default_mechanisms_draw_secret_noise_and_opt_in_noise_repeats():
    logits = torch.randn(64, K, generator=torch.Generator().manual_seed(0))
    for mode in ("label", "rr", "data"):
        a, b = (make_mechanism(mode, 1.0, 1e-5) for _ in range(2))
        ra = a.release(logits, student_logits=torch.zeros_like(logits))
        rb = b.release(logits, student_logits=torch.zeros_like(logits))
        field = "labels" if mode == "rr" else "values"
        assert not torch.equal(getattr(ra, field), getattr(rb, field)), mode
        c, d = (make_mechanism(mode, 1.0, 1e-5, noise_seed=7) for _ in range(2))
        rc = c.release(logits, student_logits=torch.zeros_like(logits))
        rd = d.release(logits, student_logits=torch.zeros_like(logits))
        assert torch.equal(getattr(rc, field), getattr(rd, field)), mode


def test_reproducible_noise_is_not_the_runs_own_stream():
    """The opt-in noise is derived from the seed by a hash: its first draws are not the run's own first draws."""
    assert reproducible_noise_seed(0) != 0 and reproducible_noise_seed(0) != reproducible_noise_seed(1)
    noise = torch.randn(5, generator=NoiseSource.from_seed(0).generator())
    run_stream = torch.randn(5, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(noise, run_stream)


def test_reports_name_the_noise_source_and_warn_only_for_reproducible_noise():
    secret = privacy_report(make_mechanism("label", 1.0, 1e-5), queries=10)
    assert secret["reproducible_noise"] is False and "warning" not in secret
    assert "operating system's entropy" in format_report(secret)
    assert "WARNING" not in format_report(secret)
    lesson = privacy_report(make_mechanism("rr", 1.0, 1e-5, noise_seed=3), queries=10)
    text = format_report(lesson)
    assert lesson["reproducible_noise"] is True
    assert text.startswith("WARNING: REPRODUCIBLE NOISE") and "does NOT hold" in text and "seed (3)" in text


def test_report_says_each_answer_separately_and_what_is_outside_epsilon():
    cfg = TranscribeConfig(dataset="mnist-5k", generator="strokes")
    text = format_report(privacy_report(make_mechanism("rr", 1.0, 1e-5), queries=10, config=cfg))
    assert "covers each of the answers separately" in text and "does NOT cover the answers together" in text
    assert "non-private statistic of the teacher" in text
    assert "chosen by comparing transcriptions on mnist-5k's private split" in text  # disclosed selection
    assert "learned generator's defaults" not in text  # the renderer drew this run's queries
    other = privacy_report(make_mechanism("rr", 1.0, 1e-5), queries=10, config=cfg.replace(dataset="digits"))
    assert not any("private split" in note for note in other["not_covered_by_epsilon"])
    # the learned generator's defaults were chosen on the private splits of mnist-5k and Fashion-MNIST
    for dataset in ("fashion-mnist", "mnist-5k"):
        learned = privacy_report(make_mechanism("rr", 1.0, 1e-5), queries=10,
                                 config=cfg.replace(dataset=dataset, generator="learned"))
        notes = [n for n in learned["not_covered_by_epsilon"] if "learned generator's defaults" in n]
        assert len(notes) == 1 and "private splits of mnist-5k and of Fashion-MNIST" in notes[0]
        assert "lr_generator" in notes[0] and "sharpness" in notes[0]


# --------------------------------------------------------------------------- the replay attack on a saved run
def _run_and_record(digits, teacher, tmp_path, name, **extra):
    """A tiny label-mode run; returns its saved directory, the releases (public) and the teacher's clean answers."""
    releases, clean = [], []

    def on_release(state, x, release):
        releases.append(release)
        with torch.no_grad():  # ground truth for the test only: the attacker never has it
            p = teacher.model(x).softmax(1) * release.mask
        clean.append(p / p.sum(1, keepdim=True))

    result = transcribe(data=digits, teacher=teacher, callbacks={"on_release": on_release}, **{**TINY, **extra})
    return save_run(result, tmp_path / name), releases, clean, result


def _attack(run_dir, releases):
    """The attacker: reads the seed and the mechanism's noise std from the run directory, and replays the noise."""
    with open(os.path.join(run_dir, "config.json")) as f:
        seed = json.load(f)["seed"]
    with open(os.path.join(run_dir, "privacy.json")) as f:
        noise_std = json.load(f)["noise_std"]
    return replay_label_noise(seed, releases, noise_std)


def test_replay_attack_recovers_the_teacher_only_with_the_opt_in(digits, digits_teacher, tmp_path):
    path, releases, clean, _ = _run_and_record(digits, digits_teacher, tmp_path, "lesson", reproducible_noise=True)
    recovered = _attack(path, releases)
    err = max((r - c).abs().max().item() for r, c in zip(recovered, clean))
    assert err < 1e-5  # the teacher's exact answers, from the saved seed alone
    assert load_run(path).privacy["reproducible_noise"] is True
    with open(os.path.join(path, "privacy.json")) as f:
        assert "does NOT hold" in json.load(f)["warning"]

    path, releases, clean, _ = _run_and_record(digits, digits_teacher, tmp_path, "default")
    recovered = _attack(path, releases)
    err = min((r - c).abs().max().item() for r, c in zip(recovered, clean))
    assert err > 0.5  # as far off as the noise itself (std ≈ 2.4 at ε = 2): the attack fails
    with open(os.path.join(path, "privacy.json")) as f:
        saved = json.load(f)
    assert saved["reproducible_noise"] is False and "warning" not in saved
    assert "secret" in saved["noise_source"]


def test_same_seed_runs_differ_by_default_and_repeat_with_the_opt_in(digits, digits_teacher):
    def student(**extra):
        res = transcribe(data=digits, teacher=digits_teacher, **{**TINY, "noise_mode": "rr", **extra})
        return torch.cat([p.detach().flatten() for p in res.student.parameters()])

    assert not torch.equal(student(), student())
    assert torch.equal(student(reproducible_noise=True), student(reproducible_noise=True))


def test_runs_saved_before_secret_noise_load_with_the_warning(digits, digits_teacher, tmp_path):
    path, *_ = _run_and_record(digits, digits_teacher, tmp_path, "old")
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    del cfg["reproducible_noise"]  # as written by dpsd_lite 0.2, whose noise came from the seed
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(path, "privacy.json")) as f:
        privacy = json.load(f)
    for key in ("reproducible_noise", "noise_source"):
        privacy.pop(key)
    with open(os.path.join(path, "privacy.json"), "w") as f:
        json.dump(privacy, f)
    run = load_run(path)
    assert run.config.reproducible_noise is True
    assert "does NOT hold" in format_report(run.privacy)


# --------------------------------------------------------------------------- exact rr
def test_rr_sample_never_leaves_the_answer_set_even_at_the_edge_draws():
    # weights whose running sum rounds to just below 1 at the set's last class (0.1 is not exact in binary)
    w = torch.zeros(3, K, dtype=torch.float64)
    w[:, [1, 4, 6]] = torch.tensor([0.1, 0.2, 0.7], dtype=torch.float64)
    w[1, [0, 9]], w[1, [1, 4, 6]] = 0.5, 0.0  # a set at both ends
    w[2] = 0.0
    w[2, 5] = 1.0  # k = 1
    edges = torch.tensor([0.0, 1e-300, 0.5, 1.0 - 2.0**-53], dtype=torch.float64)
    for u in edges:
        labels = rr_sample(w, u.expand(3))
        assert (w[torch.arange(3), labels] > 0).all(), (u, labels)
    assert rr_sample(w, torch.full((3,), 1.0 - 2.0**-53, dtype=torch.float64)).tolist() == [6, 9, 5]
    assert rr_sample(w, torch.zeros(3, dtype=torch.float64)).tolist() == [1, 0, 5]
    # the old sampler's failure: a CDF that ends below u·total ran past the set (to class K − 1)
    cdf_short = torch.zeros(1, K, dtype=torch.float64)
    cdf_short[0, 2] = 1.0 - 2.0**-52  # a last weight that rounds short of the total
    assert rr_sample(cdf_short, torch.tensor([1.0 - 2.0**-53], dtype=torch.float64)).item() == 2


def test_rr_release_answers_inside_the_set_for_every_true_label():
    prior = torch.softmax(torch.randn(500, K, generator=torch.Generator().manual_seed(0)) * 3, 1)
    mech = SelectiveRR(1.0, k_min=2, noise=NoiseSource.from_seed(0))
    for y in range(K):
        rel = mech.release(F.one_hot(torch.full((500,), y), K).float() * 5, prior=prior)
        assert rel.mask[torch.arange(500), rel.labels].all()
        w = rr_output_distribution(torch.full((500,), y), rel.mask, rel.extra["k"], 1.0)
        assert (w[torch.arange(500), rel.labels] > 0).all()


# --------------------------------------------------------------------------- the teacher cache knows the content
def test_two_data_folders_of_the_same_size_get_two_teachers(tmp_path):
    from test_data import write_idx

    from dpsd_lite.data import load_dataset
    from dpsd_lite.teacher import get_teacher

    splits = []
    for i in (1, 2):
        root = tmp_path / f"folder{i}"
        write_idx(root / "FashionMNIST" / "raw", n_train=40, n_test=12, seed=i)
        splits.append(load_dataset("fashion-mnist", root=str(root)))
    assert splits[0].describe()["private_size"] == splits[1].describe()["private_size"]
    cache = str(tmp_path / "cache")
    a = get_teacher(splits[0], epochs=1, device="cpu", cache_dir=cache)
    b = get_teacher(splits[1], epochs=1, device="cpu", cache_dir=cache)
    assert a.path != b.path and not b.cached
    assert get_teacher(splits[0], epochs=1, device="cpu", cache_dir=cache).cached  # the same content: reused


# --------------------------------------------------------------------------- DP-SGD
def test_dpsgd_noise_and_sampling_are_secret_unless_reproducible(digits):
    from dpsd_lite.dpsgd import format_dpsgd_report, train_dpsgd

    def weights(**kw):
        res = train_dpsgd(digits, epsilon=5.0, epochs=1, batch_size=128, seed=0, device="cpu", **kw)
        return torch.cat([p.detach().flatten() for p in res.model.parameters()]), res

    (a, ra), (b, _) = weights(), weights()
    assert not torch.equal(a, b)
    assert ra.privacy_report()["reproducible_noise"] is False and "secret" in ra.privacy_report()["noise_source"]
    (c, rc), (d, _) = weights(reproducible_noise=True), weights(reproducible_noise=True)
    assert torch.equal(c, d)
    assert "does NOT hold" in format_dpsgd_report(rc)


def test_label_report_says_which_classes_were_kept():
    """Without a prior every class is kept, and the report must not claim a top-k it did not use."""
    logits = torch.randn(20, K)
    mech = LabelNoise(1.0, 1e-5, top_k=2)
    mech.release(logits)
    text = format_report(privacy_report(mech, queries=20))
    assert "classes kept: all (no prior was given" in text and "top-k = 2" not in text
    mech.release(logits, prior=torch.softmax(logits, 1))
    assert "the prior's top 2 for 20 answers, all classes for the 20" in format_report(privacy_report(mech, 40))
    fresh = LabelNoise(1.0, 1e-5, top_k=2)
    fresh.release(logits, prior=torch.softmax(logits, 1))
    assert "classes kept: the prior's top 2" in format_report(privacy_report(fresh, 20))


# --------------------------------------------------------------------------- three levels of ε, in privacy.json
@pytest.mark.parametrize("mode", ["rr", "label"])
def test_privacy_json_holds_the_three_levels_of_epsilon(digits, digits_teacher, tmp_path, mode):
    """Per teacher answer, the whole run (every answer composed by a named accountant), per private record."""
    from dpsd_lite.accounting import gaussian_composition_epsilon, pure_composition_epsilon

    result = transcribe(data=digits, teacher=digits_teacher, **{**TINY, "noise_mode": mode})
    path = save_run(result, tmp_path / mode)
    with open(os.path.join(path, "privacy.json")) as f:
        saved = json.load(f)
    n = result.queries
    assert saved["unit"] == "answer" and saved["answers"] == n == 3 * 32
    assert saved["epsilon_per_answer"] == 2.0
    if mode == "rr":
        assert saved["delta_per_answer"] == 0.0
        expected = pure_composition_epsilon(2.0, n, TINY.get("delta", 1e-5))
        assert "Kairouz" in saved["whole_run_accountant"]
    else:
        expected = gaussian_composition_epsilon(saved["noise_multiplier"], n, 1e-5)
        assert "Renyi" in saved["whole_run_accountant"]
    assert saved["epsilon_whole_run"] == pytest.approx(expected) and saved["delta_whole_run"] == 1e-5
    assert 2.0 < saved["epsilon_whole_run"] <= n * 2.0
    assert saved["epsilon_per_record"] is None and saved["delta_per_record"] is None
    text = format_report(result.privacy)
    assert "epsilon per teacher answer: 2" in text and f"{n} answers composed" in text
    assert "epsilon per private record: none" in text


def test_mode_none_has_no_epsilon_at_any_level_and_a_dp_teacher_gives_the_record_level():
    from dpsd_lite.report import privacy_summary, with_dp_teacher

    none = privacy_report(make_mechanism("none"), queries=1000)
    assert math.isinf(none["epsilon_per_answer"]) and math.isinf(none["epsilon_whole_run"])
    assert none["epsilon_per_record"] is None and none["answers"] == 1000
    dp = {"epsilon": 3.0, "delta": 1e-5, "mechanism": "DP-SGD", "accountant": "Opacus RDP"}
    for report in (none, privacy_report(make_mechanism("rr", 1.0, 1e-5), queries=1000)):
        inherited = with_dp_teacher(report, dp)
        assert inherited["epsilon_per_record"] == 3.0 and inherited["delta_per_record"] == 1e-5
        assert "ε per private record: 3 (δ = 1e-05, DP-SGD teacher)" in privacy_summary(inherited)
    assert "ε per private record: none" in privacy_summary(none)
