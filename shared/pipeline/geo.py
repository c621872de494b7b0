"""IP address -> country -> region, from databases shipped inside PyPI wheels.

Countries come from geoip2fast's bundled IPv4+IPv6 country file; regions are the UN
geoscheme region of the country, from countryinfo. Nothing is fetched at run time.
Private, reserved, missing or unknown addresses map to ``unknown``.
"""

from __future__ import annotations

import threading
from functools import cache, lru_cache
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from geoip2fast import GeoIP2Fast

UNKNOWN = "unknown"


@cache
def _geoip() -> GeoIP2Fast:
    from geoip2fast import GeoIP2Fast

    # The -ipv6 file holds both address families.
    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")


@cache
def _regions() -> dict[str, str]:
    import countryinfo

    regions: dict[str, str] = {}
    for country in countryinfo.all_countries():
        code, region = country.iso(2), country.region()
        if code and region:
            regions[str(code).upper()] = str(region)
    return regions


@lru_cache(maxsize=1 << 18)
def country_of(ip: str | None) -> str:
    """ISO 3166-1 alpha-2 country of an address, or ``unknown``.

    Memoised: a batch's chunks, and consecutive batches, share most of their addresses.
    """
    if not ip:
        return UNKNOWN
    result = _geoip().lookup(ip)
    code = result.country_code
    if result.is_private or not code or len(code) != 2 or not code.isalpha():
        return UNKNOWN
    return str(code).upper()


def region_of(country: str) -> str:
    """UN geoscheme region (Africa, Americas, Asia, Europe, Oceania) of a country code."""
    return _regions().get(country, UNKNOWN)


def enrich(frame: pl.DataFrame, ip_column: str = "ip_address") -> pl.DataFrame:
    """Add ``country`` and ``region`` columns; each address is looked up once per process.

    Addresses already seen are joined from a table kept across chunks and batches (up to
    ``_KNOWN_MAX`` rows), so a chunk pays Python only for the addresses it introduces.
    """
    ips = frame.select(pl.col(ip_column).drop_nulls().unique().alias("ip"))
    known = _known(ips)
    return (
        frame.join(known, left_on=ip_column, right_on="ip", how="left", maintain_order="left")
        .with_columns(pl.col("country").fill_null(UNKNOWN), pl.col("region").fill_null(UNKNOWN))
        .drop("ip", strict=False)
    )


_KNOWN_MAX = 1 << 18
_known_table = pl.DataFrame(schema={"ip": pl.String, "country": pl.String, "region": pl.String})
_known_lock = threading.Lock()


def _known(ips: pl.DataFrame) -> pl.DataFrame:
    """The lookup table, extended with ``ips`` not seen before."""
    global _known_table
    known = _known_table
    new = ips.join(known, on="ip", how="anti")
    if new.is_empty():
        return known
    countries = [country_of(ip) for ip in new.get_column("ip").to_list()]
    found = new.with_columns(
        pl.Series("country", countries, pl.String),
        pl.Series("region", [region_of(c) for c in countries], pl.String),
    )
    with _known_lock:
        base = _known_table
        if base.height + found.height > _KNOWN_MAX:  # start over with this chunk's addresses
            base = known.join(ips, on="ip", how="semi")
        _known_table = pl.concat([base, found.join(base, on="ip", how="anti")]).rechunk()
        return _known_table
