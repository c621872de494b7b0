"""Run by the tool venv's Python: parse each Bicep file named on the command line with pycep
(the parser checkov uses) and print ``{path: tree}`` as JSON, or exit 1 naming the files that
do not parse."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pycep import BicepParser

parser = BicepParser()
trees, errors = {}, {}
for name in sys.argv[1:]:
    try:
        trees[name] = parser.parse(file_path=Path(name))
    except Exception as exc:  # pycep raises lark's many error types
        errors[name] = f"{type(exc).__name__}: {exc}"
if errors:
    print(json.dumps(errors, indent=1), file=sys.stderr)
    sys.exit(1)
print(json.dumps(trees, default=str))
