"""Outbound webhook HTTP: which URLs may be called, and one POST under a total deadline.

Audit H8/M8. A webhook URL is chosen by an admin but answered by somebody else's server
and somebody else's DNS, so:

- only ``https`` to public addresses; ``http`` and non-public addresses (loopback,
  private, link-local with the cloud metadata service, shared, multicast, reserved) only
  for hosts named in the ``webhook_allow_hosts`` setting;
- the name is resolved and checked at registration *and* before every attempt, and the
  connection goes to an address that was just checked, so a DNS answer that changes
  after registration (rebinding) reaches nothing it should not;
- one attempt has a total deadline (connect, TLS, request, status line, headers and
  the body we bother to read), enforced by a watchdog that shuts the socket, because
  a per-operation timeout never fires on a server that trickles a byte at a time;
- redirects are never followed (a 3xx is a failed attempt), and at most
  ``max_response_bytes`` of the answer is read.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from eldercare.config import parse_allow_entry
from eldercare.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses the name resolves to now; socket.getaddrinfo in production.
Resolver = Callable[[str, int], list[str]]

SCHEMES: Final = {"http": 80, "https": 443}


class RefusedTarget(InvalidInput):
    """A webhook URL (or what its name resolves to) the outbound policy refuses."""


class DeadlineExceeded(TimeoutError):
    """The attempt ran past its total deadline (a slow or trickling server)."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def why_not_public(ip: IPAddress) -> str | None:
    """The range that makes ``ip`` unfit for an outside webhook, or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 (mapped, 6to4) reaches the IPv4 host.
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is not None:
            return why_not_public(inner)
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global or ip.is_reserved:
        return "not publicly routed"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed webhook URL."""

    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int
    path: str  # path and query, at least "/"

    @property
    def literal_ip(self) -> IPAddress | None:
        return _ip(self.host)


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Where webhooks may go and how long one attempt may take."""

    allow: tuple[str | IPNetwork, ...] = ()
    connect_timeout: float = 3.0
    total_timeout: float = 10.0
    max_response_bytes: int = 64 * 1024
    resolver: Resolver = field(default=system_resolver, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.connect_timeout <= self.total_timeout:
            raise ValueError("webhook connect timeout must be positive and within the total")
        if self.max_response_bytes < 0:
            raise ValueError("webhook response cap must not be negative")

    @classmethod
    def of(
        cls,
        allow: Sequence[str],
        *,
        connect_timeout: float = 3.0,
        total_timeout: float = 10.0,
        max_response_bytes: int = 64 * 1024,
        resolver: Resolver = system_resolver,
    ) -> OutboundPolicy:
        return cls(
            tuple(parse_allow_entry(a) for a in allow),
            connect_timeout,
            total_timeout,
            max_response_bytes,
            resolver,
        )

    def host_listed(self, host: str) -> bool:
        ip = _ip(host)
        return any(
            (isinstance(a, str) and a == host) or (ip is not None and _in(ip, a))
            for a in self.allow
        )

    def address_listed(self, ip: IPAddress) -> bool:
        return any(not isinstance(a, str) and _in(ip, a) for a in self.allow)

    def parse(self, url: str) -> Target:
        """Refuse what is wrong with the URL itself (no DNS)."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise RefusedTarget(f"webhook url is malformed: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise RefusedTarget("webhook url must start with https://")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise RefusedTarget("webhook url has no host")
        if parts.username is not None or parts.password is not None:
            raise RefusedTarget("webhook url must not carry credentials (use the secret)")
        if parts.fragment:
            raise RefusedTarget("webhook url must not have a #fragment")
        if scheme == "http" and not self.host_listed(host):
            raise RefusedTarget(
                "webhook url must use https:// (plain http only to hosts in"
                " ELDERCARE_WEBHOOK_ALLOW_HOSTS)"
            )
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return Target(scheme, host, port or SCHEMES[scheme], path)

    def addresses(self, target: Target) -> list[IPAddress]:
        """Resolve ``target`` now and refuse it if any address is not public and not
        allow-listed (one bad answer among good ones is how rebinding attacks hide)."""
        literal = target.literal_ip
        if literal is not None:
            found = [literal]
        else:
            try:
                found = [
                    ipaddress.ip_address(a.split("%")[0])
                    for a in self.resolver(target.host, target.port)
                ]
            except (OSError, UnicodeError) as exc:
                raise RefusedTarget(f"webhook host {target.host} does not resolve: {exc}") from exc
            if not found:
                raise RefusedTarget(f"webhook host {target.host} does not resolve")
        if self.host_listed(target.host):
            return found
        for ip in found:
            why = why_not_public(ip)
            if why is not None and not self.address_listed(ip):
                raise RefusedTarget(
                    f"webhook host {target.host} resolves to a {why} address ({ip});"
                    " allow it with ELDERCARE_WEBHOOK_ALLOW_HOSTS if it is meant"
                )
        return found

    def check(self, url: str) -> Target:
        """The registration check: the URL is well formed and resolves to allowed places."""
        target = self.parse(url)
        self.addresses(target)
        return target


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _in(ip: IPAddress, net: str | IPNetwork) -> bool:
    return not isinstance(net, str) and ip.version == net.version and ip in net


# ---------------------------------------------------------------- one attempt


class WebhookPoster:
    """POSTs to webhook URLs under ``policy``; returns the HTTP status code.

    Raises :class:`RefusedTarget` for a refused address, :class:`DeadlineExceeded` past
    the total deadline and whatever the socket or HTTP parser raised otherwise; the
    delivery worker records every one of them as a failed attempt.
    """

    def __init__(self, policy: OutboundPolicy, tls: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.tls = tls or ssl.create_default_context()

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        policy = self.policy
        target = policy.parse(url)
        addresses = policy.addresses(target)  # again now: DNS may have changed since
        deadline = time.monotonic() + policy.total_timeout
        sock = _connect(addresses, target.port, deadline, policy.connect_timeout)
        # shutdown() on a duplicate descriptor ends the one connection under any TLS layer,
        # waking a read that is blocked in another thread.
        killer = sock.dup()
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            with contextlib.suppress(OSError):  # the attempt ended meanwhile
                killer.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            conn: http.client.HTTPConnection
            if target.scheme == "https":
                sock = self.tls.wrap_socket(sock, server_hostname=target.host)
                conn = http.client.HTTPSConnection(target.host, target.port)
            else:
                conn = http.client.HTTPConnection(target.host, target.port)
            conn.sock = sock  # already connected to the checked address; never reconnects
            conn.request("POST", target.path, body=body, headers=headers)
            resp = conn.getresponse()
            # The status is all we need; read a little so the server is not cut off
            # mid-write, never more than the cap.
            if policy.max_response_bytes:
                resp.read(policy.max_response_bytes)
            if fired.is_set():
                # The cut connection reads as an end of headers: not an answer.
                raise DeadlineExceeded(f"no complete answer within {policy.total_timeout:g} s")
            return int(resp.status)
        except DeadlineExceeded:
            raise
        except Exception as exc:
            if fired.is_set():
                raise DeadlineExceeded(
                    f"no complete answer within {policy.total_timeout:g} s"
                ) from exc
            raise
        finally:
            watchdog.cancel()
            killer.close()
            sock.close()


def _connect(
    addresses: list[IPAddress], port: int, deadline: float, connect_timeout: float
) -> socket.socket:
    last: OSError | None = None
    for ip in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(min(connect_timeout, left))
        try:
            sock.connect((str(ip), port))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    if last is not None:
        raise last
    raise DeadlineExceeded("no time left to connect")
