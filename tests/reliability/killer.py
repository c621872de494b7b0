"""``python -m tests.reliability.killer N ARGS...``: ``python -m shared ARGS...`` that SIGKILLs
itself right after its N-th Delta commit lands, before anything records it.

This is the crash the activities must survive: the commit is in the table, the batch's
state does not know it. The process gets no chance to clean up.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from shared import cli
from shared.adapters.lake import Snapshot


def main(argv: list[str]) -> int:
    after, args = int(argv[0]), argv[1:]
    commits = [0]

    def dies_after(real: Any) -> Any:
        def commit(*a: Any, **k: Any) -> Any:
            result = real(*a, **k)
            commits[0] += 1
            if commits[0] == after:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return commit

    Snapshot.append = dies_after(Snapshot.append)  # type: ignore[method-assign]
    Snapshot.merge = dies_after(Snapshot.merge)  # type: ignore[method-assign]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
