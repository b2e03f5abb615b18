"""Grading the assignments with nbgrader itself, the way notebooks/assignments/README.md tells an instructor to.

In a temporary course directory (laid out by ``python -m dpsd_lite.course.assignments build``, without executing):

* ``nbgrader generate_assignment "*"`` gives exactly the committed student versions;
* ``nbgrader autograde "*"`` (fast mode, one torch thread, self-checks not strict: as an instructor runs it)
  grades two submissions of the release: every assignment with the solutions filled in ("correct"), which earns
  the points of every graded self-check, and assignment 2 with one known mistake in exercise 2.4
  ("one-mistake"), which loses exactly that exercise's points and keeps every other exercise's;
* the self-check still names the mistake: its message is in the graded cell's output and in the feedback that
  ``generate_feedback`` writes for the learner.

Written answers are graded by hand in nbgrader (formgrader); here they must be waiting for it, and full marks
for them make the correct submission's total its maximum.
"""

import html
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbgrader.api import Gradebook

from dpsd_lite.course import checks
from dpsd_lite.course.assignments import build, course_api

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "notebooks" / "assignments"
NAMES = [p.stem for p in sorted((ASSIGNMENTS / "source").glob("*.py"))]

# The known mistake: exercise 2.4 answers with the ε of one release (the notebook's helper), forgetting `steps`.
MISTAKEN, EXERCISE, CHECK = "02_gaussian_calibration", "exercise_2_4", "check_2_4"
SLIP = "    return gdp_epsilon(sigma, delta)  # one release's ε: the steps are forgotten\n"


def _meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def _points(name):
    """{grade_id: points} of the graded cells of source NAME."""
    nb = jupytext.read(str(ASSIGNMENTS / "source" / f"{name}.py"))
    return {_meta(c)["grade_id"]: _meta(c)["points"] for c in nb.cells if _meta(c).get("grade")}


def _nbgrader(course, *args):
    """`nbgrader ARGS` in the course directory, as an instructor types it: fast mode, one torch thread."""
    env = dict(os.environ, DPSD_FAST="1", OMP_NUM_THREADS="1")
    env.pop("DPSD_STRICT_CHECKS", None)  # the graded cells' own asserts decide, as in a real course
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _submit(course, student, name, nb):
    path = course / "submitted" / student / name / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def _answered(course, name):
    """The release of NAME with every solution cell filled in from the source: a correct submission."""
    source = nbformat.read(str(course / "source" / name / f"{name}.ipynb"), as_version=4)
    answers = {_meta(c)["grade_id"]: c.source for c in source.cells if _meta(c).get("solution")}
    nb = nbformat.read(str(course / "release" / name / f"{name}.ipynb"), as_version=4)
    for cell in nb.cells:
        if _meta(cell).get("solution"):
            cell.source = answers.pop(_meta(cell)["grade_id"])
    assert not answers, f"solution cells missing from the release: {sorted(answers)}"
    return nb


def _cell(nb, grade_id):
    return next(c for c in nb.cells if _meta(c).get("grade_id") == grade_id)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    build(ASSIGNMENTS, out, execute_instructor=False, log=lambda *_: None)
    course = out / "instructor"
    for name in NAMES:  # the release again, this time from nbgrader's own command line
        (course / "release" / name / f"{name}.ipynb").unlink()
    _nbgrader(course, "generate_assignment", "*", "--force")
    for name in NAMES:
        _submit(course, "correct", name, _answered(course, name))
    mistaken = _answered(course, MISTAKEN)
    cell = _cell(mistaken, EXERCISE)
    assert cell.source.count("### BEGIN SOLUTION") == 1, cell.source
    cell.source = cell.source.split("    ### BEGIN SOLUTION")[0] + SLIP  # the def and docstring, then the slip
    _submit(course, "one-mistake", MISTAKEN, mistaken)
    _nbgrader(course, "autograde", "*")
    result = course_api(course).generate_feedback(MISTAKEN, "one-mistake")
    assert result["success"], result.get("log", "") + result.get("error", "")
    return course


