"""The Databricks adapter against the Jobs API stand-in, through the real databricks-sdk.

The stand-in runs each submitted ``python_file`` in a subprocess; these tests give it
small scripts (exit 0, exit 1, sleep) so that every end state shows in seconds, and one
test runs the real Spark job the whole way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.databricks import (
    AZURE_DATABRICKS_SCOPE,
    DatabricksJobs,
    JobRun,
    LifeCycle,
    Result,
    RunStatus,
    idempotency_token,
)
from shared.dev.jobs_api import JobsApi
from shared.errors import DatabricksNotConfigured, DatabricksRejected, DatabricksUnavailable
from shared.settings import Databricks, Settings

TOKEN = "dapi-local-test"
SCRIPTS = {
    "ok": "import sys, time; time.sleep(0.5); print(sys.argv[1:]); sys.exit(0)",
    "fail": 'import json, sys; print(json.dumps({"error": "QuarantinedFile: avro: bad header"})); exit(1)',
    "slow": "import time; time.sleep(60)",
}
RUN = JobRun(
    batch_id="0f3c9a2b7d4e4c1a9b8e7f6a5d4c3b2a",
    dataset="user_activity",
    source="az://capture/ns/hub/0/2026/11/21/12/00/00.avro",
    format="avro",
    batch_time="2026-11-21T12:05:00.000Z",
    tables={"bronze": "abfss://lake@acct.dfs.core.windows.net/bronze/user_activity"},
)


def settings(url: str, *, job_root: str = "/Workspace/Shared/tributary", **extra: str) -> Databricks:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "DATABRICKS_HOST": url,
           "DATABRICKS_TOKEN": TOKEN, "DATABRICKS_JOB_ROOT": job_root, **extra}  # fmt: skip
    return Settings.from_env(env).databricks


@pytest.fixture
def api(tmp_path: Path) -> Iterator[JobsApi]:
    """A stand-in whose job root holds the scripts, one folder per script."""
    for name, text in SCRIPTS.items():
        (tmp_path / name / "databricks_jobs").mkdir(parents=True)
        (tmp_path / name / "databricks_jobs" / "main.py").write_text(text)
    server = JobsApi(files=tmp_path, token=TOKEN, start_seconds=0.4, logs=tmp_path / "logs").start()
    yield server
    server.stop()


def jobs_for(api: JobsApi, script: str = "ok", **extra: str) -> DatabricksJobs:
    return DatabricksJobs(
        settings(api.url, job_root=f"/Workspace/Shared/tributary/{script}", **extra), retry_wait=0.05
    )


def watch(jobs: DatabricksJobs, run_id: int, timeout: float = 60) -> list[RunStatus]:
    """Every distinct state the run shows until it ends."""
    seen: list[RunStatus] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.status(run_id)
        if not seen or (seen[-1].life_cycle, seen[-1].result) != (status.life_cycle, status.result):
            seen.append(status)
        if status.ended:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end: {seen}")


def submits(api: JobsApi) -> list[dict[str, object]]:
    return [r for r in api.requests if r["path"] == "/api/2.2/jobs/runs/submit"]


def test_the_submit_body_names_the_token_the_task_and_the_jobs_flags(api: JobsApi) -> None:
    jobs = jobs_for(api, DATABRICKS_CLUSTER_POLICY_ID="policy-1", DATABRICKS_WORKERS="3")
    jobs.submit(RUN)
    body = submits(api)[0]["body"]
    assert isinstance(body, dict)
    assert (
        body["idempotency_token"]
        == idempotency_token(RUN.batch_id, "bronze")
        == f"tributary:{RUN.batch_id}:bronze:0"
    )
    (task,) = body["tasks"]
    assert task["task_key"] == "batch"
    assert task["spark_python_task"] == {
        "python_file": "/Workspace/Shared/tributary/ok/databricks_jobs/main.py",
        "parameters": RUN.parameters(),
        "source": "WORKSPACE",
    }
    params = task["spark_python_task"]["parameters"]
    assert params[params.index("--batch-id") + 1] == RUN.batch_id
    assert params[params.index("--layers") + 1] == "bronze,silver,gold"
    assert "--table" in params and "--local" not in params
    assert task["new_cluster"]["policy_id"] == "policy-1" and task["new_cluster"]["num_workers"] == 3
    assert task["libraries"] == [
        {"requirements": "/Workspace/Shared/tributary/ok/databricks_jobs/requirements.txt"}
    ]
    assert body["timeout_seconds"] == task["timeout_seconds"] == 120 * 60


def test_the_wire_format_is_the_one_the_sdk_recorded(api: JobsApi, real_world: Path) -> None:
    captured = json.loads((real_world / "databricks" / "sdk_0.156.0_submit_wire_capture.json").read_text())
    jobs = jobs_for(api)
    jobs.status(jobs.submit(RUN))
    recorded = [(r["method"], r["path"].split("?")[0]) for r in captured["requests"]]
    ours = [(r["method"], r["path"]) for r in api.requests]
    assert ours[:3] == recorded[:3]  # the host-metadata probe, the submit, a runs/get
    body = submits(api)[0]["body"]
    assert isinstance(body, dict)
    assert set(captured["requests"][1]["body"]) <= set(body)
    assert set(captured["requests"][1]["body"]["tasks"][0]) <= set(body["tasks"][0])


def test_a_run_goes_pending_running_then_terminated_success(api: JobsApi) -> None:
    jobs = jobs_for(api)
    seen = watch(jobs, jobs.submit(RUN))
    assert [(s.life_cycle, s.result) for s in seen] == [
        (LifeCycle.PENDING, None),
        (LifeCycle.RUNNING, None),
        (LifeCycle.TERMINATED, Result.SUCCESS),
    ]
    assert seen[-1].succeeded and seen[-1].url and str(seen[-1].run_id) in seen[-1].url


def test_a_job_that_exits_non_zero_ends_failed_with_its_error(api: JobsApi) -> None:
    jobs = jobs_for(api, "fail")
    final = watch(jobs, jobs.submit(RUN))[-1]
    assert (final.life_cycle, final.result) == (LifeCycle.TERMINATED, Result.FAILED)
    assert final.message == "QuarantinedFile: avro: bad header"
    assert not final.succeeded


def test_a_job_that_cannot_start_ends_in_internal_error(api: JobsApi) -> None:
    jobs = jobs_for(api, "not-deployed")
    final = watch(jobs, jobs.submit(RUN))[-1]
    assert final.life_cycle is LifeCycle.INTERNAL_ERROR and final.ended and not final.succeeded
    assert "not-deployed/databricks_jobs/main.py does not exist" in final.message


def test_a_cancelled_run_ends_canceled(api: JobsApi) -> None:
    jobs = jobs_for(api, "slow")
    run_id = jobs.submit(RUN)
    while jobs.status(run_id).life_cycle is not LifeCycle.RUNNING:
        time.sleep(0.05)
    jobs.cancel(run_id)
    final = watch(jobs, run_id)[-1]
    assert (final.life_cycle, final.result) == (LifeCycle.TERMINATED, Result.CANCELED)


def test_a_run_past_its_timeout_ends_timedout(api: JobsApi) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service import jobs as sdk_jobs

    # The adapter's timeout is DATABRICKS_TIMEOUT_MINUTES (a minute at least): one second here.
    client = WorkspaceClient(host=api.url, token=TOKEN, auth_type="pat")
    task = sdk_jobs.SubmitTask(
        task_key="batch",
        spark_python_task=sdk_jobs.SparkPythonTask(
            python_file="/Workspace/Shared/tributary/slow/databricks_jobs/main.py"
        ),
        timeout_seconds=1,
    )
    run_id = client.jobs.submit(tasks=[task]).run_id
    final = watch(jobs_for(api), run_id)[-1]
    assert (final.life_cycle, final.result) == (LifeCycle.TERMINATED, Result.TIMEDOUT)


def test_throttling_once_is_ridden_out(api: JobsApi) -> None:
    api.answer_next(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests", retry_after=1)
    run_id = jobs_for(api).submit(RUN)
    assert len(submits(api)) == 2  # the throttled request, then the one served
    assert watch(jobs_for(api), run_id)[-1].succeeded


def test_server_errors_are_retried_then_reported_as_transient(api: JobsApi) -> None:
    api.answer_next(500, "INTERNAL_ERROR", "backend hiccup", times=2)
    assert jobs_for(api).submit(RUN) > 0
    api.answer_next(502, "BAD_GATEWAY", "bad gateway", times=10)
    with pytest.raises(DatabricksUnavailable, match="after 4 attempts"):
        jobs_for(api).status(1)


def test_a_retried_submit_reuses_its_token_and_returns_the_same_run(api: JobsApi) -> None:
    jobs = jobs_for(api)
    first = jobs.submit(RUN)
    assert jobs.submit(RUN) == first
    assert jobs_for(api).submit(RUN) == first  # another instance, the same token
    from dataclasses import replace

    assert jobs.submit(replace(RUN, attempt=1)) != first  # a replay is a new run
    assert jobs.submit(replace(RUN, layers=("silver", "gold"))) != first


def test_the_token_fits_the_apis_64_characters() -> None:
    assert len(idempotency_token("x" * 200, "bronze", 12)) <= 64
    assert idempotency_token("x" * 200, "bronze") != idempotency_token("x" * 200, "silver")


def test_a_refusal_names_the_setting_to_fix(api: JobsApi) -> None:
    api.answer_next(403, "PERMISSION_DENIED", "User is not allowed to submit runs")
    with pytest.raises(DatabricksRejected, match="DATABRICKS_TOKEN"):
        jobs_for(api).submit(RUN)
    api.answer_next(400, "INVALID_PARAMETER_VALUE", "Cluster policy policy-9 does not exist")
    with pytest.raises(DatabricksRejected, match="DATABRICKS_CLUSTER_POLICY_ID"):
        jobs_for(api).submit(RUN)
    assert len(submits(api)) == 2  # neither was retried


def test_without_a_workspace_the_error_says_what_to_set() -> None:
    empty = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).databricks
    with pytest.raises(DatabricksNotConfigured, match="DATABRICKS_HOST") as caught:
        DatabricksJobs(empty)
    assert "DATABRICKS_CLIENT_ID" in str(caught.value) and "DATABRICKS_JOB_ROOT" in str(caught.value)


class _Identity:
    """An Entra identity as azure-identity's credentials present one (Entra itself cannot be
    reached here); it records the scopes it was asked for."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("entra-token-for-databricks", int(time.time()) + 3600)


