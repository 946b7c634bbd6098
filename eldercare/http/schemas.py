"""HTTP shapes of the alert engine: request bodies (Create/Update) and responses (Public)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from eldercare.alerts import rules

# The vocabularies are the engine's enums (alerts.rules); pydantic validates against them.
Disposition = rules.Disposition


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# ---------------------------------------------------------------- alarm actions


class NoteOptional(_In):
    note: str | None = Field(None, max_length=2000)


class DispatchCreate(_In):
    responder_ids: list[int] | None = Field(None, min_length=1, max_length=20)
    note: str | None = Field(None, max_length=2000)


class OfferAnswer(_In):
    offer_id: int | None = None


class DeclineCreate(_In):
    offer_id: int | None = None
    reason: str | None = Field(None, max_length=500)


class FollowUpIn(_In):
    """A follow-up visit asked for when closing (design §2.9); required for service_request."""

    service_item_code: str = Field(min_length=1, max_length=64)
    due_by: AwareDatetime | None = None


class CloseCreate(_In):
    disposition: Disposition
    note: str | None = Field(None, max_length=2000)
    follow_up: FollowUpIn | None = None


class NoteCreate(_In):
    text: str = Field(min_length=1, max_length=2000)


class EmergencyCreate(_In):
    service: Literal["120", "119"]
    note: str | None = Field(None, max_length=2000)


class TriageReason(_Out):
    feature: str
    weight: float  # log-odds towards "false" (a model), or the rate itself (cold start)
    text: str


class AlarmPublic(_Out):
    id: uuid.UUID
    kind: str
    kinds: list[str]
    priority: int
    status: str
    category: str
    facility_id: int | None
    facility_name: str | None
    home_bed_id: int | None
    resident_id: int | None
    resident_name: str | None
    room: str | None
    device_id: str | None
    camera_id: str | None
    devices: list[str]
    occurrences: int
    cancel_requested_at: datetime | None
    event_time: datetime
    received_at: datetime
    acknowledged_at: datetime | None
    dispatched_at: datetime | None
    accepted_at: datetime | None
    on_site_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    cleared_at: datetime | None
    disposition: str | None
    acknowledged_by: str | None
    escalation_step: int | None
    escalation_due_at: datetime | None
    supervisor_notified_at: datetime | None
    merged_into: uuid.UUID | None
    area: str
    details: dict[str, Any]
    # What the state machine allows now (alerts.rules.MOVES), narrowed to the caller's own
    # in answers to one user (alerts.lifecycle.for_actor); the call checks again.
    allowed_actions: list[str]
    # Alarm triage (eldercare.models): P(false alarm) and why; orders the queue only within
    # a priority band. None until scored.
    triage_p_false: float | None = None
    triage_reasons: list[TriageReason] | None = None
    triage_model: str | None = None


class OfferPublic(_Out):
    id: int
    alarm_id: uuid.UUID
    step: int
    responder_id: int | None
    responder_kind: str
    name: str | None
    phone: str | None
    distance_m: float | None
    status: str
    offered_at: datetime
    due_at: datetime | None
    answered_at: datetime | None
    answered_by: str | None
    reason: str | None


class TimelineEntry(_Out):
    id: int
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    detail: dict[str, Any]


class AttemptPublic(_Out):
    at: datetime
    ok: bool
    status_code: int | None
    error: str | None


class NotificationPublic(_Out):
    """One outbox entry for an alarm: to a device (``target`` = device id) or a webhook."""

    id: int
    channel: Literal["device", "webhook"]
    target: str
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptPublic]


class AlarmDetail(_Out):
    alarm: AlarmPublic
    resident: dict[str, Any] | None
    device: dict[str, Any] | None
    facility: dict[str, Any] | None
    events: list[dict[str, Any]]
    timeline: list[TimelineEntry]
    offers: list[OfferPublic]
    proposal: dict[str, Any] | None
    policy: dict[str, Any]


# ---------------------------------------------------------------- auth


class TokenPublic(_Out):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    username: str
    role: str
    facility_id: int | None


class MePublic(_Out):
    username: str
    role: str
    facility_id: int | None
    responder_id: int | None
    # Provider users (the worker's mobile page needs to know which orders are its own).
    provider_id: int | None = None
    worker_id: int | None = None


# ---------------------------------------------------------------- responders, policies


class ResponderCreate(_In):
    kind: Literal["facility_staff", "outreach", "provider"]
    name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(None, max_length=40)
    facility_id: int | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    available: bool = True

    @model_validator(mode="after")
    def _placed(self) -> ResponderCreate:
        if self.kind in ("facility_staff", "outreach") and self.facility_id is None:
            raise ValueError("facility staff and outreach teams belong to a facility")
        return self


class ResponderPublic(_Out):
    id: int
    kind: str
    name: str
    phone: str | None
    facility_id: int | None
    lat: float | None
    lon: float | None
    available: bool


class RotaCreate(_In):
    responder_id: int
    facility_id: int
    starts_at: datetime
    ends_at: datetime

    @model_validator(mode="after")
    def _order(self) -> RotaCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class StepCreate(_In):
    kind: Literal["facility_staff", "outreach", "family", "provider", "emergency"]
    count: int = Field(1, ge=1, le=10)
    timeout_s: int = Field(120, ge=10, le=3600)
    number: Literal["120", "119"] | None = None


class StepPublic(_Out):
    kind: str
    count: int
    timeout_s: int
    number: str | None = None


class PolicyPublic(_Out):
    """A response policy; ``id`` is null for a built-in area default."""

    id: int | None
    facility_id: int | None
    area: str | None
    name: str
    ack_target_s: int
    ack_target2_s: int
    on_site_target_s: int
    supervisor_after_s: int
    steps: list[StepPublic]


class RotaPublic(_Out):
    id: int
    responder_id: int
    facility_id: int
    starts_at: datetime
    ends_at: datetime


class RotaOnDuty(RotaPublic):
    name: str
    phone: str | None


class PolicyCreate(_In):
    facility_id: int | None = None
    area: Literal["town", "remote"] | None = None
    name: str = Field(min_length=1, max_length=100)
    ack_target_s: int = Field(60, ge=1, le=3600)
    ack_target2_s: int = Field(180, ge=1, le=3600)
    on_site_target_s: int = Field(900, ge=60, le=6 * 3600)
    supervisor_after_s: int = Field(60, ge=1, le=3600)
    steps: list[StepCreate] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _scope(self) -> PolicyCreate:
        if (self.facility_id is None) == (self.area is None):
            raise ValueError("a policy is for one facility or for one area")
        return self


class WebhookCreate(_In):
    # The shape only; where it may point (https, public addresses or the allow-list) is
    # checked by the route against the deployment's outbound policy (alerts/outbound.py).
    url: str = Field(pattern=r"^https?://", max_length=500)
    secret: str = Field(min_length=16, max_length=200)
    events: list[str] = Field(default_factory=list, max_length=20)
    facility_id: int | None = None


class WebhookPublic(_Out):
    id: int
    url: str
    events: list[str]
    facility_id: int | None
    active: bool


class WebhookFailure(_Out):
    """A notification that gave up after its last attempt: nobody got it."""

    id: int
    alarm_id: uuid.UUID | None
    channel: Literal["device", "webhook"]
    target: str
    event: str
    attempts: int
    failed_at: datetime | None
    last_status_code: int | None
    last_error: str | None


class RevealCreate(_In):
    reason: str = Field(min_length=3, max_length=500)
    alarm_id: uuid.UUID | None = None


# ---------------------------------------------------------------- console


class AckTargets(_Out):
    """Seconds to acknowledge: the facility's own policy, else its area's, else default."""

    facility: dict[int, int]
    area: dict[str, int]
    default: int


class ConsoleMeta(_Out):
    open_statuses: list[rules.AlarmStatus]
    terminal_statuses: list[rules.AlarmStatus]
    dispositions: list[rules.Disposition]
    actions: list[str]
    ack_target_s: AckTargets
