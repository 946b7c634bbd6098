"""Webhook delivery against real local HTTP servers and the real database (audit H8/M8, T13).

Each receiver is a real TCP server that misbehaves in one way: a malformed status line,
headers trickled forever, a redirect, a 500, an endless body. Loopback receivers are
reachable only because the tests put 127.0.0.1 on the allow-list; without it they are
refused at registration and at delivery.
"""

from __future__ import annotations

import json
import secrets
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from eldercare.alerts import events, notify, outbound, rules
from eldercare.alerts import lifecycle as alarms
from eldercare.alerts.engine import Engine
from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.registry import auth
from harness.services import wait_for
from tests.alarm_support import OPERATOR, FrozenClock, RecordingPublisher, World, build_world

PASSWORD = "correct-horse-battery"
SECRET = "0123456789abcdef-signing"

# ---------------------------------------------------------------- receivers


def _read_request(sock: socket.socket) -> bytes:
    f = sock.makefile("rb")
    length = 0
    while True:
        line = f.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return f.read(length)


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 whose answer is ``respond(sock, stop)``."""

    def __init__(
        self,
        respond: Callable[[socket.socket, threading.Event], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.bodies: list[bytes] = []
        self.stop = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    sock = self.request
                    if tls is not None:
                        sock = tls.wrap_socket(sock, server_side=True)
                    outer.bodies.append(_read_request(sock))
                    respond(sock, outer.stop)
                except (OSError, ssl.SSLError):
                    pass  # the client gave up on us: that is what some tests want

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def ok(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")


def poison(sock: socket.socket, stop: threading.Event) -> None:
    # T13: http.client raises BadStatusLine, which is not an OSError.
    sock.sendall(b"HTTP/1.1 abc\r\n\r\n")


def trickle(sock: socket.socket, stop: threading.Event) -> None:
    # A byte every 50 ms forever: no per-read timeout ever fires.
    sock.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stop.wait(0.05):
        sock.sendall(b"X")


def server_error(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")


def endless_body(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    chunk = b"x" * 65536
    while not stop.is_set():
        sock.sendall(chunk)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(
        respond: Callable[[socket.socket, threading.Event], None],
        tls: ssl.SSLContext | None = None,
    ) -> Receiver:
        r = Receiver(respond, tls)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


# ---------------------------------------------------------------- world and helpers


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def world(settings: Settings, clock: FrozenClock) -> Iterator[World]:
    w = build_world(settings, clock)
    yield w
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE webhooks SET active = false WHERE facility_id = %s", (w.facility_id,))
    w.retire()


def add_hook(db: psycopg.Connection, url: str, facility_id: int) -> int:
    """Straight into the table, as if registered when its name still resolved elsewhere."""
    return int(
        db.execute(
            "INSERT INTO webhooks (url, secret, events, facility_id) VALUES (%s, %s, '{}', %s)"
            " RETURNING id",
            (url, SECRET, facility_id),
        ).fetchone()[0]  # type: ignore[index]
    )


def hook_rows(db: psycopg.Connection, hook_id: int) -> list[dict[str, Any]]:
    ids = [
        r[0]
        for r in db.execute(
            "SELECT alarm_id FROM notifications WHERE channel = 'webhook' AND target = %s",
            (str(hook_id),),
        ).fetchall()
    ]
    out: list[dict[str, Any]] = []
    for aid in dict.fromkeys(ids):
        out += [n for n in notify.history(db, str(aid)) if n["target"] == str(hook_id)]
    return out


def worker(
    settings: Settings, clock: FrozenClock, allow: list[str], total: float = 5.0
) -> notify.WebhookWorker:
    policy = outbound.OutboundPolicy.of(allow, connect_timeout=1.0, total_timeout=total)
    return notify.WebhookWorker(
        lambda: psycopg.connect(settings.database_url, autocommit=True),
        clock,
        outbound.WebhookPoster(policy),
    )


# ---------------------------------------------------------------- delivery


def test_a_poisoned_response_is_one_failed_attempt_and_others_still_get_theirs(
    world: World, settings: Settings, db: psycopg.Connection, receivers: Callable[..., Receiver]
) -> None:
    """T13: before, BadStatusLine escaped the attempt, rolled it back and stopped every
    webhook for good with attempts stuck at 0."""
    bad, good = receivers(poison), receivers(ok)
    bad_id = add_hook(db, bad.url, world.facility_id)
    good_id = add_hook(db, good.url, world.facility_id)
    aid = world.send(world.sos, "sos").alarm_id
    w = worker(settings, world.clock, ["127.0.0.1"])
    try:
        w.run_once(db)
    finally:
        w.close()
    (a,) = hook_rows(db, bad_id)
    assert a["status"] == "pending" and a["attempts"] == 1
    assert "BadStatusLine" in a["attempt_log"][0]["error"]
    (b,) = hook_rows(db, good_id)
    assert b["status"] == "delivered" and b["attempt_log"][0]["status_code"] == 204
    assert len(good.bodies) == 1 and str(aid).encode() in good.bodies[0]


def test_a_trickling_endpoint_is_cut_at_the_total_deadline_and_holds_up_nobody(
    world: World, settings: Settings, db: psycopg.Connection, receivers: Callable[..., Receiver]
) -> None:
    """The engine running in the background: a slow endpoint, a fast one and a device."""
    slow, fast = receivers(trickle), receivers(ok)
    slow_id = add_hook(db, slow.url, world.facility_id)
    fast_id = add_hook(db, fast.url, world.facility_id)
    total = 2.0
    fast_settings = settings.model_copy(
        update={"webhook_allow_hosts": ["127.0.0.1"], "webhook_timeout_s": total}
    )
    pub = RecordingPublisher()
    engine = Engine(fast_settings, clock=world.clock, publisher=pub, tick_s=0.1)
    engine.start()
    try:
        # The slow endpoint's row is older, so a single queue would try it first.
        started = time.monotonic()
        world.send(world.sos, "sos")
        aid = world.send(world.fall, "fall", confidence=0.9).alarm_id  # a second alarm
        alarms.act(db, aid, "acknowledge", OPERATOR, world.clock())
        expected = len(hook_rows(db, fast_id))
        assert expected >= 2
        wait_for(lambda: len(fast.bodies) >= expected, timeout=total, what="the fast endpoint")
        wait_for(lambda: pub.statuses(world.fall), timeout=total, what="the device downlink")
        assert time.monotonic() - started < total  # neither waited for the slow one
        assert not [n for n in hook_rows(db, slow_id) if n["attempts"]]  # still in flight
        wait_for(lambda: slow.bodies, timeout=total, what="the slow endpoint's request")
        (first, *_) = wait_for(
            lambda: [n for n in hook_rows(db, slow_id) if n["attempts"]],
            timeout=total + 3,
            what="the slow endpoint's attempt to end",
        )
        assert time.monotonic() - started < total + 3
        assert first["status"] == "pending"
        assert "DeadlineExceeded" in first["attempt_log"][0]["error"]
        assert all(n["status"] == "delivered" for n in hook_rows(db, fast_id))
    finally:
        engine.stop()


def test_redirects_are_not_followed(
    world: World, settings: Settings, db: psycopg.Connection, receivers: Callable[..., Receiver]
) -> None:
    target = receivers(ok)

    def redirect(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {target.url}\r\nContent-Length: 0\r\n\r\n".encode()
        )

    hook = add_hook(db, receivers(redirect).url, world.facility_id)
    world.send(world.sos, "sos")
    w = worker(settings, world.clock, ["127.0.0.1"])
    try:
        w.run_once(db)
    finally:
        w.close()
    (n,) = hook_rows(db, hook)
    assert n["attempt_log"][0]["status_code"] == 302
    assert "redirects are not followed" in n["attempt_log"][0]["error"]
    assert target.bodies == []


def test_an_endless_body_is_not_read_to_the_end(
    world: World, settings: Settings, db: psycopg.Connection, receivers: Callable[..., Receiver]
) -> None:
    hook = add_hook(db, receivers(endless_body).url, world.facility_id)
    world.send(world.sos, "sos")
    w = worker(settings, world.clock, ["127.0.0.1"], total=3.0)
    started = time.monotonic()
    try:
        w.run_once(db)
    finally:
        w.close()
    (n,) = hook_rows(db, hook)
    assert n["status"] == "delivered"  # 200 is all we needed; 64 KiB read, not 1 GB
    assert time.monotonic() - started < 3.0


def test_a_loopback_url_is_refused_at_delivery_without_the_allow_list(
    world: World, settings: Settings, db: psycopg.Connection, receivers: Callable[..., Receiver]
) -> None:
    """DNS rebinding: the name pointed elsewhere at registration and at 127.0.0.1 now."""
    r = receivers(ok)
    port = r.url.split(":")[2].split("/")[0]
    hook = add_hook(db, f"https://localhost:{port}/hook", world.facility_id)
    world.send(world.sos, "sos")
    w = worker(settings, world.clock, [])
    try:
        w.run_once(db)
    finally:
        w.close()
    (n,) = hook_rows(db, hook)
    assert "RefusedTarget" in n["attempt_log"][0]["error"]
    assert "loopback" in n["attempt_log"][0]["error"]
    assert r.bodies == []  # nothing was sent to it


def _certificates(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for the address 127.0.0.1 only (no DNS name)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", "/CN=hook-ca",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
    )  # fmt: skip
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-subj", "/CN=hook",
        "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
    )  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
        "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.crt"),
    )  # fmt: skip
    return d / "ca.crt", d / "server.crt", d / "server.key"


def test_https_is_verified_against_the_name_in_the_url(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """The production path: TLS to the checked address, certificate verified for the
    URL's host (the connection is pinned to an address, the name still decides)."""
    ca, crt, key = _certificates(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(crt, key)
    r = receivers(ok, server_tls)
    port = r.server.server_address[1]
    policy = outbound.OutboundPolicy.of(["127.0.0.1", "localhost"], total_timeout=5.0)
    poster = outbound.WebhookPoster(policy, ssl.create_default_context(cafile=str(ca)))
    body = b'{"event":"raised"}'
    assert poster(f"https://127.0.0.1:{port}/hook", body, {"X-T": "1"}) == 204
    assert r.bodies == [body]
    # The certificate names 127.0.0.1, not localhost: refused although it is the same host.
    with pytest.raises(ssl.SSLCertVerificationError):
        poster(f"https://localhost:{port}/hook", body, {})
    # And a CA the platform does not trust is refused outright.
    untrusting = outbound.WebhookPoster(policy)
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusting(f"https://127.0.0.1:{port}/hook", body, {})
    assert r.bodies == [body]


# ---------------------------------------------------------------- the API


@pytest.fixture
def admin(settings: Settings) -> str:
    name = "wh-adm-" + secrets.token_hex(3)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        auth.create_user(conn, name, PASSWORD, "admin")
    return name


def _client(settings: Settings, clock: FrozenClock) -> TestClient:
    return TestClient(
        create_app(settings, clock=clock, publisher=RecordingPublisher(), background=False)
    )


def _token(c: TestClient, name: str) -> dict[str, str]:
    r = c.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_registration_refuses_internal_and_plain_http_urls(
    settings: Settings, clock: FrozenClock, admin: str, receivers: Callable[..., Receiver]
) -> None:
    loop = receivers(ok).url
    refused = {
        loop: "https",  # plain http to anything not allow-listed
        loop.replace("http:", "https:"): "loopback",
        "https://localhost/hook": "loopback",
        "https://169.254.169.254/latest/meta-data/": "link-local",
        "https://10.1.2.3/hook": "private",
        "https://100.100.100.200/": "not publicly routed",
        "https://[::ffff:127.0.0.1]/hook": "loopback",
        "https://user:pw@93.184.215.14/hook": "credentials",
        "https://no-such-host.invalid/hook": "does not resolve",
    }
    with _client(settings, clock) as c:
        # Signed in first: nobody else gets the platform to look names up.
        anon = c.post("/api/webhooks", json={"url": "https://x.invalid/", "secret": SECRET})
        assert anon.status_code == 401
        body = c.get("/openapi.json").json()["paths"]["/api/webhooks"]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"]["$ref"].endswith("WebhookCreate")
        adm = _token(c, admin)
        for url, why in refused.items():
            r = c.post("/api/webhooks", json={"url": url, "secret": SECRET}, headers=adm)
            assert r.status_code == 422, (url, r.text)
            assert why in r.text, (url, r.text)
        r = c.post(
            "/api/webhooks",
            json={"url": "https://93.184.215.14/hook", "secret": SECRET},
            headers=adm,
        )
        assert r.status_code == 201, r.text
    listed = settings.model_copy(update={"webhook_allow_hosts": ["127.0.0.1"]})
    with _client(listed, clock) as c:
        adm = _token(c, admin)
        r = c.post("/api/webhooks", json={"url": loop, "secret": SECRET}, headers=adm)
        assert r.status_code == 201, r.text
        # The allow-list names this address only; the metadata service stays refused.
        r = c.post(
            "/api/webhooks",
            json={"url": "http://169.254.169.254/", "secret": SECRET},
            headers=adm,
        )
        assert r.status_code == 422
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE webhooks SET active = false WHERE url IN (%s, 'https://93.184.215.14/hook')",
            (loop,),
        )


