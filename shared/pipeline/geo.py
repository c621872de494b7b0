"""IP address -> country -> region, from databases shipped inside PyPI wheels.

Countries come from geoip2fast's bundled IPv4+IPv6 country file; regions are the UN
geoscheme region of the country, from countryinfo. Nothing is fetched at run time.
Private, reserved, missing or unknown addresses map to ``unknown``.
"""

from __future__ import annotations

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
    """Add ``country`` and ``region`` columns, looking each distinct address up once."""
    ips = frame.get_column(ip_column).unique().drop_nulls().to_list()
    countries = {ip: country_of(ip) for ip in ips}
    lookup = pl.DataFrame(
        {
            ip_column: list(countries),
            "country": list(countries.values()),
            "region": [region_of(c) for c in countries.values()],
        },
        schema={ip_column: pl.String, "country": pl.String, "region": pl.String},
    )
    return frame.join(lookup, on=ip_column, how="left", maintain_order="left").with_columns(
        pl.col("country").fill_null(UNKNOWN), pl.col("region").fill_null(UNKNOWN)
    )
