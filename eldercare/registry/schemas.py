"""Registry schemas: separate Create / Update / Public shapes per object.

Public shapes never carry secrets (device password hashes) and the sensitive
resident fields are only in :class:`ResidentDetail`, which the API serves with
an audited reveal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eldercare.protocol import DEVICE_ID_RE

DeviceKind = Literal["sos_button", "fall_sensor", "video_bridge", "home_kit", "wearable"]
Area = Literal["town", "remote"]
FacilityKind = Literal["nursing_home", "day_care", "community_center"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FacilityCreate(_Model):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=200)
    kind: FacilityKind = "nursing_home"
    area: Area = "town"
    address: str | None = Field(None, max_length=500)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    phone: str | None = Field(None, max_length=40)


class HomeBedCreate(_Model):
    facility_id: int
    address: str = Field(min_length=1, max_length=500)
    access_notes: str | None = Field(None, max_length=1000)
    area: Area = "town"
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class Contact(_Model):
    name: str = Field(min_length=1, max_length=100)
    relation: str = Field(max_length=40, default="")
    phone: str = Field(min_length=3, max_length=40)


class ResidentCreate(_Model):
    name: str = Field(min_length=1, max_length=100)
    id_number: str | None = Field(None, max_length=32)
    birth_date: date | None = None
    gender: Literal["female", "male", "other"] | None = None
    ability_level: str | None = Field(None, max_length=40)
    medical_notes: str | None = Field(None, max_length=4000)
    allergies: str | None = Field(None, max_length=1000)
    contacts: list[Contact] = Field(default_factory=list, max_length=10)
    facility_id: int | None = None
    room: str | None = Field(None, max_length=40)
    home_bed_id: int | None = None

    @field_validator("home_bed_id")
    @classmethod
    def _placed(cls, v: int | None, info: object) -> int | None:
        data = getattr(info, "data", {})
        if v is None and data.get("facility_id") is None:
            raise ValueError("a resident lives in a facility (facility_id) or a home care bed")
        return v


class ResidentPublic(_Model):
    """What lists and alarm queues show: no ID number, notes or contacts."""

    id: int
    name: str
    birth_date: date | None
    gender: str | None
    ability_level: str | None
    facility_id: int | None
    room: str | None
    home_bed_id: int | None


class ResidentDetail(ResidentPublic):
    id_number: str | None
    medical_notes: str | None
    allergies: str | None
    contacts: list[Contact]
    address: str | None
    access_notes: str | None


class DeviceCreate(_Model):
    kind: DeviceKind
    device_id: str | None = None
    resident_id: int | None = None
    facility_id: int | None = None
    room: str | None = Field(None, max_length=40)
    cameras: list[str] = Field(default_factory=list, max_length=256)

    @field_validator("device_id")
    @classmethod
    def _id_ok(cls, v: str | None) -> str | None:
        if v is not None and not DEVICE_ID_RE.match(v):
            raise ValueError("device_id: 1-64 of A-Z a-z 0-9 _ . - , starting alphanumeric")
        return v


class DeviceCredentials(_Model):
    """Printed once at provisioning; the platform keeps only the hash."""

    device_id: str
    mqtt_host: str
    mqtt_port: int
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the gateway and the alert engine need to know of a device, cached per worker."""

    id: str
    kind: str
    status: str
    facility_id: int | None
    resident_id: int | None
    home_bed_id: int | None
    room: str | None

    @property
    def active(self) -> bool:
        return self.status == "active"
