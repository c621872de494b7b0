"""Vectorised body parsing: a chunk of bodies -> the same parsed frame, without a row loop.

``decode``'s straightforward builder parses each body and builds each row in Python.
Here a compiled scan (``kernels.scan_objects``) reads a whole chunk and finds each field's
value in the bodies whose form makes the result certain; Arrow columns are cut from those
positions, and the builder handles every other body:

* A body qualifies when it is valid UTF-8 and exactly one JSON object whose keys are
  distinct contract fields (any order, at least one), each value a string without
  escapes or control characters, a number, ``true``, ``false`` or ``null``, with any JSON
  whitespace between tokens (pretty-printed objects qualify).
* For such a body the straightforward path keeps strings as they are, ``null`` (or a
  missing key) as null, ``true``/``false`` and numbers as their text, ``_rescued_data``
  null and ``_raw`` as the body text. That is what is cut here.
* Every other body - arrays, NDJSON, escapes, nested values, unknown or repeated keys,
  ``{}``, invalid UTF-8, malformed JSON - goes through the builder, so its rows are the
  straightforward path's rows by construction.

Rows keep file order: both parts carry ``_row`` (the source record number), and a
stable sort on it interleaves them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa

from shared.contracts import Contract
from shared.pipeline import kernels

LINEAGE_COLUMNS = ("_sequence_number", "_offset", "_enqueued_time", "_partition", "_row")


def parse_chunk(
    bodies: Sequence[bytes | None] | pa.Array,
    contract: Contract,
    lineage: Sequence[pl.Series],
    first_row: int,
    fallback: Callable[[list[int]], pl.DataFrame],
) -> pl.DataFrame:
    """The parsed frame of a chunk of bodies (one source record each).

    Args:
        bodies: Record bodies in file order (bytes, or an Arrow binary array); None for a null body.
        contract: Dataset contract; its fields are the parsed columns.
        lineage: ``_sequence_number``, ``_offset``, ``_enqueued_time`` and ``_partition``
            series, one value per body, already in the parsed schema's types.
        first_row: Source record number of ``bodies[0]`` (``_row`` counts records).
        fallback: Builds the straightforward rows for the bodies at the given positions.

    Returns:
        Exactly the frame the straightforward builder would produce for these bodies.
    """
    fields = contract.field_names
    n = len(bodies)
    binary = bodies if isinstance(bodies, pa.Array) else pa.array(bodies, pa.large_binary())
    arrow = _as_text(binary.cast(pa.large_binary()))
    columns, fast = _scan(arrow, fields)
    text = pl.Series("_raw", arrow, dtype=pl.String)
    frame = None
    if fast.any():
        frame = pl.DataFrame(
            [
                *columns,
                pl.repeat(None, n, dtype=pl.String, eager=True).alias("_rescued_data"),
                text,
                pl.repeat(False, n, dtype=pl.Boolean, eager=True).alias("_malformed"),
                *lineage,
                pl.int_range(first_row, first_row + n, dtype=pl.Int64, eager=True).alias("_row"),
            ]
        ).filter(pl.Series(fast))
        if frame.height == n:
            return frame
    slow = fallback(np.flatnonzero(~fast).tolist())
    if frame is None:
        return slow
    return pl.concat([frame, slow]).sort("_row", maintain_order=True)


def _scan(arrow: pa.Array, fields: tuple[str, ...]) -> tuple[list[pl.Series], np.ndarray]:
    """Each field's column, and which rows the scan settled (the rest take the builder)."""
    n = len(arrow)
    buffers = arrow.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[arrow.offset : arrow.offset + n + 1]
    values = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    names, name_offsets = _names(fields)
    spans = np.zeros((2, len(fields), n), dtype=np.int64)
    kinds = np.zeros((len(fields), n), dtype=np.int8)
    fast = np.zeros(n, dtype=np.bool_)
    valid = kernels.validity(arrow)
    kernels.scan_objects(values, offsets, valid, names, name_offsets, spans, kinds, fast)
    has_text = (kinds == kernels.STRING) | (kinds == kernels.NUMBER) | (kinds == kernels.LITERAL)
    columns = [
        pl.Series(
            name, kernels.cut(values, spans[0, f], np.where(has_text[f], spans[1, f], -1), pa.large_string())
        )
        for f, name in enumerate(fields)
    ]
    return columns, fast


@cache
def _names(fields: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The field names as one byte array plus offsets, as the scan reads them."""
    encoded = [name.encode() for name in fields]
    offsets = np.cumsum([0, *map(len, encoded)]).astype(np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _as_text(binary: pa.Array) -> pa.Array:
    """Bodies (large_binary) as large_string; null bodies and invalid UTF-8 become null."""
    try:
        return binary.cast(pa.large_string())  # validates, copies nothing
    except pa.ArrowInvalid:
        pass
    # Only a body with a byte >= 0x80 can be invalid UTF-8: decode just those in Python.
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int64)[
        binary.offset : binary.offset + len(binary) + 1
    ]
    values = np.frombuffer(binary.buffers()[2], dtype=np.uint8)
    high = np.flatnonzero(values[offsets[0] : offsets[-1]] >= 0x80) + offsets[0]
    suspects = np.unique(np.searchsorted(offsets, high, side="right") - 1)
    valid = kernels.validity(binary)
    for i, body in zip(
        suspects.tolist(), binary.take(kernels.int64_array(suspects)).to_pylist(), strict=True
    ):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            valid[i] = False
    # The same bytes, with the invalid bodies null (Arrow never reads bytes under a null).
    validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    buffers = [validity, pa.py_buffer(offsets), binary.buffers()[2]]
    return pa.Array.from_buffers(pa.large_string(), len(binary), buffers, null_count=-1)
