"""The compiled loops' source: numba functions over raw bytes and positions.

They take numpy arrays and integers, never Python objects, and release the GIL, so they
run while another thread inflates, validates or writes. ``kernels`` calls them: built
ahead of time into a plain extension module (``python -m shared.pipeline.aot``) when
that module is current, else compiled here by numba on first use and cached
(``NUMBA_CACHE_DIR``), which costs about 5 s on a cold instance and keeps LLVM loaded.

One module per kind of input: ``records`` (Capture's Avro records), ``objects`` (flat
JSON bodies) and ``addresses`` (IP addresses to network slots).
"""

from __future__ import annotations

import numpy as np

from shared.pipeline.loops.addresses import address_slots
from shared.pipeline.loops.objects import scan_objects
from shared.pipeline.loops.records import gather, scan_capture

__all__ = ["address_slots", "gather", "scan_capture", "scan_objects", "warm"]


def warm() -> None:
    """Compile (or load from numba's cache) every loop for the argument types ``kernels`` passes."""
    data = np.frombuffer(b"\x02\x00\x00\x00\x00\x02{}", dtype=np.uint8)
    n = np.ones(1, dtype=np.int64)
    kinds = np.zeros(1, dtype=np.int64)
    scan_capture(
        data, np.zeros(1, np.int64), np.array([len(data)], np.int64), n, kinds, kinds, -1,
        np.frombuffer(b"k", np.uint8), np.empty(1, np.int64), np.empty((3, 2, 1), np.int64),
        np.empty(1, np.int64), np.empty(1, np.bool_),
    )  # fmt: skip
    gather(data, np.zeros(1, np.int64), np.ones(1, np.int64), np.empty(2, np.int64), np.empty(1, np.uint8))
    gather(data, np.zeros(1, np.int64), np.ones(1, np.int64), np.empty(2, np.int32), np.empty(1, np.uint8))
    names = np.frombuffer(b"k", np.uint8)
    offsets = np.frombuffer(np.array([0, len(data)], np.int64).tobytes(), np.int64)  # read-only, as Arrow's
    scan_objects(
        data, offsets, np.ones(1, np.bool_), names, np.array([0, 1], np.int64),
        np.zeros((2, 1, 1), np.int64), np.zeros((1, 1), np.int8), np.zeros(1, np.bool_),
    )  # fmt: skip
    networks = np.zeros((4, 1), np.int64)
    address_slots(
        data, offsets, np.ones(1, np.bool_), networks[:2], np.zeros(1, np.int32), networks,
        np.zeros(1, np.int32), np.empty(1, np.int32),
    )  # fmt: skip
