"""Viewing sessions, interleaved within a partition: the source of every valid event."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

from shared.dev.generator.timestamps import _iso_second, _iso_z
from shared.dev.generator.world import _DECIMALS, _User, _World

Event = dict[str, Any]

_NEW, _PLAYING, _PAUSED = 0, 1, 2
_UUID_CLEAR: Final = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_SET: Final = (0x4 << 76) | (0x2 << 62)


class _Session:
    __slots__ = (
        "address",
        "device",
        "duration",
        "lag_ms",
        "last_ms",
        "position",
        "scale",
        "state",
        "steps",
        "title",
        "user",
        "user_id",
    )

    def __init__(self, world: _World, r: Callable[[], float], partition: int, *, resumed: bool) -> None:
        user = world.pick_user(partition)
        self.user = user
        self.user_id = user.user_id
        self.device = user.devices[int(r() * len(user.devices))]
        self.address = user.addresses[int(r() * len(user.addresses))]
        # 10 ** decimals of watch_time_sec; 1 means the client sends an integer.
        self.scale = 10 ** _DECIMALS[self.device] if self.device is not None else 100
        content = world.pick_content()
        self.title = world.content_ids[content]
        self.duration = world.durations[content]
        # Device-to-hub latency: log-uniform from 0.2 s to 4 minutes.
        self.lag_ms = int(200 * 1200 ** r())
        # Mostly short sessions, a few long ones with many pauses and seeks.
        self.steps = int(r() * r() * 32)
        self.last_ms = -1
        # A session already running when the window opened starts mid-stream, so
        # windows do not all begin with a burst of plays.
        self.state = _PLAYING if resumed else _NEW
        self.position = r() * self.duration if resumed or r() < 0.3 else 0.0


class _EventSource:
    """Interleaved viewing sessions in one partition during one capture window."""

    def __init__(
        self, world: _World, rng: random.Random, partition: int, *, events: int, window_ms: int
    ) -> None:
        self._world = world
        self._random = r = rng.random
        self._bits = rng.getrandbits
        self._partition = partition
        # About 45 s between two events of one session; bounded so huge files stay cheap.
        concurrent = max(4, min(4096, events * 45_000 // max(window_ms, 1)))
        self._sessions = [_Session(world, r, partition, resumed=r() < 0.7) for _ in range(concurrent)]

    def next_event(self, enqueued_ms: int) -> tuple[Event, _User]:
        """The next valid event, enqueued at ``enqueued_ms``, and the user who sent it."""
        # The hot path of every generator: locals and plain arithmetic on purpose.
        r = self._random
        sessions = self._sessions
        i = int(r() * len(sessions))
        s = sessions[i]
        event_ms = enqueued_ms - s.lag_ms
        if event_ms < s.last_ms:
            event_ms = s.last_ms
        state = s.state
        if state == _NEW:
            action = "play"
            s.state = _PLAYING
        else:
            if state == _PLAYING and s.last_ms >= 0:
                s.position += (event_ms - s.last_ms) / 1000
            if s.position >= s.duration or (s.steps <= 0 and r() < 0.35):
                action, s.position = "complete", s.duration
                sessions[i] = _Session(self._world, r, self._partition, resumed=False)
            elif s.steps <= 0:
                action = "stop"
                sessions[i] = _Session(self._world, r, self._partition, resumed=False)
            elif state == _PAUSED:
                action, s.state = "resume", _PLAYING
            elif r() < 0.55:
                action, s.state = "pause", _PAUSED
            else:
                action, s.position = "seek", r() * s.duration
            s.steps -= 1
        s.last_ms = event_ms
        scale = s.scale
        if scale == 1:  # set-top boxes: whole seconds everywhere
            event_time = _iso_second(event_ms // 1000) + "Z"
            watch: float = int(s.position)
        else:
            event_time = _iso_z(event_ms)
            watch = int(s.position * scale) / scale
        # A version-4 UUID, formatted by hand: the uuid module costs 3x as much.
        h = (self._bits(128) & _UUID_CLEAR | _UUID_SET).to_bytes(16).hex()
        event: Event = {
            "log_id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
            "user_id": s.user_id,
            "event_time": event_time,
            "action": action,
            "content_id": s.title,
            "watch_time_sec": watch,
        }
        if r() >= 0.01:  # ~1% of events arrive without the optional address
            event["ip_address"] = s.address
        if s.device is not None:
            event["device"] = s.device
        return event, s.user
