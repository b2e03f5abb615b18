"""dpsd_lite: differentially private synthetic distillation, small enough to read.

One path from data to report::

    data (data.py) → teacher (teacher.py) → transcription loop (transcribe.py:
    generator ↔ mechanism (mechanisms.py) ↔ student) → evaluation → privacy
    report (report.py, ε computed in accounting.py) → run directory (runs.py)
"""

__version__ = "0.4.0"

__all__ = ["LoadedRun", "load_run", "save_run", "__version__"]


def __getattr__(name):
    """``dpsd_lite.load_run`` and friends, imported on first use: ``import dpsd_lite`` stays light (no torch),
    so the command line answers ``--help`` and argument errors at once."""
    if name in ("LoadedRun", "load_run", "save_run"):
        from . import runs  # here, not at the top: `import dpsd_lite` must not import torch

        return getattr(runs, name)
    raise AttributeError(f"module 'dpsd_lite' has no attribute {name!r}")
