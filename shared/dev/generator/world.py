"""The synthetic service's population: users, their devices and addresses, and the catalogue."""

from __future__ import annotations

import ipaddress
import random
from bisect import bisect
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Final

from shared.dev.generator.capture import PropertyValue

# Blocks of large ISPs and clouds, weighted roughly by audience. Each block was checked
# against geoip2fast's database to resolve to its country, so gold's geo breakdown shows
# a believable spread rather than "unknown".
_NETWORKS: Final[tuple[tuple[str, int, tuple[str, ...], tuple[str, ...]], ...]] = (
    (
        "US",
        30,
        ("73.0.0.0/8", "98.192.0.0/10", "99.0.0.0/10", "71.160.0.0/11", "76.0.0.0/10", "3.80.0.0/12"),
        ("2601::/20", "2600:1700::/28", "2600:6c00::/24", "2600:1f00::/24"),
    ),
    ("IN", 12, ("49.36.0.0/14", "106.192.0.0/11", "117.192.0.0/10"), ("2409:4000::/22",)),
    ("BR", 7, ("177.0.0.0/12", "187.0.0.0/12"), ("2804:14c::/31", "2804:d41::/32")),
    ("DE", 6, ("79.192.0.0/10", "91.0.0.0/10"), ("2003::/19", "2a02:8100::/27")),
    ("GB", 6, ("86.128.0.0/10", "81.128.0.0/11"), ("2a00:23c0::/27",)),
    ("FR", 5, ("86.192.0.0/11", "90.0.0.0/10"), ("2a01:cb00::/24", "2a01:e30::/28")),
    ("JP", 5, ("126.0.0.0/8",), ("240b::/26", "2400:4050::/32")),
    ("MX", 4, ("189.128.0.0/10",), ("2806:2f0::/32",)),
    ("CA", 4, ("99.224.0.0/11", "142.112.0.0/13", "174.88.0.0/13"), ("2607:fea8::/32",)),
    ("ID", 3, ("36.64.0.0/11",), ("2001:448a::/32",)),
    ("KR", 3, ("175.192.0.0/10",), ("2001:2d8::/32",)),
    ("ES", 3, ("88.0.0.0/11",), ("2a0c:5a80::/29",)),
    ("IT", 3, ("79.0.0.0/10", "93.32.0.0/11"), ("2001:b07::/32",)),
    ("AU", 3, ("1.128.0.0/11",), ("2001:8000::/20", "2001:44b8::/32")),
    ("PL", 2, ("83.0.0.0/11",), ("2a01:110f::/32",)),
    ("NL", 2, ("77.160.0.0/12",), ("2a02:a400::/26",)),
    ("TR", 2, ("78.160.0.0/11",), ()),
    ("VN", 2, ("113.160.0.0/11",), ("2405:4800::/32",)),
    ("PH", 2, ("112.198.0.0/16",), ()),
    ("TH", 2, ("49.228.0.0/14",), ()),
    ("AR", 2, ("181.0.0.0/12",), ()),
    ("CN", 2, ("113.64.0.0/10",), ("240e::/20",)),
    ("SE", 1, ("90.224.0.0/12",), ("2001:2040::/32",)),
    ("CH", 1, ("85.0.0.0/13",), ("2a02:1210::/28",)),
    ("IE", 1, ("86.40.0.0/13",), ()),
    ("RO", 1, (), ("2a02:2f00::/29",)),
    ("RU", 1, ("95.24.0.0/13",), ()),
    ("ZA", 1, ("41.0.0.0/11",), ("2c0f:f4c0::/32",)),
    ("NG", 1, ("105.112.0.0/12",), ()),
    ("EG", 1, ("41.32.0.0/12",), ()),
)
_Block = tuple[int, int, int]  # (version, first address, address count)
_DEVICES: Final = ("ios", "android", "web", "tv", "roku")
_DEVICE_WEIGHTS: Final = (30, 30, 20, 12, 8)
# Decimals of watch_time_sec: set-top boxes report whole seconds, apps the player's position.
_DECIMALS: Final = MappingProxyType({"ios": 2, "android": 1, "web": 2, "tv": 0, "roku": 0})


@cache
def _blocks() -> tuple[tuple[int, ...], tuple[tuple[tuple[_Block, ...], tuple[_Block, ...]], ...]]:
    cumulative: list[int] = []
    countries: list[tuple[tuple[_Block, ...], tuple[_Block, ...]]] = []
    total = 0
    for _country, weight, v4, v6 in _NETWORKS:
        total += weight
        cumulative.append(total)
        nets = [ipaddress.ip_network(cidr) for cidr in (*v4, *v6)]
        blocks = [(n.version, int(n.network_address), n.num_addresses) for n in nets]
        countries.append((tuple(b for b in blocks if b[0] == 4), tuple(b for b in blocks if b[0] == 6)))
    return tuple(cumulative), tuple(countries)


