"""benchmarks/record_level_settings.py: its DP teacher grids and the section it writes say what was run."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import record_level_settings as rls  # noqa: E402


def test_the_matched_grid_is_built_around_the_shipped_recipe_at_matched_noise():
    """``--grid matched`` checks the recipe users get: its base is dpsgd.DP_TEACHER, and its default ε give the
    stand-in the σ the recipe meets on mnist-5k at ε = 1 and 10 (the PRV accountant, the runs' own sampling)."""
    import math

    from dpsd_lite.accounting import composed_epsilon, composed_noise_multiplier
    from dpsd_lite.dpsgd import DP_TEACHER

    base, changes = rls.DP_TEACHER_GRIDS["matched"]
    assert base == DP_TEACHER
    grid = list(rls.dp_teacher_grid(base, changes))
    assert grid[0] == base and all(sum(g[k] != base[k] for k in base) == 1 for g in grid[1:])
    batches = {n: math.ceil(n / base["batch_size"]) for n in (5000, 1438)}  # Opacus: q = 1 / batches per epoch
    for shipped, standin in zip((1.0, 10.0), (float(e) for e in rls.GRID_EPSILONS["matched"].split(","))):
        sigma = composed_noise_multiplier(shipped, 1e-5, 1 / batches[5000], 30 * batches[5000], "prv")
        matched = composed_epsilon(sigma, 1 / batches[1438], 30 * batches[1438], 1e-5, "prv")
        assert abs(matched - standin) / standin < 0.05, (shipped, matched, standin)
    assert rls.stem("dp-teacher", "matched") == "record-level-settings-dp-teacher-matched"
    assert rls.stem("dp-teacher", "recipe") == "record-level-settings-dp-teacher"


def test_the_section_names_the_grids_accountant(monkeypatch):
    import results_file

    written = {}
    monkeypatch.setattr(results_file, "write_section", lambda stem, title, cmd, body: written.update(
        stem=stem, title=title, body=body))
    for grid, accountant in (("matched", "PRV"), ("recipe", "RDP")):
        base = rls.DP_TEACHER_GRIDS[grid][0]
        row = {"setting": base, "accuracy": {"2.0": 0.9, "20.0": 0.97}, "mean": 0.935, "cost": 1.0}
        payload = {"rows": [row], "chosen": base, "epsilons": [2.0, 20.0], "seed": 0, "budget": 2.0, "grid": grid,
                   "data": {"private_size": 1438, "heldout_size": 359}, "confirm": [{**row, "per_seed": [0.935] * 3}]}
        rls.write_results("dp-teacher", payload)
        assert f"Opacus {accountant} accountant" in written["body"]
        assert ("σ is the one the shipped recipe meets" in written["body"]) == (grid == "matched")


def test_a_check_of_the_recipe_keeps_it_unless_a_change_beats_its_spread():
    """``matched_verdict``: the first row is the shipped recipe; a change is adopted only when its mean over three
    seeds beats the recipe's by more than the recipe's own seeds spread over."""
    def row(name, per_seed):
        return {"setting": {"name": name}, "per_seed": per_seed, "mean": sum(per_seed) / 3}

    base = row("shipped", [0.96, 0.95, 0.97])  # spread 2 points
    kept, best, text = rls.matched_verdict([base, row("small", [0.97, 0.96, 0.975])])  # +0.8: noise
    assert kept and best == {"name": "small"} and "the recipe is kept" in text
    kept, best, text = rls.matched_verdict([base, row("large", [0.99, 0.985, 0.99])])  # +2.8: over the spread
    assert not kept and best == {"name": "large"} and "becomes the recipe" in text
    kept, best, text = rls.matched_verdict([base, row("worse", [0.9, 0.9, 0.9])])
    assert kept and best == {"name": "shipped"} and "best mean" in text
