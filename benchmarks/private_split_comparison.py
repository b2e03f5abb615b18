"""Compare settings of the loop on the private split, over many seeds: how the design history was measured.

Each *arm* is a set of config overrides (``base`` for the defaults, or ``KEY=VALUE+KEY=VALUE``, the keys of
``dpsd-lite transcribe --set``). Every arm runs once per seed, each seed with its own teacher, and is scored by
the student's accuracy on the **private split** over the teacher's there; nothing of the held-out split is
printed or stored here, so nothing is chosen on it:

    python benchmarks/private_split_comparison.py --epsilon 1 --seeds 0-9 --arms base diversity_weight=0.3
    python benchmarks/private_split_comparison.py --epsilon 1 --seeds 0-9 --jobs 2   # two seeds at a time
    python benchmarks/private_split_comparison.py --dataset fashion-mnist --data-root ../shared/data \\
        --epsilon 10 --seeds 0-2 --arms base top_k=5
    python benchmarks/private_split_comparison.py --fast          # digits, a smoke run of the same path

Choosing a setting this way is itself a release that no ε covers (Papernot & Steinke 2022): whatever is
adopted from it is disclosed in the package's reports (``config.CHOSEN_ON_PRIVATE_SPLIT``). The runs use
noise derived from the seed (``reproducible_noise``), so anyone can rerun a comparison and get the same
figures on the same machine and thread count; their ε does not hold against whoever knows the seed, which is
why no run of this script is saved or released.

A run at ε = 1 is chaotic: a change as small as the order of floating-point sums moves one seed by up to 0.10
(benchmarks/RESULTS.md, "Design history"). Runs of two arms on the same seed are therefore not paired; the
script reports each arm's mean, its standard deviation over seeds and the standard error of the mean, and each
arm's difference from the first with the standard error of that difference (unpaired).

``--jobs N`` runs N seeds at once, each in a process of its own with ``--threads`` threads (on 2 cores: ``--jobs 2``
at the default 1 thread). A seed's figures depend on its thread count, not on how many seeds run beside it, so
they are the same as one at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def parse_seeds(text: str) -> list:
    """``0,1,2`` or ``0-9`` (inclusive) or a mix: ``0-2,5``."""
    seeds = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct integers, got {text!r}")
    return seeds


def parse_arm(text: str) -> tuple:
    """``base`` → ("base", {}); ``KEY=VALUE+KEY=VALUE`` → (text, the overrides typed as ``--set`` types them)."""
    from dpsd_lite.cli import setting_arg

    return text, ({} if text == "base" else dict(setting_arg(part) for part in text.split("+")))


def summarise(ratios: list) -> dict:
    """Mean, standard deviation over seeds and standard error of the mean (0 for one seed)."""
    mean = statistics.mean(ratios)
    sd = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
    return {"mean": mean, "sd": sd, "se": sd / math.sqrt(len(ratios))}


def run_seed(seed: int, job: dict) -> list:
    """One seed: its own teacher (trained afresh in a temporary cache), then every arm; returns one row per arm.
    A top-level function, so that ``--jobs`` can run it in a process of its own."""
    import torch

    torch.set_num_threads(job["threads"])
    from dpsd_lite.data import load_dataset
    from dpsd_lite.teacher import get_teacher
    from dpsd_lite.transcribe import transcribe
    from dpsd_lite.utils import accuracy

    data = load_dataset(job["dataset"], root=job["data_root"])
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        teacher = get_teacher(data, seed=seed, device="cpu", cache_dir=cache, **({"epochs": 3} if job["fast"] else {}))
        on_private = accuracy(teacher.model, data.x_private, data.y_private)
        for name, overrides in job["arms"].items():
            run = dict(overrides, **({"steps": 10} if job["fast"] else {}))
            r = transcribe(data=data, teacher=teacher, dataset=job["dataset"], generator=job["generator"],
                           noise_mode=job["mode"], epsilon=job["epsilon"], seed=seed, device="cpu",
                           reproducible_noise=True, **run)
            ratio = accuracy(r.student, data.x_private, data.y_private) / on_private
            rows.append({"arm": name, "seed": seed, "ratio": ratio, "seconds": r.elapsed})
            print(f"  seed {seed:>3} {name:<40} {ratio:.4f}  {r.elapsed:.0f} s", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--generator", default="learned")
    ap.add_argument("--mode", default="rr", help="noise mode of every run")
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--seeds", type=parse_seeds, default=None,
                    help="e.g. 0-9 or 0,1,2 (default 0-2; with --fast, the first two given, or 0)")
    ap.add_argument("--arms", nargs="+", type=parse_arm, default=[parse_arm("base")],
                    help="base, or KEY=VALUE+KEY=VALUE config overrides")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1; the figures "
                                                            "depend on it, as on the machine)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run at once, one process each (default 1); "
                                                         "each uses --threads, so the figures are the same")
    ap.add_argument("--fast", action="store_true", help="smoke run: digits, 10 steps, one seed (or two given)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    arms = dict(args.arms)  # bad keys or values failed in parse_args, before any run
    if len(arms) != len(args.arms):
        ap.error("each arm once")
    if args.jobs < 1 or args.threads < 1:
        ap.error("--jobs and --threads must be at least 1")

    dataset = "digits" if args.fast else args.dataset
    seeds = (args.seeds or [0])[:2] if args.fast else (args.seeds or parse_seeds("0-2"))
    print(f"private-split comparison: {dataset}, generator {args.generator}, mode {args.mode}, eps {args.epsilon:g}, "
          f"seeds {seeds}, {args.threads} thread(s) per run, {args.jobs} run(s) at a time; scored on the private "
          f"split, noise derived from the seed", flush=True)
    job = {"dataset": dataset, "data_root": args.data_root, "generator": args.generator, "mode": args.mode,
           "epsilon": args.epsilon, "arms": arms, "threads": args.threads, "fast": args.fast}
    from functools import partial

    from results_file import side_by_side

    # one process per seed with --jobs: each trains its own teacher and runs every arm, as one at a time does
    rows = [row for seed_rows in side_by_side(partial(run_seed, job=job), seeds, args.jobs) for row in seed_rows]
    first = summarise([r["ratio"] for r in rows if r["arm"] == next(iter(arms))])
    summary = []
    for name in arms:
        ratios = [r["ratio"] for r in rows if r["arm"] == name]
        s = summarise(ratios)
        s.update(arm=name, ratios=ratios, diff=s["mean"] - first["mean"],
                 diff_se=math.sqrt(s["se"] ** 2 + first["se"] ** 2))
        summary.append(s)
    print(f"\n{'arm':<40} {'mean':>6} {'sd':>6} {'se':>6} {'vs first':>9} {'± se':>6}")
    for s in summary:
        versus = f"{s['diff']:>+9.3f} {s['diff_se']:>6.3f}" if s is not summary[0] else f"{'—':>9} {'':>6}"
        print(f"{s['arm']:<40} {s['mean']:>6.3f} {s['sd']:>6.3f} {s['se']:>6.3f} {versus}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": dataset, "mode": args.mode, "epsilon": args.epsilon, "rows": rows,
                       "summary": summary}, f, indent=2)
    if not args.fast:
        from results_file import command_line, table, write_section

        slug = re.sub(r"[^a-z0-9]+", "_", "-".join(arms).lower()).strip("_")[:60]
        name = f"private-{dataset}-{args.mode}-eps{args.epsilon:g}-{slug}"
        body = (f"Student accuracy over the teacher's, both on the **private split** (the teacher's training "
                f"images; nothing of the held-out split is reported), {args.generator} generator, mode {args.mode}, "
                f"ε = {args.epsilon:g} per teacher answer, seeds {', '.join(map(str, seeds))} (each with its own "
                f"teacher), noise derived from the seed, {args.threads} thread(s) per run. *vs first*: the "
                f"difference of the means from the first arm's, with its unpaired standard error.\n\n"
                + table(("arm", "mean", "sd", "se", "vs first", "per seed"),
                        [(s["arm"], f"{s['mean']:.3f}", f"{s['sd']:.3f}", f"{s['se']:.3f}",
                          f"{s['diff']:+.3f} ± {s['diff_se']:.3f}" if s is not summary[0] else "—", " / ".join(f"{v:.3f}" for v in s["ratios"]))
                         for s in summary]))
        write_section(name, f"Private-split comparison ({dataset}, {args.mode} ε = {args.epsilon:g})",
                      command_line("private_split_comparison.py", argv), body)
    return 0


if __name__ == "__main__":
    from results_file import run_timed

    run_timed(main)
