"""Liveness rules, pure: a device is online while its retained ``state`` says so and its
last message is younger than ``factor`` × its declared heartbeat interval.

"No recent data" is a state of its own: a device that has said ``online`` but has not
yet declared an interval is judged by its state alone until it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class DeviceLiveness:
    state_online: bool | None
    last_seen_at: datetime | None
    interval_s: int | None


def is_online(d: DeviceLiveness, now: datetime, factor: float) -> bool:
    if d.state_online is not True:
        return False
    if d.interval_s is None or d.last_seen_at is None:
        return True
    return now - d.last_seen_at < timedelta(seconds=factor * d.interval_s)


def camera_online(status: str, bridge_online: bool) -> bool:
    """A camera counts as online only while it reports ``online`` and its bridge is online."""
    return status == "online" and bridge_online
