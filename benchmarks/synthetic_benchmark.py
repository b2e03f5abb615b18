"""Downstream value of DPSD's synthetic data, with and without the re-identification filter.

For each ε (rr mode, one shared teacher): transcribe, draw N synthetic images
labelled by the student (from the generator's snapshots, as ``synthesize`` does, and
from the final generator for comparison), run the filter (teacher's penultimate features,
threshold = 95th percentile of held-out → nearest private similarity), then
train fresh students on the synthetic set (on the student's class probabilities
at config.SYNTHESIS_TEMPERATURE, and again on its argmax labels), on the filtered
set, and on the real private split, and report their accuracy on the real held-out split.

    python benchmarks/synthetic_benchmark.py                  # mnist-5k, ε ∈ {1, 10}, full size
    python benchmarks/synthetic_benchmark.py --fast           # a smoke run of the same path (minutes → seconds)
    python benchmarks/synthetic_benchmark.py --json out.json  # also write the rows
    python benchmarks/synthetic_benchmark.py --epsilons 10 --generators learned --seeds 0,1,2  # the spread

The filter reads private data and is not DP; the run's ε covers the unfiltered set only.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time

import torch

from dpsd_lite import config
from dpsd_lite.data import load_dataset
from dpsd_lite.reid_filter import reid_filter
from dpsd_lite.synthetic import downstream_comparison, sample_synthetic
from dpsd_lite.teacher import get_teacher
from dpsd_lite.transcribe import transcribe

# the second downstream architecture (dpsd_lite.synthetic.DOWNSTREAM_ARCHS): not the student's, so that the
# synthetic set is not judged only by the architecture it was made for
OTHER_ARCH = "teacher"
# the synthetic-data goal, relative to the teacher: a classifier trained only on synthetic images from a
# learned-generator run at rr eps = 10 keeps this share of the teacher's held-out accuracy, with either architecture
GOAL = 0.90

# Every downstream classifier trains this long, on real or synthetic images alike. On the real private split
# 600 steps had already converged, but on the synthetic set's soft labels they stopped well short; the count
# was raised to 2,400 after comparing 600 / 1,200 / 2,400 on the private splits, then measured held out once
# (benchmarks/RESULTS.md, "Design history": how long the downstream classifier trains). Sections written
# before that say 600 in their text or lack a step count; those without one ran at 600.
DOWNSTREAM_STEPS = 2400
# the batch size every downstream classifier trains with: downstream_comparison's own, which this script keeps
DOWNSTREAM_BATCH = inspect.signature(downstream_comparison).parameters["batch_size"].default


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0])
    p.add_argument("--mode", default="rr")
    p.add_argument("--generators", default="learned,strokes",
                   help="generators to compare (strokes only on digit datasets)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--steps", type=int, default=None,
                   help="transcription steps (default: each generator's own)")
    p.add_argument("--n", type=int, default=4000, help="synthetic images per run (the private split has 4,000)")
    p.add_argument("--downstream-steps", type=int, default=DOWNSTREAM_STEPS,
                   help=f"training steps of every downstream classifier (default {DOWNSTREAM_STEPS:,})")
    p.add_argument("--percentile", type=float, default=95.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default=None, metavar="S,S,...",
                   help="several seeds, each with its own teacher, run and real-data reference; writes a table of "
                        "the ratios per seed and their mean (instead of --seed)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--freeze-generator", action="store_true",
                   help="ablation: the generator keeps its random initialisation (no generator steps)")
    p.add_argument("--fast", action="store_true", help="tiny sizes: checks the path works, numbers mean nothing")
    p.add_argument("--json", default=None, metavar="FILE", help="write the rows as JSON")
    args = p.parse_args(argv)
    if args.fast:
        args.steps, args.n, args.downstream_steps = 10, 300, 30
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    data = load_dataset(args.dataset, root=args.data_root)
    seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
    rows = [row for seed in seeds for row in run_seed(args, data, seed)]
    print()
    steps = "–".join(str(n) for n in sorted({r["steps"] for r in rows}))  # each generator's own, unless set
    print(f"downstream accuracy on the real held-out split ({len(data.y_heldout)} images); "
          f"{args.mode} mode, {steps} transcription steps, {args.downstream_steps} downstream steps, "
          f"filter at the {args.percentile:g}th percentile")
    head = f"{'seed':>4} | {'generator':<9} | {'eps':>5} | {'DPSD student':>12} | {'synthetic':>9} | {'hard':>6} | " \
           f"{'final G':>7} | {'filtered':>8} | " \
           f"{'real':>6} | {'filtered out':>12} | {'threshold':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['seed']:>4} | {r['generator']:<9} | {r['epsilon']:>5g} | {r['dpsd_student']:>12.2%} | {r['synthetic']:>9.2%} | "
              f"{r['synthetic_hard_labels']:>6.2%} | {r['synthetic_final_generator']:>7.2%} | "
              f"{r['synthetic_filtered']:>8.2%} | {r['real']:>6.2%} | "
              f"{r['fraction_filtered']:>6.1%} ({r['n_synthetic'] - r['n_kept']:>4}) | {r['threshold']:>9.4f}")
    print("synthetic: a fresh student trained on N synthetic images labelled by the run's student "
          "(covered by the run's epsilon per teacher answer),\ntrained on its class probabilities at the "
          f"temperature T={config.SYNTHESIS_TEMPERATURE:g} (chosen on the private splits); "
          "hard: the same images on their argmax labels;\n"
          "drawn in equal parts from the generator at 1/4, 1/2 "
          "and 3/4 of the run (the default); final G: the same from the final generator;\n"
          "filtered: the same after the re-identification "
          "filter, which reads private data and is NOT a DP mechanism; real: trained on the private split, no privacy.")
    verdicts = goal_verdicts(rows)
    for line in verdicts:
        print(line)
    print(f"total {time.perf_counter() - t0:.0f} s")
    if not args.fast:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from results_file import command_line, table, write_section

        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
        body = (f"A fresh student trained only on {args.n:,} synthetic images from each run (labelled by the run's "
                f"student: no new teacher query), against the same student trained on the real private split "
                f"(no privacy): held-out accuracy on {args.dataset}, {args.mode} mode, {seed_text}"
                + ("" if len(seeds) == 1 else " (each seed with its own teacher, run and real-data student; the DP "
                   "noise is secret, so a rerun of a seed differs)")
                + f". Every downstream classifier (on synthetic or on real images, either architecture) trains for "
                  f"{args.downstream_steps:,} steps (batches of {DOWNSTREAM_BATCH} images). The re-identification "
                  f"filter reads private data and is not a DP mechanism.\n\n"
                + "The synthetic images are drawn in equal parts from the generator at a quarter, half and three "
                  "quarters of the run (what `synthesize` does by default); *final generator* is the same from "
                  "the generator as the run ended.\n\n"
                + f"*Synthetic only* trains on the student's class probabilities at temperature "
                  f"T = {config.SYNTHESIS_TEMPERATURE:g} (a setting chosen on the private splits, disclosed in "
                  f"each run's privacy.json); *hard labels* trains on the same images with the argmax labels.\n\n"
                + (table(("generator", "ε", "DPSD student", "synthetic only", "ratio to teacher",
                          f"ratio to teacher ({OTHER_ARCH}'s arch.)", "ratio to real", "hard labels",
                          "final generator", "filtered", "real"),
                         [(r["generator"], f"{r['epsilon']:g}", f"{100 * r['dpsd_student']:.1f}%",
                           f"{100 * r['synthetic']:.1f}%", f"{r['synthetic'] / r['teacher']:.3f}",
                           f"{r['synthetic_other_arch'] / r['teacher']:.3f}", f"{r['synthetic'] / r['real']:.3f}",
                           f"{100 * r['synthetic_hard_labels']:.1f}%",
                           f"{100 * r['synthetic_final_generator']:.1f}%",
                           f"{100 * r['synthetic_filtered']:.1f}%", f"{100 * r['real']:.1f}%") for r in rows])
                   if len(seeds) == 1 else seeds_table(rows))
                + ("\n\n" + "\n".join(f"- {v}" for v in verdicts) if verdicts else ""))
        # a non-default size or the ablation gets a section of its own, so the default's section is kept
        default_size = (p.get_default("n"), p.get_default("downstream_steps"))
        sized = "" if (args.n, args.downstream_steps) == default_size else \
            f", {args.n:,} images, {args.downstream_steps} downstream steps"
        sized += ", generator frozen (ablation)" if args.freeze_generator else ""
        # another seed, or several, get a section of their own too
        sized += "" if seeds == [0] else f", seed {seeds[0]}" if len(seeds) == 1 else \
            ", seeds " + " ".join(map(str, seeds))
        slug = "".join(c for c in sized.replace(", ", "-").replace(" ", "_") if c not in ",()")
        write_section(f"synthetic-{args.dataset}{slug}",
                      f"Synthetic data downstream ({args.dataset}{sized})",
                      command_line("synthetic_benchmark.py", argv), body)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


def run_seed(args, data, seed):
    """One seed: its teacher, the real-data reference, and per generator and ε a transcription, its synthetic
    set and the fresh students trained on it. Returns the rows."""
    teacher = get_teacher(data, seed=seed, device="cpu")
    real = downstream_comparison(data, steps=args.downstream_steps, seed=seed)[0]
    real_other = downstream_comparison(data, steps=args.downstream_steps, seed=seed, arch=OTHER_ARCH)[0]
    print(f"{args.dataset}, seed {seed}: teacher held-out accuracy {teacher.heldout_accuracy:.2%}; "
          f"student trained on the real private split ({real['size']} images, no privacy): "
          f"{real['heldout_accuracy']:.2%}", flush=True)

    from dpsd_lite.generators import STROKE_FORMAT

    gens = [g for g in args.generators.split(",") if g != "strokes" or args.dataset in STROKE_FORMAT]
    rows = []
    for gen, eps in ((g, e) for g in gens for e in args.epsilons):
        t = time.perf_counter()
        result = transcribe(dataset=args.dataset, data=data, teacher=teacher, noise_mode=args.mode, epsilon=eps,
                            steps=args.steps, seed=seed, device="cpu", generator=gen,
                            freeze_generator=args.freeze_generator)
        synth = sample_synthetic(result, args.n, seed=seed)  # the generator's snapshots (the default)
        filt = reid_filter(synth.images, data.x_private, data.x_heldout, teacher, percentile=args.percentile)
        syn, fil = downstream_comparison(data, synth, synth.subset(filt.keep), steps=args.downstream_steps,
                                         seed=seed, include_real=False)
        hard = downstream_comparison(data, synth, steps=args.downstream_steps, seed=seed,
                                     include_real=False, labels="hard")[0]
        final = downstream_comparison(data, sample_synthetic(result, args.n, seed=seed, source="final"),
                                      steps=args.downstream_steps, seed=seed, include_real=False)[0]
        other = downstream_comparison(data, synth, steps=args.downstream_steps, seed=seed, include_real=False,
                                      arch=OTHER_ARCH)[0]
        rows.append({"dataset": args.dataset, "seed": seed, "n": args.n,
                     "downstream_steps": args.downstream_steps, "freeze_generator": args.freeze_generator,
                     "generator": gen, "epsilon": eps, "noise_mode": args.mode, "steps": result.config.steps,
                     "dpsd_student": result.student_accuracy, "synthetic": syn["heldout_accuracy"],
                     "synthetic_labels": syn["labels"], "synthetic_hard_labels": hard["heldout_accuracy"],
                     "synthetic_final_generator": final["heldout_accuracy"],
                     "synthetic_filtered": fil["heldout_accuracy"], "real": real["heldout_accuracy"],
                     "teacher": teacher.heldout_accuracy, "synthetic_other_arch": other["heldout_accuracy"],
                     "real_other_arch": real_other["heldout_accuracy"], "other_arch": OTHER_ARCH,
                     "n_synthetic": len(synth), "n_kept": filt.n_kept, "fraction_filtered": filt.fraction_dropped,
                     "threshold": filt.threshold, "label_agreement": synth.agreement,
                     "seconds": time.perf_counter() - t})
        print(f"  seed {seed}, {gen}, eps={eps:g} done in {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    return rows


def goal_verdicts(rows) -> list:
    """The synthetic-data goal, judged on the seed means: learned generator, rr, ε = 10, both architectures."""
    out = []
    mine = [r for r in rows if r["generator"] == "learned" and r["epsilon"] == 10 and r["noise_mode"] == "rr"
            and not r["freeze_generator"]]
    for key, arch in (("synthetic", "student"), ("synthetic_other_arch", OTHER_ARCH)):
        if mine:
            m = statistics.mean(r[key] / r["teacher"] for r in mine)
            out.append(f"goal: synthetic only ({arch}'s architecture) >= {GOAL:.2f} of the teacher, learned rr "
                       f"eps=10, mean of {len(mine)} seed(s): {m:.3f} -> {'met' if m >= GOAL else 'NOT met'}")
    return out


def seeds_table(rows) -> str:
    """Per generator and ε: each seed's ratio of the synthetic-only student to the real-data one, and the mean."""
    from results_file import table

    ratio, percent = "{:.3f}".format, lambda v: f"{100 * v:.1f}%"
    measures = (("synthetic only / teacher (student's architecture)", lambda r: r["synthetic"] / r["teacher"], ratio),
                (f"synthetic only / teacher ({OTHER_ARCH}'s architecture)",
                 lambda r: r["synthetic_other_arch"] / r["teacher"], ratio),
                ("synthetic only / real (soft labels)", lambda r: r["synthetic"] / r["real"], ratio),
                ("synthetic only / real (argmax labels)", lambda r: r["synthetic_hard_labels"] / r["real"], ratio),
                ("synthetic only / real (final generator)", lambda r: r["synthetic_final_generator"] / r["real"],
                 ratio),
                ("DPSD student", lambda r: r["dpsd_student"], percent),
                ("real-data student", lambda r: r["real"], percent),
                (f"real data, {OTHER_ARCH}'s architecture", lambda r: r["real_other_arch"], percent),
                ("teacher", lambda r: r["teacher"], percent))
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for gen, eps in sorted({(r["generator"], r["epsilon"]) for r in rows}):
        mine = sorted((r for r in rows if (r["generator"], r["epsilon"]) == (gen, eps)), key=lambda r: r["seed"])
        for label, value, show in measures:
            values = [value(r) for r in mine]
            out.append((gen, f"{eps:g}", label, *map(show, values), show(statistics.mean(values))))
    return table(("generator", "ε", "measure", *(f"seed {s}" for s in seeds), "mean"), out)

if __name__ == "__main__":
    main()
