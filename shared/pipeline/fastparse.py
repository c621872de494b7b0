"""Vectorised body parsing: a chunk of bodies -> the same parsed frame, without a row loop.

``decode``'s straightforward builder parses each body with orjson and builds each row in
Python. Here a chunk is handled by polars string kernels instead, for the bodies whose
shape makes the result certain, and the builder handles every other body:

* A *shape* is a sequence of distinct contract fields. A body has that shape when it is
  valid UTF-8 and exactly one JSON object with those keys in that order, each value a
  string without escapes, a number, ``true``, ``false`` or ``null``, with any JSON
  whitespace between tokens (pretty-printed objects qualify). One anchored regex per
  shape checks all of that and captures each value's token in the same pass.
* For such a body the straightforward path keeps strings as they are, ``null`` as null,
  ``true``/``false`` as that text, numbers as ``orjson.dumps(orjson.loads(token))``,
  ``_rescued_data`` null and ``_raw`` as the body text. That is computed here, numbers
  once per distinct token.
* The shapes tried are the few most common among a sample of the chunk's bodies, so one
  or two regex passes cover a producer's output. Every other body - arrays, NDJSON,
  escapes, nested values, unknown, missing-in-another-order or repeated keys, invalid
  UTF-8, malformed JSON, a number orjson rejects - goes through the builder, so its rows
  are the straightforward path's rows by construction.

Rows keep file order: both parts carry ``_row`` (the source record number), and a
stable sort on it interleaves them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache

import orjson
import polars as pl

from shared.contracts import Contract

_WS = r"[ \t\n\r]*"  # JSON whitespace only; Rust's \s would also accept \v, \f, NBSP...
_STRING = r'"[^"\\\x00-\x1f]*"'  # no escape and no control character inside
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_TOKEN = f"({_STRING}|{_NUMBER}|true|false|null)"
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
#: Shapes tried per chunk, most common first; the rest of the bodies take the builder.
MAX_SHAPES = 3
_SAMPLE = 64
LINEAGE_COLUMNS = ("_sequence_number", "_offset", "_enqueued_time", "_partition", "_row")


@cache
def shape_pattern(keys: tuple[str, ...]) -> str:
    """An anchored regex for one JSON object with exactly ``keys`` in order; group i = value i."""
    members = f"{_WS},{_WS}".join(f'"{re.escape(k)}"{_WS}:{_WS}{_TOKEN}' for k in keys)
    return f"^{_WS}\\{{{_WS}{members}{_WS}\\}}{_WS}$"


def number_text(token: str) -> str:
    """What the straightforward path keeps for a JSON number token (``field_text``).

    Raises:
        orjson.JSONDecodeError: orjson does not read the token (e.g. beyond 64 bits).
    """
    return orjson.dumps(orjson.loads(token)).decode()


def shapes(bodies: Sequence[bytes | None], fields: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The most common key sequences among a sample of ``bodies`` made only of ``fields``.

    ``{}`` is left to the builder: it is rare, and a shape needs at least one key.
    """
    step = max(1, len(bodies) // _SAMPLE)
    seen: Counter[tuple[str, ...]] = Counter()
    known = frozenset(fields)
    for body in bodies[::step]:
        if body is None:
            continue
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and value and known.issuperset(value):
            seen[tuple(value)] += 1
    return [keys for keys, _ in seen.most_common(MAX_SHAPES)]


def parse_chunk(
    bodies: Sequence[bytes | None],
    contract: Contract,
    lineage: Sequence[pl.Series],
    first_row: int,
    fallback: Callable[[list[int]], pl.DataFrame],
) -> pl.DataFrame:
    """The parsed frame of a chunk of bodies (one source record each).

    Args:
        bodies: Record bodies in file order; None for a null body.
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
    pending = pl.DataFrame(
        [
            _as_text(bodies),
            *lineage,
            pl.int_range(first_row, first_row + n, dtype=pl.Int64, eager=True).alias("_row"),
        ]
    ).filter(pl.col("_raw").is_not_null())
    parts: list[pl.DataFrame] = []
    for keys in shapes(bodies, fields):
        if pending.is_empty():
            break
        groups = pending.get_column("_raw").str.extract_groups(shape_pattern(keys))
        tokens = groups.struct.unnest()
        tokens.columns = list(keys)
        matched = tokens.get_column(keys[0]).is_not_null()  # every group is mandatory
        part = pl.concat([pending, tokens], how="horizontal").filter(matched)
        pending = pending.filter(~matched)
        parts.append(_values(part, keys, fields))
    fast = pl.concat(parts) if parts else None
    if fast is not None:
        fast = fast.filter(~pl.col("_rejected")).drop("_rejected")
        if fast.height == n:
            # Each shape's rows are in order; rows of several shapes interleave.
            return fast if len(parts) == 1 else fast.sort("_row", maintain_order=True)
    done = fast.get_column("_row") if fast is not None else pl.Series("_row", [], pl.Int64)
    rest = pl.int_range(first_row, first_row + n, dtype=pl.Int64, eager=True)
    slow = fallback((rest.filter(~rest.is_in(done.implode())) - first_row).to_list())
    if fast is None or fast.is_empty():
        return slow
    return pl.concat([fast, slow]).sort("_row", maintain_order=True)


def _values(part: pl.DataFrame, keys: tuple[str, ...], fields: tuple[str, ...]) -> pl.DataFrame:
    """Tokens -> the parsed columns, plus ``_rejected`` for numbers orjson refuses."""
    quoted = {k: part.get_column(k).str.starts_with('"') for k in keys}
    unquoted = [k for k in keys if not quoted[k].all()]
    numbers = _number_lookup(part, unquoted)
    columns: list[pl.Expr] = []
    rejected: list[pl.Expr] = [pl.lit(False)]
    for key in keys:
        t = pl.col(key)
        text = t.str.strip_prefix('"').str.strip_suffix('"')
        if key not in unquoted:  # the usual case: every value of this key is a string
            columns.append(text.alias(key))
            continue
        is_number = ~t.str.starts_with('"') & ~t.is_in(["true", "false", "null"])
        # Most number tokens already read as orjson writes them; only the others map.
        number = t.replace(numbers) if numbers else t
        columns.append(
            pl.when(t.str.starts_with('"'))
            .then(text)
            .when(t == "null")
            .then(pl.lit(None, pl.String))
            .when(is_number)
            .then(number)
            .otherwise(t)
            .alias(key)
        )
        rejected.append(is_number & number.is_null())
    # One with_columns: ``_rejected`` must see the tokens, not the converted text.
    return part.with_columns(*columns, pl.any_horizontal(rejected).alias("_rejected")).select(
        *(pl.col(f) if f in keys else pl.lit(None, pl.String).alias(f) for f in fields),
        pl.lit(None, pl.String).alias("_rescued_data"),
        "_raw",
        pl.lit(False).alias("_malformed"),
        *LINEAGE_COLUMNS,
        "_rejected",
    )


def _number_lookup(part: pl.DataFrame, keys: list[str]) -> dict[str, str | None]:
    """Distinct number tokens that orjson writes differently, e.g. ``1E3`` -> ``1000.0``.

    A token orjson refuses maps to None.
    """
    if not keys:
        return {}
    tokens = pl.concat([part.get_column(k) for k in keys])
    odd = ~tokens.str.starts_with('"') & ~tokens.is_in(["true", "false", "null"])
    distinct = tokens.filter(odd & ~tokens.str.contains(CANONICAL_NUMBER)).unique()
    lookup: dict[str, str | None] = {}
    for token in distinct.to_list():
        try:
            text: str | None = number_text(token)
        except orjson.JSONDecodeError:
            text = None
        if text != token:
            lookup[token] = text
    return lookup


def _as_text(bodies: Sequence[bytes | None]) -> pl.Series:
    """Bodies as a String series named ``_raw``; null bodies and invalid UTF-8 become null."""
    binary = pl.Series("_raw", bodies, dtype=pl.Binary)
    try:
        return binary.cast(pl.String)
    except pl.exceptions.ComputeError:
        pass
    cleaned: list[bytes | None] = list(bodies)
    for i, body in enumerate(bodies):
        if body is None:
            continue
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            cleaned[i] = None
    return pl.Series("_raw", cleaned, dtype=pl.Binary).cast(pl.String)
