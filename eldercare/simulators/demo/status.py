"""The live status line, read from the database with plain SQL."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from typing import Final, TextIO

import psycopg

from eldercare.alerts import rules
from eldercare.storage.db import sql_list

log = logging.getLogger("eldercare.demo")

STATUS_EVERY_TTY_S: Final = 1.0
STATUS_EVERY_PIPE_S: Final = 5.0
RATE_WINDOW_S: Final = 5
TERMINAL: Final = sql_list(rules.TERMINAL)  # open = not closed or merged


@dataclass(frozen=True, slots=True)
class Status:
    events_per_s: float
    open_alarms: int
    unacked: int
    devices_offline: int
    devices: int
    cameras_offline: int
    cameras: int


def read_status(conn: psycopg.Connection, facility_ids: list[int]) -> Status:
    """The demo fleet's state in plain SQL (the same tables the console reads)."""
    row = conn.execute(
        f"""
        WITH dev AS (
          SELECT d.id, coalesce(s.online, false) AS online
            FROM devices d LEFT JOIN device_status s ON s.device_id = d.id
           WHERE d.facility_id = ANY(%(f)s) AND d.status = 'active'
        ), cam AS (
          SELECT coalesce(cs.online, false) AS online
            FROM cameras c JOIN dev ON dev.id = c.device_id
            LEFT JOIN camera_status cs
              ON cs.device_id = c.device_id AND cs.camera_id = c.camera_id
        )
        SELECT
          (SELECT count(*) FROM device_events
            WHERE facility_id = ANY(%(f)s)
              AND time > now() - interval '15 minutes'   -- lets TimescaleDB skip old chunks
              AND received_at > now() - interval '{RATE_WINDOW_S} seconds'),
          (SELECT count(*) FROM alarms
            WHERE facility_id = ANY(%(f)s) AND status NOT IN {TERMINAL}),
          (SELECT count(*) FROM alarms WHERE facility_id = ANY(%(f)s) AND status = 'raised'),
          (SELECT count(*) FILTER (WHERE NOT online) FROM dev),
          (SELECT count(*) FROM dev),
          (SELECT count(*) FILTER (WHERE NOT online) FROM cam),
          (SELECT count(*) FROM cam)
        """,
        {"f": facility_ids},
    ).fetchone()
    assert row is not None
    return Status(row[0] / RATE_WINDOW_S, *(int(x) for x in row[1:]))


def format_status(elapsed: float, st: Status | None) -> str:
    m, s = divmod(int(elapsed), 60)
    if st is None:
        return f"{m:02d}:{s:02d} | database unavailable, retrying"
    return (
        f"{m:02d}:{s:02d} | {st.events_per_s:5.1f} events/s | open alarms {st.open_alarms}"
        f" ({st.unacked} unacked) | offline: devices {st.devices_offline}/{st.devices},"
        f" cameras {st.cameras_offline}/{st.cameras}"
    )


class StatusLine:
    """One line rewritten in place on a terminal; a new line every few seconds otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.every = STATUS_EVERY_TTY_S if self.tty else STATUS_EVERY_PIPE_S
        self._width = 0

    def show(self, text: str) -> None:
        if self.tty:
            cols = shutil.get_terminal_size((100, 24)).columns - 1
            text = text[:cols]  # a wrapped line could not be rewritten with \r
            self.out.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()
            self._width = 0


def order_counts(conn: psycopg.Connection, district: str) -> dict[str, int]:
    """Work orders of a district and below, by status: what the console's tab will list."""
    return {
        str(status): int(n)
        for status, n in conn.execute(
            "SELECT status, count(*) FROM work_orders"
            " WHERE district_code IN (SELECT district_subtree(%s)) GROUP BY status",
            (district,),
        ).fetchall()
    }
