"""The assignment notebooks (notebooks/assignments), nbgrader source notebooks written as Jupytext scripts.

* every source carries nbgrader's cell metadata (solution cells, graded self-check cells with the points its
  headings announce, written answers graded by hand) and nbgrader's validator accepts it;
* the build command writes the nbgrader course directory (instructor/: source notebooks and nbgrader's release)
  and the student versions (.py + .ipynb, the release);
* the repository ships source/ and student/ only: instructor/ is git-ignored, and the committed student
  versions are up to date with their sources; their .py twins keep nbgrader's metadata;
* the sources import none of the package functions their exercises ask learners to write;
* the instructor versions, built (and executed) into a temporary folder, carry outputs for their
  ``# NBVAL_CHECK_OUTPUT`` cells and pass nbval there in fast mode (in a subprocess, so the root
  ``python -m pytest`` covers them);
* each student version runs up to its first exercise and stops there with that exercise's NotImplementedError.

Grading a submission with nbgrader itself is tests/test_nbgrader.py. Notebook runs use DPSD_FAST=1 (small data
and steps), DPSD_STRICT_CHECKS=1 (a failing self-check raises) and one torch thread; the teacher cache is the
session's temporary folder (tests/conftest.py).
"""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dpsd_lite.course.assignments import stale_versions

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "notebooks" / "assignments"
SOURCES = sorted((ASSIGNMENTS / "source").glob("*.py"))
NAMES = [p.stem for p in SOURCES]

# Package functions and classes that answer an exercise (or do its work): a source must not import them.
ANSWERS = {
    "rr_keep_probability", "select_rr_classes", "top_k_mask", "SelectiveRR", "rr_channel", "rr_sample",
    "rr_output_distribution", "make_mechanism", "gaussian_delta", "gaussian_epsilon", "gaussian_noise_multiplier",
    "composed_epsilon", "LabelNoise", "one_run_p_value", "one_run_epsilon_from_counts", "one_run_epsilon_lower_bound",
}


def _notebook_env():
    env = dict(os.environ)
    env.update(DPSD_FAST="1", DPSD_STRICT_CHECKS="1", OMP_NUM_THREADS="1")
    return env


