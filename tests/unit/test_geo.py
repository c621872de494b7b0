"""IP -> country -> region, and the lookup table kept across chunks."""

from __future__ import annotations

import polars as pl
import pytest

from shared.pipeline import geo

ADDRESSES = [
    "8.8.8.8",
    "81.2.69.142",
    "10.0.0.1",
    None,
    "2a02:1216:3bb9:55f::1",
    "not an ip",
    "8.8.8.8",
    "1.1.1.1",
]


def _expected(ips: list[str | None]) -> list[tuple[str, str]]:
    return [(geo.country_of(ip), geo.region_of(geo.country_of(ip))) for ip in ips]


def test_public_private_and_missing_addresses() -> None:
    frame = geo.enrich(pl.DataFrame({"ip_address": ADDRESSES}, schema={"ip_address": pl.String}))
    assert frame.columns == ["ip_address", "country", "region"]
    rows = list(zip(frame.get_column("country"), frame.get_column("region"), strict=True))
    assert rows == _expected(ADDRESSES)
    assert rows[0] == ("US", "Americas")
    assert rows[2] == rows[3] == rows[5] == ("unknown", "unknown")


def test_the_lookup_table_starts_over_when_full_and_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geo, "_KNOWN_MAX", 3)
    monkeypatch.setattr(geo, "_known_table", geo._known_table.clear())
    for chunk in (ADDRESSES[:3], ADDRESSES[3:6], ADDRESSES[5:], ADDRESSES[:5], ADDRESSES):
        frame = geo.enrich(pl.DataFrame({"ip_address": chunk}, schema={"ip_address": pl.String}))
        assert list(zip(frame.get_column("country"), frame.get_column("region"), strict=True)) == _expected(
            chunk
        )
        assert frame.get_column("ip_address").to_list() == chunk
