"""The parsed frame, and the straightforward builder that makes it one record at a time.

Every format becomes the same frame (``parsed_schema``). ``ChunkBuilder`` builds it row
by row in Python and is the reference: ``fastparse`` must give exactly its rows, and
hands it every body it cannot settle itself.

JSON is read with the standard library's parser, numbers kept as their exact text
(``orjson.Fragment``), so a field holds the number as it arrived and ``_rescued_data``
and ``_raw`` keep the original digits: a 30-digit id is not rounded to a double, and two
ids that differ only past the 17th digit stay distinct. orjson then writes the values
back out, which also refuses what the frame cannot hold (a lone surrogate, nesting
deeper than orjson writes): such a body is malformed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
import polars as pl

from shared.contracts import Contract
from shared.pipeline import fastparse

LINEAGE_SCHEMA: dict[str, pl.DataType] = {
    "_sequence_number": pl.Int64(),
    "_offset": pl.String(),
    "_enqueued_time": pl.Datetime("us"),
    "_partition": pl.String(),
    "_row": pl.Int64(),
}


def parsed_schema(contract: Contract) -> dict[str, pl.DataType]:
    """Column types of a parsed chunk for ``contract``.

    ``_rescued_data`` holds an event's unknown fields as JSON; on a ``_malformed`` row
    it holds why the record could not be read when the decoder can say more than
    "malformed body" (a CSV row of the wrong width, say), else null.
    """
    schema: dict[str, pl.DataType] = {name: pl.String() for name in contract.field_names}
    schema["_rescued_data"] = pl.String()
    schema["_raw"] = pl.String()
    schema["_malformed"] = pl.Boolean()
    schema.update(LINEAGE_SCHEMA)
    return schema


def json_value(data: bytes) -> Any:
    """One JSON text (RFC 8259) with every number as an ``orjson.Fragment`` of its text.

    Raises:
        ValueError: not UTF-8, not JSON (``NaN`` and ``Infinity`` are not), or nested
            past the parser's recursion limit.
    """
    try:
        return json.loads(
            data.decode("utf-8"),
            parse_int=orjson.Fragment,
            parse_float=orjson.Fragment,
            parse_constant=_no_constant,
        )
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes | None, *, strict_single: bool = False) -> list[dict[str, Any]] | None:
    """The events in one body, or None when the body is malformed.

    A body is one JSON object (compact or pretty-printed), an array of objects, or
    newline-delimited objects. Anything else - invalid UTF-8, invalid JSON, a JSON
    scalar, an array holding a non-object, a value orjson cannot write back - is malformed.
    """
    if body is None:
        return None
    try:
        value = json_value(body)
    except ValueError:
        return None if strict_single else _parse_ndjson_body(body)
    if isinstance(value, dict):
        events = [value]
    elif not strict_single and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        events = value
    else:
        return None
    return events if _writable(events) else None


def _parse_ndjson_body(body: bytes) -> list[dict[str, Any]] | None:
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    events = []
    for line in lines:
        try:
            value = json_value(line)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        events.append(value)
    return events if _writable(events) else None


def _writable(events: list[dict[str, Any]]) -> bool:
    try:
        orjson.dumps(events)
    except orjson.JSONEncodeError:  # a lone surrogate, or nesting deeper than orjson writes
        return False
    return True


def field_text(value: Any) -> str | None:
    """A JSON value as the string bronze keeps: strings as-is, anything else as its JSON
    (a number exactly as it was written)."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def json_text(value: Any) -> str:
    """``value`` as JSON text; what JSON cannot hold natively (dates, decimals) as strings."""
    return orjson.dumps(value, default=str).decode()


def body_text(body: bytes | None) -> str:
    """A body as ``_raw`` keeps it: its text, undecodable bytes escaped."""
    if body is None:
        return ""
    return body.decode("utf-8", errors="backslashreplace")


