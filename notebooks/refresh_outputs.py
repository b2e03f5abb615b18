"""Run the notebooks in FULL mode and store their outputs (figures, tables, reports) in the .ipynb files.

The repository keeps the notebooks' outputs so that a reader sees real results before running anything
(on GitHub, nbviewer, or a Binder that has not finished a run yet). Those outputs must come from the real
thing: full mode (``DPSD_FAST`` unset), on the default data. This script is the one way to make them:

* every main notebook (``notebooks/0*.ipynb``) and every student assignment
  (``notebooks/assignments/student/*.ipynb``), in reading order;
* each in a fresh kernel of its own (nbclient), from the notebook's folder, with ``DPSD_FAST`` removed from
  the environment, so nothing carries over from one notebook to the next except the teacher cache on disk;
* the outputs and the state of its widgets (the live monitors' last figures, the dashboard) are written into
  the ``.ipynb``, then ``jupytext --sync`` brings the paired ``.py`` up to date (it holds no outputs, so
  only its timestamp changes);
* a notebook that raises is left as it was, and the script goes on with the next and exits 1 at the end.
  In a student assignment the exercise cells raise ``NotImplementedError`` until a learner fills them in;
  those errors, and those of later cells that need an exercise's answer, are expected, and their tracebacks
  are not stored (the cell stays empty of output).

The tests do not depend on what is stored: ``tests/test_notebooks.py`` runs clean copies (outputs cleared,
except the cells marked ``# NBVAL_CHECK_OUTPUT``, whose stored output is the reference nbval compares).

Full mode takes minutes per notebook (tens of minutes for all of them on 2 CPU cores); on a shared
machine set ``OMP_NUM_THREADS=1``. Usage, from the repository root::

    python notebooks/refresh_outputs.py --check            # list what would run, run nothing
    python notebooks/refresh_outputs.py                    # every notebook
    python notebooks/refresh_outputs.py --only 04          # notebooks/04_*.ipynb
    python notebooks/refresh_outputs.py --only assignments # the four student assignments
    python notebooks/refresh_outputs.py --only 05 --only assignments/student/01
    python notebooks/refresh_outputs.py --clear --only 04  # remove stored outputs again (checked cells keep theirs)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent
#: Where the notebooks are, in the order they run: the main ones (reading order), then the assignments.
GROUPS = (("main", NOTEBOOK_DIR, "0*.ipynb"), ("assignment", NOTEBOOK_DIR / "assignments" / "student", "*.ipynb"))
#: The error an unfilled exercise cell of a student assignment raises (expected; not stored).
EXERCISE_ERROR = "NotImplementedError"
CHECKED = "NBVAL_CHECK_OUTPUT"  # cells whose stored output nbval compares: cleared never


def notebooks(only=()) -> list:
    """[(kind, path)] of the notebooks to run, in order; ``only``: prefixes of their paths under ``notebooks/``
    (``04``, ``05_adversarial``, ``assignments`` for all four assignments, ``assignments/student/01``)."""
    found = []
    for kind, folder, pattern in GROUPS:
        for path in sorted(folder.glob(pattern)):
            rel = path.relative_to(NOTEBOOK_DIR).as_posix()
            if not only or any(rel.startswith(p) for p in only):
                found.append((kind, path))
    return found


def full_mode_environment() -> dict:
    """The kernel's environment: this one without ``DPSD_FAST`` (full mode)."""
    env = dict(os.environ)
    env.pop("DPSD_FAST", None)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def execute(path: Path, kind: str, timeout: int):
    """Run one notebook in a fresh kernel (full mode); return (the executed notebook, the unexpected errors)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = os.environ.pop("DPSD_FAST", None)  # the kernel inherits the environment of the process that starts it
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                store_widget_state=True, resources={"metadata": {"path": str(path.parent)}})
        client.execute(env=full_mode_environment())
    finally:
        if old is not None:
            os.environ["DPSD_FAST"] = old
    errors, left = [], False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                if kind == "assignment" and (output.get("ename") == EXERCISE_ERROR or left):
                    # an exercise left for the learner, or a later cell that needs its answer (a name it
                    # defines, a check of it): expected, and no traceback is stored. The solutions run in
                    # the tests (tests/test_nbgrader.py), where an error of any kind fails.
                    left = True
                    continue
                errors.append(f"cell {i}: {output.get('ename')}: {output.get('evalue')}")
            kept.append(output)
        cell.outputs = kept
    return nb, errors


def save(nb, path: Path) -> None:
    """Write the executed notebook (without nbclient's per-cell timestamps, which would only make every refresh a
    diff), then bring its paired script up to date."""
    import nbformat
    from jupytext.cli import jupytext as jupytext_cli

    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    jupytext_cli(["--sync", "--quiet", str(path)])


def clear(path: Path) -> None:
    """Remove the stored outputs, execution counts and widget state (checked cells keep their outputs)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and CHECKED not in cell.source:
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    save(nb, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], metavar="PREFIX",
                        help="run only the notebooks whose path under notebooks/ starts with PREFIX (04, "
                             "assignments/student/01, assignments); repeat for several")
    parser.add_argument("--check", action="store_true", help="list what would run, and run nothing")
    parser.add_argument("--clear", action="store_true",
                        help="instead of running, remove the stored outputs of the chosen notebooks")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default: 3600)")
    args = parser.parse_args(argv)

    chosen = notebooks(args.only)
    if not chosen:
        print(f"no notebook matches {args.only}", file=sys.stderr)
        return 2
    if args.check or args.clear:
        what = "would clear" if args.check and args.clear else ("clearing" if args.clear else "would run")
        mode = "" if args.clear else " in full mode (DPSD_FAST unset), one fresh kernel each"
        print(f"{what}{mode}:")
        for kind, path in chosen:
            print(f"  {path.relative_to(NOTEBOOK_DIR.parent)}  ({kind}; paired with {path.with_suffix('.py').name})")
            if args.clear and not args.check:
                clear(path)
        return 0

    failed = []
    for kind, path in chosen:
        name = path.relative_to(NOTEBOOK_DIR.parent)
        print(f"{name}: running in full mode…", flush=True)
        start = time.perf_counter()
        nb, errors = execute(path, kind, args.timeout)
        seconds = time.perf_counter() - start
        if errors:
            failed.append(str(name))
            print(f"{name}: FAILED after {seconds:.0f} s, left unchanged:\n  " + "\n  ".join(errors), flush=True)
            continue
        save(nb, path)
        print(f"{name}: outputs stored ({seconds:.0f} s)", flush=True)
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