def _address(rng: random.Random, block: _Block) -> str:
    version, first, size = block
    if version == 6:
        return str(ipaddress.IPv6Address(first + rng.randrange(1, size)))
    address = first + rng.randrange(1, size - 1)
    if address & 0xFF in (0, 255):  # look like a host, not a /24's network or broadcast
        address ^= 1
    return str(ipaddress.IPv4Address(address))


def _private_address(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _diagnostic_id(rng: random.Random) -> str:
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"


@dataclass(frozen=True, slots=True)
class _User:
    user_id: str
    partition_key: str | None
    devices: tuple[str | None, ...]
    addresses: tuple[str, ...]
    avro_properties: dict[str, tuple[str, PropertyValue]]  # in fastavro's tuple notation


def _avro_type(value: PropertyValue) -> str:
    """The Capture Properties union branch that holds ``value``."""
    match value:
        case None:
            return "null"
        case bool() | int():
            return "long"
        case float():
            return "double"
        case str():
            return "string"
        case bytes():
            return "bytes"
    raise TypeError(f"a Capture property cannot hold {value!r}")


class _World:
    """Users and catalogue shared by every file of one generated day."""

    def __init__(self, rng: random.Random, *, users: int, partitions: int) -> None:
        self._rng = rng
        self._ids = [f"u-{n:07d}" for n in rng.sample(range(10_000_000), users)]
        self._users: list[_User | None] = [None] * users
        # Zipf over rank: a few heavy viewers, a long tail of occasional ones. Rank r is
        # keyed to partition r % partitions (a stand-in for hashing the partition key).
        self._by_partition: list[tuple[list[int], list[float]]] = []
        for p in range(partitions):
            ranks = list(range(p, users, partitions))
            cumulative: list[float] = []
            total = 0.0
            for r in ranks:
                total += (r + 5) ** -1.1
                cumulative.append(total)
            self._by_partition.append((ranks, cumulative))
        titles = max(50, min(20_000, users // 2))
        self.content_ids = [f"c-{n:06d}" for n in rng.sample(range(1_000_000), titles)]
        self.durations = [self._duration() for _ in range(titles)]
        self.content_cumulative: list[float] = []
        total = 0.0
        for r in range(titles):
            total += (r + 3) ** -1.0
            self.content_cumulative.append(total)

    def _duration(self) -> float:
        x = self._rng.random()
        if x < 0.6:
            return self._rng.uniform(1_200, 3_600)  # episodes
        if x < 0.85:
            return self._rng.uniform(4_800, 7_200)  # films
        return self._rng.uniform(60, 600)  # clips and trailers

    def pick_user(self, partition: int) -> _User:
        ranks, cumulative = self._by_partition[partition]
        if not ranks:  # more partitions than users
            ranks, cumulative = self._by_partition[0]
        rank = ranks[min(bisect(cumulative, self._rng.random() * cumulative[-1]), len(ranks) - 1)]
        user = self._users[rank]
        if user is None:  # built on first use: a big world never pays for idle users
            user = self._users[rank] = self._make_user(self._ids[rank])
        return user

    def pick_content(self) -> int:
        cumulative = self.content_cumulative
        return min(bisect(cumulative, self._rng.random() * cumulative[-1]), len(cumulative) - 1)

    def _make_user(self, user_id: str) -> _User:
        rng = self._rng
        cumulative, countries = _blocks()
        v4, v6 = countries[min(bisect(cumulative, rng.random() * cumulative[-1]), len(countries) - 1)]
        addresses: list[str] = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            family = v6 if v6 and (not v4 or rng.random() < 0.3) else v4
            addresses.append(_address(rng, rng.choice(family)))
        if rng.random() < 0.005:  # valid per the contract; geo lookup says "unknown"
            addresses[0] = _private_address(rng)
        devices: tuple[str | None, ...] = tuple(
            rng.choices(_DEVICES, _DEVICE_WEIGHTS, k=1 if rng.random() < 0.8 else 2)
        )
        if rng.random() < 0.01:  # an old client that never sent the optional field
            devices = (None,)
        x = rng.random()
        properties: dict[str, PropertyValue] = {}
        if x < 0.12:
            properties = {"Diagnostic-Id": _diagnostic_id(rng)}
        elif x < 0.18:
            properties = {
                "content-type": "application/json",
                "producer": "web-sdk/3.4.1",
                "batch-size": rng.randrange(1, 50),
                "sample-rate": 0.25,
                "checksum": rng.randbytes(4),
            }
        elif x < 0.2:
            properties = {"correlation-id": None}
        # Most producers key by user so a user's events stay in order; some do not.
        partition_key = user_id if rng.random() < 0.9 else None
        tagged = {name: (_avro_type(value), value) for name, value in properties.items()}
        return _User(user_id, partition_key, devices, tuple(addresses), tagged)