def test_without_a_token_the_function_signs_in_with_an_entra_token_for_databricks(tmp_path: Path) -> None:
    (tmp_path / "databricks_jobs").mkdir()
    (tmp_path / "databricks_jobs" / "main.py").write_text(SCRIPTS["ok"])
    server = JobsApi(files=tmp_path, token="entra-token-for-databricks", start_seconds=0).start()
    try:
        env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "DATABRICKS_HOST": server.url,
               "DATABRICKS_CLIENT_ID": "11111111-2222-3333-4444-555555555555"}  # fmt: skip
        identity = _Identity()
        jobs = DatabricksJobs(Settings.from_env(env).databricks, credential=identity)  # type: ignore[arg-type]
        assert jobs.submit(RUN) > 0
        assert identity.scopes and set(identity.scopes) == {AZURE_DATABRICKS_SCOPE}
    finally:
        server.stop()


def test_serverless_runs_name_an_environment_with_the_clusters_requirements(api: JobsApi) -> None:
    jobs_for(api, DATABRICKS_SERVERLESS="true").submit(RUN)
    body = submits(api)[0]["body"]
    assert isinstance(body, dict)
    (task,) = body["tasks"]
    assert task["environment_key"] == "default" and "new_cluster" not in task
    (environment,) = body["environments"]
    assert environment["spec"]["dependencies"] == [
        "-r /Workspace/Shared/tributary/ok/databricks_jobs/requirements.txt"
    ]


