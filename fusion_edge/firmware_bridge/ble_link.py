"""One pod's link inside the BLE transport: its state, and the reconnect backoff schedule.

Split from :mod:`fusion_edge.firmware_bridge.ble` so the policy can be read (and tested) on its
own; ``docs/ble-transport.md`` explains the schedule.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from fusion_edge.firmware_bridge.pod_commands import PodCommander
from fusion_edge.firmware_bridge.reader import PacketReader

if TYPE_CHECKING:
    from bleak import BleakClient


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff between reconnect attempts.

    The n-th attempt (from 0) waits ``min(max_s, initial_s * factor**n)``, spread by
    ``±jitter`` (a fraction) so that several pods dropped by the same interference do not all
    retry in the same instant. The defaults give 0.5, 1, 2, 4, 8, 16, 30, 30, ... seconds.

    Attributes:
        initial_s: Wait before the first attempt, seconds.
        factor: Growth per attempt.
        max_s: Cap on one wait, seconds.
        jitter: Relative spread, 0 for an exact schedule.
        max_attempts: Give up after this many failed attempts; ``None`` retries for ever (the
            field default: a pod that walks out of range should come back when it returns).
    """

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.1
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s or self.factor < 1:
            raise ValueError(
                f"backoff initial_s={self.initial_s}, factor={self.factor}, max_s={self.max_s} "
                "is not a growing schedule: use initial_s >= 0, factor >= 1, max_s >= initial_s"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter={self.jitter} must be in [0, 1)")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("backoff max_attempts must be >= 1, or None to retry for ever")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number ``attempt`` (0-based)."""
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        if self.jitter and rng is not None:
            base *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return base


class LinkState(str, Enum):
    """Where one pod's link stands."""

    IDLE = "idle"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSED = "closed"


class PodLink:
    """One pod's connection state inside a :class:`BleTransport` (read-only for callers)."""

    def __init__(self, address: str, reader: PacketReader) -> None:
        self.address = address
        self.reader = reader
        self.state = LinkState.IDLE
        self.client: BleakClient | None = None
        self.commander: PodCommander | None = None
        self.mtu: int | None = None
        self.info: Any = None
        self.connects = 0
        self.reconnect_delays: list[float] = []
        self.last_error: BaseException | None = None
        self.reconnect_task: asyncio.Task[None] | None = None
        self.time_set_for_boot: int | None = None
        self.closing = False
