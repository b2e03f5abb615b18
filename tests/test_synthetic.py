"""Synthetic data from a run, the re-identification filter, downstream training and `dpsd-lite synthesize`."""

import json
import os

import pytest
import torch

from dpsd_lite.errors import DpsdError, RunDirectoryError
from dpsd_lite.reid_filter import closest_pairs_figure, reid_filter, similarity_histogram
from dpsd_lite.synthetic import (AUDIT_DIR, SyntheticSet, downstream_comparison, load_synthetic, sample_synthetic,
                                 save_synthetic, train_classifier)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def synth(tiny_run):
    return sample_synthetic(tiny_run, 60, seed=3, device="cpu")


@pytest.fixture
def count_teacher_calls(tiny_run):
    """Counts every forward through the teacher's feature layers (used by both forward() and embed())."""
    calls = []
    handle = tiny_run.teacher.model.features.register_forward_pre_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


def _planted(digits):
    """Two near-copies of private images (indices 3, 500), then five clearly different images."""
    g = torch.Generator().manual_seed(0)
    near = (digits.x_private[[3, 500]] + 0.03 * torch.randn(2, 1, 8, 8, generator=g)).clamp(-1, 1)
    different = torch.cat([
        -torch.ones(1, 1, 8, 8),  # blank
        torch.ones(1, 1, 8, 8),  # all ink
        torch.rand(2, 1, 8, 8, generator=g) * 2 - 1,  # uniform noise
        -digits.x_private[[10]],  # a private image, inverted
    ])
    return torch.cat([near, different])


@pytest.fixture(scope="module")
def planted(digits, digits_teacher):
    """The filter's verdict on the planted images, with the teacher's features and with raw pixels."""
    images = _planted(digits)
    return {name: reid_filter(images, digits.x_private, digits.x_heldout, embedder)
            for name, embedder in (("teacher", digits_teacher), ("pixels", "pixels"))}


# ------------------------------------------------------------------ the filter
@pytest.mark.parametrize("embedder", ["teacher", "pixels"])
def test_filter_drops_planted_near_copies_and_keeps_different_images(planted, embedder):
    result = planted[embedder]
    assert result.keep.tolist() == [False, False, True, True, True, True, True]
    assert result.nearest[:2].tolist() == [3, 500]  # each copy is matched to its own original
    assert (result.n_dropped, result.n_kept, result.fraction_dropped) == (2, 5, pytest.approx(2 / 7))
    # calibration: the threshold is the 95th percentile of held-out → nearest-private similarity
    above = (result.heldout_similarity > result.threshold).float().mean().item()
    assert above == pytest.approx(0.05, abs=0.01)
    assert result.closest(2).tolist() == sorted([0, 1], key=lambda i: -float(result.similarity[i]))


def test_filter_report_says_it_reads_private_data_and_is_not_dp(planted):
    result = planted["teacher"]
    summary = result.summary()
    assert summary["reads_private_data"] is True
    assert summary["differentially_private"] is False and summary["epsilon"] is None
    assert "NOT a differentially private mechanism" in summary["note"]
    assert "reads the private training images" in summary["note"]
    assert "NOT differentially private" in result.format()
    json.dumps(result.audit())  # JSON-ready, closest pairs included
    assert result.audit(3)["closest_pairs"][0]["dropped"] is True


def test_filter_rejects_bad_arguments(digits):
    with pytest.raises(DpsdError, match="percentile"):
        reid_filter(digits.x_private[:2], digits.x_private, digits.x_heldout, "pixels", percentile=0)
    with pytest.raises(DpsdError, match="embedder"):
        reid_filter(digits.x_private[:2], digits.x_private, digits.x_heldout, "teacher-please")


def test_filter_figures(digits, planted):
    result = planted["pixels"]
    fig = closest_pairs_figure(result, _planted(digits), digits.x_private, k=4)
    assert len(fig.axes) == 8 and "PRIVATE" in fig.get_suptitle()
    assert similarity_histogram(result).axes[0].get_xlabel().startswith("cosine similarity")


