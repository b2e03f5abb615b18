"""The record-level route measured as a user runs it: a DP-SGD teacher, then a student transcribed from it.

For each seed and each ε per private training record (δ = 1e-5), in fresh processes with their own cache:

1. ``dpsd-lite teacher --dp-epsilon E --seed S`` trains the DP-SGD teacher with its recipe
   (``dpsd_lite.dpsgd.DP_TEACHER``, chosen on public data by ``record_level_settings.py dp-teacher``) and
   prints its held-out accuracy; its wall time is the CLI job's;
2. ``dpsd-lite transcribe --mode none --teacher-dp-epsilon E --seed S`` transcribes a student from that
   teacher with the default (learned) generator, starting from the teacher's own weights (``student_init``,
   resolved to ``teacher`` there): post-processing of a record-level (E, δ)-DP model, so the student
   carries the teacher's guarantee and no per-answer noise is added;
3. on a domain without public drawings (Fashion-MNIST), also plain DP-SGD (``train_dpsgd``'s defaults:
   the student's architecture from random weights, no averaging, no augmentation) for comparison.

Accuracy is on the dataset's held-out split, which only measures: nothing is chosen here. The DP-SGD
noise and Poisson sampling are secret (the OS's entropy), so two runs at one seed differ.

    python benchmarks/dp_teacher_route.py                      # mnist-5k, seeds 0-2, eps 1 and 10
    python benchmarks/dp_teacher_route.py --dataset fashion-mnist --data-root /work/shared/data
    python benchmarks/dp_teacher_route.py --fast               # a smoke run (digits, one seed and eps; writes nothing)

A full run writes its section of benchmarks/RESULTS.md ("The record-level route: DP-SGD teacher, then
transcription").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from results_file import command_line, run_cli, run_timed, table, write_section  # noqa: E402


def _percent_after(text: str, prefix: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
    return float(line[len(prefix):].split("%")[0]) / 100


def plain_dpsgd(dataset: str, data_root: str | None, epsilon: float, seed: int, fast: bool, threads: int) -> dict:
    """Plain DP-SGD (``train_dpsgd``'s defaults, with the recipe's accountant so that both rows get the noise the
    same accounting allows) in a fresh process: held-out accuracy, spent ε, seconds."""
    from dpsd_lite.dpsgd import DP_TEACHER

    accountant = DP_TEACHER.get("accountant", "rdp")
    code = (f"import json, torch; torch.set_num_threads({threads})\n"
            f"from dpsd_lite.data import load_dataset\nfrom dpsd_lite.dpsgd import train_dpsgd\n"
            f"d = load_dataset({dataset!r}, root={data_root!r})\n"
            f"r = train_dpsgd(d, {epsilon!r}, seed={seed}, device='cpu', accountant={accountant!r}"
            f"{', epochs=1' if fast else ''})\n"
            f"print(json.dumps({{'accuracy': r.heldout_accuracy, 'epsilon': r.epsilon}}))")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=_env(None, threads), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"plain DP-SGD failed:\n{proc.stderr[-2000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "seconds": time.perf_counter() - start}


def _env(cache: str | None, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if cache:
        env["DPSD_CACHE_DIR"] = cache
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--epsilons", default="1,10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job (default 1)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="(seed, eps) pairs run side by side (default 1; more share the CPU, so wall times grow)")
    ap.add_argument("--plain", choices=("auto", "yes", "no"), default="auto",
                    help="also plain DP-SGD (auto: on domains without public drawings)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the (seed, eps) rows an interrupted full run saved in benchmarks/results/ and run "
                         "only the missing ones")
    ap.add_argument("--fast", action="store_true", help="smoke run: digits, one seed, 3 transcription steps; writes nothing")
    args = ap.parse_args(argv)

    from dpsd_lite.dpsgd import DP_TEACHER
    from dpsd_lite.generators import STROKE_FORMAT

    dataset = "digits" if args.fast else args.dataset
    epsilons = [float(e) for e in args.epsilons.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.fast else None]
    plain = args.plain == "yes" or (args.plain == "auto" and dataset not in STROKE_FORMAT)
    data = ["--dataset", dataset] + (["--data-root", args.data_root] if args.data_root else [])
    print(f"record-level route on {dataset}: eps {epsilons} per private training record (delta 1e-5), seeds {seeds}, "
          f"{args.threads} thread(s) per job, {args.jobs} side by side; DP teacher recipe {json.dumps(DP_TEACHER)}",
          flush=True)
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as runs:
        env = _env(cache, args.threads)

        def one(task):
            seed, eps = task
            common = [*data, "--seed", str(seed), "--device", "cpu"]
            out, t_teacher, peak = run_cli(["teacher", "--dp-epsilon", f"{eps:g}", *common], env)
            row = {"seed": seed, "epsilon_target": eps, "teacher_seconds": t_teacher, "teacher_peak_mb": peak}
            out_dir = os.path.join(runs, f"s{seed}-e{eps:g}")
            _, t_student, _ = run_cli(["transcribe", "--mode", "none", "--teacher-dp-epsilon", f"{eps:g}", *common,
                                   "--out", out_dir, *(["--steps", "3"] if args.fast else [])], env)
            meta = json.load(open(os.path.join(out_dir, "meta.json")))
            rl = json.load(open(os.path.join(out_dir, "privacy.json")))["record_level"]
            row.update(teacher=meta["teacher_accuracy"], student=meta["student_accuracy"], student_seconds=t_student,
                       epsilon=rl["epsilon"], delta=rl["delta"], accountant=rl["accountant"],
                       initialisation=rl.get("initialisation"))
            if plain:
                p = plain_dpsgd(dataset, args.data_root, eps, seed, args.fast, args.threads)
                row.update(plain=p["accuracy"], plain_epsilon=p["epsilon"], plain_seconds=p["seconds"])
            print(f"  seed {seed} eps={eps:g} (spent {rl['epsilon']:.3f}): DP teacher {100 * row['teacher']:.1f}% "
                  f"({t_teacher:.0f} s, peak {peak:.0f} MB), transcribed student {100 * row['student']:.1f}% "
                  f"({t_student:.0f} s)"
                  + (f", plain DP-SGD {100 * row['plain']:.1f}% ({row['plain_seconds']:.0f} s)" if plain else ""),
                  flush=True)
            return row

        from concurrent.futures import ThreadPoolExecutor
        import threading

        # every finished row is saved at once, so a run stopped by something else keeps what it measured
        saved = os.path.join(HERE, "results", f"dp-teacher-route-{dataset}.rows.json")
        done = json.load(open(saved)) if args.resume and os.path.exists(saved) else []
        if done:
            print(f"resuming: {len(done)} row(s) from {os.path.relpath(saved, HERE)}", flush=True)
        lock = threading.Lock()

        def one_saved(task):
            row = one(task)
            if not args.fast:
                with lock:
                    done.append(row)
                    os.makedirs(os.path.dirname(saved), exist_ok=True)
                    with open(saved, "w") as f:
                        json.dump(done, f, indent=2)
            return row

        tasks = [(seed, eps) for seed in seeds for eps in epsilons
                 if not any(r["seed"] == seed and r["epsilon_target"] == eps for r in done)]
        kept = list(done)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # each task runs its jobs in fresh processes
            new_rows = list(pool.map(one_saved, tasks))
        rows = sorted(kept + new_rows, key=lambda r: (r["seed"], r["epsilon_target"]))

    cols = ["teacher", "student"] + (["plain"] if plain else [])
    summary = []
    for eps in epsilons:
        cell = [r for r in rows if r["epsilon_target"] == eps]
        s = {"epsilon": eps, "spent": max(r["epsilon"] for r in cell),
             "teacher_seconds": statistics.mean(r["teacher_seconds"] for r in cell),
             "teacher_peak_mb": max(r["teacher_peak_mb"] for r in cell)}
        for c in cols:
            accs = [r[c] for r in cell]
            s[c] = {"mean": statistics.mean(accs), "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "accs": accs}
        summary.append(s)
    print()
    for s in summary:
        print(f"eps={s['epsilon']:g}: " + ", ".join(f"{c} {100 * s[c]['mean']:.1f}% (sd {100 * s[c]['sd']:.1f})"
                                                      for c in cols)
              + f"; DP teacher job {s['teacher_seconds']:.0f} s")
    if args.fast:
        return 0
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"dp-teacher-route-{dataset}.json"), "w") as f:
        json.dump({"recipe": DP_TEACHER, "rows": rows, "summary": summary}, f, indent=2)
    names = {"teacher": "DP-SGD teacher (recipe)", "student": "student transcribed from it (mode none)",
             "plain": "plain DP-SGD (train_dpsgd defaults, random init, the recipe's accountant)"}
    body_rows = [(names[c], f"{s['epsilon']:g}", f"{100 * s[c]['mean']:.1f}%", f"{100 * s[c]['sd']:.1f}",
                  " / ".join(f"{100 * a:.1f}" for a in s[c]["accs"])) for c in cols for s in summary]
    init = next((r["initialisation"] for r in rows if r.get("initialisation")), "random")
    # the accountant the runs' reports name (rows taken from an old log may not carry it)
    accountant = next((r["accountant"] for r in rows if r.get("accountant")),
                      f"the recipe's accountant ({DP_TEACHER.get('accountant', 'rdp')})")
    logged = [f"seed {r['seed']} ε = {r['epsilon_target']:g}" for r in rows if r.get("from_log")]
    body = (f"Held-out accuracy on {dataset}'s held-out split (only measured: no setting was chosen on it), ε per "
            f"private training record, δ = 1e-5, DP-SGD with Poisson sampling (Opacus), "
            f"{accountant}; "
            f"secret noise, so the seeds ({', '.join(map(str, seeds))}) are separate runs. Each row: mean, standard "
            f"deviation, then each seed. The teacher's recipe (`dpsd_lite.dpsgd.DP_TEACHER`): "
            f"`{json.dumps(DP_TEACHER)}`; its "
            f"initialisation: {init}. The student is transcribed by `dpsd-lite transcribe --mode none "
            f"--teacher-dp-epsilon E` (learned generator), starting from the DP teacher's weights (`student_init` "
            f"teacher, the default there): post-processing, the same record-level (ε, δ).\n\n"
            + table(("model", "ε", "mean", "sd", "per seed"), body_rows)
            + (f"\n\nRows {', '.join(logged)} come from the log of a first invocation (accuracies to 0.1%), which "
               f"stopped before the last rows when a concurrent edit of the work tree broke an import; `--resume` "
               f"ran the missing rows." if logged else "")
            + f"\n\n{args.jobs} (seed, ε) pair(s) ran side by side, one torch thread each, so wall times are "
              f"those of a shared CPU. " + "; ".join(f"ε = {s['epsilon']:g}: `dpsd-lite teacher --dp-epsilon {s['epsilon']:g}` took "
                                 f"{s['teacher_seconds']:.0f} s on average (peak {s['teacher_peak_mb']:.0f} MB), "
                                 f"spent ε ≤ {s['spent']:.3f}" for s in summary) + ".")
    write_section(f"dp-teacher-route-{dataset}", f"The record-level route: DP-SGD teacher, then transcription ({dataset})",
                  command_line("dp_teacher_route.py", argv), body)
    return 0


if __name__ == "__main__":
    run_timed(main)
