"""Record-level privacy, every route side by side: held-out accuracy, wall time and peak memory.

At record-level ε = 1 and 10 per private training record (δ = 1e-5) on mnist-5k, each route in its own
subprocess (so its peak RSS is its own), at several seeds (the noise is secret: runs differ even at one seed):

* ``dpsgd``         the student's architecture trained with DP-SGD (Opacus) on the private split;
* ``dpsgd-public``  the DP teacher (``teacher.get_dp_teacher``): the DP teacher's recipe (``dpsgd.DP_TEACHER``:
                    weights averaged, augmentation multiplicity where chosen) from weights trained on public
                    digit drawings (dpsd_lite.public_data);
* ``dp-teacher``    a student transcribed in mode ``none`` from the ``dpsgd-public`` model (post-processing:
                    the same record-level guarantee, no per-answer noise);
* ``ensemble``      the teacher ensemble's noisy votes (PATE GNMax, 50 teachers, 256 answers).

Settings: DP-SGD's, the DP teacher's and the ensemble's defaults, chosen on public data
(benchmarks/record_level_settings.py); nothing is chosen on the held-out split, which only measures.
benchmarks/dp_teacher_route.py measures the DP teacher and its transcription through the CLI, as a user runs them.

    python benchmarks/record_level_benchmark.py               # about 30 min on 2 cores
    python benchmarks/record_level_benchmark.py --fast        # digits, tiny settings, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROUTES = ("dpsgd", "dpsgd-public", "dp-teacher", "ensemble")


def run_route(route: str, dataset: str, epsilon: float, seed: int, fast: bool) -> dict:
    """One route at one (ε, seed), in this process: returns accuracy, spent ε and seconds."""
    import torch

    from dpsd_lite import dpsgd, teacher
    from dpsd_lite.data import load_dataset

    data = load_dataset(dataset)
    extra = {"epochs": 2} if fast else {}
    if fast:
        dpsgd.DP_TEACHER.update(pretrain_steps=30, epochs=2)
    t0 = time.perf_counter()
    if route == "dpsgd":
        r = dpsgd.train_dpsgd(data, epsilon, seed=seed, device="cpu", **extra)
        acc, eps = r.heldout_accuracy, r.epsilon
    elif route in ("dpsgd-public", "dp-teacher"):
        teacher = teacher.get_dp_teacher(data, epsilon, seed=seed, device="cpu")
        acc, eps = teacher.heldout_accuracy, teacher.privacy["epsilon"]
        if route == "dp-teacher":
            from dpsd_lite.transcribe import transcribe

            res = transcribe(dataset=dataset, data=data, teacher=teacher, noise_mode="none", seed=seed,
                             device="cpu", **({"steps": 10} if fast else {}))
            acc, eps = res.student_accuracy, res.privacy["record_level"]["epsilon"]
    else:
        from dpsd_lite.ensemble import train_teacher_ensemble, transcribe_with_ensemble

        ens = train_teacher_ensemble(data, 5 if fast else 50, seed=seed, device="cpu",
                                     **({"epochs": 2} if fast else {}))
        out = transcribe_with_ensemble(data, ens, epsilon, 1e-5, query_budget=64 if fast else 256,
                                       dataset=dataset, device="cpu", seed=seed, **({"steps": 10} if fast else {}))
        acc, eps = out.student_accuracy, out.privacy["epsilon"]
    return {"route": route, "epsilon_target": epsilon, "epsilon": eps, "seed": seed, "accuracy": acc,
            "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}


def measured(route, dataset, epsilon, seed, fast, threads, cache) -> dict:
    """``run_route`` in a fresh subprocess: wall time and peak RSS are the route's own."""
    env = dict(os.environ, DPSD_CACHE_DIR=cache, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--route", route, "--dataset", dataset,
           "--epsilon", str(epsilon), "--seed", str(seed), "--threads", str(threads)] + (["--fast"] if fast else [])
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--epsilons", default="1,10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--routes", default=",".join(ROUTES))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--route", help=argparse.SUPPRESS)  # internal: run one route here and print its JSON
    ap.add_argument("--epsilon", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.route:
        import torch

        torch.set_num_threads(args.threads)
        row = run_route(args.route, args.dataset, args.epsilon, args.seed, args.fast)
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(row))
        return 0

    dataset = "digits" if args.fast else args.dataset
    epsilons = [float(e) for e in args.epsilons.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.fast else None]
    routes = args.routes.split(",")
    rows = []
    print(f"record-level routes on {dataset}, eps {epsilons} per private training record, seeds {seeds}, "
          f"{args.threads} thread(s)")
    with tempfile.TemporaryDirectory() as cache:  # one cache: dp-teacher reuses dpsgd-public's model
        for seed in seeds:
            for eps in epsilons:
                for route in routes:
                    row = measured(route, dataset, eps, seed, args.fast, args.threads, cache)
                    rows.append(row)
                    print(f"  {route:<13} eps={eps:<4g} seed {seed}: {100 * row['accuracy']:.1f}% "
                          f"(spent eps {row['epsilon']:.3g}) in {row['wall_seconds']:.0f} s, "
                          f"peak {row['peak_rss_mb']:.0f} MB", flush=True)

    summary = []
    for route in routes:
        for eps in epsilons:
            cell = [r for r in rows if r["route"] == route and r["epsilon_target"] == eps]
            accs = [r["accuracy"] for r in cell]
            summary.append({"route": route, "epsilon": eps, "mean": statistics.mean(accs),
                            "min": min(accs), "max": max(accs), "accs": accs,
                            "seconds": statistics.mean(r["wall_seconds"] for r in cell),
                            "peak_rss_mb": max(r["peak_rss_mb"] for r in cell)})
    print(f"\n{'route':<14} {'eps':>4} {'mean acc':>9} {'per seed':>24} {'wall s':>7} {'peak MB':>8}")
    for s in summary:
        print(f"{s['route']:<14} {s['epsilon']:>4g} {100 * s['mean']:>8.1f}% "
              f"{' / '.join(f'{100 * a:.1f}' for a in s['accs']):>24} {s['seconds']:>7.0f} {s['peak_rss_mb']:>8.0f}")
    if not args.fast:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", f"record-level-{dataset}.json"), "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=2)
        sys.path.insert(0, HERE)
        from results_file import command_line, table, write_section

        body = ("Held-out accuracy (the mean over seeds, then each seed), ε per private training record "
                "(δ = 1e-5), wall time per run (mean) and peak RSS (max) of each route's own process.\n\n"
                + table(("route", "ε", "mean", "per seed", "wall s", "peak MB"),
                        [(s["route"], f"{s['epsilon']:g}", f"{100 * s['mean']:.1f}%",
                          " / ".join(f"{100 * a:.1f}" for a in s["accs"]), f"{s['seconds']:.0f}",
                          f"{s['peak_rss_mb']:.0f}") for s in summary]))
        write_section(f"record-level-{dataset}", f"Record-level routes side by side ({dataset})",
                      command_line("record_level_benchmark.py", argv), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
