"""The Databricks Jobs API, through databricks-sdk, behind the project's own types.

A large file's bronze, silver and gold run as one one-time run (``jobs.submit``) of the
job in ``databricks_jobs/``. Nothing here waits for a run: ``submit`` returns the run id,
``status`` reads the run's state once, ``cancel`` asks for a stop. The orchestrator polls
with durable timers between ``status`` calls (``DATABRICKS_POLL_SECONDS``).

* A submit carries an idempotency token derived from the batch, the first layer and an
  attempt number, so a retried submit (a lost response, a replayed activity) returns the
  run the first one started instead of starting another.
* Throttling (429), server errors (5xx) and dropped connections are retried with backoff
  here (the SDK itself waits out 429/503 for a bounded time); a refusal no retry changes
  raises ``DatabricksRejected`` naming the setting to fix.
* In Azure the Function signs in with its managed identity: an Entra token for the Azure
  Databricks resource, from azure-identity (which speaks the App Service identity
  endpoint Flex Consumption gives). Locally, ``DATABRICKS_TOKEN``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from shared.batches import LifeCycle, Result, RunStatus
from shared.errors import DatabricksNotConfigured, DatabricksRejected, DatabricksUnavailable
from shared.settings import Databricks

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.credentials_provider import CredentialsStrategy

T = TypeVar("T")

#: The Azure Databricks first-party application: what an Entra token for a workspace is for.
AZURE_DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"
TASK_KEY = "batch"
ENTRY_POINT = "databricks_jobs/main.py"
CLUSTER_REQUIREMENTS = "databricks_jobs/requirements.txt"
#: Attempts at one API call that meets throttling, a server error or a dropped connection.
ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class JobRun:
    """What one run does: the layers of one batch, from the file to the tables.

    Attributes:
        tables: URI of each table by short name (``bronze``, ``silver``, ``gold.<name>``...).
        layers: The layers to run, in order; a replay from silver names silver and gold.
        attempt: Raised by a deliberate re-run (a replay); retries of one attempt share it.
    """

    batch_id: str
    dataset: str
    source: str
    format: str
    batch_time: str
    tables: Mapping[str, str]
    layers: Sequence[str] = ("bronze", "silver", "gold")
    attempt: int = 0
    geo_sha256: str | None = None
    extra_parameters: Sequence[str] = field(default_factory=tuple)

    def parameters(self) -> list[str]:
        """The job's flags (``databricks_jobs.main``)."""
        flags = [
            "--dataset", self.dataset,
            "--batch-id", self.batch_id,
            "--source", self.source,
            "--format", self.format,
            "--batch-time", self.batch_time,
            "--layers", ",".join(self.layers),
        ]  # fmt: skip
        for name, uri in sorted(self.tables.items()):
            flags += ["--table", f"{name}={uri}"]
        if self.geo_sha256:
            flags += ["--geo-sha256", self.geo_sha256]
        return [*flags, *self.extra_parameters]


def idempotency_token(batch_id: str, layer: str, attempt: int = 0) -> str:
    """The submit token of a batch's run from ``layer``: the same run for every retry.

    At most 64 characters (the Jobs API's limit): the readable form when it fits, else a
    digest of it.
    """
    token = f"tributary:{batch_id}:{layer}:{attempt}"
    return token if len(token) <= 64 else "tributary:" + hashlib.sha256(token.encode()).hexdigest()[:54]