# ------------------------------------------------------------------ sampling and the archive
def test_sample_is_balanced_deterministic_and_labelled_by_the_student(tiny_run, synth):
    assert synth.images.shape == (60, 1, 8, 8) and synth.images.dtype == torch.float32
    assert synth.images.min() >= -1 and synth.images.max() <= 1
    assert torch.bincount(synth.classes, minlength=10).tolist() == [6] * 10
    with torch.no_grad():
        assert torch.equal(synth.labels, tiny_run.student(synth.images).argmax(1))
    again = sample_synthetic(tiny_run, 60, seed=3, device="cpu")
    assert torch.equal(again.images, synth.images) and torch.equal(again.labels, synth.labels)
    assert synth.privacy == tiny_run.privacy and synth.meta["label_source"] == "student"
    with pytest.raises(DpsdError, match="positive"):
        sample_synthetic(tiny_run, 0)


def test_probabilities_are_the_students_softmax_at_the_stored_temperature(tiny_run, synth):
    from dpsd_lite.config import SYNTHESIS_TEMPERATURE

    p = synth.probabilities
    assert p.shape == (60, 10) and p.dtype == torch.float32 and (p >= 0).all()
    assert torch.allclose(p.sum(1), torch.ones(60), atol=1e-5)
    assert torch.equal(p.argmax(1), synth.labels)  # a temperature never changes the argmax
    assert synth.meta["label_temperature"] == SYNTHESIS_TEMPERATURE == 2.0
    with torch.no_grad():
        assert torch.allclose(p, (tiny_run.student(synth.images) / 2.0).softmax(1), atol=1e-6)
    sharp = sample_synthetic(tiny_run, 60, seed=3, temperature=0.5)
    assert torch.equal(sharp.images, synth.images) and torch.equal(sharp.labels, synth.labels)
    assert (sharp.probabilities.max(1).values >= p.max(1).values - 1e-6).all()  # colder: more confident
    assert sharp.meta["label_temperature"] == 0.5
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(DpsdError, match="temperature"):
            sample_synthetic(tiny_run, 10, temperature=bad)
    assert torch.equal(synth.targets("soft"), p) and torch.equal(synth.targets("hard"), synth.labels)
    assert torch.equal(synth.subset(slice(5, 9)).probabilities, p[5:9])
    with pytest.raises(DpsdError, match="soft or hard"):
        synth.targets("fuzzy")


def test_snapshots_are_copies_taken_part_way_through_the_run(tiny_run):
    from dpsd_lite.transcribe import snapshot_steps

    assert snapshot_steps(12) == [3, 6, 9] and snapshot_steps(340) == [85, 170, 255]
    assert snapshot_steps(2) == [1] and snapshot_steps(1) == []  # never the last iteration twice
    assert [step for step, _ in tiny_run.generator_snapshots] == [3, 6, 9]
    final = tiny_run.generator.state_dict()
    for _, state in tiny_run.generator_snapshots:  # copies, not views of the weights that kept training
        assert state.keys() == final.keys()
        assert any(not torch.equal(state[k], final[k]) for k in final if state[k].is_floating_point())


def test_sample_draws_equal_parts_from_the_snapshots_or_the_final_generator(tiny_run, synth):
    from dpsd_lite.synthetic import source_generators

    before = {k: v.clone() for k, v in tiny_run.generator.state_dict().items()}
    gens = source_generators(tiny_run)
    assert [step for step, _ in gens] == [3, 6, 9]
    for (_, g), (_, state) in zip(gens, tiny_run.generator_snapshots):
        assert all(torch.equal(g.state_dict()[k], state[k]) for k in state)
    assert synth.meta["generator"] == "snapshots after iterations [3, 6, 9] of 12"
    final = sample_synthetic(tiny_run, 60, seed=3, device="cpu", source="final")
    assert final.meta["generator"] == "final" and torch.equal(final.classes, synth.classes)
    assert not torch.equal(final.images, synth.images)
    with torch.no_grad():  # every part labelled by the run's final student
        assert torch.equal(final.labels, tiny_run.student(final.images).argmax(1))
    # the first third comes from the first snapshot: its images are what that generator draws for those classes
    g = torch.Generator().manual_seed(3)
    torch.randperm(60, generator=g)
    gen0 = gens[0][1].eval()
    x0, _ = gen0.sample(20, generator=g, classes=synth.classes[:20])
    assert torch.equal(x0, synth.images[:20])
    assert all(torch.equal(v, before[k]) for k, v in tiny_run.generator.state_dict().items())  # run untouched
    with pytest.raises(DpsdError, match="unknown synthetic-data source"):
        sample_synthetic(tiny_run, 10, source="latest")


