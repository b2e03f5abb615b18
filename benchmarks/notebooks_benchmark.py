"""Wall time and peak memory of every notebook in FULL mode, and of a dashboard re-run.

The budgets of issue 3, on 2 CPU cores: each notebook runs top to bottom in
at most 5 minutes with a peak memory under 1.5 GB, and a dashboard re-run at a
new ε answers within 30 s on ``mnist-5k`` with the teacher cached.

Each notebook runs in its own worker process (nbclient, one fresh kernel), so
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of the worker is the peak
resident memory of that notebook's kernel alone. The notebooks run in reading
order against one teacher cache, as a learner meets them: by default a fresh,
empty cache, so the first notebook pays for training the teacher once and
the later ones load it.

Usage::

    python benchmarks/notebooks_benchmark.py                    # every notebook, then the dashboard
    python benchmarks/notebooks_benchmark.py 01 04              # notebooks whose names start so
    python benchmarks/notebooks_benchmark.py --no-dashboard 01
    python benchmarks/notebooks_benchmark.py --dashboard-only
    python benchmarks/notebooks_benchmark.py --cache-dir ~/.cache/dpsd_lite   # reuse a warm cache
    python benchmarks/notebooks_benchmark.py --fast             # fast mode (DPSD_FAST=1), as CI runs them

Machine-readable results go to ``benchmarks/results/notebooks.json``
(ignored by git). A full-mode run writes its RESULTS.md sections: ``notebooks``
when every notebook ran, ``dashboard-<dataset>`` when the dashboard was timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import command_line, table, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOK_BUDGET_S = 300.0
MEMORY_BUDGET_MB = 1500.0
DASHBOARD_BUDGET_S = 30.0


def _peak_children_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # Linux: KiB


def _peak_self_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------- workers
def worker_notebook(path: str) -> dict:
    """Execute one notebook with nbclient in a fresh kernel; time it and read the kernel's peak memory."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute()  # starts the kernel, runs every cell, shuts the kernel down (and reaps it)
    except Exception as exc:  # a failing cell: report it, with the time it took to get there
        error = f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    seconds = time.perf_counter() - start
    return {"notebook": Path(path).name, "seconds": seconds, "peak_mb": _peak_children_mb(), "error": error}


def worker_dashboard(dataset: str, new_epsilon: float, steps: int | None) -> dict:
    """First Run of a Dashboard (teacher from the cache, or trained), then a re-run at a new ε, timed.

    ``steps`` defaults to the quickstart's ``DASHBOARD_STEPS`` (``widgets.dashboard_steps()``, a third of a run).
    """
    from dpsd_lite.widgets import Dashboard, dashboard_steps

    dash = Dashboard(dataset=dataset, steps=steps or dashboard_steps())
    first_epsilon = dash.epsilon_slider.value
    start = time.perf_counter()
    first = dash.run(wait=True)
    first_seconds = time.perf_counter() - start

    marks = {}

    def mark(name):
        marks.setdefault(name, time.perf_counter())

    dash.progress.observe(lambda change: change["new"] > 0 and mark("first_step"), names="value")
    dash.monitor.images_output.observe(lambda change: mark("first_images"), names="outputs")
    dash.monitor.curve_output.observe(lambda change: mark("first_curve"), names="outputs")
    dash.epsilon_slider.value = new_epsilon
    start = time.perf_counter()
    second = dash.run(wait=True)
    rerun_seconds = time.perf_counter() - start
    since = {k: v - start for k, v in marks.items()}
    return {
        "dataset": dataset,
        "noise_mode": dash.mode_dropdown.value,
        "steps": dash.steps_slider.value,
        "first_run_epsilon": first_epsilon,
        "first_run_seconds": first_seconds,
        "first_run_accuracy": first.student_accuracy,
        "teacher_was_cached": dash.teacher.cached,
        "rerun_epsilon": new_epsilon,
        "rerun_seconds": rerun_seconds,
        "rerun_accuracy": second.student_accuracy,
        "rerun_first_step_after_s": since.get("first_step"),
        "rerun_first_images_after_s": since.get("first_images"),
        "rerun_first_curve_after_s": since.get("first_curve"),
        "peak_mb": _peak_self_mb(),
    }


def _run_worker(args: list[str], env: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["worker failed"]}
    return json.loads(lines[-1])


# ----------------------------------------------------------------- RESULTS.md
def results_sections(results: dict, every_notebook: bool, cache_note: str) -> list:
    """The RESULTS.md sections of a full-mode run: ``[(name, title, body)]``.

    ``notebooks`` only when every notebook ran (a partial run would replace the whole table with a part of it),
    ``dashboard-<dataset>`` when the dashboard was timed; nothing for a fast-mode run or a failed worker.
    """
    if results["mode"] != "full":
        return []
    out = []
    rows = results["notebooks"]
    if every_notebook and rows and not any(r.get("error") for r in rows):
        body = (f"Each notebook in full mode, top to bottom in reading order, in a fresh kernel; {cache_note}. "
                f"Budgets: {NOTEBOOK_BUDGET_S:.0f} s and {MEMORY_BUDGET_MB:.0f} MB of peak memory per notebook.\n\n"
                + table(("notebook", "wall s", "peak MB"),
                        [(r["notebook"], f"{r['seconds']:.0f}", f"{r['peak_mb']:.0f}") for r in rows]))
        out.append(("notebooks", "The notebooks in full mode (wall time, peak memory)", body))
    d = results.get("dashboard")
    if d and not d.get("error"):
        first_step, first_images = d.get("rerun_first_step_after_s"), d.get("rerun_first_images_after_s")
        body = (f"The quickstart's dashboard on {d['dataset']}, mode {d['noise_mode']}, {d['steps']} steps "
                f"(`widgets.dashboard_steps()`), teacher {'cached' if d['teacher_was_cached'] else 'trained first'}; "
                f"student accuracy on the held-out split. Budget: a re-run within {DASHBOARD_BUDGET_S:.0f} s.\n\n"
                + table(("run", "wall s", "student", "first step after s", "first images after s", "peak MB"),
                        [(f"first run, ε = {d.get('first_run_epsilon', 10):g}", f"{d['first_run_seconds']:.1f}",
                          f"{d['first_run_accuracy']:.1%}", "—", "—", "—"),
                         (f"re-run, ε = {d['rerun_epsilon']:g}", f"{d['rerun_seconds']:.1f}",
                          f"{d['rerun_accuracy']:.1%}", "—" if first_step is None else f"{first_step:.1f}",
                          "—" if first_images is None else f"{first_images:.1f}", f"{d['peak_mb']:.0f}")]))
        out.append((f"dashboard-{d['dataset']}", f"The dashboard's preset run ({d['dataset']})", body))
    return out


