"""Azure-bound and thin: one module per trigger kind, registered by ``function_app.py``.

Each trigger decodes its input, calls one function and returns or raises. The app is
built once per process, lazily, on the first invocation: the host imports
``function_app`` to index the functions before any setting need be valid, and a cold
instance that only runs intake or the orchestrator never loads the data stack.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.app import App


@cache
def app() -> App:
    """The process-wide ``App`` for the app settings."""
    from shared.app import build

    return build(Settings.from_env())
