"""Errors cvtune raises on purpose: each names what is wrong and how to fix it."""

from __future__ import annotations


class CvtuneError(Exception):
    """Base class of every error cvtune raises deliberately."""


class ConfigError(CvtuneError, ValueError):
    """Bad user input, caught before any job is launched.

    ``field`` is the dotted path of the offending setting (``parameter_ranges.eta.MinValue``),
    so the message can be read without knowing where it came from.
    """

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f" — {fix}"
        super().__init__(message)


class DataError(ConfigError):
    """The dataset itself cannot be used as asked (missing column, too few rows...)."""


class JobExistsError(CvtuneError):
    """A job with this name already exists; names are never reused."""


class JobNotFoundError(CvtuneError):
    """No job with this name exists on the backend."""


class RunFailedError(CvtuneError):
    """A tuning run ended without a usable result (e.g. too many failed trials)."""


class LeaseHeldError(CvtuneError):
    """Another live process drives this run (holds its ledger's lease); ``holder`` describes it."""

    def __init__(self, message: str, holder: dict | None = None) -> None:
        self.holder = holder or {}
        super().__init__(message)


class LedgerConflictError(CvtuneError):
    """The ledger changed under this driver (another driver wrote it): nothing was overwritten."""
