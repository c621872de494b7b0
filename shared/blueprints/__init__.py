"""Azure-bound and thin: one module per trigger kind, registered by ``function_app.py``.

Each trigger decodes its input, calls one function in ``shared/`` and returns or raises.
Settings are read once, lazily, on the first invocation, never at import time: the
host imports ``function_app`` to index the functions before any setting may be valid.
Nothing here imports the data stack (polars, deltalake, pyarrow, numpy) at import time:
every instance indexes every function, and the light ones (Event Grid intake, the
orchestrator, HTTP) must not pay for it. Heavy modules are imported on first use.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.operations import Operations


@cache
def operations() -> Operations:
    """The process-wide ``Operations`` (pipeline, batch state, run ledger) for the app settings."""
    from shared.operations import Operations
    from shared.settings import Settings

    return Operations(Settings.from_env())
