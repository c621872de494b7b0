"""The infra tests' tool venv: checkov and pycep, pinned, kept apart from the project's .venv.

checkov pins its own versions of dozens of libraries, which would fight the pipeline's runtime
pins, so it lives in ``.venv-tools/`` beside ``.venv/``. ``ensure()`` builds it from
``requirements-tools.txt`` when it is missing or the pins changed (a stamp holds their digest),
and the infra tests call it, so ``make test`` needs no extra step; ``python -m tests.infra.tools``
builds it ahead of time.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-tools"
REQUIREMENTS = Path(__file__).with_name("requirements-tools.txt")


def ensure() -> Path:
    """The tool venv's Python, built or rebuilt first when the pins changed.

    Raises:
        subprocess.CalledProcessError: the venv or the install failed (pip's output says why).
    """
    python = VENV / "bin" / "python"
    stamp = VENV / f".installed-{hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]}"
    if stamp.exists() and python.exists():
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    return python


if __name__ == "__main__":
    print(ensure())
