"""The compiled FunctionRpc protos the Functions host and the Python worker speak.

They ship, compiled, in the ``azure-functions-runtime-v1`` wheel under ``tests/protos``.
Installed as a package that wheel would add a top-level ``tests`` package that shadows ours,
so ``make worker-protos`` (``python -m tests.worker.protos DEST``) downloads the wheel with
pip and extracts only that folder, as the package ``functionrpc``, into ``.venv/worker-protos``.
The protos import each other relatively, so the package name is free. They are build
output: never committed.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PROTOS_DIR = ROOT / ".venv" / "worker-protos"
PACKAGE = "functionrpc"
WHEEL = "azure-functions-runtime-v1==1.2.0"
_INSIDE = "tests/protos/"


def load(directory: Path = PROTOS_DIR) -> ModuleType:
    """Import the protos package from ``directory`` (adding it to ``sys.path``).

    Raises:
        RuntimeError: the protos were not built (``make worker-protos``).
    """
    if not (directory / PACKAGE / "__init__.py").is_file():
        raise RuntimeError(f"no FunctionRpc protos in {directory}: run `make worker-protos`")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    return importlib.import_module(PACKAGE)


def install(directory: Path, wheel: str = WHEEL) -> Path:
    """Download ``wheel`` with pip and extract its ``tests/protos`` into ``directory/PACKAGE``."""
    target = directory / PACKAGE
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--dest",
                scratch,
                wheel,
            ],
            check=True,
        )
        (archive,) = Path(scratch).glob("*.whl")
        shutil.rmtree(target, ignore_errors=True)
        with zipfile.ZipFile(archive) as whl:
            members = [name for name in whl.namelist() if name.startswith(_INSIDE) and not name.endswith("/")]
            if not members:
                raise RuntimeError(f"{archive.name} has no {_INSIDE}")
            for name in members:
                out = target / name[len(_INSIDE) :]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(whl.read(name))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, nargs="?", default=PROTOS_DIR)
    args = parser.parse_args()
    print(f"FunctionRpc protos from {WHEEL} in {install(args.dest)}")


if __name__ == "__main__":
    main()
