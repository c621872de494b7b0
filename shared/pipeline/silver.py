"""Silver rows, pure: deduplicated bronze rows -> typed, partitioned, geo-enriched rows."""

from __future__ import annotations

import polars as pl

from shared.contracts import Contract
from shared.pipeline import geo, schemas
from shared.pipeline.keyindex import key_hash
from shared.pipeline.validate import typed_columns


def rows(bronze: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """Typed, enriched silver rows for bronze rows already deduplicated (``keyindex``)."""
    raw_copies = [f"_raw_{f.name}" for f in contract.fields if f.type != "string"]
    source = contract.partition_source
    typed = (
        bronze.with_columns(typed_columns(contract))
        .drop(raw_copies)
        .with_columns(
            pl.col(source).dt.replace_time_zone("UTC"),
            pl.col(source).dt.date().alias(contract.partition_by),
            key_hash(contract.key[0]),
        )
    )
    if contract.geo_ip_field:
        typed = geo.enrich(typed, contract.geo_ip_field)
    return typed.select(list(schemas.silver(contract)))
