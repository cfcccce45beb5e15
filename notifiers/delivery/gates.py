"""When the worker may call a chat platform: rate-limit buckets, and outage gates with probes.

``Bucket``: a token bucket per channel (the platforms' per-channel message rates); a 429 blocks
the whole channel for its Retry-After.

``Outages``: one ``Gate`` per channel. A transient failure (5xx, timeout, refused connection)
closes the gate: every message of that channel waits (they would fail the same way) instead of
each retrying on its own. While closed, ONE message at a time probes: when the channel's
backoff step has passed (jittered, doubling, capped at ``backoff_cap``), or when the platform
has not been tried for ``probe_interval`` (the longest-waiting failing channel of that platform
goes), so a platform that answers again is noticed within a minute without a thundering herd.
Any answer from the platform (success, a 429, a permanent error) opens the gate, and a success
wakes every failing channel of the same platform for an immediate probe of its own instead of
leaving it to the end of its backoff. A channel failing for longer than the retry horizon
expires: its waiting messages are failed and counted, and a new horizon starts for newer ones.
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass, field

from notifiers.delivery.clock import Clock
from notifiers.delivery.model import ChannelRate, DeliveryPolicy


class Bucket:
    def __init__(self, rate: ChannelRate, clock: Clock) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = float(rate.burst)
        self.stamp = clock.time()
        self.blocked_until = 0.0
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = self.clock.time()
                if self.blocked_until > now:
                    await self.clock.sleep(self.blocked_until - now)
                    continue
                elapsed = max(0.0, now - self.stamp)
                self.tokens = min(
                    float(self.rate.burst), self.tokens + elapsed * self.rate.per_second
                )
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await self.clock.sleep((1.0 - self.tokens) / self.rate.per_second)

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, self.clock.time() + seconds)


class Verdict(enum.Enum):
    GO = "go"  # the channel is healthy
    PROBE = "probe"  # the channel is failing and this caller tries it once
    EXPIRED = "expired"  # failing for longer than the horizon: give up its waiting messages


@dataclass
class Gate:
    platform: str
    channel: str
    failures: int = 0  # consecutive failed tries (the backoff step)
    until: float = 0.0  # no probe before this (epoch seconds)
    first_failure: float | None = None  # start of this outage
    last_error: str = ""
    probing: bool = False
    platform_probe: bool = False  # the probe in flight is the platform-wide one
    waiters: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one call at a time per channel

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class _Platform:
    last_probe: float = 0.0
    probing: bool = False


class Outages:
    """The gates of every channel. Callers hold ``gate.lock`` around ``enter`` and the call, so
    a channel never has two calls in flight: when an outage starts, one message finds out,
    not a burst of them."""

    def __init__(
        self, policy: DeliveryPolicy, clock: Clock, rng: random.Random | None = None
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.rng = rng or random.Random()
        self.gates: dict[tuple[str, str], Gate] = {}
        self._platforms: dict[str, _Platform] = {}

    def gate(self, platform: str, channel: str) -> Gate:
        key = (platform, channel)
        gate = self.gates.get(key)
        if gate is None:
            gate = self.gates[key] = Gate(platform, channel)
        return gate

    def failing(self) -> list[Gate]:
        return [g for g in self.gates.values() if g.failing]

    def backoff(self, failures: int) -> float:
        """Doubling from ``backoff_base``, capped, jittered down (never above the cap)."""
        p = self.policy
        step = min(p.backoff_cap, p.backoff_base * 2 ** min(max(0, failures - 1), 30))
        return float(step * self.rng.uniform(0.5, 1.0))

    def restore(self, gate: Gate, failures: int, first_failure: float) -> None:
        """A channel that was failing before a restart: probe it once before sending more."""
        now = self.clock.time()
        if not gate.failing:
            gate.until = now
        gate.failures = max(gate.failures, failures, 1)
        if gate.first_failure is None or first_failure < gate.first_failure:
            gate.first_failure = min(first_failure, now)

    # -- waiting ----------------------------------------------------------------------------
    def _platform_turn(self, gate: Gate, plat: _Platform, now: float) -> bool:
        """Is it time for a platform-wide probe, and is ``gate`` the channel to make it?"""
        if plat.probing or now < plat.last_probe + self.policy.probe_interval:
            return False
        waiting = [
            g
            for g in self.gates.values()
            if g.platform == gate.platform and g.failing and g.waiters and not g.probing
        ]
        return bool(waiting) and min(waiting, key=lambda g: g.until) is gate

    async def enter(self, gate: Gate) -> Verdict:
        """Wait until a message of ``gate``'s channel may be sent."""
        plat = self._platforms.setdefault(gate.platform, _Platform())
        gate.waiters += 1
        try:
            while True:
                if not gate.failing:
                    return Verdict.GO
                now = self.clock.time()
                if not gate.probing:
                    started = gate.first_failure if gate.first_failure is not None else now
                    if now - started > self.policy.retry_horizon:
                        return Verdict.EXPIRED
                    own = now >= gate.until
                    if own or self._platform_turn(gate, plat, now):
                        gate.probing = True
                        gate.platform_probe = not own
                        plat.probing = plat.probing or not own
                        plat.last_probe = now
                        return Verdict.PROBE
                timeout: float | None = None
                if not gate.probing:
                    timeout = gate.until - now
                    if not plat.probing:
                        timeout = min(timeout, plat.last_probe + self.policy.probe_interval - now)
                    timeout = max(timeout, 0.001)
                await self.clock.wait(gate.changed, timeout)
        finally:
            gate.waiters -= 1

    # -- outcomes ---------------------------------------------------------------------------
    def _end_probe(self, gate: Gate, probe: bool) -> None:
        if probe:
            gate.probing = False
            if gate.platform_probe:
                self._platforms.setdefault(gate.platform, _Platform()).probing = False
            gate.platform_probe = False

    def release(self, gate: Gate, probe: bool) -> None:
        """The caller made no call after all."""
        self._end_probe(gate, probe)
        gate.notify()

    def up(self, gate: Gate, probe: bool) -> None:
        """The platform answered (success, 429 or a permanent error): the channel is open, and
        every other failing channel of the platform probes now instead of at its backoff."""
        self._end_probe(gate, probe)
        was_failing = gate.failing
        gate.failures = 0
        gate.until = 0.0
        gate.first_failure = None
        gate.last_error = ""
        if was_failing:
            gate.notify()
        now = self.clock.time()
        for other in self.gates.values():
            if other.platform == gate.platform and other.failing and other.until > now:
                other.until = now
                other.notify()

    def down(self, gate: Gate, probe: bool, error: str) -> None:
        """A transient failure: a failed probe (or the first failure) takes the next, longer
        backoff step; calls already in flight when the gate closed do not add steps."""
        self._end_probe(gate, probe)
        now = self.clock.time()
        if probe or not gate.failing:
            gate.failures += 1
            gate.until = now + self.backoff(gate.failures)
        if gate.first_failure is None:
            gate.first_failure = now
        plat = self._platforms.setdefault(gate.platform, _Platform())
        plat.last_probe = max(plat.last_probe, now)  # a failed call counts as a try
        gate.last_error = error
        gate.notify()

    def renew(self, gate: Gate) -> None:
        """After an expiry: newer messages get a horizon of their own."""
        gate.first_failure = self.clock.time()
        gate.notify()
