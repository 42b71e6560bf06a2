"""The error type of data preparation.

A :class:`PrepError` is a problem with the user's inputs, settings or environment (a missing file,
a malformed dump, an unreachable package index). Its message names the file or value and what was
expected; ``megagrow-prep`` prints it without a traceback and exits with status 2 (as it does for
an ``OSError``: a permission, a full disk). Any other exception is a bug.
"""

from __future__ import annotations

__all__ = ["PrepError"]


class PrepError(Exception):
    """A user-facing data preparation error (bad input, setting or environment)."""