@pytest.mark.spark
@pytest.mark.slow
def test_a_large_file_goes_the_whole_way_through_the_stand_in(tmp_path: Path) -> None:
    """The adapter submits the real job; the stand-in runs it with local PySpark into a lake."""
    from deltalake import DeltaTable

    from databricks_jobs import layers
    from databricks_jobs.main import geo_sha256
    from shared.batches import commit_id
    from shared.contracts import USER_ACTIVITY
    from shared.dev import generator

    landed = generator.generate_capture_file(events=300, seed=4, defect_rate=0.05)
    source = tmp_path / "capture" / landed.path
    source.parent.mkdir(parents=True)
    source.write_bytes(landed.data)
    tables = layers.lake_layout(str(tmp_path / "lake"), USER_ACTIVITY)
    run = JobRun("e2e-batch", "user_activity", str(source), "avro", "2026-11-21T12:05:00Z", tables,
                 geo_sha256=geo_sha256())  # fmt: skip
    server = JobsApi(token=TOKEN, start_seconds=0.2, logs=tmp_path / "logs").start()
    try:
        jobs = DatabricksJobs(settings(server.url), retry_wait=0.05)
        run_id = jobs.submit(run)
        final = watch(jobs, run_id, timeout=280)[-1]
        assert final.succeeded, server.run_log(run_id)[-3000:]
    finally:
        server.stop()
    for name in (
        "bronze",
        "quarantine",
        "silver",
        *(f"gold.{t}" for t in ("user_watch_time", "region_daily_watch_time")),
    ):
        assert DeltaTable(tables[name]).transaction_version(commit_id(name, "e2e-batch")) == 1, name
