"""Typing and expectation checks: parsed chunk -> valid rows + quarantined rows.

The contract's expectations are SQL text; ``pl.sql_expr`` compiles each once. A row is
valid when every expectation is true (NULL counts as false). A quarantined row carries
the names of every expectation it failed, or ``malformed_body`` (a body that is not a
JSON object), or ``malformed_row`` (a record the decoder could not read, such as a CSV
row of the wrong width; its reason says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import polars as pl

from shared.contracts import Contract

MALFORMED_BODY = "malformed_body"
MALFORMED_ROW = "malformed_row"
_EPOCH_MS = r"^-?\d{1,15}$"
# %#z takes Z as well as +hh:mm and +hhmm, so no string rewrite (and copy) is needed.
_ISO_8601 = "%Y-%m-%dT%H:%M:%S%.f%#z"

QUARANTINE_COLUMNS = ("raw_payload", "failed_expectations", "reason")


@dataclass(frozen=True, slots=True)
class Validated:
    """One chunk split in two. ``valid`` keeps the parsed (string) columns and lineage."""

    valid: pl.DataFrame
    quarantined: pl.DataFrame


def typed_columns(contract: Contract) -> list[pl.Expr]:
    """Expressions that turn the parsed strings into the contract's types.

    A field of type timestamp or double keeps its string as ``_raw_<name>`` so that
    expectations can tell "missing" from "present but unparseable". Timestamps are naive
    UTC here (SQL literals compare against naive timestamps); silver attaches the zone.
    """
    exprs: list[pl.Expr] = []
    for field in contract.fields:
        raw = pl.col(field.name)
        if field.type == "timestamp":
            exprs.append(raw.alias(f"_raw_{field.name}"))
            exprs.append(parse_timestamp(raw).alias(field.name))
        elif field.type == "double":
            exprs.append(raw.alias(f"_raw_{field.name}"))
            exprs.append(raw.str.strip_chars().cast(pl.Float64, strict=False).alias(field.name))
    return exprs


def parse_timestamp(raw: pl.Expr) -> pl.Expr:
    """ISO-8601 with ``Z`` or an offset, or integer epoch milliseconds -> naive UTC."""
    text = raw.str.strip_chars()
    epoch = pl.from_epoch(text.cast(pl.Int64, strict=False), time_unit="ms")
    iso = text.str.to_datetime(_ISO_8601, strict=False, time_zone="UTC", time_unit="us").dt.replace_time_zone(
        None
    )
    return pl.when(text.str.contains(_EPOCH_MS)).then(epoch).otherwise(iso)


@cache
def _checks(contract: Contract) -> tuple[tuple[str, pl.Expr], ...]:
    return tuple((e.name, pl.sql_expr(e.sql).fill_null(False)) for e in contract.expectations)


def validate(parsed: pl.DataFrame, contract: Contract) -> Validated:
    """Split a parsed chunk into valid and quarantined rows."""
    checks = _checks(contract)
    is_valid = pl.all_horizontal([check for _, check in checks]) & ~pl.col("_malformed")
    checked = parsed.with_columns(typed_columns(contract)).with_columns(is_valid.alias("_valid"))
    lineage = [c for c in parsed.columns if c.startswith("_") and c not in ("_raw", "_malformed")]
    typed = {f.name for f in contract.fields if f.type != "string"}
    # Bronze keeps fields as received: the strings, not the typed values.
    as_received = [
        pl.col(f"_raw_{c}").alias(c) if c in typed else pl.col(c)
        for c in parsed.columns
        if c not in ("_raw", "_malformed")
    ]
    valid = checked.filter("_valid").select(as_received)
    # Naming every failed expectation builds a list per row: only rejected rows pay for it.
    failed = pl.concat_list([pl.when(~check).then(pl.lit(name)) for name, check in checks]).list.drop_nulls()
    # A malformed row's _rescued_data says why, when the decoder knows more than "not JSON".
    why = pl.col("_rescued_data")
    failed = (
        pl.when(pl.col("_malformed") & why.is_null())
        .then(pl.lit([MALFORMED_BODY], dtype=pl.List(pl.String)))
        .when(pl.col("_malformed"))
        .then(pl.lit([MALFORMED_ROW], dtype=pl.List(pl.String)))
        .otherwise(failed)
    )
    reason = (
        pl.when(pl.col("_malformed") & why.is_not_null())
        .then(pl.concat_str(pl.lit(f"{MALFORMED_ROW}: "), why))
        .otherwise(pl.col("failed_expectations").list.join(","))
    )
    quarantined = (
        checked.filter(~pl.col("_valid"))
        .with_columns(failed.alias("failed_expectations"))
        .select(
            pl.col("_raw").alias("raw_payload"),
            "failed_expectations",
            reason.alias("reason"),
            *[c for c in lineage if c != "_rescued_data"],
        )
    )
    # A filtered frame shares the chunk's string buffers; callers keep quarantined rows
    # for the whole file, so copy them out or every chunk's bodies stay in memory.
    compact = pl.from_arrow(quarantined.to_arrow(compat_level=pl.CompatLevel.oldest()))
    assert isinstance(compact, pl.DataFrame)
    return Validated(valid=valid, quarantined=compact)


def failure_counts(quarantined: pl.DataFrame) -> dict[str, int]:
    """How many quarantined rows failed each expectation (a row may fail several)."""
    if quarantined.is_empty():
        return {}
    counts = quarantined.select(pl.col("failed_expectations").explode()).to_series().value_counts()
    return {str(k): int(v) for k, v in counts.iter_rows()}
