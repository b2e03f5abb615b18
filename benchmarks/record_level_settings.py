"""Choosing the record-level baselines' settings on public data (DP-SGD, the teacher ensemble).

Comparing runs on the private split to pick a setting is a release no ε covers, and the held-out
split is for evaluation only. So this script picks the defaults of ``train_dpsgd`` and of the
teacher ensemble on :func:`dpsd_lite.public_data.drawn_digits`: 4,000 + 1,000 public digit
drawings in MNIST's format (the size of mnist-5k's private and held-out splits), each labelled by
the digit drawn. It varies one setting at a time around the current default, at record-level
ε = 1 and 10 (δ = 1e-5), and prints held-out accuracy *on the drawings* for each; the setting with
the best mean over the two ε is the choice. No private or held-out MNIST image is read.

    python benchmarks/record_level_settings.py dpsgd       # about 20 min on 2 cores
    python benchmarks/record_level_settings.py ensemble    # about 10 min
    python benchmarks/record_level_settings.py dpsgd --fast

Results are written to benchmarks/results/record-level-settings-<what>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def dpsgd_grid(base):
    """The default, then one setting changed at a time."""
    yield dict(base)
    for key, values in (("epochs", (15, 60)), ("batch_size", (128, 512)), ("lr", (2e-3, 8e-3)),
                        ("max_grad_norm", (0.5, 2.0))):
        for v in values:
            yield {**base, key: v}


def ensemble_grid(base):
    yield dict(base)
    for key, values in (("num_teachers", (25, 100)), ("query_budget", (128, 512))):
        for v in values:
            yield {**base, key: v}


def run_dpsgd(data, setting, eps, seed):
    from dpsd_lite.dpsgd import train_dpsgd

    r = train_dpsgd(data, epsilon=eps, delta=1e-5, seed=seed, device="cpu", **setting)
    return r.heldout_accuracy


def run_ensemble(data, setting, eps, seed, cache_dir, ensembles):
    from dpsd_lite.ensemble import train_teacher_ensemble, transcribe_with_ensemble

    t = setting["num_teachers"]
    if t not in ensembles:
        ensembles[t] = train_teacher_ensemble(data, t, seed=seed, device="cpu", cache_dir=cache_dir)
    out = transcribe_with_ensemble(data, ensembles[t], eps, 1e-5, query_budget=setting["query_budget"],
                                   dataset="mnist-5k", device="cpu", seed=seed)
    return out.student_accuracy


def write_results(what: str, payload: dict, argv=None) -> None:
    """This benchmark's section of benchmarks/RESULTS.md, from its JSON payload (``argv``: the command's arguments)."""
    from results_file import command_line, table, write_section

    eps = payload["epsilons"]
    rows = [(", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["setting"].items()),
             *(f"{100 * r['accuracy'][str(e)]:.1f}%" for e in eps), f"{100 * r['mean']:.1f}%",
             "**chosen**" if r["setting"] == payload["chosen"] else "")
            for r in payload["rows"]]
    name = {"dpsgd": "DP-SGD", "ensemble": "teacher ensemble"}[what]
    body = (f"Held-out accuracy *on public digit drawings* ({payload['data']['private_size']:,} + "
            f"{payload['data']['heldout_size']:,}, `dpsd_lite.public_data.drawn_digits`; no private or held-out "
            f"MNIST image read), record-level ε per column (δ = 1e-5), one setting changed at a time; the best mean "
            f"is the default.\n\n"
            + table(("setting", *(f"ε = {e:g}" for e in eps), "mean", ""), rows))
    write_section(f"record-level-settings-{what}", f"How the {name} defaults were chosen (public data)",
                  command_line("record_level_settings.py", argv), body)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("dpsgd", "ensemble"))
    ap.add_argument("--epsilons", default="1,10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--fast", action="store_true", help="smoke run: 500 + 200 drawings, tiny settings")
    args = ap.parse_args(argv)

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    from dpsd_lite.public_data import drawn_digits

    epsilons = [float(e) for e in args.epsilons.split(",")]
    data = drawn_digits(500, 200) if args.fast else drawn_digits(4000, 1000)
    if args.what == "dpsgd":
        base = {"epochs": 2 if args.fast else 30, "batch_size": 256, "lr": 4e-3, "max_grad_norm": 1.0}
        grid = list(dpsgd_grid(base))
    else:
        base = {"num_teachers": 5 if args.fast else 50, "query_budget": 256}
        grid = list(ensemble_grid(base))
    rows, ensembles = [], {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        for setting in grid:
            accs = {}
            for eps in epsilons:
                if args.what == "dpsgd":
                    accs[eps] = run_dpsgd(data, setting, eps, args.seed)
                else:
                    accs[eps] = run_ensemble(data, setting, eps, args.seed, cache, ensembles)
            mean = sum(accs.values()) / len(accs)
            rows.append({"setting": setting, "accuracy": {str(k): v for k, v in accs.items()}, "mean": mean})
            shown = "  ".join(f"eps={k:g}: {100 * v:.1f}%" for k, v in accs.items())
            print(f"{json.dumps(setting):<78} {shown}  mean {100 * mean:.1f}%", flush=True)
    best = max(rows, key=lambda r: r["mean"])
    print(f"chosen on the public drawings ({len(data.y_private)} + {len(data.y_heldout)}, no private data): "
          f"{json.dumps(best['setting'])} (mean {100 * best['mean']:.1f}%); {time.perf_counter() - t0:.0f} s")
    if not args.fast:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        payload = {"rows": rows, "chosen": best["setting"], "epsilons": epsilons, "seed": args.seed,
                   "data": data.describe()}
        with open(os.path.join(HERE, "results", f"record-level-settings-{args.what}.json"), "w") as f:
            json.dump(payload, f, indent=2)
        write_results(args.what, payload, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
