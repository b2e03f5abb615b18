"""dpsd_lite: differentially private synthetic distillation, small enough to read.

One path from data to report::

    data (data.py) → teacher (teacher.py) → transcription loop (transcribe.py:
    generator ↔ mechanism (mechanisms.py) ↔ student) → evaluation → privacy
    report (report.py, ε computed in accounting.py) → run directory (runs.py)
"""

__version__ = "0.3.0"

from .runs import LoadedRun, load_run, save_run  # noqa: E402,F401  (after __version__: runs imports it)