def test_synthesize_never_queries_the_teacher(tiny_run, tmp_path, count_teacher_calls, monkeypatch):
    import dpsd_lite.teacher

    monkeypatch.setattr(dpsd_lite.teacher, "get_teacher", lambda *a, **k: pytest.fail("teacher loaded"))
    synth = sample_synthetic(tiny_run, 40, seed=1, device="cpu")
    save_synthetic(synth, tmp_path / "out")
    assert count_teacher_calls == []


def test_archive_round_trips_exactly_with_contact_sheet_and_privacy(tiny_run, synth, tmp_path):
    path = save_synthetic(synth, tmp_path / "out")
    assert sorted(os.listdir(path)) == ["contact_sheet.png", "privacy.json", "synthetic.npz"]
    back = load_synthetic(path)
    for name in ("images", "labels", "classes", "probabilities"):
        a, b = getattr(back, name), getattr(synth, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert back.class_names == synth.class_names == [str(d) for d in range(10)]
    assert back.privacy == tiny_run.privacy and back.meta == synth.meta
    with open(os.path.join(path, "contact_sheet.png"), "rb") as f:
        assert f.read(8) == PNG_MAGIC
    with open(os.path.join(path, "privacy.json")) as f:
        doc = json.load(f)
    assert doc["run_privacy"]["epsilon"] == tiny_run.privacy["epsilon"]
    assert "student" in doc["labels"] and "post-processing" in doc["labels"] and "No teacher" in doc["labels"]
    assert "reid_filter" not in doc
    assert "probabilities" in doc["labels"] and doc["synthetic"]["label_temperature"] == 2.0
    assert doc["synthetic"]["snapshot_steps"] == [3, 6, 9]
    chosen = doc["chosen_on_private_split"]
    assert "no epsilon" in chosen and "quarter" in chosen and "temperature" in chosen
    final = save_synthetic(sample_synthetic(tiny_run, 20, seed=0, source="final"), tmp_path / "final")
    with open(os.path.join(final, "privacy.json")) as f:
        chosen = json.load(f)["chosen_on_private_split"]  # the final generator involves no choice of snapshots
    assert "temperature" in chosen and "quarter" not in chosen


def test_archives_without_probabilities_still_load_and_train_on_labels(synth, digits, tmp_path):
    """Archives written before probabilities were stored: hard labels, and the old disclosure from the text."""
    import numpy as np

    old = synth.subset(slice(None))
    old.probabilities = None
    old.meta = {k: v for k, v in synth.meta.items() if k not in ("snapshot_steps", "label_temperature")}
    path = save_synthetic(old, tmp_path / "old")
    with np.load(os.path.join(path, "synthetic.npz")) as z:
        assert "probabilities" not in z.files
    with open(os.path.join(path, "privacy.json")) as f:
        chosen = json.load(f)["chosen_on_private_split"]
    assert "quarter" in chosen and "temperature" not in chosen  # the snapshots, read from the "generator" text
    back = load_synthetic(path)
    assert back.probabilities is None and torch.equal(back.targets("soft"), synth.labels)
    row = downstream_comparison(digits, back, steps=2, include_real=False)[0]
    assert row["labels"] == "hard"
    # an archive whose probabilities do not fit its labels is refused, not half-read
    arrays = dict(np.load(os.path.join(path, "synthetic.npz")))
    np.savez_compressed(tmp_path / "bad.npz", **arrays, probabilities=np.ones((3, 10), np.float32) / 10)
    with pytest.raises(RunDirectoryError, match="probabilities of shape"):
        load_synthetic(str(tmp_path / "bad.npz"))


def test_mode_none_is_declared_not_private_and_infinity_round_trips(synth, tmp_path):
    import math

    public = SyntheticSet(synth.images, synth.labels, synth.classes, synth.class_names,
                          {"private": False, "epsilon": math.inf}, {**synth.meta, "epsilon": math.inf})
    path = save_synthetic(public, tmp_path / "out")
    with open(os.path.join(path, "privacy.json")) as f:
        doc = json.load(f)  # strict JSON: no bare Infinity
    assert "no privacy guarantee" in doc["labels"] and doc["run_privacy"]["epsilon"] == "Infinity"
    assert load_synthetic(path).privacy["epsilon"] == math.inf


def test_save_refuses_to_overwrite_without_force_and_is_atomic(synth, tmp_path, monkeypatch):
    out = tmp_path / "out"
    save_synthetic(synth, out)
    with pytest.raises(RunDirectoryError, match="force"):
        save_synthetic(synth.subset(slice(0, 10)), out)
    assert len(load_synthetic(out)) == 60

    import dpsd_lite.synthetic

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(dpsd_lite.synthetic, "contact_sheet", broken)
    with pytest.raises(RuntimeError):
        save_synthetic(synth.subset(slice(0, 10)), out, force=True)
    assert len(load_synthetic(out)) == 60  # the old directory is intact
    assert sorted(os.listdir(tmp_path)) == ["out"]  # and no temporary folder is left behind
    monkeypatch.undo()
    save_synthetic(synth.subset(slice(0, 10)), out, force=True)
    assert len(load_synthetic(out)) == 10


def test_filtered_save_writes_only_kept_samples_and_an_internal_audit(synth, digits, digits_teacher, tmp_path):
    images = synth.images.clone()
    images[:2] = digits.x_private[[7, 8]]  # two memorised training images
    planted = SyntheticSet(images, synth.labels, synth.classes, synth.class_names, synth.privacy, synth.meta)
    result = reid_filter(planted.images, digits.x_private, digits.x_heldout, digits_teacher)
    assert not result.keep[:2].any()
    path = save_synthetic(planted, tmp_path / "out", filter_result=result, x_private=digits.x_private)
    back = load_synthetic(path)
    assert len(back) == result.n_kept and torch.equal(back.images, planted.images[result.keep])
    with open(os.path.join(path, "privacy.json")) as f:
        doc = json.load(f)
    assert doc["reid_filter"]["differentially_private"] is False
    assert doc["reid_filter"]["n_dropped"] == result.n_dropped
    assert "closest_pairs" not in doc["reid_filter"]  # private indices stay in the internal audit
    assert sorted(os.listdir(os.path.join(path, AUDIT_DIR))) == ["closest_pairs.png", "reid_filter.json"]


# ------------------------------------------------------------------ downstream use
def test_train_classifier_learns_a_tiny_task(digits):
    model = train_classifier(digits.x_private, digits.y_private, 10, steps=30, batch_size=64, seed=0)
    from dpsd_lite.utils import accuracy

    assert accuracy(model, digits.x_heldout, digits.y_heldout) > 0.6
    with pytest.raises(DpsdError, match="empty"):
        train_classifier(digits.x_private[:0], digits.y_private[:0], 10)


def test_downstream_can_use_another_architecture_and_names_it(digits):
    """A synthetic set is also judged by a classifier that is not the student's architecture (the teacher's)."""
    from dpsd_lite.models import Teacher
    from dpsd_lite.synthetic import downstream_comparison
    from dpsd_lite.utils import accuracy

    model = train_classifier(digits.x_private, digits.y_private, 10, steps=30, batch_size=64, seed=0, arch="teacher")
    assert type(model) is Teacher and accuracy(model, digits.x_heldout, digits.y_heldout) > 0.6
    rows = downstream_comparison(digits, steps=5, batch_size=32, arch="teacher")
    assert rows[0]["architecture"] == "teacher" and rows[0]["training set"] == "real private"
    with pytest.raises(DpsdError, match="unknown downstream architecture 'mlp'"):
        train_classifier(digits.x_private, digits.y_private, 10, steps=1, arch="mlp")


def test_train_classifier_learns_from_soft_labels(digits):
    """Probabilities as targets: one-hot rows learn exactly what the labels do; softened rows still learn."""
    from dpsd_lite.utils import accuracy

    x, y = digits.x_private, digits.y_private
    onehot = torch.nn.functional.one_hot(y, 10).float()
    hard = train_classifier(x, y, 10, steps=30, batch_size=64, seed=0)
    soft = train_classifier(x, onehot, 10, steps=30, batch_size=64, seed=0)
    with torch.no_grad():
        assert torch.allclose(hard(digits.x_heldout), soft(digits.x_heldout), atol=1e-4)
    smoothed = 0.6 * onehot + 0.4 / 10  # the true class keeps 0.64, every other 0.04
    model = train_classifier(x, smoothed, 10, steps=30, batch_size=64, seed=0)
    assert accuracy(model, digits.x_heldout, digits.y_heldout) > 0.6
    for bad, why in ((onehot[:, :9], "do not fit"), (onehot[:-1], "do not fit"), (2 * onehot, "sum to 1"),
                     (onehot.long(), "sum to 1"), (onehot * 2 - 0.5 * onehot, "sum to 1")):
        with pytest.raises(DpsdError, match=why):
            train_classifier(x, bad, 10, steps=1)
    negative = onehot.clone()
    negative[:, 0] -= 0.5
    negative[:, 1] += 0.5
    with pytest.raises(DpsdError, match="non-negative"):
        train_classifier(x, negative, 10, steps=1)


def test_downstream_comparison_rows(digits, synth):
    rows = downstream_comparison(digits, synth, synth.subset(slice(0, 30)), steps=5, batch_size=32)
    assert [r["training set"] for r in rows] == ["real private", "synthetic", "synthetic, filtered"]
    assert [r["size"] for r in rows] == [len(digits.y_private), 60, 30]
    assert [r["labels"] for r in rows] == ["hard", "soft", "soft"]
    assert all(0 <= r["heldout_accuracy"] <= 1 for r in rows)
    hard = downstream_comparison(digits, synth, steps=5, batch_size=32, include_real=False, labels="hard")
    assert [r["labels"] for r in hard] == ["hard"]
    for bad in ("Soft", "argmax", None):  # refused before any training, even with only the real row
        with pytest.raises(DpsdError, match="soft or hard"):
            downstream_comparison(digits, steps=1, labels=bad)


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory):
    from dpsd_lite.runs import save_run

    return save_run(tiny_run, tmp_path_factory.mktemp("runs") / "tiny")


