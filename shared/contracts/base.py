"""Engine-neutral dataset contracts.

A contract names a dataset's fields, its keys and its expectations. Expectations are
SQL boolean expressions over the *typed* columns plus the lineage columns; a NULL
result counts as a failure. polars compiles them with ``pl.sql_expr``; Spark compiles
the same text with ``F.expr``. No rule is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["string", "timestamp", "double"]
Aggregate = Literal["sum", "count", "min", "max", "distinct"]


@dataclass(frozen=True, slots=True)
class Field:
    """One column of the dataset as producers send it.

    Attributes:
        name: JSON key and column name.
        type: Silver type. Bronze keeps every field as the string it arrived as.
            ``timestamp`` accepts ISO-8601 with ``Z`` or an offset, or epoch milliseconds.
        required: Documentation only; requiredness is enforced by an expectation.
    """

    name: str
    type: FieldType = "string"
    required: bool = False


@dataclass(frozen=True, slots=True)
class Expectation:
    """A named SQL boolean expression every valid row satisfies."""

    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class Measure:
    """One column of a gold table: an aggregate of a silver column per the table's keys.

    Attributes:
        name: Gold column name.
        aggregate: ``sum``, ``count`` (rows; no column), ``min``, ``max``, or ``distinct``
            (distinct values of ``column``). Every aggregate but ``distinct`` folds a batch
            into an existing row by itself (sums add, extremes compare); ``distinct``
            cannot, so it is counted from ``via``, a companion table of events per
            (keys, column) that the engines maintain alongside.
        column: The silver column aggregated.
        via: The companion table of a ``distinct`` measure.
    """

    name: str
    aggregate: Aggregate
    column: str | None = None
    via: str | None = None


@dataclass(frozen=True, slots=True)
class GoldTable:
    """A gold table: silver rows grouped by ``keys``, each measure aggregated per group."""

    name: str
    keys: tuple[str, ...]
    measures: tuple[Measure, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        """The silver columns this table reads."""
        columns = [*self.keys, *(m.column for m in self.measures if m.column)]
        return tuple(dict.fromkeys(columns))


@dataclass(frozen=True, slots=True)
class Contract:
    """A dataset: fields, expectations, dedupe key and silver partitioning.

    Attributes:
        dataset: Short name used in table paths and batch state.
        fields: Declared fields; anything else lands in ``_rescued_data``.
        expectations: Named SQL rules evaluated on typed columns.
        key: Columns that identify a record in silver (first ingested wins).
        partition_by: Silver partition column, derived from ``partition_source``.
        partition_source: Timestamp field whose UTC date is the partition value.
        geo_ip_field: Field holding an IP address to enrich with country and region.
        gold: The gold tables built from silver.
    """

    dataset: str
    fields: tuple[Field, ...]
    expectations: tuple[Expectation, ...]
    key: tuple[str, ...]
    partition_by: str
    partition_source: str
    geo_ip_field: str | None = None
    gold: tuple[GoldTable, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def ip_address_regex() -> str:
    """A regex matching exactly the dotted IPv4 and textual IPv6 forms (no zone ids).

    Written without look-around so both Rust's regex (polars) and Java's (Spark) run it.
    """
    octet = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    ipv4 = rf"{octet}(\.{octet}){{3}}"
    h = "[0-9a-fA-F]{1,4}"

    def run(n: int) -> str:
        # n hextets joined by ':'; n == 0 is empty
        if n == 0:
            return ""
        return h if n == 1 else rf"{h}(:{h}){{{n - 1}}}"

    forms = [rf"({h}:){{7}}{h}", rf"({h}:){{6}}{ipv4}"]
    # compressed: `left::right`, left + right <= 7 hextets (or <= 5 with an IPv4 tail)
    for tail_v4, total in ((False, 7), (True, 5)):
        for left in range(0, total + 1):
            for right in range(0, total - left + 1):
                lhs = run(left)
                rhs = run(right)
                if tail_v4:
                    rhs = f"{rhs}:{ipv4}" if rhs else ipv4
                forms.append(f"{lhs}::{rhs}")
    return rf"^({ipv4}|{'|'.join(forms)})$"
