"""``python -m tests.isolated FILE NAME``: probe and decode one file (both parsers) in a
process of its own, and print what happened as JSON.

Hostile files run here so that a crash (a segfault in compiled code), a hang or an
allocation by a lying count fails the test that sent the file instead of killing pytest.
The address space is capped (``LIMIT``), so an allocation sized by a lie fails at once
rather than being granted lazily by the kernel; ``peak_mb`` is the process's peak RSS.
"""

from __future__ import annotations

import io
import json
import resource
import sys
from pathlib import Path
from typing import Any

LIMIT = 6 << 30


def outcome(action: Any) -> dict[str, Any]:
    from shared.errors import QuarantinedFile

    try:
        return {"ok": action()}
    except QuarantinedFile as exc:
        return {"quarantined": exc.reason}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a Rust panic inside polars is a BaseException
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


def main(path: str, name: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    from shared.contracts import USER_ACTIVITY
    from shared.pipeline import decode

    data = Path(path).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report: dict[str, Any] = {"probe": outcome(lambda: decode.probe(io.BytesIO(data), name).records)}
    for parser in ("fast", "straightforward"):

        def rows(parser: Any = parser) -> dict[str, int]:
            chunks = decode.decode(io.BytesIO(data), name, USER_ACTIVITY, chunk_rows=1000, parser=parser)
            frames = list(chunks)
            return {
                "rows": sum(f.height for f in frames),
                "malformed": sum(int(f.get_column("_malformed").sum()) for f in frames),
            }

        report[parser] = outcome(rows)
    report["peak_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
