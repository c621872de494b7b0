"""``python -m tests.fuzz.replay DIR_OR_FILE...``: run inputs through the fuzz harness's
checks once each (a corpus, or the findings of a campaign), and report the lines of the
decode path's Python they reached.

Lines are counted with ``sys.monitoring`` over ``shared/pipeline`` (the compiled loops are
machine code, which no line counter sees: the harness holds them to the JIT's answers).
"""

from __future__ import annotations

import sys
import traceback
from collections import defaultdict
from pathlib import Path
from types import CodeType
from typing import Any

ROOT = Path(__file__).resolve().parents[2] / "shared" / "pipeline"
# The decode path the harness drives (geo runs in silver, on decoded rows).
MODULES = ("capture.py", "fastparse.py", "validate.py", "kernels.py", "decode/")
TOOL = sys.monitoring.COVERAGE_ID


def _watched(path: str) -> bool:
    inside = Path(path).is_relative_to(ROOT)
    return inside and str(Path(path).relative_to(ROOT)).startswith(MODULES)


def main(paths: list[str]) -> int:
    reached: dict[str, set[int]] = defaultdict(set)

    def line(code: CodeType, number: int) -> Any:
        if _watched(code.co_filename):
            reached[code.co_filename].add(number)
        return sys.monitoring.DISABLE

    sys.monitoring.use_tool_id(TOOL, "tributary-replay")
    sys.monitoring.register_callback(TOOL, sys.monitoring.events.LINE, line)
    sys.monitoring.set_events(TOOL, sys.monitoring.events.LINE)
    from tests.fuzz.fuzz_decode import check

    inputs = [
        f for p in map(Path, paths) for f in (sorted(p.iterdir()) if p.is_dir() else [p]) if f.is_file()
    ]
    failures = 0
    for path in inputs:
        try:
            check(path.read_bytes())
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # a finding: report it and go on
            failures += 1
            print(f"FINDING {path}:\n{traceback.format_exc(limit=3)}", file=sys.stderr)
    sys.monitoring.set_events(TOOL, 0)
    total_reached = total_lines = 0
    for source in sorted(Path(ROOT).rglob("*.py")):
        if not _watched(str(source)):
            continue
        code = compile(source.read_text(), str(source), "exec")
        lines = _lines(code)
        if not lines:
            continue
        hit = reached.get(str(source), set()) & lines
        total_reached += len(hit)
        total_lines += len(lines)
        print(
            f"{source.relative_to(ROOT)}: {len(hit)}/{len(lines)} lines ({100 * len(hit) / len(lines):.0f}%)"
        )
    print(f"{len(inputs)} inputs, {failures} findings; {total_reached}/{total_lines} lines reached")
    return 1 if failures else 0


def _lines(code: CodeType) -> set[int]:
    """The lines of ``code`` and everything defined in it that run when it does (not the
    module-level definitions themselves, which importing runs before counting starts)."""
    lines: set[int] = set()
    for const in code.co_consts:
        if isinstance(const, CodeType):
            lines |= {n for _, _, n in const.co_lines() if n is not None} - {const.co_firstlineno}
            lines |= _lines(const)
    return lines


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
