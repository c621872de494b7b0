"""Azure-bound and thin: one module per trigger kind, registered by ``function_app.py``.

Each trigger decodes its input, calls one function in ``shared/`` and returns or raises.
Settings are read once, lazily, on the first invocation, never at import time: the
host imports ``function_app`` to index the functions before any setting may be valid.
"""

from __future__ import annotations

from functools import cache

from shared.operations import Operations
from shared.settings import Settings


@cache
def operations() -> Operations:
    """The process-wide ``Operations`` (pipeline, batch state, run ledger) for the app settings."""
    return Operations(Settings.from_env())