def _code(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _src(cell):
    s = cell["source"]
    return s if isinstance(s, str) else "".join(s)


def test_there_are_at_least_four_assignments():
    assert len(SOURCES) >= 4, NAMES


@pytest.mark.parametrize("path", SOURCES, ids=NAMES)
def test_source_has_goals_fast_mode_exercises_and_checks(path):
    text = path.read_text(encoding="utf-8")
    assert "**Learning goals.**" in text
    params = re.search(r'# %% tags=\["parameters"\]\n(.*?)\n# %%', text, re.S)
    assert params, "a cell tagged 'parameters'"
    assert 'os.environ.get("DPSD_FAST") == "1"' in params.group(1)
    assert re.search(r"^[A-Z][A-Z_]+ = ", params.group(1), re.M), "CAPITALISED constants"
    assert text.count("### BEGIN SOLUTION") == text.count("### END SOLUTION") >= 2
    assert "checks.check_" in text
    assert "# NBVAL_CHECK_OUTPUT" in text
    # every code exercise has a self-check, and the assignment ends with written questions
    labels = re.findall(r"### BEGIN SOLUTION \(Exercise (\d+\.\d+)\)", text)
    assert len(labels) == text.count("### BEGIN SOLUTION")
    assert text.rindex("<!-- BEGIN SOLUTION -->") > text.rindex("### END SOLUTION"), "end with written questions"


def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


@pytest.mark.parametrize("path", SOURCES, ids=NAMES)
def test_source_cells_carry_nbgrader_metadata(path):
    """Solutions sit in solution cells, each self-check right after is a graded, locked test cell, written answers
    are graded by hand; the points are those the exercise headings announce, and nbgrader's validator agrees."""
    import jupytext
    from nbgrader.nbgraderformat import MetadataValidator

    nb = jupytext.read(str(path))
    MetadataValidator().validate_nb(nb)  # raises on a missing grade_id or points, a duplicate id, ...
    headings = {m.group(1): int(m.group(2)) for c in nb.cells if c.cell_type == "markdown"
                for m in re.finditer(r"### Exercise (\d+\.\d+)\b.*\*\((\d+) points?\)\*", c.source)}
    graded, checks = {}, set()
    for i, cell in enumerate(nb.cells):
        meta = _nbgrader(cell)
        if i in checks:
            continue
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
            number = re.search(r"### BEGIN SOLUTION \(Exercise (\d+\.\d+)\)", cell.source).group(1)
            assert meta.get("solution") and not meta.get("grade"), f"exercise {number}: not a solution cell"
            check = nb.cells[i + 1]  # the self-check right below grades it
            assert re.match(r"(# NBVAL_CHECK_OUTPUT\n)?assert checks\.check_\w+\(", check.source), check.source
            cmeta = _nbgrader(check)
            assert cmeta.get("grade") and cmeta.get("locked") and not cmeta.get("solution"), cmeta
            graded[number] = cmeta["points"]
            checks.add(i + 1)
        elif cell.cell_type == "markdown" and "<!-- BEGIN SOLUTION -->" in cell.source:
            assert meta.get("grade") and meta.get("solution"), f"written answer without nbgrader metadata: {meta}"
            graded[re.search(r"(\d+)_(\d+)$", meta["grade_id"]).group().replace("_", ".")] = meta["points"]
        elif meta:
            assert not (meta.get("solution") or meta.get("grade")), f"graded, but no exercise:\n{cell.source}"
        assert "checks.check_" not in cell.source, f"a self-check that grades no exercise:\n{cell.source}"
    assert graded == headings, "each exercise heading names the points its graded cell carries"
    assert all(points > 0 for points in graded.values())


@pytest.mark.parametrize("path", SOURCES, ids=NAMES)
def test_source_imports_no_answer(path):
    """No exercise is a one-liner: the package's own version of an answer is not imported (nor its module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dpsd_lite"):
            names = {a.name for a in node.names}
            assert not names & ANSWERS, f"{path.name} imports {names & ANSWERS} from {node.module}"
            assert not names & {"mechanisms", "accounting", "audit"}, f"{path.name} imports a whole module"
            assert not any(n.startswith("reference") or n.startswith("_") for n in names)
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("dpsd_lite.") for a in node.names), ast.dump(node)
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("reference") and node.attr not in ANSWERS, (path.name, node.attr)


def test_repository_ships_source_and_student_only():
    ignore = (ROOT / ".gitignore").read_text(encoding="utf-8")
    assert "notebooks/assignments/instructor/" in ignore.splitlines()
    if shutil.which("git") and (ROOT / ".git").exists():
        tracked = subprocess.run(["git", "ls-files", "notebooks/assignments"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split()
        assert tracked and not [t for t in tracked if t.startswith("notebooks/assignments/instructor/")]
        assert {f"notebooks/assignments/student/{n}{ext}" for n in NAMES for ext in (".py", ".ipynb")} <= set(tracked)


def test_build_command_writes_both_versions(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dpsd_lite.course.assignments", "build", "--no-execute",
                           "--root", str(ASSIGNMENTS), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    course = tmp_path / "instructor"  # nbgrader's course directory
    assert (course / "nbgrader_config.py").read_text() == (ASSIGNMENTS / "nbgrader_config.py").read_text()
    assert (course / "gradebook.db").exists()
    for src in SOURCES:
        source = src.read_text(encoding="utf-8")
        n_code = source.count("### BEGIN SOLUTION")
        n_answers = source.count("<!-- BEGIN SOLUTION -->")
        py, ipynb = (tmp_path / "student" / f"{src.stem}{ext}" for ext in (".py", ".ipynb"))
        assert py.exists() and ipynb.exists()
        instructor = course / "source" / src.stem / f"{src.stem}.ipynb"
        release = course / "release" / src.stem / f"{src.stem}.ipynb"
        assert sorted(p.name for p in instructor.parent.iterdir()) == [instructor.name]  # nothing else to release
        assert sorted(p.name for p in release.parent.iterdir()) == [release.name]
        for version, path in (("student", ipynb), ("instructor", instructor)):
            nb = json.loads(path.read_text(encoding="utf-8"))
            assert nb["metadata"]["dpsd_assignment"] == {"name": src.stem, "version": version}
            assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
            text = "\n".join(_src(c) for c in nb["cells"])
            if version == "student":
                assert nb["metadata"]["jupytext"]["formats"] == "ipynb,py:percent"
                assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
                assert "NBVAL_CHECK_OUTPUT" not in text
                assert len(re.findall(r'raise NotImplementedError\("Exercise \d+\.\d+', text)) == n_code
                assert text.count("*Your answer here.*") == n_answers
                # the student version is nbgrader's release, paired with a script
                rel = json.loads(release.read_text(encoding="utf-8"))
                assert [(c["cell_type"], _src(c), c["metadata"]) for c in rel["cells"]] == \
                    [(c["cell_type"], _src(c), c["metadata"]) for c in nb["cells"]]
                assert "jupytext" not in rel["metadata"]  # no pairing in what nbgrader hands out
            else:
                assert "jupytext" not in nb["metadata"]  # never paired: a NAME.py beside it would be released
                assert text.count("### BEGIN SOLUTION") == n_code
                assert text.count("<!-- BEGIN SOLUTION -->") == n_answers
                assert "NotImplementedError(\"Exercise" not in text
    # a solution line of exercise 1.1 is in the instructor version only
    solution = "return 1.0 / (1.0 + (k - 1) * math.exp(-epsilon))"
    name = "01_randomized_response"
    assert solution in (course / "source" / name / f"{name}.ipynb").read_text(encoding="utf-8")
    for path in (tmp_path / "student" / f"{name}.py", tmp_path / "student" / f"{name}.ipynb",
                 course / "release" / name / f"{name}.ipynb"):
        assert solution not in path.read_text(encoding="utf-8")


def test_committed_versions_match_their_sources():
    stale = stale_versions(ASSIGNMENTS)
    assert not stale, f"rebuild with `python -m dpsd_lite.course.assignments build`: {stale}"
    proc = subprocess.run([sys.executable, "-m", "dpsd_lite.course.assignments", "check", "--root", str(ASSIGNMENTS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "student versions match" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_student_pair_keeps_nbgrader_metadata(name):
    """The .py twin of a student version carries nbgrader's cell metadata and locks, so a Jupytext round trip
    (editing either file, `jupytext --sync`) keeps the notebook gradable."""
    import jupytext

    ipynb, py = (jupytext.read(str(ASSIGNMENTS / "student" / f"{name}{ext}")) for ext in (".ipynb", ".py"))
    keys = ("nbgrader", "editable", "deletable", "tags")
    meta = [[{k: c.metadata[k] for k in keys if k in c.metadata} for c in nb.cells] for nb in (ipynb, py)]
    assert meta[0] == meta[1]
    assert sum("nbgrader" in m for m in meta[0]) >= 3
    assert [c.source for c in ipynb.cells] == [c.source for c in py.cells]


@pytest.fixture(scope="session")
def instructor_build(tmp_path_factory):
    """The course directory and the student versions built into a temporary folder, the instructor versions
    executed in fast mode (as an instructor would build them: `python -m dpsd_lite.course.assignments build`)."""
    out = tmp_path_factory.mktemp("assignments_build")
    proc = subprocess.run([sys.executable, "-m", "dpsd_lite.course.assignments", "build", "--root", str(ASSIGNMENTS),
                           "--out", str(out)], cwd=ROOT, env=_notebook_env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "instructor" / "source"  # the course's source notebooks: the instructor versions


@pytest.mark.parametrize("name", NAMES)
def test_instructor_version_stores_outputs_to_compare(name, instructor_build):
    nb = json.loads((instructor_build / name / f"{name}.ipynb").read_text(encoding="utf-8"))
    checked = [c for c in _code(nb) if "# NBVAL_CHECK_OUTPUT" in _src(c)]
    assert checked, "mark some deterministic cells with # NBVAL_CHECK_OUTPUT"
    for cell in checked:
        assert cell["outputs"], f"no stored output for:\n{_src(cell)[:200]}"
        for out in cell["outputs"]:
            assert out["output_type"] != "error"
            assert "❌" not in "".join(out.get("text", ""))
    assert all(o["output_type"] != "error" for c in _code(nb) for o in c["outputs"])


def test_instructor_versions_pass_nbval(instructor_build):
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", str(instructor_build),
                           "-p", "no:cacheprovider", "-q", "-o", "addopts=", "--rootdir", str(instructor_build)],
                          cwd=instructor_build, env=_notebook_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", proc.stdout) and "failed" not in proc.stdout


@pytest.mark.parametrize("name", NAMES)
def test_student_version_runs_up_to_its_first_exercise(name, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    for key, value in _notebook_env().items():
        monkeypatch.setenv(key, value)
    path = ASSIGNMENTS / "student" / f"{name}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    first_exercise = next(i for i, c in enumerate(nb.cells)
                          if c.cell_type == "code" and "raise NotImplementedError(" in c.source)
    number = re.search(r'NotImplementedError\("(Exercise \d+\.\d+)', nb.cells[first_exercise].source).group(1)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "NotImplementedError"
    assert info.value.evalue.startswith(number), info.value.evalue
    failed = next(i for i, c in enumerate(nb.cells)
                  if c.cell_type == "code" and any(o.output_type == "error" for o in c.get("outputs", [])))
    # the exercise cell itself (top-level code) or the self-check right after it (a function exercise)
    assert failed in (first_exercise, first_exercise + 1)
    assert all(o.output_type != "error" for c in nb.cells[:failed] if c.cell_type == "code" for o in c.outputs)
