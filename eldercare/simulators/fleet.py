"""A seeded fleet of simulated devices: provisioning, and a runner for many devices per process.

:meth:`Fleet.provision` builds synthetic facilities, home care beds,
residents and devices in the registry (no real people: names are random
combinations, phone numbers are not dialable). :func:`run_fleet_process` drives
a slice of the fleet from one process: one thread, one ``selectors`` loop over
paho's external-loop API, because a thread per device stops scaling long
before the 5,000 msgs/s the benchmarks need. What each device does comes from
:class:`~eldercare.simulators.scenario.Scenario`; this module only does I/O.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import random
import secrets
import selectors
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import orjson
import paho.mqtt.client as mqtt
import psycopg

from eldercare.config import Settings
from eldercare.mqtt import set_nodelay
from eldercare.protocol import Channel, topic
from eldercare.registry import service as registry
from eldercare.registry.schemas import (
    DeviceCreate,
    DeviceKind,
    FacilityCreate,
    HomeBedCreate,
    ResidentCreate,
)
from eldercare.simulators.device import OFFLINE, ONLINE, make_client
from eldercare.simulators.scenario import Action, DevicePlan, Op, Scenario

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- synthetic registry data

CITY_CENTER: Final = (30.657, 104.066)  # Chengdu
_DISTRICTS: Final = (
    "锦江",
    "青羊",
    "金牛",
    "武侯",
    "成华",
    "龙泉驿",
    "新都",
    "温江",
    "双流",
    "郫都",
)
_HOME_WORDS: Final = (
    "松鹤",
    "康乐",
    "福寿",
    "颐和",
    "安康",
    "慈晖",
    "长青",
    "瑞祥",
    "泰和",
    "德馨",
    "春晖",
    "锦华",
)
_HOME_KINDS: Final = ("养老院", "颐养中心", "老年公寓", "康养中心", "护理院")
_STREETS: Final = ("人民", "建设", "和平", "光华", "青龙", "红星", "府河", "玉林", "桂溪", "抚琴")
_SURNAMES: Final = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"
_GIVEN: Final = "秀英桂兰玉珍淑华建国志明德福永贵凤琴金花保国文华素芬荣光美玲树林"
_ABILITY: Final = ("能力完好", "轻度失能", "中度失能", "重度失能")
_ACCESS: Final = ("钥匙存放在社区服务站", "门禁由家属远程开启", "楼下有门卫可协助", None)


def _name(rng: random.Random) -> str:
    given = "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))
    return rng.choice(_SURNAMES) + given


def _near(rng: random.Random, lat: float, lon: float, spread: float) -> tuple[float, float]:
    dlat, dlon = rng.uniform(-spread, spread), rng.uniform(-spread, spread)
    return round(lat + dlat, 6), round(lon + dlon, 6)


def _phone(rng: random.Random) -> str:
    # Local numbers never start with 0 after the area code, so these cannot ring anyone.
    return f"028-0{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"


@dataclass(frozen=True, slots=True)
class FacilityInfo:
    id: int
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """What :meth:`Fleet.provision` created, with each device's credentials."""

    seed: int
    tag: str
    mqtt_host: str
    mqtt_port: int
    facilities: tuple[FacilityInfo, ...]
    devices: tuple[DevicePlan, ...]

    def slices(self, n: int) -> list[tuple[DevicePlan, ...]]:
        """Split the devices into ``n`` interleaved slices, each a mix of every kind."""
        n = max(1, min(n, len(self.devices) or 1))
        return [self.devices[i::n] for i in range(n)]

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.devices:
            out[d.kind] = out.get(d.kind, 0) + 1
        return out


