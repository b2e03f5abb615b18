"""The dpsd-lite command line: one-line errors with exit code 2, and the happy paths on digits."""

import argparse
import csv
import math
import os
import subprocess
import sys

import pytest

from dpsd_lite import cli, commands
from dpsd_lite.accounting import pure_composition_epsilon
from dpsd_lite.runs import load_run

# small and fast: digits, the session's cached 3-epoch teacher, a few tiny steps
FAST = ["--dataset", "digits", "--teacher-epochs", "3", "--batch-size", "32", "--device", "cpu"]


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, match=""):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dpsd-lite: error: ")
    assert "Traceback" not in err
    assert match in lines[0]


# ------------------------------------------------------------ bad input → 2
@pytest.mark.parametrize("argv, match", [
    (["transcribe", "--epsilon", "0"], "epsilon must be a positive"),
    (["transcribe", "--epsilon=-1"], "epsilon must be a positive"),
    (["transcribe", "--epsilon", "nan"], "epsilon must be a positive"),
    (["transcribe", "--epsilon", "inf"], "epsilon must be a positive"),
    (["transcribe", "--epsilon", "ten"], "epsilon must be a positive"),
    (["transcribe", "--delta", "0"], "delta must be strictly between 0 and 1"),
    (["transcribe", "--delta", "1.5"], "delta must be strictly between 0 and 1"),
    (["transcribe", "--delta", "nan"], "delta must be strictly between 0 and 1"),
    (["transcribe", "--dataset", "cifar-100"], "invalid choice: 'cifar-100'"),
    (["transcribe", "--mode", "laplace"], "invalid choice: 'laplace'"),
    (["transcribe", "--steps", "0"], "positive integer"),
    (["transcribe", "--set", "no_such_setting=1"], "KEY=VALUE"),
    (["transcribe", "--set", "lr_student=fast"], "bad value for lr_student"),
    (["transcribe", "--set", "query_pool=0", "--dataset", "digits"], "query_pool must be a positive integer"),
    (["transcribe", "--set", "steps=1.5"], "bad value for steps"),
    (["transcribe", "--set", "precision=half", "--dataset", "digits"], "unknown precision 'half'"),
    (["transcribe", "--set", "class_balance=2", "--dataset", "digits"], "class_balance is a share"),
    (["transcribe", "--set", "generic_shapes=1", "--dataset", "digits"], "generic_shapes is the share"),
    (["transcribe", "--set", "generic_shapes=0.5", "--generator", "strokes", "--dataset", "digits"],
     "does not take it"),
    (["transcribe", "--set", "generic_shapes_end=1", "--dataset", "digits"], "generic_shapes_end is the"),
    (["transcribe", "--device", "tpu", "--dataset", "digits"], "unknown device"),
    (["sweep", "--modes", "rr,laplace"], "unknown noise mode 'laplace'"),
    (["sweep", "--epsilons", "1,0"], "epsilon must be a positive"),
    (["teacher", "--dataset", "nope"], "invalid choice"),
    (["report"], "required: RUN"),
    (["frobnicate"], "invalid choice"),
    ([], "required: COMMAND"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)  # nothing may be written anywhere else
    code, out, err = run_cli(capsys, *argv)
    assert_user_error(code, err, match)
    assert os.listdir(tmp_path) == []


def test_missing_offline_data_names_the_files(capsys, tmp_path):
    code, _, err = run_cli(capsys, "transcribe", "--dataset", "mnist", "--data-root", tmp_path, "--out", tmp_path / "r")
    assert_user_error(code, err, "train-images-idx3-ubyte")
    assert "--download" in err
    assert not (tmp_path / "r").exists()


def test_report_refuses_missing_and_corrupt_run_dirs(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", tmp_path / "missing")
    assert_user_error(code, err, "does not exist")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "meta.json").write_text("{not json")
    code, _, err = run_cli(capsys, "report", tmp_path / "broken")
    assert_user_error(code, err, "missing")


def test_keyboard_interrupt_is_one_line(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_report", interrupted)  # what `report` runs, looked up after parsing
    code, _, err = run_cli(capsys, "report", "whatever")
    assert code == 130 and err.strip() == "dpsd-lite: interrupted"


def test_help_and_argument_errors_do_not_import_torch():
    """--help and a bad argument answer at once: nothing heavy is imported before the arguments are checked."""
    code = ("import sys; from dpsd_lite.cli import main\n"
            "for argv in (['--help'], ['transcribe', '--help'], ['transcribe', '--epsilon', '-1'],\n"
            "             ['sweep', '--modes', 'nope']):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stderr


def test_module_entry_point_prints_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dpsd_lite.cli", "transcribe", "--epsilon", "-3"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("dpsd-lite: error: argument --epsilon") and "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------- extension points
def test_new_subcommand_is_one_function_and_one_line(capsys, monkeypatch):
    def add_hello(sub):
        p = sub.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(run=lambda args: print(f"hello {args.name}") or 0)

    monkeypatch.setattr(cli, "SUBCOMMANDS", cli.SUBCOMMANDS + [add_hello])
    assert run_cli(capsys, "hello", "--name", "dpsd")[:2] == (0, "hello dpsd\n")


def test_set_values_are_typed_like_the_config_field():
    assert cli.setting_arg("lr_student=1e-3") == ("lr_student", 1e-3)
    assert cli.setting_arg("student-steps=3") == ("student_steps", 3)
    assert cli.setting_arg("download=yes") == ("download", True)
    assert cli.setting_arg("data_root=none") == ("data_root", None)
    assert cli.setting_arg("data_root=/tmp/x") == ("data_root", "/tmp/x")
    # optional integer settings stay integers (a loop cannot run 200.0 steps)
    for text, expected in (("steps=200", ("steps", 200)), ("query_pool=1", ("query_pool", 1)),
                           ("top_k=3", ("top_k", 3)), ("steps=none", ("steps", None))):
        key, value = cli.setting_arg(text)
        assert (key, value) == expected and type(value) is type(expected[1])
    assert type(cli.setting_arg("lr_generator=1e-3")[1]) is float
    # an optional switch is a switch, not the string "false" (which is truthy)
    assert cli.setting_arg("augment=false") == ("augment", False)
    assert cli.setting_arg("augment=none") == ("augment", None)
    with pytest.raises(argparse.ArgumentTypeError, match="bad value for steps"):
        cli.setting_arg("steps=2.5")
    assert cli.epsilon_list("1, 2,10") == [1.0, 2.0, 10.0]


# ----------------------------------------------------------- happy paths
def test_teacher_command_uses_the_cache(capsys, digits_teacher):
    code, out, _ = run_cli(capsys, "teacher", "--dataset", "digits", "--epochs", "3", "--device", "cpu")
    assert code == 0
    assert "loaded from cache" in out
    assert f"{100 * digits_teacher.heldout_accuracy:.1f}%" in out


def test_transcribe_then_report(capsys, tmp_path, monkeypatch, digits_teacher):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "transcribe", *FAST, "--epsilon", "2", "--mode", "rr", "--steps", "6")
    assert code == 0, err
    default_out = tmp_path / "runs" / "digits-rr-eps2-seed0"
    assert "epsilon = 2 per teacher answer" in out
    assert "unit of privacy" in out and "does NOT bound" in out
    assert f"teacher held-out accuracy: {100 * digits_teacher.heldout_accuracy:.1f}%" in out
    assert "student held-out accuracy:" in out
    run = load_run(default_out)
    ratio = run.meta["student_accuracy"] / run.meta["teacher_accuracy"]
    assert f"({100 * ratio:.2f}% of the teacher)" in out  # two decimals: 97.96% never reads as 98.0%
    assert f"run saved to {default_out}" in out
    assert "step" in err  # the progress bar went to stderr
    run = load_run(default_out)
    assert run.config.steps == 6 and run.config.noise_mode == "rr" and run.config.epsilon == 2

    code, out, err = run_cli(capsys, "report", default_out)
    assert code == 0, err
    assert "epsilon = 2 per teacher answer" in out
    assert f"student held-out accuracy: {100 * run.student_accuracy:.1f}%" in out

    # the same output again: refused at once, before any training
    code, _, err = run_cli(capsys, "transcribe", *FAST, "--epsilon", "2", "--mode", "rr", "--steps", "6")
    assert_user_error(code, err, "already exists; pass --force")


def test_sweep_writes_table_csv_and_plot(capsys, tmp_path, digits_teacher):
    out_dir = tmp_path / "sweep"
    argv = ["sweep", *FAST, "--epsilons", "1,10", "--modes", "none", "rr", "--steps", "2", "--out", out_dir]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "student acc" in out and "teacher acc" in out and "per teacher answer" in out
    with open(out_dir / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["noise_mode"], float(r["epsilon"])) for r in rows] == [("none", math.inf), ("rr", 1.0), ("rr", 10.0)]
    assert all(0 <= float(r["student_accuracy"]) <= 1 for r in rows)
    assert rows[1]["delta"] == "0.0" and rows[0]["delta"] == ""
    # the three levels: per answer (epsilon), the whole run composed, per record (none: the teacher is not private)
    assert math.isinf(float(rows[0]["epsilon_whole_run"])) and rows[0]["epsilon_per_record"] == ""
    answers = [int(r["queries"]) for r in rows[1:]]
    assert [float(r["epsilon_whole_run"]) for r in rows[1:]] == pytest.approx(
        [pure_composition_epsilon(e, n, 1e-5) for e, n in zip((1.0, 10.0), answers)])
    assert all(r["epsilon_per_record"] == "" for r in rows)
    assert "ε whole run" in out and "ε per record" in out
    with open(out_dir / "accuracy_vs_epsilon.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["sweep"]  # no temporary siblings left
    code, _, err = run_cli(capsys, *argv)
    assert_user_error(code, err, "already exists")


def test_a_sweep_sets_rr_top2_beside_rr(capsys, tmp_path, digits_teacher):
    out_dir = tmp_path / "sweep"
    code, out, err = run_cli(capsys, "sweep", *FAST, "--epsilons", "10", "--modes", "rr,rr-top2", "--steps", "2",
                             "--out", out_dir)
    assert code == 0, err
    with open(out_dir / "sweep.csv", newline="") as f:
        assert [r["noise_mode"] for r in csv.DictReader(f)] == ["rr", "rr-top2"]
    code, _, err = run_cli(capsys, "sweep", *FAST, "--modes", "rr-top3", "--out", tmp_path / "x")
    assert_user_error(code, err, "unknown noise mode 'rr-top3'; choose from none, label, rr, data, rr-top2")


def test_plot_sweep_axes(tmp_path):
    from dpsd_lite.sweep import format_table, plot_sweep

    base = dict(dataset="digits", teacher_accuracy=0.95, steps=10, seed=0, queries=100, seconds=1.0,
                privacy_unit="per teacher answer")
    rows = [dict(base, noise_mode="none", epsilon=math.inf, delta=None, student_accuracy=0.9, ratio_to_teacher=0.95)]
    rows += [dict(base, noise_mode=m, epsilon=e, delta=1e-5, student_accuracy=a, ratio_to_teacher=a / 0.95)
             for m in ("rr", "label") for e, a in ((1, 0.3), (10, 0.8))]
    fig = plot_sweep(rows, tmp_path / "p.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert "ε" in ax.get_xlabel() and "(%)" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["rr", "label"]
    assert any(lbl.startswith("teacher") for lbl in labels) and any(lbl.startswith("none") for lbl in labels)
    assert (tmp_path / "p.png").stat().st_size > 0
    table = format_table(rows)
    assert "∞" in table and table.count("\n") == len(rows) + 2
    # ε ticks read as numbers (1, 10), not powers (10⁰, 10¹)
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "1" in ticks and "10" in ticks and not any("^" in t or "10^" in t or "$" in t for t in ticks), ticks


def test_accuracy_curve_has_whole_step_ticks_and_grid_names_its_classes():
    from dpsd_lite import plots

    history = [{"step": s, "queries": 64 * s, "student_accuracy": 0.1 * s} for s in (1, 2, 3)]
    fig = plots.plot_accuracy_curves(history, teacher_accuracy=0.9)
    fig.canvas.draw()
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    import torch

    grid = plots.image_grid(torch.zeros(4, 1, 8, 8), classes=torch.tensor([0, 1, 2, 3]),
                            labels=torch.tensor([0, 1, 2, 0]), class_name="true label",
                            label_name="student's prediction")
    assert "titles: true label → student's prediction (3/4 agree)" in grid.axes[0].get_title()


def test_teacher_progress_reports_a_plain_float_without_warnings(digits):
    """The CLI's progress bar gets the loss as a float; converting it must not warn a new user."""
    import warnings

    from dpsd_lite.teacher import train_teacher_model

    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_teacher_model(digits, epochs=1, seed=0, device="cpu", progress=lambda *a: seen.append(a))
    assert len(seen) == 1 and seen[0][:2] == (1, 1) and isinstance(seen[0][2], float)


def test_progress_bar_follows_runs_and_starts_a_new_bar_for_the_next(capsys):
    """The bar the CLI and notebook 06 use: one bar per run of a sweep, closed at the last step."""
    import io
    import types

    from dpsd_lite.transcribe import TranscribeConfig
    from dpsd_lite.utils import ProgressBar

    out = io.StringIO()
    bar = ProgressBar(file=out)
    for eps in (1.0, 10.0):
        cfg = TranscribeConfig(noise_mode="rr", epsilon=eps)
        for step in range(1, 4):
            bar.update(types.SimpleNamespace(config=cfg, step=step, total_steps=3, queries=step * 8,
                                             student_accuracy=float("nan") if step < 3 else 0.5))
        assert bar.bar is None  # closed after the last step
    text = out.getvalue()
    assert "rr, ε=1" in text and "rr, ε=10" in text and "acc=50.0%" in text and "queries=24" in text


def test_dp_teacher_then_transcription_inherits_the_record_level_guarantee(capsys, tmp_path, monkeypatch):
    """`teacher --dp-epsilon` trains a DP-SGD teacher; `transcribe --teacher-dp-epsilon` (even --mode none) inherits
    its record-level (ε, δ), and the report, privacy.json and `report` say so."""
    from dpsd_lite import dpsgd

    monkeypatch.setitem(dpsgd.DP_TEACHER, "epochs", 2)  # a small DP-SGD run: this tests the plumbing
    monkeypatch.setitem(dpsgd.DP_TEACHER, "pretrain_steps", 20)
    code, out, err = run_cli(capsys, "teacher", "--dataset", "digits", "--dp-epsilon", "5", "--device", "cpu")
    assert code == 0, err
    assert "DP-SGD teacher" in out and "record level: epsilon = " in out and "per private training record" in out
    run_dir = tmp_path / "dp-none"
    code, out, err = run_cli(capsys, "transcribe", *FAST, "--mode", "none", "--teacher-dp-epsilon", "5",
                             "--steps", "3", "--out", run_dir)
    assert code == 0, err
    assert "no per-answer epsilon" in out and "record level: epsilon = " in out and "post-processing" in out
    assert "NOT private" not in out
    run = load_run(run_dir)
    assert run.config.teacher_dp_epsilon == 5 and 0 < run.privacy["record_level"]["epsilon"] <= 5
    assert run.privacy["record_level"]["initialisation"].startswith("public")
    from dpsd_lite.audit import claimed_from_privacy

    assert claimed_from_privacy(run.privacy)["unit"] == "record"
    code, out, _ = run_cli(capsys, "report", run_dir)
    assert code == 0 and "record level: epsilon = " in out


def test_transcribe_mode_ensemble_reports_per_record(capsys, tmp_path):
    run_dir = tmp_path / "ens"
    code, out, err = run_cli(capsys, "transcribe", *FAST, "--mode", "ensemble", "--teachers", "4", "--queries", "64",
                             "--epsilon", "8", "--out", run_dir)
    assert code == 0, err
    assert "per private training record" in out and "add/remove one record" in out
    assert "plurality vote, a non-private statistic" in out
    run = load_run(run_dir)
    assert run.privacy["unit"] == "record" and run.privacy["queries_answered"] == 64
    assert run.privacy["epsilon"] <= 8 and run.config.noise_mode == "ensemble"
    code, _, err = run_cli(capsys, "transcribe", *FAST, "--teachers", "4", "--out", tmp_path / "x")
    assert_user_error(code, err, "--mode ensemble")


def test_generator_option_and_the_line_that_names_it(capsys, tmp_path):
    """Every transcription says which generator made its queries; the renderer is never passed off as DPSD's."""
    code, out, err = run_cli(capsys, "transcribe", *FAST, "--epsilon", "2", "--steps", "3", "--generator", "strokes",
                             "--out", tmp_path / "a")
    assert code == 0, err
    assert "queries from: the stroke renderer (a hand-written public prior for digits, not DPSD's learned" in out
    code, out, err = run_cli(capsys, "transcribe", *FAST, "--epsilon", "2", "--steps", "3", "--out", tmp_path / "b")
    assert code == 0, err
    assert "queries from: the learned generator (DPSD's own" in out  # the default
    run = load_run(tmp_path / "b")
    assert run.config.generator == "learned" and run.config.lr_generator is not None  # the defaults it used
    code, _, err = run_cli(capsys, "transcribe", *FAST, "--generator", "pen", "--out", tmp_path / "c")
    assert_user_error(code, err, "invalid choice")


# ------------------------------------------------------- what rr releases
def test_rr_answer_top2_runs_reports_and_saves_what_it_released(capsys, tmp_path, digits_teacher):
    out_dir = tmp_path / "top2"
    code, out, err = run_cli(capsys, "transcribe", *FAST, "--epsilon", "3", "--rr-answer", "top2", "--steps", "3",
                             "--out", out_dir)
    assert code == 0, err
    assert "ordered top two classes, one of 90 pairs" in out
    assert f"= {math.exp(3) / (math.exp(3) + 89):.4f}" in out  # the keep probability, e^3/(e^3+89)
    assert "prior:" not in out and "answer sets used" not in out  # no prior, no answer sets
    run = load_run(out_dir)
    assert run.config.rr_answer == "top2" and run.privacy["answer"] == "top2"
    # control: the default releases the top class, through answer sets chosen from the prior
    code, out, err = run_cli(capsys, "transcribe", *FAST, "--epsilon", "3", "--steps", "2", "--out", tmp_path / "a")
    assert code == 0, err
    assert load_run(tmp_path / "a").config.rr_answer == "top1" and "answer sets used" in out and "prior:" in out


def test_rr_answer_errors_are_one_line_and_write_nothing(capsys, tmp_path):
    for argv, message in ((["--mode", "label", "--rr-answer", "top2"], "--rr-answer belongs to --mode rr"),
                          (["--set", "rr_answer=top3"], "unknown rr answer 'top3'; choose one of top1, top2")):
        code, _, err = run_cli(capsys, "transcribe", *FAST, *argv, "--out", tmp_path / "x")
        assert_user_error(code, err, message)
    assert os.listdir(tmp_path) == []
