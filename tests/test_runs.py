"""Run directories: round trip, strict JSON, atomic writes, and refusal of every kind of bad directory."""

import dataclasses
import json
import math
import os

import pytest
import torch

import dpsd_lite
from dpsd_lite import runs
from dpsd_lite.errors import RunDirectoryError
from dpsd_lite.models import Student
from dpsd_lite.runs import RUN_FILES, SCHEMA_VERSION, SNAPSHOT_FILE, load_run, save_run


@pytest.fixture
def run_dir(tmp_path, tiny_run):
    return save_run(tiny_run, tmp_path / "run")


def _edit_meta(run_dir, **changes):
    path = os.path.join(run_dir, "meta.json")
    with open(path) as f:
        meta = json.load(f)
    meta.update(changes)
    with open(path, "w") as f:
        json.dump(meta, f)


def _rechecksum(run_dir, fname):
    """Make meta.json agree with a deliberately altered weight file (to get past the checksum)."""
    path = os.path.join(run_dir, "meta.json")
    with open(path) as f:
        meta = json.load(f)
    meta["sha256"][fname] = runs._sha256(os.path.join(run_dir, fname))
    with open(path, "w") as f:
        json.dump(meta, f)


def _refused(run_dir, match):
    with pytest.raises(RunDirectoryError, match=match) as info:
        load_run(run_dir)
    assert "\n" not in str(info.value)  # one line for the CLI
    return str(info.value)


def _siblings(parent):
    return sorted(os.listdir(parent))


# ------------------------------------------------------------------ round trip
def test_round_trip_gives_identical_predictions(run_dir, tiny_run, digits):
    assert sorted(os.listdir(run_dir)) == sorted(RUN_FILES + (SNAPSHOT_FILE,))
    loaded = load_run(run_dir)
    assert isinstance(loaded, dpsd_lite.LoadedRun)
    x = digits.x_heldout
    with torch.no_grad():
        assert torch.equal(loaded.student(x), tiny_run.student.cpu()(x))
        z = torch.randn(16, tiny_run.config.nz, generator=torch.Generator().manual_seed(1))
        c = torch.arange(16) % digits.num_classes
        outputs = []
        for gen in (loaded.generator, tiny_run.generator.cpu().eval()):
            torch.manual_seed(2)  # the generator may draw its own randomness (e.g. stroke width)
            outputs.append(gen(z, c))
        assert torch.equal(*outputs)
    assert not loaded.student.training and not loaded.generator.training
    assert loaded.config == tiny_run.config
    assert loaded.privacy == tiny_run.privacy
    assert len(loaded.history) == len(tiny_run.history)
    assert loaded.history[-1]["student_accuracy"] == tiny_run.history[-1]["student_accuracy"]
    assert loaded.student_accuracy == tiny_run.student_accuracy
    assert loaded.teacher_accuracy == tiny_run.teacher.heldout_accuracy
    assert loaded.image_shape == digits.image_shape and loaded.class_names == digits.class_names


def test_meta_records_versions_checksums_and_results(run_dir, tiny_run):
    meta = load_run(run_dir).meta
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["dpsd_lite_version"] == dpsd_lite.__version__
    assert meta["torch_version"] == torch.__version__
    assert meta["torch_threads"] == torch.get_num_threads() and meta["device"] == "cpu"
    assert meta["teacher"]["trained_with_threads"] == tiny_run.teacher.threads
    assert meta["seed"] == tiny_run.config.seed and meta["created"]
    assert meta["queries"] == tiny_run.queries and meta["elapsed_seconds"] == tiny_run.elapsed
    assert meta["teacher"]["heldout_accuracy"] == tiny_run.teacher.heldout_accuracy
    assert "private_accuracy" not in json.dumps(meta)  # a statistic of the private split stays out
    gen = tiny_run.generator  # every constructor argument, so load_run rebuilds the same network
    assert meta["architecture"]["generator"] == {"class": type(gen).__name__, **gen.architecture}
    assert set(meta["sha256"]) == {"student.pt", "generator.pt", "generator_snapshots.pt"}
    assert all(len(h) == 64 for h in meta["sha256"].values())


