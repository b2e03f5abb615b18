"""benchmarks/notebooks_benchmark.py writes its RESULTS.md sections only for what a run measured in full."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import notebooks_benchmark as nb  # noqa: E402

DASH = {"dataset": "mnist-5k", "noise_mode": "rr", "steps": 110, "first_run_epsilon": 10.0,
        "first_run_seconds": 20.55, "first_run_accuracy": 0.901, "teacher_was_cached": True, "rerun_epsilon": 2.0,
        "rerun_seconds": 16.18, "rerun_accuracy": 0.793, "rerun_first_step_after_s": 0.19,
        "rerun_first_images_after_s": 0.28, "rerun_first_curve_after_s": 3.9, "peak_mb": 1094.8}
NOTEBOOKS = [{"notebook": "01_quickstart.ipynb", "seconds": 79.2, "peak_mb": 1200.0, "error": None},
             {"notebook": "02_teacher_and_threat.ipynb", "seconds": 5.1, "peak_mb": 600.0, "error": None}]


def test_a_full_run_of_every_notebook_and_the_dashboard_writes_both_sections():
    sections = nb.results_sections({"mode": "full", "notebooks": NOTEBOOKS, "dashboard": DASH}, True, "fresh cache")
    by_name = {name: body for name, _title, body in sections}
    assert set(by_name) == {"notebooks", "dashboard-mnist-5k"}
    assert "| 01_quickstart.ipynb | 79 | 1200 |" in by_name["notebooks"]
    assert "| first run, ε = 10 | 20.6 | 90.1% |" in by_name["dashboard-mnist-5k"]
    assert "| re-run, ε = 2 | 16.2 | 79.3% | 0.2 | 0.3 | 1095 |" in by_name["dashboard-mnist-5k"]
    assert "110 steps" in by_name["dashboard-mnist-5k"]


def test_fast_partial_or_failed_runs_write_no_notebook_table():
    fast = {"mode": "fast", "notebooks": NOTEBOOKS, "dashboard": DASH}
    assert nb.results_sections(fast, True, "") == []
    partial = {"mode": "full", "notebooks": NOTEBOOKS, "dashboard": None}
    assert nb.results_sections(partial, False, "") == []  # some notebooks only: the table would lose the others
    failed = {"mode": "full", "notebooks": [*NOTEBOOKS, {"notebook": "03_generator.ipynb", "error": "boom"}],
              "dashboard": {"error": ["worker failed"]}}
    assert nb.results_sections(failed, True, "") == []
