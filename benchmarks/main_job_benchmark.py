"""The README's main job against what a user would run instead for a private student, timed side by side.

Runs, one after another in fresh processes (so each wall time and peak memory is that job's alone), with the
ordinary teacher already cached:

1. the main job, ``dpsd-lite transcribe --epsilon 10 --mode rr`` (DPSD's learned generator);
2. DP-SGD at ε = 10 per private record on the same private images, ``dpsd-lite teacher --dp-epsilon 10
   --retrain`` (Opacus), the record-level route a user would otherwise take;
3. the same transcription with the stroke renderer, ``--generator strokes`` (a public prior, for reference).

Each job is repeated ``--repeats`` times, the jobs alternated (1, 2, 3, 1, 2, 3, ...) so that a machine that
slows down or speeds up meddles with all of them alike. Prints each run's wall time, the median per job, the
student's held-out accuracy as a share of the teacher's, and the ratio of the main job's median to DP-SGD's.

    python benchmarks/main_job_benchmark.py                 # full: mnist-5k, 2 repeats (about 8 min on 2 cores)
    python benchmarks/main_job_benchmark.py --fast          # a smoke run (digits, a few steps; writes nothing)

A full run writes its table to benchmarks/RESULTS.md ("The main job against DP-SGD"). Accuracy is on the
held-out split; nothing is chosen here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from results_file import command_line, run_cli, run_timed, table, write_section  # noqa: E402

SECTION = "main-job"


def jobs(dataset: str, fast: bool) -> list[tuple[str, list[str]]]:
    """(name, dpsd-lite arguments) of the three jobs."""
    data = ["--dataset", dataset]
    small = ["--steps", "3"] if fast else []
    dp_small = ["--epochs", "1"] if fast else []
    return [
        ("main job: learned generator, rr ε = 10", ["transcribe", "--epsilon", "10", "--mode", "rr", *data, *small]),
        ("DP-SGD teacher, ε = 10 per record", ["teacher", "--dp-epsilon", "10", "--retrain", *data, *dp_small]),
        ("stroke renderer (public prior), rr ε = 10",
         ["transcribe", "--epsilon", "10", "--mode", "rr", "--generator", "strokes", *data, *small]),
    ]


def run_job(args: list[str], env: dict, out_dir: str | None) -> dict:
    """Run ``dpsd-lite ARGS`` in a fresh process; its wall time, peak memory and (for a transcription) accuracy."""
    stdout, seconds, peak_mb = run_cli([*args] + (["--out", out_dir] if out_dir else []), env)
    result = {"seconds": seconds, "peak_mb": peak_mb}
    if out_dir:
        meta = json.load(open(os.path.join(out_dir, "meta.json")))
        result["ratio"] = meta["student_accuracy"] / meta["teacher_accuracy"]
    else:
        held_out = [ln for ln in stdout.splitlines() if ln.startswith("held-out accuracy:")]
        result["accuracy"] = held_out[-1].split(":")[1].split("%")[0].strip() + "%" if held_out else "?"
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a smoke run: digits, a few steps, writes nothing")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each job (default 2)")
    parser.add_argument("--dataset", default="mnist-5k")
    args = parser.parse_args(argv)
    dataset = "digits" if args.fast else args.dataset

    with tempfile.TemporaryDirectory(prefix="dpsd_main_job_") as tmp:
        env = dict(os.environ, DPSD_CACHE_DIR=os.path.join(tmp, "cache"))
        env.pop("DPSD_FAST", None)
        subprocess.run([sys.executable, "-m", "dpsd_lite.cli", "teacher", "--dataset", dataset], env=env,
                       check=True, capture_output=True)  # the ordinary teacher, cached before any timing
        todo = jobs(dataset, args.fast)
        runs = {name: [] for name, _ in todo}
        for r in range(args.repeats):
            for i, (name, job) in enumerate(todo):
                out = os.path.join(tmp, f"run-{r}-{i}") if job[0] == "transcribe" else None
                res = run_job(job, env, out)
                runs[name].append(res)
                what = f"{res['ratio']:.3f} of the teacher" if "ratio" in res else f"held out {res['accuracy']}"
                print(f"[{r + 1}/{args.repeats}] {name}: {res['seconds']:.1f} s, peak {res['peak_mb']:.0f} MB, {what}",
                      flush=True)

    medians = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    main_name, dp_name = todo[0][0], todo[1][0]
    ratio = medians[main_name] / medians[dp_name]
    rows = []
    for name, rs in runs.items():
        acc = " / ".join(f"{r['ratio']:.3f}" if "ratio" in r else r["accuracy"] for r in rs)
        rows.append((name, f"{medians[name]:.0f}", " / ".join(f"{r['seconds']:.0f}" for r in rs),
                     f"{max(r['peak_mb'] for r in rs):.0f}", acc))
    text = table(("job", "median s", "each run, s", "peak MB", "student/teacher (transcriptions) or held-out "
                  "accuracy (DP-SGD)"), rows)
    verdict = (f"main job / DP-SGD: **{ratio:.2f}** (the main job takes {'no longer than' if ratio <= 1 else 'longer than'}"
               f" DP-SGD)")
    print()
    print(text)
    print(verdict)
    if not args.fast:
        body = (f"Wall time of each command in a fresh process on {dataset}, the ordinary teacher cached, jobs "
                f"alternated, {args.repeats} runs each; ε = 10 (per teacher answer for the transcriptions, per "
                f"private record for DP-SGD), δ = 1e-5. Accuracy on the held-out split.\n\n{text}\n\n{verdict}")
        write_section(SECTION, "The main job against DP-SGD (wall time, one after another)",
                      command_line("main_job_benchmark.py", argv), body)
    return 0


if __name__ == "__main__":
    run_timed(main)