def test_json_is_strict_and_nonfinite_values_round_trip(tmp_path, tiny_run):
    history = [dict(tiny_run.history[-1], student_loss=math.nan)]
    result = dataclasses.replace(tiny_run, history=history,
                                 privacy={"noise_mode": "none", "private": False, "epsilon": math.inf, "delta": None})
    out = save_run(result, tmp_path / "none-run")

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    for fname in ("config.json", "meta.json", "history.json", "privacy.json"):
        with open(os.path.join(out, fname)) as f:
            json.loads(f.read(), parse_constant=no_constants)
    loaded = load_run(out)
    assert loaded.privacy["epsilon"] == math.inf and loaded.privacy["delta"] is None
    assert math.isnan(loaded.history[0]["student_loss"])


# ------------------------------------------------------- overwrite and crashes
def test_existing_directory_is_refused_without_force(run_dir, tiny_run):
    before = runs._sha256(os.path.join(run_dir, "student.pt"))
    with pytest.raises(RunDirectoryError, match="already exists.*--force"):
        save_run(tiny_run, run_dir)
    assert runs._sha256(os.path.join(run_dir, "student.pt")) == before
    # an existing empty directory or file counts as well
    os.makedirs(os.path.join(os.path.dirname(run_dir), "empty"))
    with pytest.raises(RunDirectoryError, match="already exists"):
        save_run(tiny_run, os.path.join(os.path.dirname(run_dir), "empty"))


def test_force_replaces_and_leaves_no_temporary_siblings(run_dir, tiny_run):
    parent = os.path.dirname(run_dir)
    with open(os.path.join(run_dir, "stray.txt"), "w") as f:
        f.write("from the old run")
    result = dataclasses.replace(tiny_run, queries=12345)
    assert save_run(result, run_dir, force=True) == run_dir
    assert sorted(os.listdir(run_dir)) == sorted(RUN_FILES + (SNAPSHOT_FILE,))  # old contents gone
    assert load_run(run_dir).meta["queries"] == 12345
    assert _siblings(parent) == ["run"]


@pytest.mark.parametrize("force", [False, True])
def test_crash_mid_save_leaves_no_broken_directory(tmp_path, tiny_run, monkeypatch, force):
    out = tmp_path / "crash"
    if force:  # an earlier good run must survive a failed replacement
        save_run(tiny_run, out)
        good = runs._sha256(out / "student.pt")
    real_write = runs._write_json
    calls = []

    def crash_after_first(path, obj):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # e.g. Ctrl-C halfway through
        real_write(path, obj)

    monkeypatch.setattr(runs, "_write_json", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        save_run(tiny_run, out, force=force)
    if force:
        assert runs._sha256(out / "student.pt") == good
        assert _siblings(tmp_path) == ["crash"]
    else:
        assert not out.exists()
        assert _siblings(tmp_path) == []  # the temporary sibling is cleaned up too


def test_unwritable_location_is_a_one_line_error(tmp_path, tiny_run):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunDirectoryError, match="cannot create") as info:
        save_run(tiny_run, blocker / "run")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------- refusing bad dirs
def test_missing_directory_is_refused(tmp_path):
    _refused(tmp_path / "nope", "does not exist")


def test_missing_file_is_refused(run_dir):
    os.remove(os.path.join(run_dir, "history.json"))
    _refused(run_dir, "missing history.json")


