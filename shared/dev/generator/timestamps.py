"""Epoch milliseconds and the text forms of a moment that Capture and producers write.

No wall clock is read: every moment comes from the caller.
"""

from __future__ import annotations

import datetime as dt
import time
from functools import lru_cache
from typing import Final


def _epoch_ms(moment: dt.datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return (moment - _EPOCH) // _MS


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS: Final = dt.timedelta(milliseconds=1)


# Records arrive in enqueue order, so consecutive ones share a second: caching the
# formatted second keeps time formatting off the per-event cost.
@lru_cache(maxsize=4096)
def _dotnet_time(second: int) -> str:
    t = time.gmtime(second)
    hour = t.tm_hour % 12 or 12
    half = "AM" if t.tm_hour < 12 else "PM"
    return f"{t.tm_mon}/{t.tm_mday}/{t.tm_year} {hour}:{t.tm_min:02d}:{t.tm_sec:02d} {half}"


@lru_cache(maxsize=16_384)
def _iso_second(second: int) -> str:
    t = time.gmtime(second)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def _iso_z(ms: int) -> str:
    second, milli = divmod(ms, 1000)
    return f"{_iso_second(second)}.{milli:03d}Z"


def _iso_offset(ms: int, offset_minutes: int) -> str:
    """The same instant as ``_iso_z(ms)``, written in local time with a ``±hh:mm`` offset."""
    second, milli = divmod(ms, 1000)
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    local = _iso_second(second + offset_minutes * 60)
    return f"{local}.{milli:03d}{sign}{hours:02d}:{minutes:02d}"
