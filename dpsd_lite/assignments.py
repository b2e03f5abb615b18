"""Build the student and instructor versions of the assignment notebooks from one source each.

Sources are Jupytext ``py:percent`` files in ``notebooks/assignments/source/``.
Exercise solutions sit between marker lines (nbgrader's convention)::

    def keep_probability(epsilon, k):
        # Hint: ...                       (kept in both versions)
        ### BEGIN SOLUTION (Exercise 1.1)
        return math.exp(epsilon) / (math.exp(epsilon) + k - 1)
        ### END SOLUTION

and written answers between ``<!-- BEGIN SOLUTION -->`` and
``<!-- END SOLUTION -->`` lines in markdown cells.

* **student** version: each code block becomes ``raise NotImplementedError(...)``
  at the block's indentation, each written answer becomes "*Your answer
  here.*", cells tagged ``instructor`` are dropped and ``# NBVAL_CHECK_OUTPUT``
  lines removed. Saved without outputs.
* **instructor** version: the source as it is (markers kept, so it also works
  with nbgrader), executed (``DPSD_FAST=1`` unless ``--full``, with
  ``DPSD_STRICT_CHECKS=1`` so any failing self-check stops the build) and
  saved with its outputs, which nbval compares for ``# NBVAL_CHECK_OUTPUT`` cells.

Both are written as Jupytext pairs (``.py`` percent + ``.ipynb``)::

    python -m dpsd_lite.assignments build            # all, executed in fast mode
    python -m dpsd_lite.assignments build --no-execute 01_randomized_response
    python -m dpsd_lite.assignments check            # exit 1 if a committed student version is stale

The repository ships ``source/`` and ``student/`` only: ``instructor/`` (solutions
with outputs) is git-ignored, built on demand for an instructor to keep.
``check`` compares the committed student versions with a fresh build.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["VERSIONS", "default_root", "find_sources", "make_version", "build", "stale_versions", "main"]

VERSIONS = ("student", "instructor")
COMMITTED = ("student",)  # the versions the repository ships (instructor/ is git-ignored)
_BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:\s*\((?P<label>[^)]*)\))?\s*$")
_END = re.compile(r"^[ \t]*### END SOLUTION\s*$")
_MD_BEGIN = re.compile(r"^\s*<!--\s*BEGIN SOLUTION\s*-->\s*$")
_MD_END = re.compile(r"^\s*<!--\s*END SOLUTION\s*-->\s*$")
_NBVAL = re.compile(r"^\s*#\s*NBVAL_\w+\s*$")
MD_PLACEHOLDER = "*Your answer here.*"

BANNER = {
    "student": ("*Student version.* Fill in each **Exercise** cell (look for `NotImplementedError`), then run "
                "the self-check below it: it tells you what is right and, if something is not, what to look at."),
    "instructor": ("*Instructor version: solutions filled in, outputs from a fast run (`DPSD_FAST=1`).* "
                   "Generated from `source/{name}.py` by `python -m dpsd_lite.assignments build`; "
                   "edit the source, not this file. Not in the repository (`instructor/` is git-ignored): "
                   "keep it for yourself, don't hand it out."),
}


def default_root() -> Path:
    """``notebooks/assignments`` of the current directory, else of the repository this package sits in."""
    here = Path.cwd() / "notebooks" / "assignments"
    if (here / "source").is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "notebooks" / "assignments"


def find_sources(root: Path, names=None) -> list:
    src = Path(root) / "source"
    paths = sorted(src.glob("*.py"))
    if names:
        wanted = {n.removesuffix(".py") for n in names}
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise SystemExit(f"no source named {', '.join(sorted(missing))} in {src}")
    if not paths:
        raise SystemExit(f"no assignment sources (*.py) in {src}")
    return paths


def _strip_code(source: str, where: str) -> str:
    out, inside = [], None
    for line in source.splitlines():
        m = _BEGIN.match(line)
        if m:
            if inside is not None:
                raise ValueError(f"{where}: nested '### BEGIN SOLUTION'")
            inside = m
            label = m.group("label")
            msg = f"{label}: write your solution here" if label else "write your solution here"
            out.append(f'{m.group("indent")}raise NotImplementedError("{msg}")')
            continue
        if _END.match(line):
            if inside is None:
                raise ValueError(f"{where}: '### END SOLUTION' without a BEGIN")
            inside = None
            continue
        if inside is None and not _NBVAL.match(line):
            out.append(line)
    if inside is not None:
        raise ValueError(f"{where}: '### BEGIN SOLUTION' without an END")
    return "\n".join(out)


def _strip_markdown(source: str, where: str) -> str:
    out, inside = [], False
    for line in source.splitlines():
        if _MD_BEGIN.match(line):
            if inside:
                raise ValueError(f"{where}: nested BEGIN SOLUTION")
            inside = True
            out.append(MD_PLACEHOLDER)
        elif _MD_END.match(line):
            if not inside:
                raise ValueError(f"{where}: END SOLUTION without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: BEGIN SOLUTION without an END")
    return "\n".join(out)


def _check_markers(nb, where):
    for i, cell in enumerate(nb.cells):
        src = cell.source
        if cell.cell_type == "code":
            _strip_code(src, f"{where}, cell {i}")
        elif cell.cell_type == "markdown":
            _strip_markdown(src, f"{where}, cell {i}")


def make_version(nb, version: str, name: str = "assignment"):
    """A copy of the source notebook ``nb`` as the ``student`` or ``instructor`` version (no outputs)."""
    import nbformat

    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    _check_markers(nb, name)
    nb = copy.deepcopy(nb)
    cells = []
    for i, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if version == "student":
            if "instructor" in tags:
                continue
            if cell.cell_type == "code":
                cell.source = _strip_code(cell.source, f"{name}, cell {i}")
            elif cell.cell_type == "markdown":
                cell.source = _strip_markdown(cell.source, f"{name}, cell {i}")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    banner = nbformat.v4.new_markdown_cell(BANNER[version].format(name=name))
    banner.metadata["tags"] = ["banner"]
    cells.insert(1 if cells and cells[0].cell_type == "markdown" else 0, banner)
    nb.cells = cells
    for cell in nb.cells:  # ids are regenerated: stable, readable, unique per notebook
        cell.pop("id", None)
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["dpsd_assignment"] = {"name": name, "version": version}
    nb.nbformat, nb.nbformat_minor = 4, 5
    for j, cell in enumerate(nb.cells):
        cell["id"] = f"{version[0]}{j:03d}"
    return nb


@contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(nb, cwd: Path, fast: bool = True, timeout: int = 1200):
    """Run ``nb`` in a fresh python3 kernel (DPSD_FAST=1 and one thread if ``fast``; strict self-checks)."""
    from nbclient import NotebookClient

    # One intra-op thread for the small fast-mode runs: on a busy 2-core machine torch's thread pool can make
    # them 10-20x slower than one thread.
    threads = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")} if fast else {}
    with _env(DPSD_FAST="1" if fast else None, DPSD_STRICT_CHECKS="1", **threads):
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(cwd)}})
        client.execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    return nb


def _write_pair(nb, path_stem: Path):
    import jupytext
    import nbformat
    from jupytext.config import load_jupytext_config

    path_stem.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    # honour notebooks/jupytext.toml (e.g. no jupytext version in the header), like `jupytext --sync` would
    config = load_jupytext_config(str(path_stem.parent))
    jupytext.write(nb, str(path_stem.with_suffix(".py")), fmt="py:percent", config=config)
    nbformat.write(nb, str(path_stem.with_suffix(".ipynb")))


def build(root: Path | None = None, out: Path | None = None, names=None, execute_instructor: bool = True,
          fast: bool = True, log=print) -> list:
    """Write ``{out}/{student,instructor}/NAME.{py,ipynb}`` for every source; return the paths written."""
    import jupytext

    root = Path(root or default_root())
    out = Path(out or root)
    written = []
    for src in find_sources(root, names):
        nb = jupytext.read(str(src), fmt="py:percent")
        for version in VERSIONS:
            v = make_version(nb, version, src.stem)
            target = out / version / src.stem
            if version == "instructor" and execute_instructor:
                log(f"executing {src.stem} ({'fast' if fast else 'full'} mode) ...")
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    execute(v, target.parent, fast=fast)
                except Exception as exc:  # nbclient's CellExecutionError: keep the message readable
                    tail = "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()[-12:])
                    raise SystemExit(f"{src.name}: the instructor version failed to run; nothing written for it.\n"
                                     f"{tail}") from None
            _write_pair(v, target)
            written += [target.with_suffix(".py"), target.with_suffix(".ipynb")]
            log(f"wrote {target}.py and .ipynb")
    return written


def _cells(path: Path):
    import jupytext

    nb = jupytext.read(str(path))
    return [(c.cell_type, c.source.strip(), sorted(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def stale_versions(root: Path | None = None, versions=COMMITTED) -> list:
    """Files under ``student/`` (the committed versions) whose cells differ from a fresh build of the sources."""
    root = Path(root or default_root())
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        build(root, Path(tmp), execute_instructor=False, log=lambda *_: None)
        for fresh in sorted(p for v in versions for p in (Path(tmp) / v).rglob("*.*")):
            rel = fresh.relative_to(tmp)
            committed = root / rel
            if not committed.exists() or _cells(committed) != _cells(fresh):
                stale.append(committed)
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpsd_lite.assignments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write student and instructor versions (.py + .ipynb) of the assignments")
    b.add_argument("names", nargs="*", help="source names (default: all), e.g. 01_randomized_response")
    b.add_argument("--root", type=Path, default=None, help="assignments folder with source/ (default: "
                   "notebooks/assignments)")
    b.add_argument("--out", type=Path, default=None, help="where student/ and instructor/ go (default: --root)")
    b.add_argument("--no-execute", action="store_true", help="don't run the instructor versions (no outputs)")
    b.add_argument("--full", action="store_true", help="run the instructor versions in full mode, not DPSD_FAST=1")
    c = sub.add_parser("check", help="exit 1 if the committed student versions are stale (cells differ from the "
                       "sources)")
    c.add_argument("--root", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.root, args.out, args.names, execute_instructor=not args.no_execute, fast=not args.full)
        return 0
    stale = stale_versions(args.root)
    for path in stale:
        print(f"stale: {path} (rebuild with: python -m dpsd_lite.assignments build)")
    if not stale:
        print("student versions match their sources")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