class DatabricksJobs:
    """Submit, read and cancel the large-file runs of one workspace."""

    def __init__(
        self,
        settings: Databricks,
        *,
        credential: TokenCredential | None = None,
        retry_wait: float = 1.0,
    ) -> None:
        """
        Args:
            settings: The workspace (``Settings.databricks``).
            credential: The Entra identity to sign in with when no token is set (default:
                the managed identity ``DATABRICKS_CLIENT_ID`` names).
            retry_wait: First wait between attempts at a call, in seconds; doubles.

        Raises:
            DatabricksNotConfigured: ``DATABRICKS_HOST`` is empty.
        """
        if not settings.configured:
            raise DatabricksNotConfigured()
        self.settings = settings
        self._credential = credential
        self._retry_wait = retry_wait
        self._client: WorkspaceClient | None = None

    # -- the three calls -------------------------------------------------------------------
    def submit(self, run: JobRun) -> int:
        """Start the run (or find the one an earlier submit of it started); its run id."""
        from databricks.sdk.service import jobs

        first = run.layers[0] if run.layers else "bronze"
        task = jobs.SubmitTask(
            task_key=TASK_KEY,
            spark_python_task=jobs.SparkPythonTask(
                python_file=f"{self.settings.job_root}/{ENTRY_POINT}",
                parameters=run.parameters(),
                source=jobs.Source.WORKSPACE,
            ),
            timeout_seconds=self.settings.timeout_minutes * 60,
            **self._compute(),
        )
        environments = self._environments()
        waiter = self._call(
            "runs/submit",
            lambda client: client.jobs.submit(
                run_name=f"tributary {run.dataset} {run.batch_id}",
                idempotency_token=idempotency_token(run.batch_id, first, run.attempt),
                tasks=[task],
                environments=environments,
                timeout_seconds=self.settings.timeout_minutes * 60,
            ),
        )
        return int(waiter.run_id)

    def status(self, run_id: int) -> RunStatus:
        """The run's state now (one ``runs/get``)."""
        run = self._call(f"runs/get of run {run_id}", lambda client: client.jobs.get_run(run_id))
        state = run.state
        life = state.life_cycle_state.value if state and state.life_cycle_state else "PENDING"
        result = state.result_state.value if state and state.result_state else None
        status = RunStatus(
            run_id=run_id,
            life_cycle=LifeCycle(life),
            result=Result(result) if result else None,
            message=(state.state_message if state else "") or "",
            url=run.run_page_url or "",
        )
        return replace(status, seconds=run_seconds(run)) if status.ended else status

    def cancel(self, run_id: int) -> None:
        """Ask Databricks to stop the run (it stops asynchronously)."""
        self._call(f"runs/cancel of run {run_id}", lambda client: client.jobs.cancel_run(run_id))

    # -- compute -----------------------------------------------------------------------------
    def _compute(self) -> dict[str, Any]:
        """The task's compute: serverless (an environment), or a job cluster from a policy or pool."""
        from databricks.sdk.service import compute

        s = self.settings
        if s.serverless:
            return {"environment_key": "default"}
        libraries = [compute.Library(requirements=f"{s.job_root}/{CLUSTER_REQUIREMENTS}")]
        cluster = compute.ClusterSpec(
            spark_version=s.spark_version,
            num_workers=s.workers,
            # The pipeline's compiled loops cache where a worker can write.
            spark_env_vars={"NUMBA_CACHE_DIR": "/tmp/tributary-numba"},
        )
        if s.instance_pool_id:
            cluster.instance_pool_id = s.instance_pool_id
            cluster.driver_instance_pool_id = s.instance_pool_id
        else:
            cluster.node_type_id = s.node_type
        if s.cluster_policy_id:
            cluster.policy_id = s.cluster_policy_id
            cluster.apply_policy_default_values = True
        return {"new_cluster": cluster, "libraries": libraries}

    def _environments(self) -> list[Any] | None:
        from databricks.sdk.service import compute, jobs

        if not self.settings.serverless:
            return None
        spec = compute.Environment(
            environment_version="2", dependencies=[f"-r {self.settings.job_root}/{CLUSTER_REQUIREMENTS}"]
        )
        return [jobs.JobEnvironment(environment_key="default", spec=spec)]

    # -- calls, retries and errors ------------------------------------------------------------
    def _call(self, what: str, call: Callable[[WorkspaceClient], T]) -> T:
        @retry(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_exponential(multiplier=self._retry_wait, max=30),
            reraise=True,
        )
        def attempt() -> T:
            return call(self.client)

        try:
            return attempt()
        except Exception as exc:
            raise _translated(what, exc, self.settings) from exc

    @property
    def client(self) -> WorkspaceClient:
        if self._client is None:
            self._client = self._build_client()
        return self._client

    def _build_client(self) -> WorkspaceClient:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        s = self.settings
        # The SDK's own waits on 429/503 stay short: the retries above and the
        # orchestrator's handle longer outages.
        common: dict[str, Any] = {"host": s.host, "retry_timeout_seconds": 30, "http_timeout_seconds": 60}
        if s.token:
            return WorkspaceClient(config=Config(token=s.token, auth_type="pat", **common))
        strategy = _entra_strategy(self._credential or _managed_identity(s.client_id))
        return WorkspaceClient(
            config=Config(credentials_strategy=strategy, auth_type=strategy.auth_type(), **common)
        )


