"""One exception hierarchy for the pipeline.

``PermanentError`` subclasses describe input that will never succeed (retrying is
pointless); anything else raised by a step is treated as transient and retried.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """A setting is missing or malformed. Fix the app settings and restart."""


class PermanentError(PipelineError):
    """Input that no retry can fix; the batch ends in QUARANTINED or FAILED."""


class QuarantinedFile(PermanentError):
    """A source file cannot be read at all; it is moved to the quarantine container."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ContractViolation(PermanentError):
    """Rows or a table do not satisfy the dataset contract in a way quarantine cannot absorb."""


class StateConflict(PipelineError):
    """Another writer changed the batch entity since we read it (ETag mismatch)."""


class TransientError(PipelineError):
    """A dependency failed in a way worth retrying (throttling, timeouts, commit conflicts)."""
