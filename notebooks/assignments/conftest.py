"""nbval runs of the assignment notebooks: fast mode, one thread, and any failing self-check fails the cell.

``python -m pytest --nbval-lax notebooks/assignments/instructor/source`` (after
``python -m dpsd_lite.course.assignments build``: the instructor versions are the
nbgrader course directory's source notebooks, built locally, never committed)
picks this up; the kernels nbval starts inherit these variables. The test suite
builds them into a temporary folder instead and passes the same variables
itself. The student versions and nbgrader's release stop at their first
exercise by design (tests/test_assignments.py checks that), and submissions are
nbgrader's to run, so nbval never collects them, even when pointed at the whole
folder.
"""

import os

collect_ignore = ["student", "source"] + [f"instructor/{step}" for step in
                                          ("release", "submitted", "autograded", "feedback")]


def pytest_configure(config):
    os.environ["DPSD_FAST"] = "1"
    os.environ["DPSD_STRICT_CHECKS"] = "1"
    # small runs are fastest on one intra-op thread (a busy 2-core machine makes torch's pool crawl)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