def run_seconds(run: Any) -> float | None:
    """How long an ended run took, from the Jobs API's ``Run``.

    A one-time run with tasks is a multitask run: the API sets its ``setup_duration``,
    ``execution_duration`` and ``cleanup_duration`` to 0 and reports the whole run as
    ``run_duration``. Without that, the run's start (when the cluster was asked for) to
    its end; else the sum of the three durations; None when the API gives none.

    Args:
        run: A ``databricks.sdk.service.jobs.Run``.
    """
    if run.run_duration:
        return run.run_duration / 1000
    if run.start_time and run.end_time and run.end_time >= run.start_time:
        return (run.end_time - run.start_time) / 1000
    parts = (run.setup_duration or 0) + (run.execution_duration or 0) + (run.cleanup_duration or 0)
    return parts / 1000 if parts else None


def _managed_identity(client_id: str | None) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()


def _entra_strategy(credential: TokenCredential) -> CredentialsStrategy:
    """databricks-sdk credentials from an azure-identity credential: a bearer token for the
    Azure Databricks resource, fetched per request (azure-identity caches and refreshes it).

    Defined on first use: importing databricks-sdk costs a process about a second, which a
    batch that never leaves the Function must not pay.
    """
    from databricks.sdk.credentials_provider import CredentialsStrategy

    class EntraStrategy(CredentialsStrategy):
        def auth_type(self) -> str:
            return "azure-identity"

        def __call__(self, cfg: Any) -> Callable[[], dict[str, str]]:
            def headers() -> dict[str, str]:
                return {"Authorization": f"Bearer {credential.get_token(AZURE_DATABRICKS_SCOPE).token}"}

            return headers

    return EntraStrategy()


def _transient(exc: BaseException) -> bool:
    """Throttling, a server error, a dropped or timed-out connection: worth another try."""
    import requests
    from databricks.sdk import errors

    if isinstance(exc, requests.ConnectionError | requests.Timeout | TimeoutError):
        return True
    if isinstance(
        exc,
        errors.TooManyRequests
        | errors.InternalError
        | errors.TemporarilyUnavailable
        | errors.DeadlineExceeded,
    ):
        return True
    # A status the SDK maps to no class (502 among them) arrives as the base class.
    return type(exc) is errors.DatabricksError


def _translated(what: str, exc: Exception, settings: Databricks) -> Exception:
    """The project's error for a call that failed for good."""
    from databricks.sdk import errors

    if _transient(exc):
        return DatabricksUnavailable(f"Databricks {what}: still failing after {ATTEMPTS} attempts: {exc}")
    if not isinstance(exc, errors.DatabricksError):
        return exc
    status = getattr(exc, "error_code", None) or type(exc).__name__
    return DatabricksRejected(what, status, str(exc), _setting_for(exc, settings))


def _setting_for(exc: Exception, settings: Databricks) -> str:
    """The setting most likely behind a refusal, from its kind and its message."""
    from databricks.sdk import errors

    text = str(exc).lower()
    if isinstance(exc, errors.Unauthenticated | errors.PermissionDenied):
        if settings.token:
            return "DATABRICKS_TOKEN (a valid personal access token for DATABRICKS_HOST)"
        return "DATABRICKS_CLIENT_ID (the managed identity must be a workspace user with job permissions)"
    hints = (
        ("policy", "DATABRICKS_CLUSTER_POLICY_ID"),
        ("instance pool", "DATABRICKS_INSTANCE_POOL_ID"),
        ("pool", "DATABRICKS_INSTANCE_POOL_ID"),
        ("spark_version", "DATABRICKS_SPARK_VERSION"),
        ("spark version", "DATABRICKS_SPARK_VERSION"),
        ("node type", "DATABRICKS_NODE_TYPE"),
        ("node_type", "DATABRICKS_NODE_TYPE"),
        ("serverless", "DATABRICKS_SERVERLESS"),
        ("python_file", "DATABRICKS_JOB_ROOT (deploy the bundle there)"),
        ("does not exist", "DATABRICKS_JOB_ROOT (deploy the bundle there)"),
        ("workers", "DATABRICKS_WORKERS"),
    )
    for word, setting in hints:
        if word in text:
            return setting
    return "DATABRICKS_HOST and the job settings (DATABRICKS_*)"
