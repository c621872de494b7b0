"""The deployables fit together: every parameter is described, azd's parameters exist, and the
post-deploy step gives eventing.bicep every value it needs from main.bicep's outputs."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import decorator
from tests.infra.conftest import INFRA, ROOT


@pytest.fixture(scope="module")
def azure_yaml(tools_python: Path) -> Mapping[str, Any]:
    """azure.yaml, read with the tool venv's PyYAML (the project's venv has no YAML parser)."""
    script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    done = subprocess.run(
        [str(tools_python), "-c", script, str(ROOT / "azure.yaml")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_every_parameter_is_described(bicep: Mapping[str, Any]) -> None:
    undescribed = [
        f"{path}: {name}"
        for path, tree in bicep.items()
        for name, param in tree.get("parameters", {}).items()
        if not decorator(param, "description")
    ]
    assert not undescribed


def test_azd_parameters_are_main_parameters(bicep: Mapping[str, Any]) -> None:
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(bicep["main.bicep"]["parameters"])


def test_azd_provisions_main_and_publishes_the_app(
    azure_yaml: Mapping[str, Any], bicep: Mapping[str, Any]
) -> None:
    assert azure_yaml["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    (service,) = azure_yaml["services"].items()
    assert service[1] == {"project": ".", "language": "python", "host": "function"}
    tags = bicep["app/function.bicep"]["resources"]["site"]["config"]["tags"]
    # pycep keeps a quoted key's quotes.
    assert tags["function"]["parameters"]["arg_2"] == {"'azd-service-name'": service[0]}


@pytest.mark.parametrize("system", ["posix", "windows"])
def test_the_post_deploy_step_feeds_eventing_from_main_outputs(
    azure_yaml: Mapping[str, Any], bicep: Mapping[str, Any], system: str
) -> None:
    command = azure_yaml["hooks"]["postdeploy"][system]["run"]
    assert "--template-file infra/eventing.bicep" in command
    passed = dict(re.findall(r"(\w+)=\"?\$(?:env:)?(\w+)", command.split("--parameters", 1)[1]))
    eventing = bicep["eventing.bicep"]["parameters"]
    required = {name for name, param in eventing.items() if param.get("default") is None}
    assert required <= set(passed), f"not passed: {sorted(required - set(passed))}"
    assert set(passed) <= set(eventing)
    outputs = set(bicep["main.bicep"]["outputs"])
    assert set(passed.values()) <= outputs, (
        f"not main.bicep outputs: {sorted(set(passed.values()) - outputs)}"
    )
    for name, variable in passed.items():
        assert f"main.bicep output {variable}" in decorator(eventing[name], "description")
