"""Build the assignment notebooks with nbgrader: the learners' release and the instructor's course directory.

Sources are Jupytext ``py:percent`` files in ``notebooks/assignments/source/``, each an nbgrader source
notebook: its cells carry nbgrader's metadata (``# %% nbgrader={...}``: solution cells, graded test cells with
points, written answers graded by hand), and solutions sit between nbgrader's markers::

    def keep_probability(epsilon, k):
        # Hint: ...                       (kept in the release)
        ### BEGIN SOLUTION (Exercise 1.1)
        return math.exp(epsilon) / (math.exp(epsilon) + k - 1)
        ### END SOLUTION

(written answers between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` lines).

``build`` writes, for every source NAME, an nbgrader course directory (``instructor/``, git-ignored) and the
student versions (``student/``, committed)::

    instructor/nbgrader_config.py            the course's nbgrader settings (copied from nbgrader_config.py)
    instructor/source/NAME/NAME.ipynb        the source as a notebook, executed (the instructor version)
    instructor/release/NAME/NAME.ipynb       `nbgrader generate_assignment NAME`: the learners' release
    student/NAME.ipynb + student/NAME.py     that release, as a Jupytext pair

The instructor versions run in fast mode (``DPSD_FAST=1`` unless ``--full``) with ``DPSD_STRICT_CHECKS=1``, so
any failing self-check stops the build; nbval compares their stored outputs for ``# NBVAL_CHECK_OUTPUT`` cells.
In the release nbgrader replaces each solution by a stub naming the exercise (:class:`ExerciseStubs`) and the
nbval markers go (:class:`RemoveNbvalMarkers`), as ``nbgrader_config.py`` says::

    python -m dpsd_lite.course.assignments build     # all, instructor versions executed in fast mode
    python -m dpsd_lite.course.assignments build --no-execute 01_randomized_response
    python -m dpsd_lite.course.assignments check     # exit 1 if a committed student version is stale

Grading then is nbgrader's own: ``nbgrader autograde NAME`` in the course directory (see the assignments'
README).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

try:
    from nbgrader.preprocessors import ClearSolutions, NbGraderPreprocessor
except ImportError as exc:  # an instructor tool: learners never import this module
    raise ImportError("dpsd_lite.course.assignments builds the assignments with nbgrader: `pip install nbgrader` "
                      "(it is in the package's [test] extra)") from exc

__all__ = ["ExerciseStubs", "RemoveNbvalMarkers", "default_root", "find_sources", "source_notebook", "course_api",
           "build", "stale_versions", "main"]

COURSE, STUDENT = "instructor", "student"  # the course directory (git-ignored) and the committed release
_LABEL = re.compile(r"BEGIN SOLUTION\s*\((?P<label>[^)]*)\)")
_NBVAL = re.compile(r"^\s*#\s*NBVAL_\w+\s*$")
# What the student versions' Jupytext twins keep: nbgrader's cell metadata, tags and the locks nbgrader puts on
# graded cells (so a round trip through the .py loses nothing nbgrader needs); the kernel, not jupytext's version.
STUDENT_JUPYTEXT_FILTERS = {"cell_metadata_filter": "deletable,editable,nbgrader,tags,-all",
                            "notebook_metadata_filter": "kernelspec,-jupytext.text_representation.jupytext_version"}


class ExerciseStubs(ClearSolutions):
    """nbgrader's ``ClearSolutions``, with the exercise named in each code stub.

    ``{exercise}`` in ``ClearSolutions.code_stub`` becomes the label of the marker it replaces:
    ``### BEGIN SOLUTION (Exercise 1.1)`` gives ``raise NotImplementedError("Exercise 1.1: write your solution
    here")``; a marker without a label gives "this exercise".
    """

    def preprocess_cell(self, cell, resources, index):
        labels = [m.group("label").strip() for m in _LABEL.finditer(cell.source)]
        cell, resources = super().preprocess_cell(cell, resources, index)
        for label in labels + [""] * cell.source.count("{exercise}"):  # one stub per marker, in order
            cell.source = cell.source.replace("{exercise}", label or "this exercise", 1)
        return cell, resources


class RemoveNbvalMarkers(NbGraderPreprocessor):
    """Drop nbval's ``# NBVAL_...`` comment lines: they mark the instructor versions' outputs for nbval's tests
    and mean nothing to a learner."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            cell.source = "\n".join(line for line in cell.source.split("\n") if not _NBVAL.match(line))
        return cell, resources


def default_root() -> Path:
    """``notebooks/assignments`` of the current directory, else of the repository this package sits in."""
    here = Path.cwd() / "notebooks" / "assignments"
    if (here / "source").is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "notebooks" / "assignments"


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


