"""IP -> country -> region: the column lookup answers as geoip2fast does, address by address."""

from __future__ import annotations

import ipaddress
import random

import polars as pl

from shared.dev import generator
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
    "",
    "::1",
    "::ffff:8.8.8.8",
    "::8.8.8.8",
    "0.0.0.0",
    "255.255.255.255",
    "2001:db8::g1",
    "999.1.1.1",
    # inet_aton, which geoip2fast parses with, reads these as 8.1.1.1 and 1.2.0.3
    "010.1.1.1",
    "1.2.3",
    "::",
    "1::",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "12345::",
    "1:::2",
    "1::2::3",
    ":1::",
    "1::2:",
    "fe80::1%eth0",
    "FFFF:ffff:FFFF:ffff:ffff:ffff:ffff:ffff",
    "::1:0:0",
    "01.2.3.4",
    "1.2.3.4.5",
    "1.2.3.",
    "256.1.1.1",
]


def _expected(ips: list[str | None]) -> list[tuple[str, str]]:
    return [(geo.country_of(ip), geo.region_of(geo.country_of(ip))) for ip in ips]


def _looked_up(ips: list[str | None]) -> list[tuple[str, str]]:
    frame = geo.enrich(pl.DataFrame({"ip_address": ips}, schema={"ip_address": pl.String}))
    assert frame.columns == ["ip_address", "country", "region"]
    assert frame.get_column("ip_address").to_list() == ips
    return list(zip(frame.get_column("country"), frame.get_column("region"), strict=True))


def test_public_private_missing_and_malformed_addresses() -> None:
    rows = _looked_up(ADDRESSES)
    assert rows == _expected(ADDRESSES)
    assert rows[0] == ("US", "Americas")
    for unknown in (2, 3, 5, 8, 9, 14, 15, 16, 17):
        assert rows[unknown] == ("unknown", "unknown"), ADDRESSES[unknown]


def test_every_kind_of_address_matches_geoip2fast() -> None:
    """Random addresses of both families, both ends of sampled networks and the addresses
    just past them, and the generator's own blocks."""
    rng = random.Random(7)
    nets = geo._networks()
    ips: list[str | None] = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(3000)]
    ips += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(300)]
    for v4 in nets.v4:  # first and last addresses of networks, and the ones just past
        for edge in rng.sample(v4.tolist(), 500):
            ips += [str(ipaddress.IPv4Address(edge)), str(ipaddress.IPv4Address(min(edge + 1, 2**32 - 1)))]
    for high, low in ((nets.v6[0], nets.v6[1]), (nets.v6[2], nets.v6[3])):
        for at in rng.sample(range(len(high)), 300):
            edge = ((int(high[at]) + 2**63) << 64) | (int(low[at]) + 2**63)
            ips += [str(ipaddress.IPv6Address(edge)), str(ipaddress.IPv6Address(min(edge + 1, 2**128 - 1)))]
    for v4_blocks, v6_blocks in generator._blocks()[1]:
        for block in (*v4_blocks, *v6_blocks):
            ips += [generator._address(rng, block) for _ in range(20)]
    rows = _looked_up(ips)
    assert rows == _expected(ips)
    assert len({country for country, _ in rows}) > 20  # the sample reaches many countries


def test_an_empty_and_an_all_null_column() -> None:
    assert _looked_up([]) == []
    assert _looked_up([None, None]) == [("unknown", "unknown")] * 2
