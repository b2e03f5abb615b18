"""The replay attack on a saved run: can someone holding the run directory recompute the privacy noise?

A run directory saves the run's seed (config.json). If the privacy noise came from that seed, anyone
with the directory can draw the same noise again and subtract it from the releases (which are public
by definition: they are what the mechanism lets out), recovering the teacher's exact answers; then no
ε holds. This script plays that attack on two runs in mode ``label``: one with the default (secret)
noise and one with the ``reproducible_noise`` opt-in, and prints for each how close the attacker's
reconstruction comes to the teacher's true answers.

    python benchmarks/replay_attack.py                      # digits, a few seconds
    python benchmarks/replay_attack.py --dataset mnist-5k --steps 20

The attacker's side is :func:`dpsd_lite.noise.replay_label_noise`, reading only the run directory
(seed, noise std) and the releases; the true answers are recorded here only to score the attack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch


def play(dataset: str, steps: int, epsilon: float, reproducible: bool, out_dir: str) -> dict:
    from dpsd_lite.noise import replay_label_noise
    from dpsd_lite.runs import save_run
    from dpsd_lite.transcribe import transcribe

    releases, truth = [], []
    teacher_model = {}

    def on_release(state, x, release):
        releases.append(release)
        with torch.no_grad():  # the scorer's ground truth: the teacher's restricted, renormalised answer
            p = teacher_model["m"](x).softmax(1) * release.mask
        truth.append(p / p.sum(1, keepdim=True))

    from dpsd_lite.data import load_dataset
    from dpsd_lite.teacher import get_teacher

    data = load_dataset(dataset)
    teacher = get_teacher(data, device="cpu")
    teacher_model["m"] = teacher.model.eval()
    result = transcribe(data=data, teacher=teacher, dataset=dataset, noise_mode="label", epsilon=epsilon,
                        steps=steps, device="cpu", reproducible_noise=reproducible,
                        callbacks={"on_release": on_release})
    path = save_run(result, os.path.join(out_dir, "reproducible" if reproducible else "secret"))

    # --- the attacker: only the run directory and the (public) releases
    with open(os.path.join(path, "config.json")) as f:
        seed = json.load(f)["seed"]
    with open(os.path.join(path, "privacy.json")) as f:
        noise_std = json.load(f)["noise_std"]
    recovered = replay_label_noise(seed, releases, noise_std)

    err = torch.cat([(r - t).abs().amax(1) for r, t in zip(recovered, truth)])
    return {"noise": "reproducible (opt-in)" if reproducible else "secret (default)", "answers": len(err),
            "noise_std": noise_std, "median_error": err.median().item(),
            "recovered_exactly": (err < 1e-5).float().mean().item()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--epsilon", type=float, default=2.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for reproducible in (False, True):
            rows.append(play(args.dataset, args.steps, args.epsilon, reproducible, tmp))
    print(f"replay attack on label-mode runs ({args.dataset}, eps = {args.epsilon:g} per teacher answer): "
          "the attacker reads the seed from config.json and subtracts the recomputed noise")
    print(f"{'noise':<24} {'answers':>8} {'noise std':>10} {'median error':>13} {'recovered exactly':>18}")
    for r in rows:
        print(f"{r['noise']:<24} {r['answers']:>8,} {r['noise_std']:>10.3f} {r['median_error']:>13.2e} "
              f"{100 * r['recovered_exactly']:>17.1f}%")
    secret, lesson = rows
    ok = secret["recovered_exactly"] == 0.0 and lesson["recovered_exactly"] == 1.0
    print("attack succeeds only with the opt-in: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