def source_notebook(path: Path):
    """The source ``path`` (py:percent) as nbgrader's source notebook: no outputs, stable cell ids, not paired
    with a script (a paired NAME.py beside it would carry the solutions)."""
    import jupytext

    nb = jupytext.read(str(path), fmt="py:percent")
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["dpsd_assignment"] = {"name": path.stem, "version": "instructor"}
    nb.nbformat, nb.nbformat_minor = 4, 5
    for j, cell in enumerate(nb.cells):
        cell["id"] = f"c{j:03d}"
        cell.metadata.pop("lines_to_next_cell", None)  # jupytext's layout hint for the .py, not the notebook's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
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


def course_api(course: Path):
    """nbgrader's Python API on the course directory ``course``, configured by its nbgrader_config.py (what the
    ``nbgrader`` commands read when run there)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(Path(course).resolve())
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _check(result: dict, what: str) -> dict:
    if not result["success"]:
        tail = "\n".join((result.get("log", "") + result.get("error", "")).strip().splitlines()[-20:])
        raise SystemExit(f"nbgrader could not {what}:\n{tail}")
    return result


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
    """Write the course directory ``{out}/instructor/`` and ``{out}/student/NAME.{py,ipynb}`` for every source
    (see the module's docstring); return the student files written."""
    import nbformat

    root = Path(root or default_root())
    out = Path(out or root)
    course, student = out / COURSE, out / STUDENT
    course.mkdir(parents=True, exist_ok=True)
    if not (course / "nbgrader_config.py").exists():  # the instructor's edits (course id, exchange) stay
        shutil.copyfile(root / "nbgrader_config.py", course / "nbgrader_config.py")
    api, written = course_api(course), []
    for src in find_sources(root, names):
        nb = source_notebook(src)
        target = course / "source" / src.stem / f"{src.stem}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        if execute_instructor:
            log(f"executing {src.stem} ({'fast' if fast else 'full'} mode) ...")
            try:
                execute(nb, target.parent, fast=fast)
            except Exception as exc:  # nbclient's CellExecutionError: keep the message readable
                tail = "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()[-12:])
                raise SystemExit(f"{src.name}: the instructor version failed to run; nothing written for it.\n"
                                 f"{tail}") from None
        nbformat.write(nb, str(target))
        _check(api.generate_assignment(src.stem, force=True), f"generate the release of {src.stem}")
        release = nbformat.read(str(course / "release" / src.stem / f"{src.stem}.ipynb"), as_version=4)
        release.metadata["jupytext"] = {"formats": "ipynb,py:percent", **STUDENT_JUPYTEXT_FILTERS}
        release.metadata["dpsd_assignment"] = {"name": src.stem, "version": "student"}
        _write_pair(release, student / src.stem)
        written += [(student / src.stem).with_suffix(".py"), (student / src.stem).with_suffix(".ipynb")]
        log(f"wrote {target}, its release and {student / src.stem}.py and .ipynb")
    return written


def _cells(path: Path):
    import jupytext

    nb = jupytext.read(str(path))
    return [(c.cell_type, c.source.strip(), sorted(c.get("metadata", {}).get("tags", [])),
             c.get("metadata", {}).get("nbgrader")) for c in nb.cells]


def stale_versions(root: Path | None = None) -> list:
    """Files under ``student/`` whose cells (sources, tags, nbgrader metadata) differ from a fresh build."""
    root = Path(root or default_root())
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        build(root, Path(tmp), execute_instructor=False, log=lambda *_: None)
        for fresh in sorted((Path(tmp) / STUDENT).glob("*.*")):
            committed = root / STUDENT / fresh.name
            if not committed.exists() or _cells(committed) != _cells(fresh):
                stale.append(committed)
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpsd_lite.course.assignments",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the nbgrader course directory (instructor/) and the student versions "
                       "(student/NAME.py + .ipynb)")
    b.add_argument("names", nargs="*", help="source names (default: all), e.g. 01_randomized_response")
    b.add_argument("--root", type=Path, default=None, help="assignments folder with source/ (default: "
                   "notebooks/assignments)")
    b.add_argument("--out", type=Path, default=None, help="where student/ and instructor/ go (default: --root)")
    b.add_argument("--no-execute", action="store_true", help="don't run the instructor versions (no outputs)")
    b.add_argument("--full", action="store_true", help="run the instructor versions in full mode, not DPSD_FAST=1")
    c = sub.add_parser("check", help="exit 1 if the committed student versions are stale (cells differ from the "
                       "sources' release)")
    c.add_argument("--root", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.root, args.out, args.names, execute_instructor=not args.no_execute, fast=not args.full)
        return 0
    stale = stale_versions(args.root)
    for path in stale:
        print(f"stale: {path} (rebuild with: python -m dpsd_lite.course.assignments build)")
    if not stale:
        print("student versions match their sources")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
