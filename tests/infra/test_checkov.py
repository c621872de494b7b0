"""The Bicep parses and checkov (bicep framework, offline) passes it: no failed check, and every
skipped check carries its reason on the resource it skips."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.infra.conftest import BICEP_FILES, INFRA


def test_every_bicep_file_parses(bicep: Mapping[str, Any]) -> None:
    assert sorted(bicep) == sorted(str(path.relative_to(INFRA)) for path in BICEP_FILES)
    assert {"main.bicep", "eventing.bicep"} <= set(bicep)


def test_checkov_finds_no_failed_check(checkov: Mapping[str, Any]) -> None:
    summary, results = checkov["summary"], checkov["results"]
    failed = [f"{r['check_id']} {r['resource']} ({r['file_path']})" for r in results["failed_checks"]]
    assert not failed, "checkov failed:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0, results["parsing_errors"]
    assert summary["passed"] >= 20, "checkov ran too few checks to mean anything"


def test_checkov_scanned_every_file_with_resources_it_checks(
    checkov: Mapping[str, Any], bicep: Mapping[str, Any]
) -> None:
    results = checkov["results"]
    checked = results["passed_checks"] + results["skipped_checks"]
    scanned = {r["file_path"].lstrip("/") for r in checked}
    kinds = {r["resource"].rsplit(".", 1)[0] for r in checked}
    declaring = {
        path
        for path, tree in bicep.items()
        for body in tree.get("resources", {}).values()
        if body["type"] in kinds and not body["existing"]
    }
    assert declaring == scanned


def test_every_skip_gives_its_reason(checkov: Mapping[str, Any]) -> None:
    for skipped in checkov["results"]["skipped_checks"]:
        reason = (skipped["check_result"].get("suppress_comment") or "").strip()
        assert len(reason.split()) >= 8, (
            f"{skipped['check_id']} on {skipped['resource']}: no real reason given"
        )