def test_a_failing_endpoint_backs_off_then_is_listed_as_failed(
    world: World,
    settings: Settings,
    db: psycopg.Connection,
    admin: str,
    receivers: Callable[..., Receiver],
) -> None:
    failing = receivers(server_error)
    hook = add_hook(db, failing.url, world.facility_id)
    n_alarm = world.send(world.sos, "sos").alarm_id
    w = worker(settings, world.clock, ["127.0.0.1"])
    delays = []
    listener = psycopg.connect(settings.database_url, autocommit=True)
    listener.execute(f"LISTEN {events.ALARM_CHANNEL}")
    try:
        for attempt in range(1, rules.WEBHOOK_MAX_ATTEMPTS + 1):
            w.run_once(db)
            (n,) = hook_rows(db, hook)
            assert n["attempts"] == attempt
            if attempt < rules.WEBHOOK_MAX_ATTEMPTS:
                due = db.execute(
                    "SELECT next_attempt_at FROM notifications WHERE id = %s", (n["id"],)
                ).fetchone()[0]  # type: ignore[index]
                delays.append((due - world.clock()).total_seconds())
                world.clock.advance(delays[-1])
        (n,) = hook_rows(db, hook)
        # The consoles are told (websocket) that this alarm's notification gave up.
        told = None
        for m in listener.notifies(timeout=5):  # ends after 5 s without a notification
            body = json.loads(m.payload)
            if body.get("notification_id") == n["id"]:
                told = body
                break
        assert told is not None and told["event"] == "notification_failed"
        assert told["channel"] == "webhook" and told["alarm_id"] == str(n_alarm)
    finally:
        w.close()
        listener.close()
    assert delays[:4] == [2, 4, 8, 16] and max(delays) == 300  # exponential, capped
    assert n["status"] == "failed" and len(failing.bodies) == rules.WEBHOOK_MAX_ATTEMPTS
    with _client(settings, world.clock) as c:
        r = c.get("/api/notifications/failed?channel=webhook", headers=_token(c, admin))
    assert r.status_code == 200
    (mine,) = [f for f in r.json() if f["id"] == n["id"]]
    assert mine["target"] == str(hook) and mine["last_status_code"] == 500
    assert mine["attempts"] == rules.WEBHOOK_MAX_ATTEMPTS and mine["last_error"] == "HTTP 500"
