"""The Function's app settings in Bicep are the settings the code reads, in identity form.

shared/settings.py lists what the code reads (SETTING_NAMES); local.settings.example.json lists
them for local runs; infra/ sets every one in Azure except those that carry keys
(CONNECTION_SETTINGS), which it replaces by their managed-identity forms (IDENTITY_SETTINGS).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pytest

from shared.settings import CONNECTION_SETTINGS, IDENTITY_SETTINGS, PROCESS_ENVIRONMENT, SETTING_NAMES
from tests.infra.bicep import Scope, accessor, resource
from tests.infra.conftest import INFRA, ROOT

PIPELINE = "main.bicep"
FUNCTION = "app/function.bicep"


@pytest.fixture(scope="module")
def app_settings(bicep: Mapping[str, Any]) -> dict[str, Any]:
    """The site's app settings, as function.bicep builds them from main.bicep's appSettings.

    Values are tree nodes of the file that sets them (main.bicep's module call or function.bicep).
    """
    site = resource(bicep[FUNCTION], "site")
    loop = site["properties"]["siteConfig"]["appSettings"]
    assert loop["loop_type"]["type"] == "object", "appSettings must be built from one settings object"
    settings_var = bicep[FUNCTION]["variables"][loop["loop_type"]["detail"]["object_name"]]["value"]
    assert settings_var["function"]["type"] == "union"
    passed = bicep[PIPELINE]["modules"]["function"]["config"]["params"]
    merged: dict[str, Any] = {}
    for argument in settings_var["function"]["parameters"].values():
        if argument in bicep[FUNCTION]["parameters"]:
            merged.update(passed[argument])
        else:
            merged.update(bicep[FUNCTION]["variables"][argument]["value"])
    return merged


def test_the_code_reads_exactly_what_local_settings_example_lists() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    listed = set(example) - {"FUNCTIONS_WORKER_RUNTIME"} - set(PROCESS_ENVIRONMENT)
    assert listed == set(SETTING_NAMES)


def test_every_setting_but_the_keyed_ones_is_set_in_azure(app_settings: Mapping[str, Any]) -> None:
    assert set(SETTING_NAMES) - set(CONNECTION_SETTINGS) <= set(app_settings)


def test_no_setting_that_carries_a_key_is_set_in_azure(app_settings: Mapping[str, Any]) -> None:
    assert not set(CONNECTION_SETTINGS) & set(app_settings)


def test_storage_is_reached_as_the_app_identity(
    bicep: Mapping[str, Any], app_settings: Mapping[str, Any]
) -> None:
    assert set(IDENTITY_SETTINGS) <= set(app_settings)
    passed = bicep[PIPELINE]["modules"]["function"]["config"]["params"]
    for name in IDENTITY_SETTINGS:
        account, part = name.split("__")
        value = app_settings[name]
        if part == "credential":
            assert value == "managedidentity"
        elif part == "clientId":
            assert accessor(passed[value]) == ("identity", "outputs", "clientId")
        else:
            module = "hostStorage" if account == "AzureWebJobsStorage" else "lake"
            assert accessor(passed[value]) == (module, "outputs", name)


def test_databricks_is_reached_as_the_app_identity(app_settings: Mapping[str, Any]) -> None:
    assert accessor(app_settings["DATABRICKS_CLIENT_ID"]) == ("identity", "outputs", "clientId")
    assert accessor(app_settings["DATABRICKS_HOST"]) == ("databricks", "outputs", "DATABRICKS_HOST")


def test_the_process_environment_has_the_values_the_code_expects(app_settings: Mapping[str, Any]) -> None:
    for name, value in PROCESS_ENVIRONMENT.items():
        assert app_settings[name] == value


def test_telemetry_goes_to_application_insights_with_entra_id(app_settings: Mapping[str, Any]) -> None:
    assert app_settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    # azure-monitor-opentelemetry splits on ';' and '=' and wants exactly Authorization=AAD.
    assert (
        app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "ClientId=${identityClientId};Authorization=AAD"
    )
    assert "APPINSIGHTS_INSTRUMENTATIONKEY" not in app_settings


def test_flex_consumption_takes_the_runtime_from_function_app_config(
    bicep: Mapping[str, Any], app_settings: Mapping[str, Any]
) -> None:
    assert "FUNCTIONS_WORKER_RUNTIME" not in app_settings
    config = resource(bicep[FUNCTION], "site")["properties"]["functionAppConfig"]
    runtime = Scope(bicep[FUNCTION]).value(config["runtime"])
    assert runtime == {"name": "python", "version": "3.13"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert set(config["scaleAndConcurrency"]) == {"instanceMemoryMB", "maximumInstanceCount"}


def test_instance_memory_is_one_parameter_for_the_instances_and_the_setting(
    bicep: Mapping[str, Any], app_settings: Mapping[str, Any]
) -> None:
    passed = bicep[PIPELINE]["modules"]["function"]["config"]["params"]
    assert passed["instanceMemoryMB"] == "instanceMemoryMB"
    assert app_settings["INSTANCE_MEMORY_MB"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "instanceMemoryMB"}}
    }


# Anything that would put a key or a connection string with a key into a deployment.
KEY_PATTERNS = (
    r"listKeys",
    r"listConnectionStrings",
    r"listAccountSas|listServiceSas",
    r"AccountKey=",
    r"SharedAccessKey",
    r"DefaultEndpointsProtocol=",
    r"\.keys\[",
    r"primaryKey|secondaryKey",
    r"InstrumentationKey",
    # Keyed settings with no identity form (a token, an Event Hubs connection string): never named.
    *(
        rf"\b{name}\b"
        for name in CONNECTION_SETTINGS
        if name not in {identity.split("__")[0] for identity in IDENTITY_SETTINGS}
    ),
)


@pytest.mark.parametrize(
    "path", sorted(p for p in INFRA.rglob("*") if p.is_file()), ids=lambda p: str(p.relative_to(INFRA))
)
def test_no_key_anywhere_in_infra(path: Any) -> None:
    text = path.read_text()
    found = [pattern for pattern in KEY_PATTERNS if re.search(pattern, text)]
    assert not found, f"{path.relative_to(ROOT)} matches {found}"
