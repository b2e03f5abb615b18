"""nbgrader's configuration for this course (https://nbgrader.readthedocs.io).

`python -m dpsd_lite.course.assignments build` copies this file into the course directory (`instructor/` by default)
when none is there yet; edit that copy (course id, exchange), and run every `nbgrader` command from that
directory. The settings below make nbgrader's release of a source exactly the student version in `student/`.
"""

from nbgrader.converters import GenerateAssignment
from nbgrader.preprocessors import ClearSolutions

from dpsd_lite.course.assignments import ExerciseStubs, RemoveNbvalMarkers

c = get_config()  # noqa: F821 (nbgrader provides it)

# For nbgrader's exchange (release_assignment, fetch_assignment, submit, collect) set a course id, and an
# exchange folder that instructor and learners share if the default /srv/nbgrader/exchange is not it:
# c.CourseDirectory.course_id = "privacy-ml"
# c.Exchange.root = "/srv/nbgrader/exchange"

# Only notebooks and data go from source/ to the release: a Jupytext twin (NAME.py) of a source notebook holds
# its solutions, so .py files are never copied (remove "*.py" here if an assignment ships a helper module).
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*", "*.py"]

# What learners see in place of a solution. ExerciseStubs fills in {exercise} from the marker line
# `### BEGIN SOLUTION (Exercise 1.1)`, so "run all" stops at the first unfinished exercise and names it.
c.ClearSolutions.code_stub = {"python": 'raise NotImplementedError("{exercise}: write your solution here")'}
c.ClearSolutions.text_stub = "*Your answer here.*"

# nbgrader's own steps, with ExerciseStubs instead of ClearSolutions, and nbval's `# NBVAL_CHECK_OUTPUT` markers
# (for the instructor versions' tests only) removed right after it, before the checksums are taken.
_steps = []
for _step in GenerateAssignment.class_traits()["preprocessors"].default():
    _steps.append(ExerciseStubs if _step is ClearSolutions else _step)
    if _step is ClearSolutions:
        _steps.append(RemoveNbvalMarkers)
c.GenerateAssignment.preprocessors = _steps

# Autograding runs every cell. Most take a second; assignment 4's sweep takes minutes in full mode (nbgrader's
# default limit is 30 s per cell). The graded self-checks use fixed inputs, so `DPSD_FAST=1` in the environment
# of `nbgrader autograde` grades the same and runs each notebook in well under a minute.
c.Execute.timeout = 1800
