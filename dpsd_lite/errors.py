"""User-facing errors.

Every problem a user can fix (bad ε, unknown dataset, missing offline files, a
corrupt run directory, ...) raises :class:`DpsdError` (or a subclass) with one
sentence that says what is wrong and what to do. The CLI prints that sentence
and exits non-zero instead of showing a traceback.
"""


class DpsdError(ValueError):
    """A problem with the user's input or files, explained in one line."""


class DataUnavailableError(DpsdError, FileNotFoundError):
    """A dataset's files are missing and cannot be downloaded."""


class RunDirectoryError(DpsdError):
    """A run directory is missing, corrupt, mismatched or already exists."""