# ----------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose file names start with these")
    parser.add_argument("--fast", action="store_true", help="fast mode (DPSD_FAST=1) instead of the full experience")
    parser.add_argument("--cache-dir", help="teacher cache to use (default: a fresh, empty temporary one)")
    parser.add_argument("--no-dashboard", action="store_true", help="skip the dashboard re-run timing")
    parser.add_argument("--dashboard-only", action="store_true", help="only time the dashboard")
    parser.add_argument("--dataset", default="mnist-5k", help="dashboard dataset (default mnist-5k)")
    parser.add_argument("--epsilon", type=float, default=2.0, help="the dashboard re-run's new ε (default 2)")
    parser.add_argument("--steps", type=int, default=0,
                        help="dashboard steps (default: the quickstart's DASHBOARD_STEPS, widgets.dashboard_steps())")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # inside a worker process: do one thing, print one JSON line
        kind, *rest = args.worker
        result = (worker_notebook(rest[0]) if kind == "notebook"
                  else worker_dashboard(rest[0], float(rest[1]), int(rest[2]) or None))
        print(json.dumps(result))
        return 0

    tmp = None
    cache = args.cache_dir
    if cache is None:
        tmp = tempfile.TemporaryDirectory(prefix="dpsd_bench_cache_")
        cache = tmp.name
    env = dict(os.environ, DPSD_CACHE_DIR=os.path.expanduser(cache), PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.pop("DPSD_FAST", None)
    if args.fast:
        env["DPSD_FAST"] = "1"
    mode = "fast" if args.fast else "full"
    print(f"mode {mode}; teacher cache {cache}; {os.cpu_count()} CPUs visible; "
          f"budgets: notebook <= {NOTEBOOK_BUDGET_S:.0f} s and < {MEMORY_BUDGET_MB:.0f} MB, "
          f"dashboard re-run <= {DASHBOARD_BUDGET_S:.0f} s")

    results = {"mode": mode, "notebooks": [], "dashboard": None}
    ok = True
    if not args.dashboard_only:
        notebooks = sorted(NOTEBOOK_DIR.glob("[0-9]*.ipynb"))
        if args.prefixes:
            notebooks = [p for p in notebooks if any(p.name.startswith(x) for x in args.prefixes)]
        print(f"\n{'notebook':<32} {'wall s':>8} {'peak MB':>8}  verdict")
        for path in notebooks:
            r = _run_worker(["--worker", "notebook", str(path)], env)
            r.setdefault("notebook", path.name)
            results["notebooks"].append(r)
            if r.get("error"):
                verdict = f"ERROR {r['error']}"
                ok = False
            else:
                within = r["seconds"] <= NOTEBOOK_BUDGET_S and r["peak_mb"] < MEMORY_BUDGET_MB
                ok &= within
                verdict = "ok" if within else "OVER BUDGET"
            print(f"{path.name:<32} {r.get('seconds', float('nan')):>8.1f} {r.get('peak_mb', float('nan')):>8.0f}  "
                  f"{verdict}", flush=True)

    if not args.no_dashboard:
        r = _run_worker(["--worker", "dashboard", args.dataset, str(args.epsilon), str(args.steps)], env)
        results["dashboard"] = r
        if r.get("error"):
            print(f"\ndashboard: ERROR {r['error']}")
            ok = False
        else:
            within = r["rerun_seconds"] <= DASHBOARD_BUDGET_S
            ok &= within
            first_img = r["rerun_first_images_after_s"]
            print(f"\ndashboard on {r['dataset']} ({r['noise_mode']}, {r['steps']} steps): first run "
                  f"{r['first_run_seconds']:.1f} s (teacher {'cached' if r['teacher_was_cached'] else 'trained'}), "
                  f"student {r['first_run_accuracy']:.1%}")
            print(f"re-run at ε = {r['rerun_epsilon']:g}: {r['rerun_seconds']:.1f} s, student "
                  f"{r['rerun_accuracy']:.1%}; first step after {r['rerun_first_step_after_s'] or float('nan'):.1f} s, "
                  f"first images after {first_img if first_img is not None else float('nan'):.1f} s; "
                  f"peak {r['peak_mb']:.0f} MB  {'ok' if within else 'OVER BUDGET'}")

    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "notebooks.json").write_text(json.dumps(results, indent=2))
    cache_note = ("a fresh teacher cache, so the first notebook trains the teacher" if tmp is not None
                  else "the teacher cache given by --cache-dir")
    for name, title, body in results_sections(results, not args.prefixes, cache_note):
        write_section(name, title, command_line("notebooks_benchmark.py", argv), body)
    if tmp is not None:
        tmp.cleanup()
    print(f"\n{'all within budget' if ok else 'SOME BUDGETS MISSED'}; details in {out / 'notebooks.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
