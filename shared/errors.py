"""Every exception the pipeline raises on purpose, in one hierarchy.

Three branches tell a caller what to do:

- ``PermanentError``: no retry can fix it. A step records the batch as QUARANTINED or
  FAILED with the message, and the orchestrator stops.
- ``TransientError``: worth retrying (throttling, an outage, a lost commit race). The
  Durable runtime retries the activity with backoff; the CLI reports it.
- ``ApiError``: an operator request that cannot be served, with the HTTP status to answer.

``PipelineError`` itself is never raised: it is what a caller catches to mean "any of these".
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose. Never raised itself."""


# -- permanent: no retry helps ---------------------------------------------------------------
class PermanentError(PipelineError):
    """Input or configuration that no retry can fix; the batch ends QUARANTINED or FAILED."""


class ConfigError(PermanentError):
    """A setting is missing or malformed. The message names the setting to fix."""


class QuarantinedFile(PermanentError):
    """A source file cannot be read at all; it is moved to the quarantine container."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class CorruptBlock(PipelineError):
    """Avro block ``block`` (counting from 1) cannot be read; ``cause`` says why.

    Raised inside the Capture decoder and turned into ``QuarantinedFile`` with the block's
    position in the file by its caller; it never leaves the decoder.
    """

    def __init__(self, block: int, cause: Exception) -> None:
        super().__init__(f"block {block}: {cause}")
        self.block = block
        self.cause = cause


class BatchNotRegistered(PermanentError):
    """A step was asked to run a batch that batch state does not know."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id} is not registered; register it first (intake or ingest)")
        self.batch_id = batch_id


class NotABlobUri(PermanentError):
    """A location that should name a blob does not."""


class UnknownEventType(PermanentError):
    """An event type this app does not handle; the Event Grid subscription filter needs fixing."""


class SourceGone(PermanentError):
    """The file a batch names no longer exists (deleted, or already moved to quarantine)."""

    def __init__(self, source: str) -> None:
        super().__init__(f"{source} no longer exists")
        self.source = source


class DatabricksNotConfigured(ConfigError):
    """A large file needs the Databricks route, and no workspace is configured."""

    def __init__(self) -> None:
        super().__init__(
            "no Databricks workspace is configured: set DATABRICKS_HOST "
            "(https://adb-<id>.<n>.azuredatabricks.net) and DATABRICKS_CLIENT_ID (the Function's "
            "managed identity, added to the workspace) or, locally, DATABRICKS_TOKEN; deploy "
            "databricks_jobs/ (databricks bundle deploy) to DATABRICKS_JOB_ROOT; and give one of "
            "DATABRICKS_CLUSTER_POLICY_ID, DATABRICKS_INSTANCE_POOL_ID or DATABRICKS_SERVERLESS=true"
        )


class DatabricksRejected(PermanentError):
    """The Jobs API refused a request in a way no retry changes; ``setting`` is what to fix."""

    def __init__(self, what: str, status: str, message: str, setting: str) -> None:
        super().__init__(f"Databricks refused {what} ({status}: {message}); check {setting}")
        self.status = status
        self.setting = setting


class DatabricksRunFailed(PermanentError):
    """A Databricks run ended without success; the message is Databricks' own."""

    def __init__(self, run_id: int, state: str, message: str, url: str | None = None) -> None:
        super().__init__(f"Databricks run {run_id} ended {state}: {message}" + (f" ({url})" if url else ""))
        self.run_id = run_id
        self.state = state


# -- transient: retry with backoff -----------------------------------------------------------
class TransientError(PipelineError):
    """A dependency failed in a way worth retrying (throttling, timeouts, commit conflicts)."""


class StateConflict(TransientError):
    """Another writer changed the batch entity since it was read (ETag mismatch)."""


class StateUnrecorded(TransientError):
    """A batch's outcome could not be written to batch state (the store kept failing)."""


class CommitConflict(TransientError):
    """A Delta commit lost a race with a concurrent writer; re-read and try again."""


class StoreUnavailable(TransientError):
    """A store did not answer within the retry budget."""

    def __init__(self, uri: str, cause: BaseException) -> None:
        super().__init__(f"{uri} is unreachable: {type(cause).__name__}: {cause}")
        self.uri = uri


class StoreAccessDenied(TransientError):
    """A store refused the app's credential (401/403: an expired token, an identity without
    a data role on the account), or the identity got no token at all (``signed_in`` False).
    Retried, since a fresh token or a role assignment still propagating fixes it; a retry
    that keeps failing ends the batch FAILED with this message. It never carries a token."""

    def __init__(self, uri: str, reason: str, *, signed_in: bool = True) -> None:
        super().__init__(
            f"{uri} refused the app's credential ({reason}); check that the identity has a data role "
            "on the account (Storage Blob Data Contributor, Storage Table Data Contributor)"
            if signed_in
            else f"{uri}: the app's identity got no token ({reason}); check the account's "
            "__credential and __clientId settings and that the identity is assigned to the app"
        )
        self.uri = uri
        self.reason = reason


class DatabricksUnavailable(TransientError):
    """The Jobs API kept answering with throttling, a server error or no connection."""


# -- operator requests -----------------------------------------------------------------------
class ApiError(PipelineError):
    """An operator request that cannot be served; ``status`` is the HTTP answer."""

    status = 400


class BadRequest(ApiError):
    """A missing or malformed parameter."""

    status = 400


class BatchNotFound(ApiError):
    """No batch has this id."""

    status = 404


class ReplayRefused(ApiError):
    """The batch cannot be replayed now (still running, or its file is in quarantine)."""

    status = 409


# -- tools and maintenance -------------------------------------------------------------------
class EventDeliveryError(PipelineError):
    """The local event poster could not deliver events to the Functions host."""


class EventTooLarge(PermanentError):
    """An event does not fit in an empty Event Hubs batch; ``python -m shared produce`` stops."""


class EventHubRefused(PermanentError):
    """Event Hubs refused the producer (sign-in, role, hub name, size); no retry can help."""


class EventHubUnavailable(TransientError):
    """Event Hubs kept failing in a way worth retrying until the producer's retries ran out."""


class MaintenanceFailed(PipelineError):
    """At least one table could not be compacted or vacuumed; the summary says which and why."""
