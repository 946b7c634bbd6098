"""One typed settings object, read from ``ELDERCARE_*`` variables and an optional ``.env``.

Built by :func:`get_settings` (never at import time) so tests and commands can
build their own. Outside development, default secrets are refused.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eldercare.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DB_URL = "postgresql://eldercare:eldercare@127.0.0.1:55432/eldercare"
DEFAULT_MQTT_PASSWORD = "eldercare-gateway-dev"
DEFAULT_SECRET_KEY = "development-only-secret-change-me"
_DEFAULT_SECRETS = {"eldercare", DEFAULT_MQTT_PASSWORD, DEFAULT_SECRET_KEY, "changeme", ""}


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

    database_url: str = DEFAULT_DB_URL
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
    # Sign-in throttling (audit H5): failed sign-ins per username and per client address
    # within login_window_s before 429; bcrypt checks at once, and how many may wait.
    login_failures_per_user: int = Field(10, ge=1)
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

    retention_days: int = Field(365, ge=1)
    dedup_days: int = Field(
        8, ge=8, description="message ids kept for dedup; > the 7-day ts window"
    )

    liveness_factor: float = Field(2.5, gt=1.0)
    liveness_sweep_s: float = Field(1.0, gt=0)
    camera_offline_alarm_s: int = Field(300, ge=0)
    low_battery_pct: int = Field(20, ge=0, le=100)

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment in ("development", "test"):
            return self
        weak = []
        db_password = urlsplit(self.database_url).password or ""
        if db_password in _DEFAULT_SECRETS:
            weak.append("ELDERCARE_DATABASE_URL password")
        if self.mqtt_password in _DEFAULT_SECRETS:
            weak.append("ELDERCARE_MQTT_PASSWORD")
        if self.secret_key in _DEFAULT_SECRETS or len(self.secret_key) < 32:
            weak.append("ELDERCARE_SECRET_KEY (32+ characters)")
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