def test_cli_synthesize_writes_the_release_and_never_loads_the_teacher(run_dir, tmp_path, monkeypatch, capsys):
    import dpsd_lite.teacher
    from dpsd_lite.cli import main

    monkeypatch.setattr(dpsd_lite.teacher, "get_teacher", lambda *a, **k: pytest.fail("teacher loaded"))
    out = str(tmp_path / "syn")
    assert main(["synthesize", run_dir, "--n", "30", "--out", out, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "no teacher query" in printed and "generator: snapshots after iterations [3, 6, 9] of 12" in printed
    assert "probabilities at temperature 2;" in printed
    assert len(load_synthetic(out)) == 30
    assert main(["synthesize", run_dir, "--n", "30", "--out", str(tmp_path / "final"), "--source", "final",
                 "--device", "cpu"]) == 0
    assert "generator: final" in capsys.readouterr().out
    assert load_synthetic(str(tmp_path / "final")).meta["generator"] == "final"
    assert main(["synthesize", run_dir, "--n", "30", "--out", out]) == 2  # exists, no --force
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err


def test_cli_synthesize_with_filter(run_dir, tmp_path, capsys):
    from dpsd_lite.cli import main

    out = str(tmp_path / "syn")
    assert main(["synthesize", run_dir, "--n", "30", "--out", out, "--filter", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "NOT differentially private" in printed and "keep it internal" in printed
    assert os.path.isfile(os.path.join(out, AUDIT_DIR, "closest_pairs.png"))