class Fleet:
    """Provisioning and running a simulated fleet; see the module docstring."""

    @staticmethod
    def provision(
        conn: psycopg.Connection,
        settings: Settings,
        seed: int,
        facilities: int = 3,
        rooms_per_facility: int = 8,
        home_beds: int = 6,
        *,
        wearable_share: float = 0.3,
        cameras_per_facility: tuple[int, int] = (4, 8),
        tag: str | None = None,
    ) -> FleetPlan:
        """Create a seeded fleet in the registry and sync the broker once at the end.

        ``tag`` (random unless given) keeps codes and device ids unique when a seed
        is provisioned again into the same database.
        """
        rng = random.Random(seed)
        tag = tag or secrets.token_hex(3)
        devices: list[DevicePlan] = []
        counters: dict[str, int] = {}

        def device(kind: DeviceKind, prefix: str, fcode: str, **kw: Any) -> None:
            counters[prefix] = counters.get(prefix, 0) + 1
            device_id = f"sim{tag}-{prefix}-{counters[prefix]:04d}"
            cameras = tuple(kw.pop("cameras", ()))
            spec = DeviceCreate(kind=kind, device_id=device_id, cameras=list(cameras), **kw)
            creds = registry.provision_device(conn, settings, spec, sync=False)
            devices.append(
                DevicePlan(
                    creds.device_id,
                    kind,
                    creds.password,
                    fcode,
                    room=kw.get("room"),
                    cameras=cameras,
                )
            )

        def resident(**placed: Any) -> int:
            born = date(1930, 1, 1) + timedelta(days=rng.randint(0, 26 * 365))
            row = registry.create_resident(
                conn,
                ResidentCreate(
                    name=_name(rng),
                    birth_date=born,
                    gender=rng.choice(("female", "male")),
                    ability_level=rng.choice(_ABILITY),
                    **placed,
                ),
            )
            return int(row["id"])

        infos: list[FacilityInfo] = []
        for i in range(facilities):
            remote = rng.random() < 0.2
            district = rng.choice(_DISTRICTS)
            lat, lon = _near(rng, *CITY_CENTER, 0.4 if remote else 0.12)
            fac = registry.create_facility(
                conn,
                FacilityCreate(
                    code=f"SIM{tag}-{i + 1:02d}",
                    name=f"{district}区{rng.choice(_HOME_WORDS)}{rng.choice(_HOME_KINDS)}",
                    area="remote" if remote else "town",
                    address=f"{district}区{rng.choice(_STREETS)}路{rng.randint(1, 400)}号",
                    lat=lat,
                    lon=lon,
                    phone=_phone(rng),
                ),
            )
            info = FacilityInfo(int(fac["id"]), fac["code"], fac["name"])
            infos.append(info)
            for r in range(rooms_per_facility):
                room = f"{r // 10 + 1}{r % 10 + 1:02d}"
                for _ in range(rng.choice((1, 1, 2))):
                    rid = resident(facility_id=info.id, room=room)
                    device("sos_button", "sos", info.code, resident_id=rid)
                    device("fall_sensor", "fall", info.code, resident_id=rid, room=room)
                    if rng.random() < wearable_share:
                        device("wearable", "wear", info.code, resident_id=rid)
            lo, hi = cameras_per_facility
            device(
                "video_bridge",
                "nvr",
                info.code,
                facility_id=info.id,
                cameras=[f"cam-{c + 1:02d}" for c in range(rng.randint(lo, hi))],
            )

        for _ in range(home_beds if infos else 0):
            fac_info = rng.choice(infos)
            fac_row = conn.execute(
                "SELECT lat, lon, area FROM facilities WHERE id = %s", (fac_info.id,)
            ).fetchone()
            assert fac_row is not None
            lat, lon = _near(rng, fac_row[0] or CITY_CENTER[0], fac_row[1] or CITY_CENTER[1], 0.05)
            district = rng.choice(_DISTRICTS)
            bed = registry.create_home_bed(
                conn,
                HomeBedCreate(
                    facility_id=fac_info.id,
                    address=(
                        f"{district}区{rng.choice(_STREETS)}路{rng.randint(1, 300)}号"
                        f"{rng.randint(1, 12)}栋{rng.randint(1, 4)}单元{rng.randint(1, 30)}"
                        f"0{rng.randint(1, 6)}室"
                    ),
                    access_notes=rng.choice(_ACCESS),
                    area=fac_row[2],
                    lat=lat,
                    lon=lon,
                ),
            )
            rid = resident(home_bed_id=int(bed["id"]))
            device("home_kit", "kit", fac_info.code, resident_id=rid)
            if rng.random() < wearable_share:
                device("wearable", "wear", fac_info.code, resident_id=rid)

        registry.sync_broker(conn, settings)
        return FleetPlan(
            seed,
            tag,
            settings.device_mqtt_host,
            settings.device_mqtt_port,
            tuple(infos),
            tuple(devices),
        )

    @staticmethod
    def run(
        plan: FleetPlan,
        settings: Settings | Mapping[str, Any],
        *,
        rate: float = 1.0,
        duration: float = 60.0,
        processes: int = 1,
        seed: int | None = None,
        incident_rate: float = 1.0,
        retry_s: float = 2.0,
        drain_s: float = 5.0,
    ) -> FleetStats:
        """Run the fleet for ``duration`` seconds in ``processes`` processes; merged stats."""
        sd = broker_address(settings)
        seed = plan.seed if seed is None else seed
        run_id = secrets.token_hex(3)
        jobs = [
            (
                s,
                sd,
                rate,
                duration,
                seed * 1000 + i,
                incident_rate,
                retry_s,
                drain_s,
                f"{run_id}{i}",
            )
            for i, s in enumerate(plan.slices(processes))
        ]
        if len(jobs) == 1:
            return run_fleet_process(*jobs[0])
        # spawn: a forked paho/psycopg state is not safe to reuse, and macOS has no fork default.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(len(jobs)) as pool:
            results = pool.starmap(run_fleet_process, jobs)
        total = FleetStats()
        for r in results:
            total.merge(r)
        return total


