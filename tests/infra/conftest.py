"""Fixtures for the infra tests: the tool venv, the parsed Bicep, and one checkov run."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.infra import tools

ROOT = tools.ROOT
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


@pytest.fixture(scope="session")
def tools_python() -> Path:
    """Python of .venv-tools (checkov, pycep), built on first use."""
    return tools.ensure()


@pytest.fixture(scope="session")
def bicep(tools_python: Path) -> Mapping[str, Mapping[str, Any]]:
    """Every .bicep file under infra/, parsed by pycep, keyed by its path relative to infra/."""
    names = [str(path) for path in BICEP_FILES]
    done = subprocess.run(
        [str(tools_python), str(Path(__file__).with_name("dump_bicep.py")), *names],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"pycep could not parse:\n{done.stderr}"
    trees = json.loads(done.stdout)
    return {str(Path(name).relative_to(INFRA)): tree for name, tree in trees.items()}


@pytest.fixture(scope="session")
def checkov(tools_python: Path) -> Mapping[str, Any]:
    """checkov's JSON report on infra/ (bicep framework, offline)."""
    done = subprocess.run(
        [
            str(tools_python.parent / "checkov"),
            "--directory",
            str(INFRA),
            "--framework",
            "bicep",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    # checkov exits 1 when a check fails; the report says which, so the tests read it either way.
    assert done.returncode in (0, 1), f"checkov did not run:\n{done.stderr[-4000:]}"
    report = json.loads(done.stdout)
    assert isinstance(report, dict), f"expected one bicep report, got {type(report).__name__}"
    return report
