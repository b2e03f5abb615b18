"""Accuracy against wall time: what a longer run of the learned generator reaches.

The default budget (the generator's own ``steps``: 200 iterations for the learned one in float32, 340 in
bfloat16) keeps one transcription within 45 s on 2 CPU cores. This script runs
the same transcription with more iterations (``steps``; everything else at its default, the one-cycle
schedule stretched to the longer run) and reports the student's held-out accuracy over the teacher's and
the wall time of each run, so a user with more time (or a GPU) knows what it buys:

    python benchmarks/budget_curve.py                                    # mnist-5k, rr at eps 1 and 10
    python benchmarks/budget_curve.py --dataset fashion-mnist --data-root ../shared/data
    python benchmarks/budget_curve.py --fast                             # digits, a smoke run

ε is per teacher answer (δ = 1e-5): a longer run asks more questions, each answered at the same ε, so
the per-answer claim is unchanged; what each ε protects is in the privacy report of every run. Held-out
accuracy only measures; nothing is chosen on it. Writes benchmarks/results/ and its section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--generator", default="learned")
    ap.add_argument("--mode", default="rr")
    ap.add_argument("--epsilons", default="1,10")
    ap.add_argument("--steps", default=None,
                    help="iterations per run, comma-separated (default: the generator's default and twice it)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--fast", action="store_true", help="smoke run: digits, few steps, one seed")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from dpsd_lite.data import load_dataset
    from dpsd_lite.teacher import get_teacher
    from dpsd_lite.transcribe import TranscribeConfig, resolve, transcribe

    dataset = "digits" if args.fast else args.dataset
    epsilons = [float(e) for e in args.epsilons.split(",")]
    defaults = sorted({resolve(TranscribeConfig(dataset=dataset, generator=args.generator, noise_mode=args.mode,
                                        epsilon=e, device="cpu")).steps for e in epsilons})
    default_steps = " / ".join(map(str, defaults))
    if args.fast:
        steps_list = [10, 20]
    elif args.steps:
        steps_list = [int(s) for s in args.steps.split(",")]
    else:
        steps_list = sorted({n for d in defaults for n in (d, 2 * d)})
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.fast else None]
    data = load_dataset(dataset, root=args.data_root)
    print(f"budget curve: {dataset}, generator {args.generator}, mode {args.mode}, eps {epsilons}, steps "
          f"{steps_list}, seeds {seeds}, {args.threads} thread(s)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for seed in seeds:
            teacher = get_teacher(data, seed=seed, device="cpu", cache_dir=cache,
                                  **({"epochs": 3} if args.fast else {}))
            for eps in epsilons:
                for steps in steps_list:
                    r = transcribe(data=data, teacher=teacher, dataset=dataset, data_root=args.data_root,
                                   generator=args.generator, noise_mode=args.mode, epsilon=eps, steps=steps,
                                   seed=seed, device="cpu")
                    row = {"seed": seed, "epsilon": eps, "steps": steps, "queries": r.queries,
                           "ratio": r.student_accuracy / teacher.heldout_accuracy, "seconds": r.elapsed}
                    rows.append(row)
                    print(f"  seed {seed} eps={eps:<5} steps {steps:>5}: ratio {row['ratio']:.3f}, "
                          f"{r.queries} queries, {r.elapsed:.0f} s", flush=True)
    summary = []
    for eps in epsilons:
        for steps in steps_list:
            cell = [r for r in rows if r["epsilon"] == eps and r["steps"] == steps]
            summary.append({"epsilon": eps, "steps": steps, "queries": cell[0]["queries"],
                            "mean": statistics.mean(r["ratio"] for r in cell),
                            "ratios": [r["ratio"] for r in cell],
                            "seconds": statistics.mean(r["seconds"] for r in cell)})
    print(f"\n{'eps':>5} {'steps':>6} {'queries':>8} {'mean':>6} {'per seed':>14} {'s/run':>6}")
    for s in summary:
        print(f"{s['epsilon']:>5} {s['steps']:>6} {s['queries']:>8} {s['mean']:>6.3f} "
              f"{' / '.join(f'{v:.3f}' for v in s['ratios']):>14} {s['seconds']:>6.0f}")
    if not args.fast:
        name = f"budget-{dataset}-{args.generator}-{args.mode}"
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", f"{name}.json"), "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=2)
        from results_file import command_line, table, write_section

        body = (f"Student/teacher held-out accuracy of the {args.generator} generator in mode {args.mode} "
                f"(ε per teacher answer, δ = 1e-5) against the run's length, seeds {', '.join(map(str, seeds))} "
                f"(mean, then each seed; each seed has its own teacher), {args.threads} thread(s). The default "
                f"is {default_steps} steps.\n\n"
                + table(("ε", "steps", "queries", "mean", "per seed", "s / run"),
                        [(s["epsilon"], s["steps"], s["queries"], f"{s['mean']:.3f}",
                          " / ".join(f"{v:.3f}" for v in s["ratios"]), f"{s['seconds']:.0f}") for s in summary]))
        write_section(name, f"Accuracy against wall time ({dataset}, {args.generator} generator, {args.mode})",
                      command_line("budget_curve.py", argv), body)
    return 0


if __name__ == "__main__":
    from results_file import run_timed

    run_timed(main)