def broker_address(settings: Settings | Mapping[str, Any]) -> dict[str, Any]:
    """The only settings a fleet process needs: where devices find the broker."""
    if isinstance(settings, Settings):
        return {"mqtt_host": settings.device_mqtt_host, "mqtt_port": settings.device_mqtt_port}
    return {
        "mqtt_host": settings.get("mqtt_public_host") or settings["mqtt_host"],
        "mqtt_port": int(settings.get("mqtt_public_port") or settings["mqtt_port"]),
    }


# ---------------------------------------------------------------- stats


@dataclass(slots=True)
class FleetStats:
    """What one or more fleet processes did; ``merge`` adds another process's numbers."""

    devices: int = 0
    connected: int = 0
    sent: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    alarms_raised: int = 0
    resends: int = 0
    acks_received: int = 0
    nacks_received: int = 0
    other_downlinks: int = 0
    drops: int = 0
    reconnects: int = 0
    unsent_offline: int = 0
    connect_failures: int = 0
    unacked_at_end: int = 0
    max_lag_s: float = 0.0
    elapsed_s: float = 0.0
    ack_latencies: list[float] = field(default_factory=list)

    def merge(self, other: FleetStats) -> FleetStats:
        for name in (
            "devices",
            "connected",
            "sent",
            "alarms_raised",
            "resends",
            "acks_received",
            "nacks_received",
            "other_downlinks",
            "drops",
            "reconnects",
            "unsent_offline",
            "connect_failures",
            "unacked_at_end",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.by_type.items():
            self.by_type[k] = self.by_type.get(k, 0) + v
        self.max_lag_s = max(self.max_lag_s, other.max_lag_s)
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.ack_latencies.extend(other.ack_latencies)
        return self

    def latency(self, q: float) -> float | None:
        """The q-quantile (0-1) of device-seen ack latency in seconds, from first send to ack."""
        if not self.ack_latencies:
            return None
        xs = sorted(self.ack_latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def summary(self) -> str:
        rate = self.sent / self.elapsed_s if self.elapsed_s else 0.0
        p50, p99 = self.latency(0.5), self.latency(0.99)
        lat = (
            f"ack p50 {p50 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms"
            if p50 is not None and p99 is not None
            else "no acks"
        )
        return (
            f"{self.connected}/{self.devices} devices connected, {self.sent} sent "
            f"({rate:.0f}/s), {self.alarms_raised} alarms, {self.resends} re-sends, "
            f"{self.acks_received} acks ({lat}), {self.nacks_received} nacks, "
            f"{self.unacked_at_end} unacked, {self.drops} drops, "
            f"max lag {self.max_lag_s:.2f} s"
        )


# ---------------------------------------------------------------- the I/O runner


@dataclass(slots=True)
class _Link:
    """One device's connection inside a runner (mutable I/O state)."""

    plan: DevicePlan
    client: mqtt.Client
    up: str
    state: str
    sock: Any = None
    writing: bool = False
    ready: bool = False
    planned_down: bool = False
    retry_at: float | None = None


class FleetRunner:
    """Drives many devices from one thread: a ``selectors`` loop over paho's external loop.

    Publishes write straight to the socket (paho does so when no write callback is
    registered); the selector only watches for input and for writes that did not fit.
    """

    def __init__(
        self,
        devices: Sequence[DevicePlan],
        scenario: Scenario,
        host: str,
        port: int,
        *,
        keepalive: int = 60,
        io_seed: int = 0,
    ) -> None:
        self.scenario = scenario
        self.host, self.port, self.keepalive = host, port, keepalive
        self.stats = FleetStats(devices=len(devices))
        self._sel = selectors.DefaultSelector()
        # Reconnect jitter must not draw from the scenario's RNG or replays would diverge.
        self._io_rng = random.Random(io_seed)
        self._first_sent: dict[tuple[str, str], float] = {}
        self._t0 = time.monotonic()
        self._closing = False
        self.links: dict[str, _Link] = {}
        for plan in devices:
            client = make_client(plan.device_id, plan.password)
            link = _Link(
                plan,
                client,
                topic(plan.device_id, Channel.UP),
                topic(plan.device_id, Channel.STATE),
            )
            client.user_data_set(link)
            client.on_socket_open = self._on_socket_open
            client.on_socket_close = self._on_socket_close
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_message = self._on_message
            self.links[plan.device_id] = link

    def now(self) -> float:
        return time.monotonic() - self._t0

    # ---------------------------------------------------------------- phases

    def connect_all(self, timeout: float = 15.0) -> None:
        for link in self.links.values():
            self._connect(link, first=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(x.ready for x in self.links.values()):
            self._poll(0.05)
        self.stats.connected = sum(x.ready for x in self.links.values())
        if self.stats.connected < len(self.links):
            log.warning(
                "%d of %d simulated devices did not connect",
                len(self.links) - self.stats.connected,
                len(self.links),
            )

    def run(self, duration: float, drain_s: float = 5.0) -> FleetStats:
        """Connect, play the scenario for ``duration`` s, wait for late acks, close cleanly."""
        self.connect_all()
        self._t0 = time.monotonic()
        # Scenario time 0 is now, so every ts is the wall-clock time of its send.
        self.scenario.start = datetime.now(UTC)
        next_misc = 1.0
        while (now := self.now()) < duration:
            self._execute(self.scenario.advance(now), now)
            nxt = self.scenario.next_at()
            wake = min(duration, next_misc, nxt if nxt is not None else duration)
            self._poll(max(0.0, wake - self.now()))
            if self.now() >= next_misc:
                self._misc()
                next_misc = self.now() + 1.0
        self.stats.elapsed_s = self.now()
        end = self.now() + drain_s
        while self.scenario.pending_alarms_online and (now := self.now()) < end:
            self._execute(self.scenario.advance(now, retries_only=True), now)
            self._poll(0.05)
        self.stats.unacked_at_end = self.scenario.pending_alarms
        self.close()
        return self.stats

    def close(self, timeout: float = 3.0) -> None:
        self._closing = True
        for link in self.links.values():
            if link.ready:
                link.client.publish(link.state, OFFLINE, qos=1, retain=True)
            if link.sock is not None:
                link.client.disconnect()
                self._sync(link)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(x.sock is not None for x in self.links.values()):
            self._poll(0.05)
        for link in self.links.values():
            if link.sock is not None:  # the broker never took our DISCONNECT: just hang up
                with contextlib.suppress(OSError):
                    link.sock.close()
        self._sel.close()

    # ---------------------------------------------------------------- actions

    def _execute(self, actions: list[Action], now: float) -> None:
        stats = self.stats
        for a in actions:
            link = self.links[a.device_id]
            lag = now - a.at
            if lag > stats.max_lag_s:
                stats.max_lag_s = lag
            if a.op is Op.SEND:
                assert a.payload is not None and a.event_type is not None
                if not link.ready:
                    stats.unsent_offline += 1
                    continue
                link.client.publish(link.up, a.payload, qos=1)
                self._sync(link)
                stats.sent += 1
                stats.by_type[a.event_type] = stats.by_type.get(a.event_type, 0) + 1
                if a.is_alarm:
                    assert a.msg_id is not None
                    key = (a.device_id, a.msg_id)
                    if key in self._first_sent:
                        stats.resends += 1
                    else:
                        self._first_sent[key] = time.monotonic()
                        stats.alarms_raised += 1
            elif a.op is Op.DROP:
                link.planned_down = True
                self._drop(link)
                stats.drops += 1
            elif a.op is Op.RECONNECT:
                link.planned_down = False
                self._connect(link)
                stats.reconnects += 1

    def _connect(self, link: _Link, *, first: bool = False) -> None:
        link.retry_at = None
        try:
            if first:
                link.client.connect(self.host, self.port, self.keepalive)
            else:
                link.client.reconnect()
        except OSError:
            self.stats.connect_failures += 1
            link.retry_at = self.now() + self._io_rng.uniform(1.0, 3.0)
            return
        self._sync(link)

    def _drop(self, link: _Link) -> None:
        """Hang up without DISCONNECT, like a device whose network vanished: the Will fires."""
        sock: Any = link.client.socket()
        link.ready = False
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        link.client.loop_read()  # paho reads EOF, reports the loss and closes its socket

    def _misc(self) -> None:
        now = self.now()
        for link in self.links.values():
            if link.sock is not None:
                link.client.loop_misc()
                if link.sock is not None:
                    self._sync(link)
            elif (
                link.retry_at is not None
                and now >= link.retry_at
                and not link.planned_down
                and not self._closing
            ):
                self._connect(link)

    # ---------------------------------------------------------------- selector plumbing

    def _poll(self, timeout: float) -> None:
        for key, mask in self._sel.select(timeout):
            link: _Link = key.data
            client = link.client
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and link.sock is not None:
                client.loop_write()
            if link.sock is not None:
                self._sync(link)

    def _sync(self, link: _Link) -> None:
        """Watch for writability only while paho has bytes the socket did not take."""
        want = link.client.want_write()
        if want != link.writing and link.sock is not None:
            link.writing = want
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            self._sel.modify(link.sock, events, link)

    # ---------------------------------------------------------------- paho callbacks

    def _on_socket_open(self, client: mqtt.Client, link: _Link, sock: Any) -> None:
        set_nodelay(client, link, sock)
        link.sock, link.writing = sock, False
        self._sel.register(sock, selectors.EVENT_READ, link)

    def _on_socket_close(self, client: mqtt.Client, link: _Link, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)
        if link.sock is sock:
            link.sock, link.writing = None, False

    def _on_connect(
        self, client: mqtt.Client, link: _Link, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.stats.connect_failures += 1
            log.warning("broker refused simulated device %s: %s", link.plan.device_id, reason_code)
            return
        client.publish(link.state, ONLINE, qos=1, retain=True)
        # The broker handles SUBSCRIBE before any later PUBLISH from this client, so the
        # subscription is in place before the platform can answer our first alarm.
        client.subscribe(topic(link.plan.device_id, Channel.DOWN), qos=1)
        link.ready = True

    def _on_disconnect(
        self, client: mqtt.Client, link: _Link, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        link.ready = False
        if not link.planned_down and not self._closing:
            link.retry_at = self.now() + self._io_rng.uniform(1.0, 3.0)

    def _on_message(self, client: mqtt.Client, link: _Link, msg: mqtt.MQTTMessage) -> None:
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            self.stats.other_downlinks += 1
            return
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "ack" and isinstance(body.get("ack_id"), str):
            did = link.plan.device_id
            if self.scenario.acked(did, body["ack_id"]):
                self.stats.acks_received += 1
                sent = self._first_sent.get((did, body["ack_id"]))
                if sent is not None:
                    self.stats.ack_latencies.append(time.monotonic() - sent)
        elif kind == "nack":
            self.stats.nacks_received += 1
        else:
            self.stats.other_downlinks += 1


def run_fleet_process(
    plan_slice: Sequence[DevicePlan],
    settings_dict: Mapping[str, Any],
    rate: float,
    duration: float,
    seed: int,
    incident_rate: float = 1.0,
    retry_s: float = 2.0,
    drain_s: float = 5.0,
    run_id: str | None = None,
) -> FleetStats:
    """Run one slice of a fleet in this process (a top-level function for spawn pools).

    ``settings_dict`` needs ``mqtt_host`` and ``mqtt_port`` (``Settings.model_dump()`` works).
    """
    addr = broker_address(settings_dict)
    scenario = Scenario(
        plan_slice,
        seed,
        rate=rate,
        incident_rate=incident_rate,
        retry_s=retry_s,
        start=datetime.now(UTC),
        run_id=run_id or secrets.token_hex(3),
    )
    runner = FleetRunner(plan_slice, scenario, addr["mqtt_host"], addr["mqtt_port"], io_seed=seed)
    return runner.run(duration, drain_s)
