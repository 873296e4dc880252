"""The root of the errors ``ser_core`` raises on purpose, :class:`SerError`, and the errors several modules share.

Every module's own error derives from :class:`SerError` (and from the built-in exception callers already caught
it as: a :class:`BundleError` is a ``ValueError``, a :class:`~ser_core.reports.store.LeaseHeld` a ``RuntimeError``),
so ``except SerError`` catches them all, as librosa's ``LibrosaError`` does. Nothing here knows click: only
``jobs/`` turns these errors into the command line's.
"""

from __future__ import annotations


class SerError(Exception):
    """The base of every error ``ser_core`` and the jobs raise on purpose."""


class Refused(SerError):
    """Work that cannot go ahead as asked (inputs that disagree, a store another run is writing, nothing to work
    on); the message says why and what to do, and the command line shows it as it stands."""


class BundleError(SerError, ValueError):
    """A model bundle that is missing, malformed, torn, unsafe, or incompatible with this extractor."""
