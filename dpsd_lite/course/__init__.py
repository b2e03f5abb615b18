"""The course tooling: the assignments' self-checks and the builder of the assignment notebooks.

* :mod:`dpsd_lite.course.checks`: the self-checks learners run on their own code (``from dpsd_lite.course
  import checks``), which compare with the expected values stored in ``check_values.json`` beside them and
  hold no solution.
* :mod:`dpsd_lite.course.assignments`: builds the nbgrader course directory and the student versions from
  ``notebooks/assignments/source/`` (``python -m dpsd_lite.course.assignments build``); it needs nbgrader, an
  instructor's tool, so nothing here imports it.

Nothing in the method (data → teacher → transcription → report) imports this subpackage.
"""
