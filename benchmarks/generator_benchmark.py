"""The generators side by side: does DPSD's learned generator carry the method, on digits and beyond?

For each dataset and generator kind, at each noise mode and ε (δ = 1e-5, ε per teacher answer), at several
seeds (each seed trains its own teacher; the noise is secret, so runs differ even at one seed):

* the student's held-out accuracy over the teacher's (the ratio), its mean and spread over the seeds;
* the **ablation**: the same run with the generator frozen at its random initialisation (no generator
  steps), which the trained generator must beat at every ε: the adversarial loop must matter;
* the share of queries whose released label is the requested class, at the first and the last evaluation;
* the no-teacher baseline (a student trained as long on the untrained generator's images labelled by the
  requested class: what the generator's public prior alone teaches);
* the goals of the learned-generator issue, judged on the seed means.

    python benchmarks/generator_benchmark.py                                   # mnist-5k, both generators
    python benchmarks/generator_benchmark.py --dataset fashion-mnist --data-root ../shared/data
    python benchmarks/generator_benchmark.py --fast                            # digits, a smoke run
    python benchmarks/generator_benchmark.py --generators learned,learned+shapes --modes rr --epsilons 1

``learned+shapes`` is the learned generator with the generic-shapes prior drawing ``--shapes-share`` of its
queries (``generic_shapes``, a public prior), or a share falling from it to ``--shapes-end`` over the run
(``generic_shapes_end``): measured beside DPSD's generator and named as such, its goals line says "with the
generic-shapes prior".

Held-out accuracy only measures; nothing is chosen on it. Writes benchmarks/results/ and its section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

WHO = {"learned": "learned generator",  # how a goals line names what met or missed it
       "learned+shapes": "learned generator with the generic-shapes prior"}
GOALS = {  # (dataset, mode, ε) -> ratio the learned generator's 3-seed mean should reach
    ("mnist-5k", "rr", 10.0): 0.98, ("mnist-5k", "rr", 1.0): 0.80, ("mnist-5k", "none", None): 0.97,
    ("fashion-mnist", "rr", 10.0): 0.95, ("fashion-mnist", "rr", 1.0): 0.80, ("fashion-mnist", "none", None): 0.97,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist-5k")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--generators", default=None, help="default: learned,strokes for digits, learned otherwise")
    ap.add_argument("--modes", default="none,label,rr,data",
                    help="noise modes; rr-top2 is rr releasing the teacher's ordered top two (rr_answer top2)")
    ap.add_argument("--epsilons", default="1,10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--frozen-modes", default="none,label,rr,data", help="modes run again with the generator frozen")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--shapes-share", type=float, default=0.5,
                    help="learned+shapes: the share of queries the generic-shapes prior draws (default 0.5)")
    ap.add_argument("--shapes-end", type=float, default=None,
                    help="learned+shapes: the prior's share at the end of the run, reached linearly from "
                         "--shapes-share (generic_shapes_end; default: --shapes-share throughout)")
    ap.add_argument("--fast", action="store_true", help="smoke run: digits, few steps, one seed")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from dpsd_lite.data import load_dataset
    from dpsd_lite.generators import STROKE_FORMAT
    from dpsd_lite.names import generator_label, mode_settings
    from dpsd_lite.teacher import get_teacher
    from dpsd_lite.transcribe import prior_only_student, transcribe

    dataset = "digits" if args.fast else args.dataset
    gens = (args.generators or ("learned,strokes" if dataset in STROKE_FORMAT else "learned")).split(",")
    modes = args.modes.split(",")
    epsilons = [float(e) for e in args.epsilons.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.fast else None]
    frozen_modes = [m for m in args.frozen_modes.split(",") if m]
    overrides = {"steps": 20, "teacher_epochs": 3} if args.fast else {}

    def kind(gen):  # a --generators entry as settings: learned+shapes is the learned one with the public prior
        return ({"generator": "learned", "generic_shapes": args.shapes_share, "generic_shapes_end": args.shapes_end}
                if gen == "learned+shapes" else {"generator": gen})

    shapes_named = generator_label("learned", args.shapes_share, args.shapes_end).partition(" + ")[2] or "no prior"


    data = load_dataset(dataset, root=args.data_root)
    print(f"generator benchmark: {dataset}, generators {gens}, modes {modes}, eps {epsilons}, seeds {seeds}, "
          f"{args.threads} thread(s), torch {torch.__version__}", flush=True)

    rows, t_all = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        for seed in seeds:
            teacher = get_teacher(data, seed=seed, device="cpu", cache_dir=cache,
                                  **({"epochs": 3} if args.fast else {}))
            for gen in gens:
                for mode in modes:
                    for eps in ([None] if mode == "none" else epsilons):
                        for frozen in ([False, True] if mode in frozen_modes else [False]):
                            cfg = dict(dataset=dataset, data_root=args.data_root, **kind(gen),
                                       epsilon=eps or 10.0, seed=seed, device="cpu", freeze_generator=frozen,
                                       **mode_settings(mode), **overrides)
                            r = transcribe(data=data, teacher=teacher, **cfg)
                            agree = [h["agreement"] for h in r.history]
                            row = {"dataset": dataset, "generator": gen, "mode": mode, "epsilon": eps,
                                   "frozen": frozen, "seed": seed, "student": r.student_accuracy,
                                   "teacher": teacher.heldout_accuracy,
                                   "ratio": r.student_accuracy / teacher.heldout_accuracy,
                                   "agreement_first": agree[0], "agreement_last": agree[-1], "seconds": r.elapsed}
                            rows.append(row)
                            print(f"  seed {seed} {gen:<14} {mode:<7} eps={eps if eps else 'inf':<5} "
                                  f"{'frozen ' if frozen else 'trained'} ratio {row['ratio']:.3f} "
                                  f"(student {100 * r.student_accuracy:.1f}%, teacher "
                                  f"{100 * teacher.heldout_accuracy:.1f}%), released=requested "
                                  f"{row['agreement_first']:.2f}->{row['agreement_last']:.2f}, {r.elapsed:.0f} s",
                                  flush=True)
        baselines = {}
        for gen in gens:
            accs = [prior_only_student(dataset=dataset, data=data, **kind(gen), seed=s, device="cpu",
                                       **overrides)[1] for s in seeds]
            baselines[gen] = statistics.mean(accs)
            print(f"  no-teacher baseline ({gen}): {100 * baselines[gen]:.1f}% (mean over seeds)", flush=True)

    def cell(gen, mode, eps, frozen):
        return [r["ratio"] for r in rows if (r["generator"], r["mode"], r["epsilon"], r["frozen"])
                == (gen, mode, eps, frozen)]

    summary = []
    for gen in gens:
        for mode in modes:
            for eps in ([None] if mode == "none" else epsilons):
                trained, frozen = cell(gen, mode, eps, False), cell(gen, mode, eps, True)
                ag = [(r["agreement_first"], r["agreement_last"]) for r in rows
                      if (r["generator"], r["mode"], r["epsilon"], r["frozen"]) == (gen, mode, eps, False)]
                summary.append({"generator": gen, "mode": mode, "epsilon": eps, "ratios": trained,
                                "mean": statistics.mean(trained), "frozen_ratios": frozen,
                                "frozen_mean": statistics.mean(frozen) if frozen else None,
                                "agreement": (statistics.mean(a for a, _ in ag), statistics.mean(b for _, b in ag)),
                                "seconds": statistics.mean(r["seconds"] for r in rows
                                                           if (r["generator"], r["mode"], r["epsilon"])
                                                           == (gen, mode, eps) and not r["frozen"])})
    teacher_mean = statistics.mean({r["seed"]: r["teacher"] for r in rows}.values())
    print(f"\n{dataset}: teacher {100 * teacher_mean:.1f}% (mean over seeds); ratios = student / teacher, "
          f"held-out; {time.perf_counter() - t_all:.0f} s in all")
    print(f"{'generator':<14} {'mode':<7} {'eps':>4} {'mean':>6} {'per seed':>20} {'frozen':>7} "
          f"{'rel=req':>11} {'s/run':>6}")
    for s in summary:
        frozen = "—" if s["frozen_mean"] is None else f"{s['frozen_mean']:.3f}"
        print(f"{s['generator']:<14} {s['mode']:<7} {s['epsilon'] or 'inf':>4} {s['mean']:>6.3f} "
              f"{' / '.join(f'{v:.3f}' for v in s['ratios']):>20} {frozen:>7} "
              f"{s['agreement'][0]:>5.2f}->{s['agreement'][1]:.2f} {s['seconds']:>6.0f}")
    verdicts = []
    for (ds, mode, eps), goal in GOALS.items():
        if ds != dataset:
            continue
        for s in summary:  # rr's goals are judged for each thing rr may release (rr, rr-top2)
            if (s["generator"] in WHO and mode_settings(s["mode"])["noise_mode"] == mode
                    and s["epsilon"] == eps):
                m, who = s["mean"], WHO[s["generator"]]
                verdicts.append((f"{who}, {s['mode']}", eps, goal, m, m >= goal))
                print(f"goal, {who} {s['mode']} eps={eps or 'inf'}: >= {goal:.2f} of the teacher: {m:.3f} -> "
                      f"{'met' if m >= goal else 'NOT met'}")
    for gen in WHO:
        beats = [(s["mode"], s["epsilon"], s["mean"] > s["frozen_mean"]) for s in summary
                 if s["generator"] == gen and s["frozen_mean"] is not None]
        if beats:
            print(f"{WHO[gen]} beats its frozen initialisation: " +
                  ", ".join(f"{m} eps={e or 'inf'}: {'yes' if b else 'NO'}" for m, e, b in beats))

    if not args.fast:
        # a run of only some modes gets its own file and section instead of replacing the full benchmark's
        name = f"generators-{dataset}" + ("" if args.modes == ap.get_default("modes") else f"-{'_'.join(modes)}")
        name += "" if gens == ["learned"] or args.generators is None else "-" + "_".join(gens).replace("+", "-")
        if "learned+shapes" in gens and (args.shapes_share != ap.get_default("shapes_share")
                                        or args.shapes_end is not None):
            name += f"-{args.shapes_share:g}" + ("" if args.shapes_end is None else f"-to-{args.shapes_end:g}")
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", f"{name}.json"), "w") as f:
            json.dump({"rows": rows, "summary": summary, "baselines": baselines, "verdicts": verdicts}, f,
                      indent=2, default=str)
        from results_file import command_line, table, write_section

        body = (f"Student/teacher held-out accuracy (teacher {100 * teacher_mean:.1f}% on average over the seeds' "
                f"own teachers), ε per teacher answer, δ = 1e-5, seeds {', '.join(map(str, seeds))} (mean, then "
                f"each seed); **frozen**: the same run with the generator kept at its random initialisation; "
                f"**released = requested**: the share of queries whose released label is the class the generator "
                f"was asked for, at the first and the last evaluation.\n\n"
                + table(("generator", "mode", "ε", "mean", "per seed", "frozen mean", "released = requested",
                         "s / run"),
                        [(s["generator"], s["mode"], s["epsilon"] or "∞", f"{s['mean']:.3f}",
                          " / ".join(f"{v:.3f}" for v in s["ratios"]),
                          "—" if s["frozen_mean"] is None else f"{s['frozen_mean']:.3f}",
                          f"{s['agreement'][0]:.2f} → {s['agreement'][1]:.2f}", f"{s['seconds']:.0f}")
                         for s in summary])
                + "\n\nNo-teacher baselines (held-out accuracy): "
                + ", ".join(f"{g} {100 * a:.1f}%" for g, a in baselines.items())
                + ("\n\nGoals (seed mean; learned+shapes: the learned generator with " + shapes_named + "): "
                   + "; ".join(f"{m} ε={e or '∞'} ≥ {g:.2f}: {v:.3f} {'met' if ok else 'NOT met'}"
                               for m, e, g, v, ok in verdicts) if verdicts else ""))
        write_section(name, f"Generators side by side ({dataset}"
                      + ("" if name == f"generators-{dataset}" else f", modes {', '.join(modes)}") + ")",
                      command_line("generator_benchmark.py", argv), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
