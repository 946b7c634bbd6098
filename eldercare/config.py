"""One typed settings object, read from ``ELDERCARE_*`` variables and an optional ``.env``.

Built by :func:`get_settings` (never at import time) so tests and commands can
build their own. Outside development, default secrets are refused.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from eldercare.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The app's role owns nothing and cannot alter the audit (audit H11); the owner role runs
# migrations and creates the app role with the password in the app's URL.
DEFAULT_DB_URL = "postgresql://eldercare_app:eldercare-app-dev@127.0.0.1:55432/eldercare"
DEFAULT_OWNER_DB_URL = "postgresql://eldercare:eldercare@127.0.0.1:55432/eldercare"
DEFAULT_MQTT_PASSWORD = "eldercare-gateway-dev"
DEFAULT_SECRET_KEY = "development-only-secret-change-me"
_DEFAULT_SECRETS = {
    "eldercare",
    "eldercare-app-dev",
    DEFAULT_MQTT_PASSWORD,
    DEFAULT_SECRET_KEY,
    "changeme",
    "",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ELDERCARE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # "test" is development plus the X-Eldercare-Test-Now header (design §2.1), so an HTTP
    # tester can place visits in any month; production ignores that header and logs it.
    environment: Literal["development", "test", "production"] = "development"
    # Calendar months of visits, entitlements and reports (design §4 Q22); stored times are UTC.
    local_tz: str = "Asia/Shanghai"
    # Verify checked-out work orders 24 h after check-out when nothing blocks them (§2.4).
    auto_verify: bool = True
    # Share of orders without anomalies that still get a revisit call (回访), design §2.10.
    revisit_sample_pct: int = Field(10, ge=0, le=100)

    # What the platform connects as: a role that owns nothing (storage/roles.py).
    database_url: str = DEFAULT_DB_URL
    # The owner: migrations, retention, creating the app role. Unset: the local owner when
    # database_url is the local default, else database_url itself (then nothing can be
    # migrated, only checked). Only `eldercare db ...` and compose's init need it.
    owner_database_url: str | None = None
    db_pool_max: int = Field(20, ge=2, le=200)

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(18883, ge=1, le=65535)
    # What provisioned devices are told to connect to (a public name in deployments).
    mqtt_public_host: str | None = None
    mqtt_public_port: int | None = None
    mqtt_username: str = "eldercare-gateway"
    mqtt_password: str = DEFAULT_MQTT_PASSWORD
    mqtt_client_prefix: str = "eldercare-gw"
    mqtt_share_group: str = "eldercare"

    # Where the platform writes Mosquitto's password file and ACL, and finds its pid file
    # (SIGHUP makes Mosquitto reload them without dropping connected devices).
    broker_dir: Path = PROJECT_ROOT / ".local" / "mosquitto"

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    secret_key: str = DEFAULT_SECRET_KEY
    token_minutes: int = Field(60, ge=1, le=24 * 60)
    # Sign-in throttling (audit H5): failed sign-ins per username from one address, per
    # username from all addresses, and per address, within login_window_s before 429;
    # bcrypt checks at once, and how many may wait.
    login_failures_per_user: int = Field(10, ge=1)
    login_failures_per_user_total: int = Field(100, ge=1)
    login_failures_per_address: int = Field(50, ge=1)
    login_window_s: int = Field(900, ge=1)
    login_concurrency: int = Field(4, ge=1, le=64)
    login_queue: int = Field(64, ge=1)
    # How often open websockets are checked against expiry, logout and disabled users (M5).
    ws_recheck_s: float = Field(15.0, gt=0)
    # Reveals of personal data per user per hour (audit M1); without a live alarm, fewer.
    reveals_per_hour: int = Field(60, ge=1)
    reveals_without_alarm_per_hour: int = Field(10, ge=1)

    gateway_workers: int = Field(1, ge=1, le=64)
    # Scale-out (compose profile "scale-out"): gateways on several hosts join one shared
    # subscription even with one worker each, and only the platform's own gateway takes
    # device ``state`` (ordered, retained); replicas set gateway_state false (audit M11).
    gateway_shared: bool = False
    gateway_state: bool = True
    batch_max_rows: int = Field(5000, ge=1, le=100_000)
    batch_max_ms: int = Field(50, ge=1, le=10_000)
    metrics_port: int = Field(9108, ge=0, le=65535)
    # Per-device uplink budget (token bucket; audit H3): a device may send device_burst
    # messages at once and device_rate_per_s sustained. Real devices send a few per
    # minute; the burst also covers the backlog the broker replays after a gateway outage
    # (2000 = 16 h of 30 s heartbeats). An SOS over budget is not acked, so the device
    # re-sends it after refill.
    device_rate_per_s: float = Field(50.0, gt=0)
    device_burst: int = Field(2000, ge=1)

    # Webhooks (audit H8/M8): https to public addresses only, except the hosts listed here
    # (names, IPs or networks such as 10.0.0.0/8, comma-separated), which may also be
    # plain http: an SMS gateway on the internal network, a test receiver on 127.0.0.1.
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # One attempt's whole budget: connect, TLS, request, status line, headers and body.
    webhook_timeout_s: float = Field(10.0, gt=0, le=120)
    webhook_connect_timeout_s: float = Field(3.0, gt=0, le=120)
    webhook_max_response_bytes: int = Field(64 * 1024, ge=0, le=16 * 1024 * 1024)
    # Endpoints delivered to at once; each endpoint has at most one attempt in flight.
    webhook_lanes: int = Field(8, ge=1, le=256)

    retention_days: int = Field(365, ge=1)
    dedup_days: int = Field(
        8, ge=8, description="message ids kept for dedup; > the 7-day ts window"
    )

    liveness_factor: float = Field(2.5, gt=1.0)
    liveness_sweep_s: float = Field(1.0, gt=0)
    camera_offline_alarm_s: int = Field(300, ge=0)
    low_battery_pct: int = Field(20, ge=0, le=100)

    # ML artefacts (eldercare.models): <models_dir>/<model>/manifest.json and one folder per
    # version. Git-ignored by default; deployments point it at a persistent volume.
    models_dir: Path = PROJECT_ROOT / "var" / "models"

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _valid_hosts(cls, value: list[str]) -> list[str]:
        # The same parser the delivery worker uses, so a typo fails at startup, not later.
        for entry in value:
            parse_allow_entry(entry)
        return value

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment in ("development", "test"):
            return self
        weak = []
        db_password = urlsplit(self.database_url).password or ""
        if db_password in _DEFAULT_SECRETS:
            weak.append("ELDERCARE_DATABASE_URL password")
        if self.owner_database_url is not None:
            if (urlsplit(self.owner_database_url).password or "") in _DEFAULT_SECRETS:
                weak.append("ELDERCARE_OWNER_DATABASE_URL password")
            if urlsplit(self.owner_database_url).username == urlsplit(self.database_url).username:
                weak.append(
                    "ELDERCARE_DATABASE_URL user (the app must not connect as the owner of"
                    " ELDERCARE_OWNER_DATABASE_URL)"
                )
        if self.mqtt_password in _DEFAULT_SECRETS:
            weak.append("ELDERCARE_MQTT_PASSWORD")
        if self.secret_key in _DEFAULT_SECRETS or len(self.secret_key) < 32:
            weak.append("ELDERCARE_SECRET_KEY (32+ characters)")
        # Mosquitto's ACL file cannot refuse a SUBSCRIBE, so a device that knows the share
        # group can join it and take a share of every device's uplinks (audit H2). With
        # several workers the group name is therefore a secret; one worker subscribes plainly.
        if self.gateway_subscription_shared(self.gateway_workers) and (
            self.mqtt_share_group in _DEFAULT_SECRETS or len(self.mqtt_share_group) < 16
        ):
            weak.append("ELDERCARE_MQTT_SHARE_GROUP (16+ characters when workers > 1)")
        if weak:
            raise ValueError(
                f"default or weak secrets refused in {self.environment}: " + ", ".join(weak)
            )
        return self

    @model_validator(mode="after")
    def _default_key_only_on_loopback(self) -> Settings:
        # Development and test accept the published key (audit H9), but only where nobody
        # else can reach the API: with it anyone could sign an admin token.
        if self.secret_key == DEFAULT_SECRET_KEY and not is_loopback(self.api_host):
            raise ValueError(
                f"ELDERCARE_API_HOST={self.api_host} is not a loopback address and"
                " ELDERCARE_SECRET_KEY is the published development key, so anyone could"
                " forge an admin token: set ELDERCARE_SECRET_KEY (32+ random characters) or"
                " bind to 127.0.0.1"
            )
        return self

    @model_validator(mode="after")
    def _known_time_zone(self) -> Settings:
        try:
            ZoneInfo(self.local_tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"ELDERCARE_LOCAL_TZ: unknown time zone {self.local_tz!r}") from exc
        return self

    def gateway_subscription_shared(self, workers: int) -> bool:
        """Whether this process's gateway workers subscribe through ``$share/<group>/``."""
        return self.gateway_shared or workers > 1

    @property
    def migration_url(self) -> str:
        """Where migrations and retention connect (see ``owner_database_url``)."""
        if self.owner_database_url:
            return self.owner_database_url
        if self.database_url == DEFAULT_DB_URL and self.environment != "production":
            return DEFAULT_OWNER_DB_URL
        return self.database_url

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.local_tz)

    @property
    def device_mqtt_host(self) -> str:
        return self.mqtt_public_host or self.mqtt_host

    @property
    def device_mqtt_port(self) -> int:
        return self.mqtt_public_port or self.mqtt_port


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``; a name or a wildcard (0.0.0.0) is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[] ")).is_loopback
    except ValueError:
        return False


def parse_allow_entry(entry: str) -> str | ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A webhook allow-list entry: an IP address or network (``10.0.0.0/8``), or a host
    name (lower case)."""
    text = entry.strip().lower()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    if not text or not all(c.isalnum() or c in "-._" for c in text):
        raise ValueError(f"webhook allow-list entry {entry!r} is neither a host name nor an IP")
    return text


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus explicit overrides."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(str(exc)) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return load_settings()
