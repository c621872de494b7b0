"""The alerts, queries and workbook read only the telemetry the code emits.

Every custom dimension they use is in ``shared.telemetry_names.DIMENSIONS`` and every event name
is ``LAYER_EVENT`` or ``BATCH_EVENT``; the workbook shows exactly the query files; the monitoring
module deploys the workbook and every alert query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from shared.telemetry_names import BATCH_EVENT, DIMENSIONS, LAYER_EVENT
from tests.infra.bicep import accessor
from tests.infra.conftest import INFRA

MONITORING = INFRA / "monitoring"
QUERIES = sorted((MONITORING / "queries").glob("*.kql"))
ALERTS = sorted((MONITORING / "alerts").glob("*.kql"))
WORKBOOK = MONITORING / "workbook.json"

# customEvents.customDimensions in Application Insights; AppEvents.Properties in Log Analytics.
_BAG = r"\b(?:customDimensions|Properties)"
_DIMENSION = re.compile(_BAG + r"(?:\.(\w+)|\[\s*['\"]([^'\"]*)['\"]\s*\])")
_EVENT_TABLE = re.compile(r"\b(?:customEvents|AppEvents)\b")
_NAME_EQUALS = re.compile(r"\b[Nn]ame\s*(?:==|=~)\s*\"([^\"]*)\"")
_NAME_IN = re.compile(r"\b[Nn]ame\s+in~?\s*\(([^)]*)\)")


def workbook_queries() -> dict[str, str]:
    items = json.loads(WORKBOOK.read_text())["items"]
    return {item["name"]: item["content"]["query"] for item in items if item["type"] == 3}


def every_query() -> list[Any]:
    files = [pytest.param(path.read_text(), id=str(path.relative_to(INFRA))) for path in QUERIES + ALERTS]
    return files + [pytest.param(query, id=f"workbook:{name}") for name, query in workbook_queries().items()]


def dimensions(query: str) -> set[str]:
    return {a or b for a, b in _DIMENSION.findall(query)}


def event_names(query: str) -> set[str]:
    names = set(_NAME_EQUALS.findall(query))
    for listed in _NAME_IN.findall(query):
        names.update(re.findall(r"\"([^\"]*)\"", listed))
    return names


@pytest.mark.parametrize("query", every_query())
def test_queries_use_only_the_dimensions_the_code_emits(query: str) -> None:
    used = dimensions(query)
    assert used <= set(DIMENSIONS), f"not emitted: {sorted(used - set(DIMENSIONS))}"


@pytest.mark.parametrize("query", every_query())
def test_queries_read_only_the_events_the_code_emits(query: str) -> None:
    names = event_names(query)
    assert names <= {LAYER_EVENT, BATCH_EVENT}, f"not emitted: {sorted(names - {LAYER_EVENT, BATCH_EVENT})}"
    if _EVENT_TABLE.search(query):
        assert names, "a query over custom events must name the events it reads"


def test_the_readers_see_what_they_are_meant_to() -> None:
    # The two readers above must find what is there, or they would pass on anything.
    failures = (MONITORING / "queries" / "failures.kql").read_text()
    assert {"state", "batch_id", "error", "run_page_url"} <= dimensions(failures)
    assert event_names(failures) == {BATCH_EVENT}
    assert event_names((MONITORING / "queries" / "databricks-runs.kql").read_text()) == {
        LAYER_EVENT,
        BATCH_EVENT,
    }
    assert dimensions('Properties["rows_in"] customDimensions.layer') == {"rows_in", "layer"}


def test_the_workbook_shows_each_query_file_as_it_is() -> None:
    shown = workbook_queries()
    assert sorted(shown) == sorted(path.stem for path in QUERIES)
    for path in QUERIES:
        assert shown[path.stem] == path.read_text(), f"workbook.json's {path.stem} differs from {path.name}"


def _loaded(node: Any) -> list[str]:
    """Every file a tree node reads with loadTextContent, in order."""
    if isinstance(node, Mapping):
        function = node.get("function")
        if isinstance(function, Mapping) and function.get("type") == "load_text_content":
            return [function["parameters"]["file_path"]]
        return [name for value in node.values() for name in _loaded(value)]
    if isinstance(node, list):
        return [name for value in node for name in _loaded(value)]
    return []


def test_the_monitoring_module_deploys_the_workbook_and_every_alert(bicep: Mapping[str, Any]) -> None:
    tree = bicep["app/monitoring.bicep"]
    base = INFRA / "app"
    alerts = tree["variables"]["alerts"]["value"]
    assert sorted((base / _loaded(alert)[0]).resolve() for alert in alerts) == [p.resolve() for p in ALERTS]
    workbook = tree["resources"]["workbook"]["config"]["properties"]
    assert [(base / name).resolve() for name in _loaded(workbook)] == [WORKBOOK.resolve()]
    assert accessor(workbook["sourceId"]) == ("insights", "id")
    rules = tree["resources"]["rules"]["config"]
    assert rules["loop_type"]["detail"]["array_name"] == "alerts"
    assert [accessor(scope) for scope in rules["config"]["properties"]["scopes"]] == [("workspace", "id")]
    assert tree["resources"]["insights"]["config"]["properties"]["DisableLocalAuth"] is True


# The module whose resources send the metrics an alert reads from AzureMetrics.
METRIC_SOURCES = {"MICROSOFT.EVENTGRID": "app/eventgrid.bicep", "MICROSOFT.EVENTHUB": "app/eventhubs.bicep"}


@pytest.mark.parametrize("path", ALERTS, ids=lambda p: p.name)
def test_platform_metrics_the_alerts_read_reach_the_workspace(bicep: Mapping[str, Any], path: Path) -> None:
    for provider in re.findall(r'ResourceProvider == "([^"]+)"', path.read_text()):
        module = METRIC_SOURCES[provider]
        settings = [
            body["config"]["properties"]
            for body in bicep[module]["resources"].values()
            if body["type"] == "Microsoft.Insights/diagnosticSettings"
        ]
        assert any({"category": "AllMetrics", "enabled": True} in s["metrics"] for s in settings), module
        assert all(s["workspaceId"] == "workspaceId" for s in settings)
        (call,) = [m for m in bicep["main.bicep"]["modules"].values() if m["detail"]["path"] == module]
        assert accessor(call["config"]["params"]["workspaceId"]) == ("monitoring", "outputs", "workspaceId")


@pytest.mark.parametrize("path", ALERTS, ids=lambda p: p.name)
def test_alert_queries_run_on_the_log_analytics_tables(path: Path) -> None:
    query = path.read_text()
    assert "customEvents" not in query and "customDimensions" not in query, (
        "alerts run on the workspace: AppEvents"
    )