class ChunkBuilder:
    """Accumulates parsed records column by column."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.fields = contract.field_names
        self.field_set = frozenset(self.fields)
        self.schema = parsed_schema(contract)
        self.sources = 0  # source records seen in the whole file: numbers `_row`
        self.pending = 0  # source records in the chunk being built
        self._reset()

    def _reset(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in self.schema}
        self.enqueued: list[int | None] = []

    def add_body(
        self,
        body: bytes | None,
        sequence_number: int | None,
        offset: str | None,
        enqueued_ms: int | None,
        partition: str | None,
        *,
        strict_single: bool = False,
    ) -> None:
        """One source record whose body is JSON (see ``parse_body``)."""
        events = parse_body(body, strict_single=strict_single)
        row = self.sources
        lineage = (sequence_number, offset, enqueued_ms, partition, row)
        if events is None:
            self._append(None, body_text(body), None, *lineage)
        elif len(events) == 1:
            self._append(events[0], body_text(body), None, *lineage)
        else:
            for event in events:
                self._append(event, json_text(event), None, *lineage)
        self._count()

    def add_record(
        self,
        record: dict[str, Any],
        raw: str,
        sequence_number: int | None,
        enqueued_ms: int | None,
        partition: str | None,
        row: int,
    ) -> None:
        """One source record that is already a set of fields (a Parquet or CSV row)."""
        self._append(record, raw, None, sequence_number, None, enqueued_ms, partition, row)
        self._count()

    def add_malformed(self, raw: str, reason: str, sequence_number: int | None, row: int) -> None:
        """One source record that cannot be read, and why (kept in ``_rescued_data``)."""
        self._append(None, raw, reason, sequence_number, None, None, None, row)
        self._count()

    def _count(self) -> None:
        self.sources += 1
        self.pending += 1

    def _append(
        self,
        event: dict[str, Any] | None,
        raw: str,
        reason: str | None,
        sequence_number: int | None,
        offset: str | None,
        enqueued_ms: int | None,
        partition: str | None,
        row: int,
    ) -> None:
        cols = self.columns
        if event is None:
            for name in self.fields:
                cols[name].append(None)
            cols["_rescued_data"].append(reason)
        else:
            for name in self.fields:
                cols[name].append(field_text(event.get(name)))
            extra = {k: v for k, v in event.items() if k not in self.field_set}
            cols["_rescued_data"].append(orjson.dumps(extra).decode() if extra else None)
        cols["_raw"].append(raw)
        cols["_malformed"].append(event is None)
        cols["_sequence_number"].append(sequence_number)
        cols["_offset"].append(offset)
        self.enqueued.append(enqueued_ms)
        cols["_partition"].append(partition)
        cols["_row"].append(row)

    def take(self) -> pl.DataFrame:
        """The rows built since the last ``take``, as a parsed frame."""
        cols = self.columns
        frame = pl.DataFrame(
            {k: v for k, v in cols.items() if k != "_enqueued_time"},
            schema={k: v for k, v in self.schema.items() if k != "_enqueued_time"},
        ).with_columns(enqueued_column(self.enqueued))
        frame = frame.select(list(self.schema))
        self.pending = 0
        self._reset()
        return frame


def enqueued_column(values: Sequence[int | None] | pl.Series) -> pl.Series:
    """``_enqueued_time`` from epoch milliseconds."""
    series = values if isinstance(values, pl.Series) else pl.Series(values, dtype=pl.Int64)
    return series.alias("_enqueued_time").cast(pl.Datetime("ms")).cast(pl.Datetime("us"))


class RecordColumns:
    """One chunk's source records as plain lists, then parsed by ``fastparse``."""

    def __init__(self, partition: str | None, *, strict_single: bool = False) -> None:
        self.partition = partition
        self.strict_single = strict_single
        self.first_row = 0
        self._reset()

    def _reset(self) -> None:
        self.bodies: list[bytes | None] = []
        self.sequence_numbers: list[int | None] = []
        self.offsets: list[str | None] = []
        self.enqueued: list[int | None] = []

    def __len__(self) -> int:
        return len(self.bodies)

    def add(
        self, body: bytes | None, sequence_number: int | None, offset: str | None, enqueued: int | None
    ) -> None:
        self.bodies.append(body)
        self.sequence_numbers.append(sequence_number)
        self.offsets.append(offset)
        self.enqueued.append(enqueued)

    def parse(self, contract: Contract) -> pl.DataFrame:
        """The chunk's parsed frame; the lists start again empty."""
        n = len(self.bodies)
        lineage = [
            pl.Series("_sequence_number", self.sequence_numbers, dtype=pl.Int64),
            pl.Series("_offset", self.offsets, dtype=pl.String),
            enqueued_column(self.enqueued),
            pl.repeat(self.partition, n, dtype=pl.String, eager=True).alias("_partition"),
        ]

        def straightforward(positions: list[int]) -> pl.DataFrame:
            records = [
                (
                    self.first_row + i,
                    self.bodies[i],
                    self.sequence_numbers[i],
                    self.offsets[i],
                    self.enqueued[i],
                )
                for i in positions
            ]
            return built_rows(contract, records, self.partition, strict_single=self.strict_single)

        frame = fastparse.parse_chunk(self.bodies, contract, lineage, self.first_row, straightforward)
        self.first_row += n
        self._reset()
        return frame


def built_rows(
    contract: Contract, rows: Sequence[tuple[int, bytes | None, int | None, str | None, int | None]],
    partition: str | None, *, strict_single: bool = False,
) -> pl.DataFrame:  # fmt: skip
    """The straightforward rows of (row, body, sequence number, offset, enqueued ms) records."""
    builder = ChunkBuilder(contract)
    for row, body, sequence_number, offset, enqueued_ms in rows:
        builder.sources = row
        builder.add_body(body, sequence_number, offset, enqueued_ms, partition, strict_single=strict_single)
    return builder.take()
