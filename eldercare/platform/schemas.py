"""Request shapes of the platform layer (design §2.11). Strict: unknown fields are a 422."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from eldercare.registry.schemas import DISTRICT_CODE, Area


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Level = Literal["intact", "mild", "moderate", "severe", "complete"]
Satisfaction = int  # 1 非常满意 2 满意 3 一般 4 不满意


class DistrictCreate(_Model):
    code: str = Field(pattern=DISTRICT_CODE)
    name: str = Field(min_length=1, max_length=200)
    parent_code: str | None = Field(default=None, pattern=DISTRICT_CODE)
    level: Literal["country", "province", "city", "county", "street", "community"]
    fiscal_region: Literal["east", "central", "west"] | None = None

    @model_validator(mode="after")
    def _root(self) -> DistrictCreate:
        if (self.level == "country") != (self.parent_code is None):
            raise ValueError("only the country level has no parent_code")
        return self


class HouseholdCreate(_Model):
    address: str = Field(min_length=1, max_length=500)
    district_code: str = Field(pattern=DISTRICT_CODE)
    area: Area = "town"
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _point(self) -> HouseholdCreate:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class CategoryCreate(_Model):
    category: Literal[
        "tekun",
        "dibao",
        "dibian",
        "difficult_disabled",
        "severe_disabled",
        "living_alone",
        "empty_nest",
        "gov_purchase",
    ]
    support_mode: Literal["centralised", "dispersed"] | None = None
    valid_from: date
    valid_to: date | None = None  # exclusive
    source: Literal["assistance_system", "staff", "import"]
    source_ref: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> CategoryCreate:
        if (self.category == "tekun") != (self.support_mode is not None):
            raise ValueError("support_mode is required for tekun and only for tekun")
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


StatusSource = Literal[
    "staff", "family", "funeral_registry", "medical_insurance", "hotline", "device"
]


class StatusPeriodCreate(_Model):
    status: Literal["hospitalised", "deceased", "moved_out", "away"]
    from_: AwareDatetime = Field(alias="from")
    to: AwareDatetime | None = None  # exclusive; open-ended when absent
    source: StatusSource
    source_ref: str | None = Field(default=None, max_length=200)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _range(self) -> StatusPeriodCreate:
        if self.status == "deceased" and self.to is not None:
            raise ValueError("a death has no end (omit 'to')")
        if self.to is not None and self.to <= self.from_:
            raise ValueError("'to' must be after 'from'")
        return self


class DeathRecord(_Model):
    resident_id: int
    died_at: AwareDatetime
    source_ref: str = Field(min_length=1, max_length=200)


class DeathRecords(_Model):
    """A batch from the funeral registry (殡葬); each row becomes a ``deceased`` period."""

    records: list[DeathRecord] = Field(min_length=1, max_length=1000)


class AssessmentAdjustments(_Model):
    coma: bool = False
    dementia: bool = False
    mental_disorder: bool = False
    risk_events_30d: int = Field(default=0, ge=0, le=100)


class ScoreRequest(_Model):
    total_score: int | None = Field(default=None, ge=0, le=90)
    item_scores: dict[str, int] | None = None
    adjustments: AssessmentAdjustments = Field(default_factory=AssessmentAdjustments)

    @model_validator(mode="after")
    def _something(self) -> ScoreRequest:
        if self.total_score is None and self.item_scores is None:
            raise ValueError("give total_score or the 26 item_scores")
        return self


class AssessmentCreate(ScoreRequest):
    reason: Literal["initial", "periodic", "change", "dispute", "other"]
    assessed_at: AwareDatetime
    effective_from: date
    valid_until: date | None = None
    assessor: str = Field(min_length=1, max_length=100)
    agency: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _dates(self) -> AssessmentCreate:
        if self.valid_until is not None and self.valid_until < self.effective_from:
            raise ValueError("valid_until is before effective_from")
        return self


class RevokeRequest(_Model):
    reason: str = Field(min_length=1, max_length=500)


# ---------------------------------------------------------------- catalogue and providers

ItemCategory = Literal[
    "meal",
    "bath",
    "medical",
    "cleaning",
    "mobility",
    "emergency",
    "visit",
    "rehab",
    "day_care",
    "respite",
    "institutional",
    "device_maintenance",
    "other",
]


class ServiceItemCreate(_Model):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    name_zh: str = Field(min_length=1, max_length=200)
    category: ItemCategory
    setting: Literal["home", "community", "institution"]
    unit: Literal["visit", "hour", "day", "month", "meal"]
    min_duration_min: int | None = Field(default=None, ge=0, le=24 * 60 * 31)
    max_duration_min: int | None = Field(default=None, gt=0, le=24 * 60 * 31)
    requires_presence: bool = True
    required_qualification: str | None = Field(default=None, max_length=64)
    active: bool = True

    @model_validator(mode="after")
    def _durations(self) -> ServiceItemCreate:
        lo, hi = self.min_duration_min, self.max_duration_min
        if lo is not None and hi is not None and hi < lo:
            raise ValueError("max_duration_min is below min_duration_min")
        return self


class ServiceItemUpdate(_Model):
    name_zh: str | None = Field(default=None, min_length=1, max_length=200)
    min_duration_min: int | None = Field(default=None, ge=0)
    max_duration_min: int | None = Field(default=None, gt=0)
    requires_presence: bool | None = None
    required_qualification: str | None = Field(default=None, max_length=64)
    active: bool | None = None


class ProviderCreate(_Model):
    name: str = Field(min_length=1, max_length=200)
    credit_code: str | None = Field(default=None, pattern=r"^[0-9A-Z]{18}$")  # 统一社会信用代码
    kind: Literal["facility", "company", "social_org", "volunteer_org"]
    facility_id: int | None = None
    district_code: str | None = Field(default=None, pattern=DISTRICT_CODE)

    @model_validator(mode="after")
    def _facility(self) -> ProviderCreate:
        if self.kind == "facility" and self.facility_id is None:
            raise ValueError("a provider of kind facility names its facility_id")
        return self


class ProviderStatus(_Model):
    status: Literal["active", "suspended", "blacklisted"]
    reason: str = Field(min_length=1, max_length=500)


class WorkerCreate(_Model):
    name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    qualifications: list[str] = Field(default_factory=list, max_length=20)
    responder_id: int | None = None
    # Or create a responder for the alert engine right here, at this registered position.
    responder_lat: float | None = Field(default=None, ge=-90, le=90)
    responder_lon: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _responder(self) -> WorkerCreate:
        new = self.responder_lat is not None or self.responder_lon is not None
        if new and (self.responder_lat is None or self.responder_lon is None):
            raise ValueError("give both responder_lat and responder_lon")
        if new and self.responder_id is not None:
            raise ValueError("link an existing responder_id or place a new one, not both")
        return self


class ContractCreate(_Model):
    district_code: str = Field(pattern=DISTRICT_CODE)
    programme_code: str | None = Field(default=None, max_length=64)
    valid_from: date
    valid_to: date | None = None  # exclusive
    price_list: dict[str, int] = Field(min_length=1)

    @model_validator(mode="after")
    def _ok(self) -> ContractCreate:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        if any(v < 0 for v in self.price_list.values()):
            raise ValueError("prices are fen and cannot be negative")
        return self


class AgreementCreate(_Model):
    resident_id: int
    provider_id: int
    kind: Literal["tekun_dispersed_care", "home_bed", "gov_purchase", "private"]
    package: dict[str, object] = Field(default_factory=dict)
    valid_from: date
    valid_to: date | None = None
    signed_on: date
    doc_ref: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _ok(self) -> AgreementCreate:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


# ---------------------------------------------------------------- work orders


class WorkOrderCreate(_Model):
    resident_id: int
    service_item_code: str = Field(min_length=1, max_length=64)
    quantity: float = Field(default=1, gt=0, le=10000)
    source: Literal["hotline", "app", "plan", "staff", "revisit"] = "app"
    scheduled_start: AwareDatetime | None = None
    scheduled_end: AwareDatetime | None = None
    due_by: AwareDatetime | None = None
    care_agreement_id: int | None = None
    # The long-term-care insurance share, entered per order until an interface exists (Q8).
    ltc_fen: int = Field(default=0, ge=0, le=10**10)

    @model_validator(mode="after")
    def _window(self) -> WorkOrderCreate:
        if (
            self.scheduled_start
            and self.scheduled_end
            and self.scheduled_end <= self.scheduled_start
        ):
            raise ValueError("scheduled_end must be after scheduled_start")
        return self


class DispatchRequest(_Model):
    provider_id: int
    worker_id: int | None = None


class AcceptRequest(_Model):
    worker_id: int | None = None  # a provider worker accepts for themself


class ReasonRequest(_Model):
    reason: str = Field(min_length=1, max_length=500)


NoFix = Literal["denied", "unavailable", "timeout", "unsupported"]


class GeoPoint(_Model):
    """A check-in or check-out point from the worker's phone.

    A phone with no fix (location refused, no signal indoors, a page not served over HTTPS)
    still checks in, with no point and ``no_fix`` saying why: the worker is at the door and
    the visit happens; the visit checks flag it (R05 ``gps_far``, reason ``no_point``) and a
    revisit confirms it, as design §2.8 intends. A client that merely forgets the point is
    refused, so a missing fix is always a statement, never an accident.
    """

    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000)
    client_time: AwareDatetime
    tap_msg_id: str | None = Field(default=None, max_length=64)
    no_fix: NoFix | None = None

    @model_validator(mode="after")
    def _point_or_reason(self) -> GeoPoint:
        given = [v is not None for v in (self.lat, self.lon, self.accuracy_m)]
        if any(given) and not all(given):
            raise ValueError("lat, lon and accuracy_m go together")
        if all(given) and self.no_fix is not None:
            raise ValueError("no_fix is only for a point without lat and lon")
        if not any(given) and self.no_fix is None:
            raise ValueError("give lat, lon and accuracy_m, or no_fix saying why there is none")
        return self


SHA256 = r"^[0-9a-f]{64}$"


class ServiceRecord(_Model):
    """What was done on the visit (服务记录, design §2.3 ``record``): the tasks, free notes
    and the sha256 of any photos (kept elsewhere; R14 compares them). Bounded, so a record is
    a record and not a place to park data."""

    tasks: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=30
    )
    notes: str | None = Field(default=None, max_length=2000)
    photos: list[Annotated[str, Field(pattern=SHA256)]] = Field(default_factory=list, max_length=10)


class CheckOut(GeoPoint):
    record: ServiceRecord = Field(default_factory=ServiceRecord)


class VerifyRequest(_Model):
    note: str | None = Field(default=None, max_length=1000)


class RejectClaim(_Model):
    anomaly_id: int
    note: str | None = Field(default=None, max_length=1000)


class RevisitCreate(_Model):
    channel: Literal["phone", "visit", "app"]
    reached: bool
    service_confirmed: bool | None = None
    satisfaction: int | None = Field(default=None, ge=1, le=4)
    comment: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _reached(self) -> RevisitCreate:
        if not self.reached and (self.service_confirmed is not None or self.satisfaction):
            raise ValueError("an unreached revisit records no confirmation or satisfaction")
        return self


# ---------------------------------------------------------------- hotline


class HotlineCallCreate(_Model):
    caller: str | None = Field(default=None, max_length=40)
    agent: str | None = Field(default=None, max_length=100)
    started_at: AwareDatetime
    answered_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    request_type: Literal["emergency", "consultation", "referral", "complaint"]
    resident_id: int | None = None
    alarm_id: UUID | None = None
    satisfaction: int | None = Field(default=None, ge=1, le=4)
    recording_ref: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _times(self) -> HotlineCallCreate:
        for name in ("answered_at", "ended_at"):
            t: datetime | None = getattr(self, name)
            if t is not None and t < self.started_at:
                raise ValueError(f"{name} is before started_at")
        if self.request_type == "emergency" and self.alarm_id is None:
            raise ValueError("an emergency call links its alarm (alarm_id)")
        return self


class CallWorkOrder(_Model):
    service_item_code: str = Field(min_length=1, max_length=64)
    quantity: float = Field(default=1, gt=0, le=10000)
    scheduled_start: AwareDatetime | None = None
    scheduled_end: AwareDatetime | None = None
    due_by: AwareDatetime | None = None


class ComplaintCreate(_Model):
    hotline_call_id: int | None = None
    resident_id: int | None = None
    provider_id: int | None = None
    work_order_id: UUID | None = None
    severity: Literal["red", "orange", "yellow"]
    note: str | None = Field(default=None, max_length=4000)


class ComplaintClose(_Model):
    resolution: str = Field(min_length=1, max_length=4000)


class VisitContact(_Model):
    name: str | None
    relation: str | None
    phone: str | None


class VisitAddress(_Model):
    """What a worker on an active order sees to find the door (POST .../reveal): no ID
    number, no medical notes, one contact."""

    work_order_id: str
    number: str
    resident_id: int
    address: str | None
    access_notes: str | None
    contact: VisitContact | None
    revealed_at: datetime
