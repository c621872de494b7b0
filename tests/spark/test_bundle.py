"""The bundle deploys what the adapter submits, and the cluster installs the Function's pins."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.adapters import databricks
from shared.settings import Settings

JOBS = Path(__file__).resolve().parents[2] / "databricks_jobs"


def pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==") for line in lines if "==" in line)


def test_the_cluster_installs_the_versions_the_function_runs() -> None:
    cluster, function = pins(JOBS / "requirements.txt"), pins(JOBS.parent / "requirements.txt")
    assert cluster and all(function.get(name) == version for name, version in cluster.items())


def test_the_bundle_job_is_the_task_the_adapter_submits() -> None:
    bundle = yaml.safe_load((JOBS / "databricks.yml").read_text())
    (task,) = bundle["resources"]["jobs"]["tributary_large_file"]["tasks"]
    assert task["task_key"] == databricks.TASK_KEY
    assert task["spark_python_task"]["python_file"] == "${workspace.file_path}/" + databricks.ENTRY_POINT
    assert task["libraries"] == [
        {"requirements": "${workspace.file_path}/" + databricks.CLUSTER_REQUIREMENTS}
    ]
    assert (JOBS.parent / databricks.ENTRY_POINT).is_file() and (
        JOBS.parent / databricks.CLUSTER_REQUIREMENTS
    ).is_file()
    defaults = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).databricks
    variables = {name: spec["default"] for name, spec in bundle["variables"].items()}
    assert variables == {
        "spark_version": defaults.spark_version,
        "node_type": defaults.node_type,
        "workers": defaults.workers,
    }
    assert bundle["targets"]["prod"]["workspace"]["file_path"] == defaults.job_root
    assert set(bundle["targets"]) == {"dev", "prod"}


def test_the_bundle_syncs_the_contract_and_the_pipeline_the_job_imports() -> None:
    bundle = yaml.safe_load((JOBS / "databricks.yml").read_text())
    assert "../shared" in bundle["sync"]["paths"] and "." in bundle["sync"]["paths"]
    assert not any(e in ("shared/contracts", "shared/pipeline") for e in bundle["sync"]["exclude"])
