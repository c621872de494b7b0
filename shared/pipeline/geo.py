"""IP address -> country -> region, from databases shipped inside PyPI wheels.

Countries come from geoip2fast's bundled IPv4+IPv6 country file; regions are the UN
geoscheme region of the country, from countryinfo. Nothing is fetched at run time.
Private, reserved, missing or unknown addresses map to ``unknown``.

``country_of`` asks geoip2fast one address at a time. ``enrich``, which silver runs on
millions of rows, loads the same file's networks once into sorted arrays (about 11 MB,
where geoip2fast's lists take about 50) and runs geoip2fast's search, a binary search for
the last network starting at or before the address, compiled over a whole column
(``kernels.address_slots``). The tests hold the two to the same answer.
"""

from __future__ import annotations

import bisect
import gzip
import ipaddress
import pickle
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from shared.pipeline import kernels

if TYPE_CHECKING:
    from geoip2fast import GeoIP2Fast

UNKNOWN = "unknown"
_DATA_FILE = "geoip2fast-ipv6.dat.gz"  # holds both address families
_DATA_VERSION = 120  # the file layout read by ``_networks``
_PRIVATE_BELOW = 16  # geoip2fast: country indexes below 16 name reserved and private ranges


@cache
def _geoip() -> GeoIP2Fast:
    from geoip2fast import GeoIP2Fast

    return GeoIP2Fast(geoip2fast_data_file=_DATA_FILE)


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
    """ISO 3166-1 alpha-2 country of an address, or ``unknown``: one geoip2fast lookup."""
    if not ip:
        return UNKNOWN
    try:  # an address as Python reads one: geoip2fast alone would take "1.2.3" or octal "010.1.1.1"
        address = ipaddress.ip_address(ip)
    except ValueError:
        return UNKNOWN
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:  # ::ffff:8.8.8.8 is 8.8.8.8, which geoip2fast knows only in that spelling
        return country_of(str(mapped))
    result = _geoip().lookup(ip)
    code = result.country_code
    if result.is_private or not code or len(code) != 2 or not code.isalpha():
        return UNKNOWN
    return str(code).upper()


def region_of(country: str) -> str:
    """UN geoscheme region (Africa, Americas, Asia, Europe, Oceania) of a country code."""
    return _regions().get(country, UNKNOWN)


@dataclass(frozen=True, slots=True)
class _Networks:
    """geoip2fast's networks as arrays, for ``kernels.address_slots``.

    ``v4`` holds each IPv4 network's first and last address, ``v6`` each IPv6 network's
    first and last address as (high, low) 64-bit halves; ``*_slot`` index ``countries``
    and ``regions``, whose slot 0 is ``unknown``.
    """

    v4: np.ndarray
    v4_slot: np.ndarray
    v6: np.ndarray
    v6_slot: np.ndarray
    countries: pl.Series
    regions: pl.Series

    def slot_of(self, country: str) -> int:
        hits = (self.countries == country).arg_true()
        return int(hits[0]) if len(hits) else 0


def _v6_bounds(first: list[int], length: np.ndarray) -> np.ndarray:
    """Each IPv6 network's first and last address as four int64 rows: (first high, first low,
    last high, last low) halves, each shifted by 2**63 so that int64 order is unsigned order.

    A network is a CIDR block, so its last address is its first with the host bits set: the
    halves are computed in numpy, not per network in Python (0.8 s a cold start otherwise).
    """
    halves = np.frombuffer(b"".join(ip.to_bytes(16, "big") for ip in first), dtype=">u8")
    high, low = halves[0::2].astype(np.uint64), halves[1::2].astype(np.uint64)
    host = (128 - length).astype(np.uint64)  # host bits, 0..128
    ones = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    # numpy's shifts by 64 or more are undefined: clip, then pick with where.
    low_host = np.where(host >= 64, ones, (np.uint64(1) << np.minimum(host, 63)) - np.uint64(1))
    high_bits = np.where(host > 64, host - np.uint64(64), np.uint64(0))
    high_host = np.where(
        high_bits >= 64, ones, (np.uint64(1) << np.minimum(high_bits, np.uint64(63))) - np.uint64(1)
    )
    if np.any(low & low_host) or np.any(high & high_host):
        raise RuntimeError("geoip2fast data: an IPv6 network whose first address has host bits set")
    flip = np.uint64(1 << 63)
    rows = (high, low, high | high_host, low | low_host)
    return np.stack([(row ^ flip).view(np.int64) for row in rows])


