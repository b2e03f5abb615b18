"""benchmarks/RESULTS.md: one section per benchmark script, rewritten by that script each time it runs.

Each script calls :func:`write_section` with its name and a Markdown body; the
section between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` is replaced
(or appended), the rest of the file is left as it is. So the file always holds
the latest figures of every benchmark, with the command, the machine and the
date that produced them, and the README quotes it.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "RESULTS.md")
HEADER = """# Benchmark results

Every section below is written by the benchmark script it names, each time that script runs in full
(`--fast` smoke runs never write here). Rerun a script to refresh its section; the rest of the file is
kept. Accuracies are on held-out splits that nothing was tuned on; settings were chosen as each section
says.
"""


def machine() -> str:
    import torch

    threads = torch.get_num_threads()
    return (f"{os.cpu_count()} CPU(s), torch {torch.__version__} ({threads} thread{'s' if threads != 1 else ''}), "
            f"Python {platform.python_version()}")


def command_line(script: str, argv=None) -> str:
    """The command that ran ``script`` (a file in benchmarks/) with ``argv`` (default: this process's arguments)."""
    return shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def run_cli(args: list, env: dict) -> tuple:
    """``dpsd-lite ARGS`` in a fresh process: (stdout, wall seconds, peak RSS of the children so far, in MB).

    A failing command ends the benchmark with the end of its error output."""
    cmd = [sys.executable, "-m", "dpsd_lite.cli", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"dpsd-lite {' '.join(args)} failed:\n{proc.stderr[-2000:] or proc.stdout[-2000:]}")
    return proc.stdout, seconds, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def side_by_side(fn, items: list, workers: int) -> list:
    """``[fn(item) for item in items]``, in that order; with ``workers`` > 1, that many processes side by side.

    Each worker process is spawned fresh (not forked from a process that has already started torch's thread
    pool), so ``fn`` (a top-level function) sets its own torch thread count and loads what it needs."""
    if workers <= 1:
        return [fn(item) for item in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, items))


def run_timed(main) -> None:
    """Run a script's ``main()``, print its total wall time, and exit with its return code."""
    t0 = time.perf_counter()
    code = main()
    print(f"{time.perf_counter() - t0:.0f} s in all")
    sys.exit(code)


def write_section(name: str, title: str, command: str, body: str, path: str = PATH) -> None:
    """Replace (or add) the section ``name`` of RESULTS.md with ``body`` under ``title``."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"<!-- BEGIN {name} -->\n## {title}\n\n`{command}` — {stamp}, {machine()}\n\n{body.strip()}\n"
               f"<!-- END {name} -->")
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else HEADER
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def table(header, rows) -> str:
    """A Markdown table from a header tuple and rows of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
