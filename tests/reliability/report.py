"""``python -m tests.reliability.report FILE``: the table ``make reliability`` prints.

FILE holds one JSON object per line, written by the tests (``audit.report``): the test's
name and its figures. Exits 1 when any row was lost or altered, or nothing was reported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("faults", "concurrent", "batches", "bad_inputs", "rows_lost", "rows_altered")
EXTRA = ("seconds", "batches_per_second", "rows_per_second", "peak_rss_mb", "examples")
DRIFT = "_s_first20_last20"


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    rows = (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )
    if not rows:
        print(f"no figures in {path}: did the reliability tests run?", file=sys.stderr)
        return 1
    width = max(len(r["test"]) for r in rows)
    header = f"{'case':<{width}}  " + "  ".join(f"{c:>12}" for c in COLUMNS) + "  other"
    print(header)
    print("-" * len(header))
    totals = dict.fromkeys(COLUMNS, 0)
    for r in rows:
        cells = []
        for c in COLUMNS:
            value = r.get(c)
            totals[c] += int(value or 0) if c != "concurrent" else 0
            cells.append(f"{'' if value is None else value:>12}")
        other = ", ".join(f"{k}={r[k]}" for k in (*EXTRA, *(k for k in r if k.endswith(DRIFT))) if k in r)
        print(f"{r['test']:<{width}}  " + "  ".join(cells) + f"  {other}")
    totals["concurrent"] = max(int(r.get("concurrent") or 0) for r in rows)
    print("-" * len(header))
    print(f"{'total (concurrent: most at once)':<{width}}  " + "  ".join(f"{totals[c]:>12}" for c in COLUMNS))
    broken = totals["rows_lost"] + totals["rows_altered"]
    print(f"\n{len(rows)} cases; rows lost {totals['rows_lost']}, rows altered {totals['rows_altered']}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