@pytest.mark.parametrize("fname", ["config.json", "meta.json", "privacy.json"])
def test_truncated_json_is_refused(run_dir, fname):
    path = os.path.join(run_dir, fname)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[: len(text) // 2])
    _refused(run_dir, f"{fname} is not valid JSON")


@pytest.mark.parametrize("fname", ["student.pt", "generator.pt", SNAPSHOT_FILE])
def test_checksum_mismatch_is_refused(run_dir, fname):
    path = os.path.join(run_dir, fname)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    _refused(run_dir, f"checksum mismatch for .*{fname}")


def test_corrupt_weight_file_is_refused(run_dir):
    with open(os.path.join(run_dir, "student.pt"), "wb") as f:
        f.write(b"this is not a torch file")
    _rechecksum(run_dir, "student.pt")
    _refused(run_dir, "cannot read .*student.pt")


def test_weights_of_another_architecture_are_refused(run_dir):
    torch.save(Student((1, 8, 8), 10, width=8).state_dict(), os.path.join(run_dir, "student.pt"))
    _rechecksum(run_dir, "student.pt")
    msg = _refused(run_dir, "student weights .* do not fit the student architecture")
    assert "size mismatch" in msg


def test_meta_describing_another_architecture_is_refused(run_dir):
    with open(os.path.join(run_dir, "meta.json")) as f:
        arch = json.load(f)["architecture"]
    arch["image_shape"] = [1, 28, 28]
    _edit_meta(run_dir, architecture=arch)
    _refused(run_dir, "do not fit")


def test_schema_version_mismatch_is_refused(run_dir):
    _edit_meta(run_dir, schema_version=SCHEMA_VERSION + 1, dpsd_lite_version="9.9.9")
    _refused(run_dir, "schema version 2 .*9.9.9")


def test_config_from_another_version_is_refused(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    config["setting_from_the_future"] = 1
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config, f)
    _refused(run_dir, "config.json does not match")


@pytest.mark.parametrize("saved_class,loads_as", [("StrokeGenerator", "strokes"), ("Generator", "learned")])
def test_a_run_saved_with_the_old_auto_generator_loads_as_the_generator_it_ran(tmp_path, digits, digits_teacher,
                                                                              saved_class, loads_as):
    """Before 0.4 the default generator was "auto" (the renderer on digit domains, learned elsewhere): such a run
    loads with the generator its saved weights belong to."""
    from dpsd_lite.transcribe import transcribe

    run = transcribe(dataset="digits", data=digits, teacher=digits_teacher, epsilon=2.0, steps=2, batch_size=32,
                     device="cpu", generator=loads_as)
    path = save_run(run, tmp_path / "old")
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["generator"] = "auto"
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    loaded = load_run(path)
    assert loaded.config.generator == loads_as and type(loaded.generator).__name__ == saved_class


def test_run_saved_before_skeletons_existed_loads_as_it_ran(tmp_path, digits, digits_teacher):
    from dpsd_lite.transcribe import transcribe

    old = transcribe(dataset="digits", data=digits, teacher=digits_teacher, noise_mode="rr", epsilon=2.0,
                     steps=4, batch_size=32, eval_every=4, teacher_epochs=3, device="cpu", seed=0, skeletons=0.0,
                     generator="strokes")
    path = save_run(old, tmp_path / "old")
    # what an earlier version wrote: no 'skeletons' anywhere
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    del config["skeletons"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(path, "meta.json")) as f:
        arch = json.load(f)["architecture"]
    del arch["generator"]["skeletons"], arch["generator"]["skeleton_points"]
    _edit_meta(path, architecture=arch)
    loaded = load_run(path)
    assert loaded.config.skeletons == 0.0 and loaded.generator.skeletons == 0.0
    assert loaded.config == old.config


def test_generator_centring_is_rebuilt_from_the_run_and_absent_means_as_before(tmp_path, digits, digits_teacher):
    """Renderer runs saved before the centre-of-mass option existed lack the key and load with the older drawing."""
    from dpsd_lite.transcribe import transcribe

    run_dir = save_run(transcribe(dataset="digits", data=digits, teacher=digits_teacher, epsilon=2.0, steps=2,
                                  batch_size=32, device="cpu", generator="strokes"), tmp_path / "strokes")
    with open(os.path.join(run_dir, "meta.json")) as f:
        arch = json.load(f)["architecture"]
    assert arch["generator"].get("centre_of_mass") is False  # digits: not MNIST's format
    arch["generator"]["centre_of_mass"] = True
    _edit_meta(run_dir, architecture=arch)
    assert load_run(run_dir).generator.centre_of_mass is True
    del arch["generator"]["centre_of_mass"]
    _edit_meta(run_dir, architecture=arch)
    assert load_run(run_dir).generator.centre_of_mass is False


def test_teacher_cache_records_the_threads_it_was_trained_with(digits, tmp_path):
    """Weights depend on torch's thread count (float sums), so the cache says which one trained them."""
    from dpsd_lite.teacher import get_teacher

    threads = torch.get_num_threads()
    fresh = get_teacher(digits, epochs=1, seed=3, device="cpu", cache_dir=str(tmp_path))
    assert not fresh.cached and fresh.threads == threads
    torch.set_num_threads(threads + 1)
    try:
        again = get_teacher(digits, epochs=1, seed=3, device="cpu", cache_dir=str(tmp_path))
    finally:
        torch.set_num_threads(threads)
    assert again.cached and again.threads == threads  # what trained it, not what loads it
    # a cache written before the field existed still loads, with the thread count unknown
    blob = torch.load(fresh.path, weights_only=True)
    del blob["threads"]
    torch.save(blob, fresh.path)
    old = get_teacher(digits, epochs=1, seed=3, device="cpu", cache_dir=str(tmp_path))
    assert old.cached and old.threads is None
    assert all(torch.equal(a, b) for a, b in zip(old.model.state_dict().values(), fresh.model.state_dict().values()))


# ------------------------------------------------------------------ generator snapshots (for synthetic data)
def test_generator_snapshots_round_trip(run_dir, tiny_run):
    run = load_run(run_dir)
    assert [step for step, _ in run.generator_snapshots] == [step for step, _ in tiny_run.generator_snapshots]
    assert run.meta["generator_snapshots"] == [3, 6, 9] and SNAPSHOT_FILE in run.meta["sha256"]
    for (_, saved), (_, kept) in zip(run.generator_snapshots, tiny_run.generator_snapshots):
        assert saved.keys() == kept.keys() and all(torch.equal(saved[k], kept[k]) for k in kept)


def test_missing_snapshot_file_is_refused(run_dir):
    os.remove(os.path.join(run_dir, SNAPSHOT_FILE))
    _refused(run_dir, f"missing {SNAPSHOT_FILE}")


def test_corrupt_snapshot_file_is_refused(run_dir):
    with open(os.path.join(run_dir, SNAPSHOT_FILE), "wb") as f:
        f.write(b"this is not a torch file")
    _rechecksum(run_dir, SNAPSHOT_FILE)
    _refused(run_dir, f"cannot read .*{SNAPSHOT_FILE}")


def test_snapshots_other_than_meta_lists_are_refused(run_dir):
    _edit_meta(run_dir, generator_snapshots=[3, 6, 10])
    _refused(run_dir, "does not hold the snapshots meta.json lists")


def test_snapshots_of_another_architecture_are_refused(run_dir):
    path = os.path.join(run_dir, SNAPSHOT_FILE)
    saved = torch.load(path, weights_only=True)
    saved["states"][1] = Student((1, 8, 8), 10).state_dict()
    torch.save(saved, path)
    _rechecksum(run_dir, SNAPSHOT_FILE)
    _refused(run_dir, "generator snapshots .* do not fit the generator architecture")


def test_run_saved_without_snapshots_loads_and_draws_from_its_final_generator(run_dir):
    from dpsd_lite.synthetic import sample_synthetic

    os.remove(os.path.join(run_dir, SNAPSHOT_FILE))
    path = os.path.join(run_dir, "meta.json")
    with open(path) as f:
        meta = json.load(f)
    del meta["generator_snapshots"], meta["sha256"][SNAPSHOT_FILE]  # as runs were saved before snapshots
    with open(path, "w") as f:
        json.dump(meta, f)
    run = load_run(run_dir)
    assert run.generator_snapshots == []
    synth = sample_synthetic(run, 20, seed=0)
    assert synth.meta["generator"] == "final"
    assert torch.equal(synth.images, sample_synthetic(run, 20, seed=0, source="final").images)
