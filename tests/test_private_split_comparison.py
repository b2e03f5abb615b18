"""benchmarks/private_split_comparison.py, the script the design history's private-split comparisons use: its
smoke run, that a rerun gives the same figures (noise derived from the seed), its summary arithmetic, and a clear
error for an unknown setting before any run."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import private_split_comparison as psc  # noqa: E402


@pytest.fixture(autouse=True)
def _keep_threads():
    old = torch.get_num_threads()  # the script sets its own thread count; the rest of the suite keeps its
    yield
    torch.set_num_threads(old)


def test_seed_ranges_and_arms_parse():
    assert psc.parse_seeds("0-2,5") == [0, 1, 2, 5]
    assert psc.parse_arm("base") == ("base", {})
    assert psc.parse_arm("diversity_weight=0.3+top_k=5") == ("diversity_weight=0.3+top_k=5",
                                                              {"diversity_weight": 0.3, "top_k": 5})


def test_the_summary_is_mean_sd_and_standard_error():
    s = psc.summarise([0.7, 0.8, 0.9])
    assert math.isclose(s["mean"], 0.8) and math.isclose(s["sd"], 0.1)
    assert math.isclose(s["se"], 0.1 / math.sqrt(3))
    assert psc.summarise([0.5])["se"] == 0.0


def test_a_smoke_run_is_reproducible_and_compares_against_the_first_arm(tmp_path, capsys):
    outs = []
    for i in range(2):
        path = tmp_path / f"rows{i}.json"
        assert psc.main(["--fast", "--arms", "base", "diversity_weight=0", "--json", str(path)]) == 0
        outs.append(json.loads(path.read_text()))
    a, b = outs
    assert [r["ratio"] for r in a["rows"]] == [r["ratio"] for r in b["rows"]]  # the same figures on a rerun
    assert [r["arm"] for r in a["rows"]] == ["base", "diversity_weight=0"]
    base, other = a["summary"]
    assert base["diff"] == 0.0 and math.isclose(other["diff"], other["mean"] - base["mean"])
    assert all(0 < r["ratio"] < 2 for r in a["rows"])
    assert "private split" in capsys.readouterr().out


def test_seeds_run_side_by_side_give_the_figures_they_give_one_at_a_time(tmp_path):
    rows = {}
    for jobs in ("1", "2"):
        path = tmp_path / f"jobs{jobs}.json"
        assert psc.main(["--fast", "--seeds", "0,1", "--jobs", jobs, "--json", str(path)]) == 0
        rows[jobs] = json.loads(path.read_text())["rows"]
    assert [(r["seed"], r["arm"]) for r in rows["2"]] == [(0, "base"), (1, "base")]  # in seed order
    assert [r["ratio"] for r in rows["2"]] == [r["ratio"] for r in rows["1"]]
    assert rows["1"][0]["ratio"] != rows["1"][1]["ratio"]  # two seeds, two teachers: not one run twice


def test_an_unknown_setting_is_a_usage_error_before_any_run(capsys):
    with pytest.raises(SystemExit) as e:
        psc.main(["--fast", "--arms", "base", "no_such_setting=1"])
    assert e.value.code == 2 and "no_such_setting" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--jobs", "--threads"])
def test_fewer_than_one_job_or_thread_is_a_usage_error(flag, capsys):
    with pytest.raises(SystemExit) as e:
        psc.main(["--fast", flag, "0"])
    assert e.value.code == 2 and "at least 1" in capsys.readouterr().err
