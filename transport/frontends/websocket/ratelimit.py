"""The per-user rate limiter (OriginChats' message limits).

A user may run a limited command ``per_minute`` times in any 60 s and
``burst`` times in any ``burst_window`` seconds. The first command over either
limit starts a cooldown of ``cooldown`` seconds during which every limited
command is refused; the answer is ``{"cmd": "rate_limit", "reason": ...,
"length": <milliseconds left>}``. Refused commands do not count.

The clock is injected (``IReactorTime``), so tests drive it with
:class:`twisted.internet.task.Clock`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Limited:
    """A refusal: why, and for how many milliseconds more."""

    reason: str
    length_ms: int


class _Bucket:
    __slots__ = ("events", "blocked_until")

    def __init__(self) -> None:
        self.events: deque[float] = deque()
        self.blocked_until = 0.0


class RateLimiter:
    """Sliding-window limits per key (a username, or username + command class)."""

    def __init__(self, clock: Any, per_minute: int = 60, burst: int = 10, burst_window: float = 10.0,
                 cooldown: float = 30.0) -> None:
        self.clock = clock
        self.per_minute = per_minute
        self.burst = burst
        self.burst_window = burst_window
        self.cooldown = cooldown
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> Limited | None:
        """Count one command for *key*; a :class:`Limited` when it must be refused."""
        now = self.clock.seconds()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        if now < bucket.blocked_until:
            return Limited("cooldown", max(1, int(round((bucket.blocked_until - now) * 1000))))
        horizon = max(60.0, self.burst_window)
        events = bucket.events
        while events and events[0] <= now - horizon:
            events.popleft()
        in_burst = sum(1 for t in events if t > now - self.burst_window)
        reason = None
        if in_burst >= self.burst:
            reason = f"More than {self.burst} messages in {self.burst_window:g} seconds"
        elif len([t for t in events if t > now - 60.0]) >= self.per_minute:
            reason = f"More than {self.per_minute} messages per minute"
        if reason is not None:
            bucket.blocked_until = now + self.cooldown
            return Limited(reason, max(1, int(round(self.cooldown * 1000))))
        events.append(now)
        return None

    def prune(self) -> None:
        """Forget keys with no command in the last minute and no cooldown running (bounds memory)."""
        now = self.clock.seconds()
        horizon = max(60.0, self.burst_window)
        stale = [key for key, b in self._buckets.items()
                 if b.blocked_until <= now and (not b.events or b.events[-1] <= now - horizon)]
        for key in stale:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
