"""Who may do what: only data-plane roles, each at the scope and for the principal it is meant for.

The role names and GUIDs below are Azure's built-in role definitions (az role definition list).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.infra.bicep import accessor, resource
from tests.infra.conftest import INFRA

RBAC = "app/rbac.bicep"

BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
}
# Management roles that hand out keys or more: never assigned.
FORBIDDEN_ROLES = {
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "8e3af657-a8ff-443c-a642-c8f8d2b9a1c8": "Owner",
    "f526a384-b230-433a-b45c-95f59c4a2dec": "Azure Event Hubs Data Owner",
}

# assignment -> (scope, roles, principal parameter); the brief's table, as Bicep names.
HOST_ROLES = ["storageBlobDataContributor", "storageQueueDataContributor", "storageTableDataContributor"]
EXPECTED = {
    "appLake": ("lake", ["storageBlobDataOwner"], "appPrincipalId"),
    "appHost": ("host", HOST_ROLES, "appPrincipalId"),
    "appTelemetry": ("insights", ["monitoringMetricsPublisher"], "appPrincipalId"),
    "appDatabricksAdmin": ("workspace", ["contributor"], "appPrincipalId"),
    "captureWriter": ("captureBlobs", ["storageBlobDataContributor"], "capturePrincipalId"),
    "deadLetterWriter": ("deadLetterBlobs", ["storageBlobDataContributor"], "systemTopicPrincipalId"),
    "databricksLake": ("lake", ["storageBlobDataContributor"], "databricksConnectorPrincipalId"),
    "producer": ("hub", ["eventHubsDataSender"], "producerPrincipalId"),
}  # fmt: skip

# Where main.bicep takes each principal from.
PRINCIPALS = {
    "appPrincipalId": ("identity", "outputs", "principalId"),
    "capturePrincipalId": ("eventHubs", "outputs", "capturePrincipalId"),
    "systemTopicPrincipalId": ("eventGrid", "outputs", "principalId"),
    "databricksConnectorPrincipalId": ("databricks", "outputs", "accessConnectorPrincipalId"),
    "producerPrincipalId": ("producerPrincipalId",),
}


def commented_roles() -> list[tuple[str, str, str]]:
    """rbac.bicep's role lines: (variable key, GUID, the name its comment gives)."""
    source = (INFRA / RBAC).read_text()
    return re.findall(r"^\s*(\w+): '([0-9a-f-]{36})' // (.+?)(?: \(|$)", source, flags=re.MULTILINE)


def _assignments(tree: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        name: body
        for name, body in tree["resources"].items()
        if body["type"] == "Microsoft.Authorization/roleAssignments"
    }


def test_every_role_guid_is_commented_with_its_name(bicep: Mapping[str, Any]) -> None:
    lines = commented_roles()
    for _, guid, comment in lines:
        assert BUILT_IN_ROLES.get(guid) == comment.strip(), (
            f"{guid} is {BUILT_IN_ROLES.get(guid)!r}, not {comment!r}"
        )
    assert {key: guid for key, guid, _ in lines} == bicep[RBAC]["variables"]["roles"]["value"]


def test_no_management_role_is_assigned_anywhere() -> None:
    for path in INFRA.rglob("*.bicep"):
        text = path.read_text()
        for guid, role in FORBIDDEN_ROLES.items():
            assert guid not in text, f"{path.name} assigns {role}"


def test_each_principal_gets_its_roles_at_its_scope(bicep: Mapping[str, Any]) -> None:
    found = {}
    for name, body in _assignments(bicep[RBAC]).items():
        loop = body["config"].get("loop_type")
        assignment = resource(bicep[RBAC], name)
        role_nodes = (
            loop["detail"]["array_name"]
            if loop
            else [assignment["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]]
        )
        found[name] = (
            accessor(assignment["scope"])[0],
            [accessor(node)[1] for node in role_nodes],
            assignment["properties"]["principalId"],
        )
        # A deterministic name: deploying twice changes nothing.
        assert assignment["name"]["function"]["type"] == "guid"
    assert found == EXPECTED


def test_optional_assignments_are_off_unless_asked_for(bicep: Mapping[str, Any]) -> None:
    tree = bicep[RBAC]
    assert _assignments(tree)["appDatabricksAdmin"]["config"]["condition"] == "databricksWorkspaceAdmin"
    assert tree["parameters"]["databricksWorkspaceAdmin"]["default"] is False
    assert bicep["main.bicep"]["parameters"]["databricksWorkspaceAdmin"]["default"] is False
    assert _assignments(tree)["producer"]["config"]["condition"] == {
        "operator": {"type": "not", "operands": {"bool_value": {"function": {
            "type": "empty", "parameters": {"item_to_test": "producerPrincipalId"}}}}}
    }  # fmt: skip


def test_main_hands_rbac_the_right_principals(bicep: Mapping[str, Any]) -> None:
    passed = bicep["main.bicep"]["modules"]["rbac"]["config"]["params"]
    assert {name: accessor(passed[name]) for name in PRINCIPALS} == PRINCIPALS
