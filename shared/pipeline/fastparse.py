"""Vectorised body parsing: a chunk of bodies -> the same parsed frame, without a row loop.

``decode``'s straightforward builder parses each body with orjson and builds each row in
Python. Here a compiled scan (``kernels.scan_objects``) reads a whole chunk and finds each
field's value in the bodies whose form makes the result certain; Arrow columns are cut
from those positions, and the builder handles every other body:

* A body qualifies when it is valid UTF-8 and exactly one JSON object whose keys are
  distinct contract fields (any order, at least one), each value a string without
  escapes or control characters, a number, ``true``, ``false`` or ``null``, with any JSON
  whitespace between tokens (pretty-printed objects qualify).
* For such a body the straightforward path keeps strings as they are, ``null`` (or a
  missing key) as null, ``true``/``false`` as that text, numbers as
  ``orjson.dumps(orjson.loads(token))``, ``_rescued_data`` null and ``_raw`` as the body
  text. That is computed here, numbers once per distinct non-canonical token.
* Every other body - arrays, NDJSON, escapes, nested values, unknown or repeated keys,
  ``{}``, invalid UTF-8, malformed JSON, a number orjson rejects - goes through the
  builder, so its rows are the straightforward path's rows by construction.

Rows keep file order: both parts carry ``_row`` (the source record number), and a
stable sort on it interleaves them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from shared.contracts import Contract
from shared.pipeline import kernels

#: Number tokens that orjson writes back unchanged, so no Python call is needed for them:
#: integers of at most 15 digits (not ``-0``), and decimals of at most 14 significant
#: digits with no trailing zero (or exactly ``.0``) between 1e-4 and 1e6. At most 15
#: significant digits means the token is the shortest text that reads back as its double,
#: which is what orjson writes, and in that range orjson writes plain notation.
CANONICAL_NUMBER = (
    r"^(?:0|-?[1-9][0-9]{0,14}"
    r"|-?(?:0|[1-9][0-9]{0,5})\.0"
    r"|-?[1-9][0-9]{0,5}\.[0-9]{0,7}[1-9]"
    r"|-?0\.0{0,3}[1-9](?:[0-9]{0,3}[1-9])?)$"
)
LINEAGE_COLUMNS = ("_sequence_number", "_offset", "_enqueued_time", "_partition", "_row")


def number_text(token: str) -> str:
    """What the straightforward path keeps for a JSON number token (``field_text``).

    Raises:
        orjson.JSONDecodeError: orjson does not read the token (e.g. beyond 64 bits).
    """
    return orjson.dumps(orjson.loads(token)).decode()


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
    number = kinds == kernels.NUMBER
    lookup = _number_lookup([c.filter(pl.Series(number[f])) for f, c in enumerate(columns)])
    if lookup:
        for f, column in enumerate(columns):
            if not number[f].any():
                continue
            mapped = column.replace(lookup)
            columns[f] = pl.select(pl.when(pl.Series(number[f])).then(mapped).otherwise(column)).to_series()
            fast &= ~(number[f] & mapped.is_null().to_numpy())  # orjson refuses the token
    return [c.alias(name).cast(pl.String) for c, name in zip(columns, fields, strict=True)], fast


@cache
def _names(fields: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The field names as one byte array plus offsets, as the scan reads them."""
    encoded = [name.encode() for name in fields]
    offsets = np.cumsum([0, *map(len, encoded)]).astype(np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _number_lookup(tokens: list[pl.Series]) -> dict[str, str | None]:
    """Distinct number tokens that orjson writes differently, e.g. ``1E3`` -> ``1000.0``.

    A token orjson refuses maps to None.
    """
    every = pl.concat(tokens) if tokens else pl.Series([], dtype=pl.String)
    distinct = every.filter(~every.str.contains(CANONICAL_NUMBER)).unique()
    lookup: dict[str, str | None] = {}
    for token in distinct.to_list():
        try:
            text: str | None = number_text(token)
        except orjson.JSONDecodeError:
            text = None
        if text != token:
            lookup[token] = text
    return lookup


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
