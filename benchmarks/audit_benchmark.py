"""Privacy vs utility, side by side, with an empirical audit: one table.

On ``mnist-5k`` at ε ∈ {1, 10} (δ = 1e-5) it trains and audits:

* the teacher (no privacy),
* the DPSD student of each noise mode (ε per *teacher answer*),
* the teacher-ensemble student (PATE GNMax, ε per *private training record*),
* the DP-SGD baseline, the student's architecture trained on the private split
  with Opacus (ε per *private training record*),

and prints, for each, held-out accuracy, the claimed ε with its δ and unit,
loss-attack and offline-LiRA ROC AUC with 95% bootstrap intervals and LiRA's
TPR at 1% FPR (descriptive: members and non-members fixed by one split), the
one-run ε lower bound (Steinke, Nasr & Jagielski 2023: mislabeled canaries,
each kept in the private split every model is trained on with probability 1/2
by a secret coin flip), and the canary/control rates (kept vs left-out
canaries). An audit gives a lower bound on leakage, never a proof of privacy.

Run from the repository root::

    python benchmarks/audit_benchmark.py             # mnist-5k, eps 1 and 10 (several minutes on 2 cores)
    python benchmarks/audit_benchmark.py --tiny      # digits, tiny sizes: checks the pipeline in about a minute
    python benchmarks/audit_benchmark.py --epsilons 1 2 10 --modes label rr data
    python benchmarks/audit_benchmark.py --record-level  # the record-level route against its claim, and the
                                                         # teacher as control; writes its RESULTS.md section

``--record-level`` audits only what a record-level claim is made for: the DP teacher (DP-SGD from public
drawings with the shipped recipe, ``dpsgd.DP_TEACHER``) and the student transcribed from it, at each ε, beside
the non-private teacher, the control on which the audit must find leakage. Its verdicts (the one-run lower
bound at or below each claimed ε; leakage on the control) go to ``benchmarks/RESULTS.md``.

Teachers are cached (``$DPSD_CACHE_DIR`` or ``~/.cache/dpsd_lite``), so a rerun skips their training.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

from dpsd_lite.audit import StudySettings, audit_verdicts, format_canaries, format_study, format_verdicts, privacy_study
from dpsd_lite.data import load_dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_file import command_line, table, write_section  # noqa: E402

TINY = dict(transcribe={"steps": 10, "batch_size": 64}, teacher_epochs=3, dpsgd={"epochs": 2, "batch_size": 64},
            ensemble_teachers=5, ensemble_epochs=3, ensemble_queries=128, ensemble_finetune_epochs=5,
            num_shadows=2, shadow_epochs=5, n_boot=50, canaries=40)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="default: mnist-5k (digits with --tiny)")
    p.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0])
    p.add_argument("--modes", nargs="+", default=["label", "rr"], help="DPSD noise modes (default: label rr)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes on digits: a pipeline check, not a measurement")
    p.add_argument("--record-level", action="store_true",
                   help="only the record-level route (DP teacher, its student) and the teacher as control")
    p.add_argument("--canaries", type=int, default=None, help="one-run canaries, mislabeled, each kept with probability 1/2 (default: 100; tiny: 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = args.dataset or ("digits" if args.tiny else "mnist-5k")
    sizes = dict(TINY) if args.tiny else {}
    if args.record_level:
        sizes.update(modes=(), ensemble_teachers=0, plain_dpsgd=False, dpsgd_public=True,
                     dp_teacher=TINY["dpsgd"] if args.tiny else None)
    else:
        sizes["modes"] = tuple(args.modes)
    settings = StudySettings(epsilons=tuple(args.epsilons), seed=args.seed, **sizes)
    if args.canaries is not None:
        settings.canaries = args.canaries
    t0 = time.perf_counter()
    data = load_dataset(dataset)
    study = privacy_study(data, settings, cache_dir=args.cache_dir, device="cpu",
                          log=lambda msg: print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr))
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"dataset {dataset}{' (tiny settings: a pipeline check, not a measurement)' if args.tiny else ''}; "
          f"epsilons {', '.join(f'{e:g}' for e in settings.epsilons)}; delta {settings.delta:g}; seed {args.seed}")
    print(format_study(study))
    if study.canaries:
        print()
        print(format_canaries(study.canaries))
    print()
    print(format_verdicts(study))
    print(f"\nwall time {wall:.0f} s, peak memory {peak:.0f} MiB, torch threads {torch.get_num_threads()}")
    verdicts = audit_verdicts(study)
    if args.record_level and not args.tiny:
        rows = [(v["model"], v["role"], "none" if v["claimed_epsilon"] == float("inf") else f"{v['claimed_epsilon']:.3g}",
                 f"{v['eps_lower_bound']:.2f}", v["verdict"]) for v in verdicts]
        acc = {r["model"]: r["heldout_accuracy"] for r in study.rows}
        body = (f"{settings.canaries} mislabeled canaries in {dataset}'s private split, each kept by a secret coin "
                f"flip; one model of each kind trained on that copy; the one-run ε lower bound (Steinke, Nasr & "
                f"Jagielski 2023) at {settings.confidence:.0%} confidence, δ = {settings.delta:g}, beside the "
                f"record-level claim. The DP teacher is DP-SGD from public digit drawings with the shipped recipe "
                f"(`dpsd_lite.dpsgd.DP_TEACHER`); its student is transcribed in mode `none` (post-processing). "
                f"With {settings.canaries} canaries even a perfect attack shows at most about 2.4, so an "
                f"\"agrees\" at ε = 10 is weak evidence; the control says whether the attack can see anything.\n\n"
                + table(("model", "role", "claimed ε per record", "one-run lower bound", "verdict"), rows)
                + "\n\nHeld-out accuracy of the audited models (trained on the canary copy): "
                + ", ".join(f"{k} {a:.3f}" for k, a in acc.items())
                + f".\n\nWall time {wall:.0f} s, peak memory {peak:.0f} MiB.")
        write_section(f"audit-record-level-{dataset}", f"The audit against the record-level claim ({dataset})",
                      command_line("audit_benchmark.py", argv), body)
    return 0 if all(v["ok"] for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