def _grades(course, name, student):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission(name, student)
        grades = {g.name: (g.cell_type, g.auto_score, g.max_score, g.needs_manual_grade)
                  for nb in submission.notebooks for g in nb.grades}
        return grades, (submission.code_score, submission.max_code_score, submission.max_score)


def test_nbgrader_generates_the_committed_student_versions(course):
    for name in NAMES:
        release = nbformat.read(str(course / "release" / name / f"{name}.ipynb"), as_version=4)
        student = nbformat.read(str(ASSIGNMENTS / "student" / f"{name}.ipynb"), as_version=4)
        assert [(c.cell_type, c.source, c.metadata) for c in release.cells] == \
            [(c.cell_type, c.source, c.metadata) for c in student.cells], name


@pytest.mark.parametrize("name", NAMES)
def test_a_correct_submission_scores_full_marks(course, name):
    points = _points(name)
    grades, (code_score, max_code_score, max_score) = _grades(course, name, "correct")
    assert {gid: g[2] for gid, g in grades.items()} == points  # every graded cell, with its points
    autograded = nbformat.read(str(course / "autograded" / "correct" / name / f"{name}.ipynb"), as_version=4)
    for grade_id, (cell_type, auto, maximum, manual) in grades.items():
        if cell_type == "code":
            outputs = _cell(autograded, grade_id).outputs
            assert auto == maximum and not manual, f"{grade_id} scored {auto} of {maximum}: {outputs}"
        else:  # a written answer: the instructor grades it by hand
            assert auto is None and manual, grade_id
    errors = [o for c in autograded.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    written = sum(p for gid, p in points.items() if gid.startswith("answers_"))
    assert code_score == max_code_score == sum(points.values()) - written > 0
    assert max_score == sum(points.values())
    # full marks for the written answers (what formgrader would record) make the total the maximum
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission(name, "correct")
        for nb in submission.notebooks:
            for grade in nb.grades:
                if grade.cell_type == "markdown":
                    grade.manual_score = grade.max_score
        gb.db.commit()
        assert gb.find_submission(name, "correct").score == max_score


def test_a_known_mistake_loses_exactly_that_exercises_points(course, monkeypatch):
    points = _points(MISTAKEN)
    correct, (correct_code, _, _) = _grades(course, MISTAKEN, "correct")
    mistaken, (mistaken_code, _, _) = _grades(course, MISTAKEN, "one-mistake")
    lost = {gid: correct[gid][1] - (mistaken[gid][1] or 0) for gid in correct if correct[gid][0] == "code"}
    assert lost == {gid: (points[CHECK] if gid == CHECK else 0) for gid in lost}
    assert correct_code - mistaken_code == points[CHECK] > 0

    # what the self-check says about this mistake, run here on the submitted function ...
    submitted = nbformat.read(str(course / "submitted" / "one-mistake" / MISTAKEN / f"{MISTAKEN}.ipynb"),
                              as_version=4)
    helpers = next(c.source for c in submitted.cells if "def gdp_epsilon(" in c.source)
    namespace = {}
    exec(helpers + "\n" + _cell(submitted, EXERCISE).source, namespace)
    monkeypatch.delenv("DPSD_STRICT_CHECKS", raising=False)
    result = checks.check_composed_epsilon(namespace["epsilon_after"], verbose=False)
    assert not result and result.mistake == "ignores_steps", result.message
    # ... is what the graded cell printed before it failed, and what the learner's feedback shows
    graded = _cell(nbformat.read(str(course / "autograded" / "one-mistake" / MISTAKEN / f"{MISTAKEN}.ipynb"),
                                 as_version=4), CHECK)
    printed = "".join(o.get("text", "") for o in graded.outputs if o.output_type == "stream")
    assert result.message in printed
    assert [o.ename for o in graded.outputs if o.output_type == "error"] == ["AssertionError"]
    feedback = course / "feedback" / "one-mistake" / MISTAKEN / f"{MISTAKEN}.html"
    assert result.message in html.unescape(feedback.read_text(encoding="utf-8"))