@cache
def _networks() -> _Networks:
    import geoip2fast

    path = Path(geoip2fast.__file__).with_name(_DATA_FILE)
    with gzip.open(path, "rb") as fh:
        version, source, _total, database = pickle.load(fh)
    if version != _DATA_VERSION or not source["country"] or source["asn"] or source["city"]:
        raise RuntimeError(
            f"{path}: geoip2fast data version {version} is not the country-only layout {_DATA_VERSION}"
        )
    _index, names, firsts, ids, lengths = database
    first = [ip for chunk in firsts for ip in chunk]
    length = [n for chunk in lengths for n in chunk]
    name_index = np.fromiter((i for chunk in ids for i in chunk), dtype=np.int64, count=len(first))
    del firsts, lengths, ids, database

    countries = [UNKNOWN]
    slot = np.zeros(len(names), dtype=np.int32)  # geoip2fast's country index -> ours
    for i, name in enumerate(names):
        code = name.split(":")[0]
        if i >= _PRIVATE_BELOW and len(code) == 2 and code.isalpha():
            slot[i] = len(countries)
            countries.append(code.upper())
    slots = slot[name_index]

    v4 = bisect.bisect_left(first, 1 << 32)  # sorted: the IPv4 networks come first
    v4_first = np.array(first[:v4], dtype=np.int64)
    v4_last = v4_first + (np.int64(1) << (32 - np.array(length[:v4], dtype=np.int64))) - 1
    v6 = _v6_bounds(first[v4:], np.array(length[v4:], dtype=np.int64))
    return _Networks(
        v4=np.stack([v4_first, v4_last]),
        v4_slot=slots[:v4],
        v6=v6,
        v6_slot=slots[v4:],
        countries=pl.Series("country", countries, pl.String),
        regions=pl.Series("region", [region_of(c) for c in countries], pl.String),
    )


@cache
def database_sha256() -> str:
    """SHA-256 of the geoip2fast database file the lookups read: a Databricks run checks
    that its cluster enriches from the very same file."""
    import hashlib

    import geoip2fast

    return hashlib.sha256(Path(geoip2fast.__file__).with_name(_DATA_FILE).read_bytes()).hexdigest()


def warm() -> None:
    """Load the network arrays and the regions, as the first enriched chunk would."""
    _networks()


def enrich(frame: pl.DataFrame, ip_column: str = "ip_address") -> pl.DataFrame:
    """Add ``country`` and ``region`` columns, looked up for the whole column at once."""
    nets = _networks()
    column = frame.get_column(ip_column).rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())
    buffers = column.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[column.offset : column.offset + len(column) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    slots = np.empty(len(column), dtype=np.int32)
    kernels.address_slots(
        data, offsets, kernels.validity(column), nets.v4, nets.v4_slot, nets.v6, nets.v6_slot, slots
    )
    ask = slots == kernels.ASK
    if ask.any():  # not an address in a form the kernel reads: geoip2fast decides, once per text
        texts = frame.get_column(ip_column).filter(pl.Series(ask))
        answers = {text: nets.slot_of(country_of(text)) for text in texts.unique().to_list()}
        slots[ask] = [answers[text] for text in texts.to_list()]
    index = pl.Series(slots, dtype=pl.UInt32)
    return frame.with_columns(nets.countries.gather(index), nets.regions.gather(index))
