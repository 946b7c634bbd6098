"""Registry schemas: separate Create / Update / Public shapes per object.

Public shapes never carry secrets (device password hashes) and the sensitive
resident fields are only in :class:`ResidentDetail`, which the API serves with
an audited reveal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from eldercare.protocol import DEVICE_ID_RE

DeviceKind = Literal["sos_button", "fall_sensor", "video_bridge", "home_kit", "wearable"]
Area = Literal["town", "remote"]
# GB/T 2260 county codes (6 digits), street (9) and community (12) codes.
DISTRICT_CODE = r"^([0-9]{6}|[0-9]{9}|[0-9]{12})$"
FacilityKind = Literal["nursing_home", "day_care", "community_center"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FacilityCreate(_Model):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=200)
    kind: FacilityKind = "nursing_home"
    area: Area = "town"
    address: str | None = Field(default=None, max_length=500)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    phone: str | None = Field(default=None, max_length=40)
    district_code: str | None = Field(default=None, pattern=DISTRICT_CODE)
    tekun_institution: bool = False  # 特困供养机构


class FacilityUpdate(_Model):
    """What changes over a facility's life; facilities made before the platform layer get
    their district (and 特困 status) here, so their residents count in the district's
    reports. The code and kind stay as created."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    area: Area | None = None
    address: str | None = Field(default=None, max_length=500)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    phone: str | None = Field(default=None, max_length=40)
    district_code: str | None = Field(default=None, pattern=DISTRICT_CODE)
    tekun_institution: bool | None = None


class HomeBedCreate(_Model):
    facility_id: int
    address: str = Field(min_length=1, max_length=500)
    access_notes: str | None = Field(default=None, max_length=1000)
    area: Area = "town"
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    district_code: str | None = Field(default=None, pattern=DISTRICT_CODE)
    established_on: date | None = None
    closed_on: date | None = None
    liability_insured: bool = False
    package_code: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _dates(self) -> HomeBedCreate:
        if self.closed_on and self.established_on and self.closed_on < self.established_on:
            raise ValueError("closed_on is before established_on")
        return self


class HomeBedUpdate(_Model):
    """What changes over a home bed's life; the address stays behind the audited reveal."""

    access_notes: str | None = Field(default=None, max_length=1000)
    area: Area | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    district_code: str | None = Field(default=None, pattern=DISTRICT_CODE)
    established_on: date | None = None
    closed_on: date | None = None
    liability_insured: bool | None = None
    package_code: str | None = Field(default=None, max_length=64)


class HomeBedPublic(_Model):
    """No address: it is personal data, served only by the audited reveal."""

    id: int
    facility_id: int
    area: str
    lat: float | None
    lon: float | None
    district_code: str | None = None
    established_on: date | None = None
    closed_on: date | None = None
    liability_insured: bool = False
    package_code: str | None = None


class Contact(_Model):
    name: str = Field(min_length=1, max_length=100)
    relation: str = Field(max_length=40, default="")
    phone: str = Field(min_length=3, max_length=40)


class ResidentCreate(_Model):
    name: str = Field(min_length=1, max_length=100)
    id_number: str | None = Field(default=None, max_length=32)
    birth_date: date | None = None
    gender: Literal["female", "male", "other"] | None = None
    ability_level: str | None = Field(default=None, max_length=40)
    medical_notes: str | None = Field(default=None, max_length=4000)
    allergies: str | None = Field(default=None, max_length=1000)
    contacts: list[Contact] = Field(default_factory=list, max_length=10)
    facility_id: int | None = None
    room: str | None = Field(default=None, max_length=40)
    home_bed_id: int | None = None
    household_id: int | None = None

    @model_validator(mode="after")
    def _placed(self) -> ResidentCreate:
        if self.facility_id is None and self.home_bed_id is None and self.household_id is None:
            raise ValueError(
                "a resident lives in a facility (facility_id), a home care bed (home_bed_id)"
                " or a household (household_id)"
            )
        return self


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
    household_id: int | None = None


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
    room: str | None = Field(default=None, max_length=40)
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
