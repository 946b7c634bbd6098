"""Request shapes of programmes, policies, entitlements, settlement and awards (design §2.11).
Strict like the rest of the platform layer: an unknown field is a 422."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from eldercare.registry.schemas import DISTRICT_CODE

MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def month_start(text: str) -> date:
    """'2022-08' -> date(2022, 8, 1); the pattern has already been checked."""
    year, month = text.split("-")
    return date(int(year), int(month), 1)


class ProgrammeCreate(_Model):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    name_zh: str = Field(min_length=1, max_length=200)
    kind: Literal[
        "cash_allowance",
        "care_fee",
        "voucher",
        "service_credit",
        "facility_award",
        "bed_subsidy",
        "worker_subsidy",
    ]
    payee: Literal["resident", "provider", "facility", "worker"]
    period: Literal["month", "year", "once"]


class PolicyDraft(_Model):
    programme_code: str = Field(min_length=1, max_length=63)
    district_code: str = Field(pattern=DISTRICT_CODE)
    effective_from: date
    effective_to: date | None = None  # exclusive; None = open-ended
    rules: list[dict[str, Any]] = Field(min_length=1, max_length=50)
    funding: dict[str, Any] = Field(default_factory=dict)
    rounding: Literal["floor_fen"] = "floor_fen"
    as_of: Literal["month_start"] = "month_start"
    source_doc: str = Field(min_length=1, max_length=500)
    source_quote: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _range(self) -> PolicyDraft:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effective_to (exclusive) must be after effective_from")
        return self


class PolicyPatch(_Model):
    """Only a draft may change; a published version answers 409 (design §3.3 step 4)."""

    effective_from: date | None = None
    effective_to: date | None = None
    rules: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=50)
    funding: dict[str, Any] | None = None
    source_doc: str | None = Field(default=None, min_length=1, max_length=500)
    source_quote: str | None = Field(default=None, max_length=2000)


class PreviewFacts(_Model):
    categories: list[str] = Field(default_factory=list, max_length=20)
    support_mode: Literal["centralised", "dispersed"] | None = None
    ability_level: Literal["intact", "mild", "moderate", "severe", "complete"] | None = None
    age: int | None = Field(default=None, ge=0, le=130)
    setting: Literal["home", "community", "institution"] | None = None
    status: Literal["deceased", "moved_out"] | None = None


class PreviewRequest(_Model):
    district_code: str = Field(pattern=DISTRICT_CODE)
    month: str = Field(pattern=MONTH)
    programme_code: str = Field(min_length=1, max_length=63)
    facts: PreviewFacts


class RunRequest(_Model):
    month: str = Field(pattern=MONTH)
    district_code: str = Field(pattern=DISTRICT_CODE)


class QuoteRequest(_Model):
    resident_id: int = Field(gt=0)
    service_item_code: str = Field(min_length=1, max_length=63)
    price_fen: int = Field(ge=0, le=10**10)
    ltc_fen: int = Field(default=0, ge=0, le=10**10)
    at: AwareDatetime

    @model_validator(mode="after")
    def _ltc(self) -> QuoteRequest:
        if self.ltc_fen > self.price_fen:
            raise ValueError("ltc_fen cannot exceed price_fen")
        return self


class BatchCreate(_Model):
    provider_id: int = Field(gt=0)
    month: str = Field(pattern=MONTH)


class BatchReject(_Model):
    reason: str = Field(min_length=1, max_length=500)


class BatchPaid(_Model):
    payment_ref: str = Field(min_length=1, max_length=200)


class RatingCreate(_Model):
    scheme: str = Field(min_length=1, max_length=200)
    level: int = Field(ge=1, le=5)
    score: float | None = None
    rated_on: date
    valid_from: date
    valid_to: date | None = None  # exclusive
    doc_ref: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _range(self) -> RatingCreate:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to (exclusive) must be after valid_from")
        return self


class AwardRun(_Model):
    programme_code: str = Field(min_length=1, max_length=63)
    year: int = Field(ge=2000, le=2100)
    district_code: str = Field(pattern=DISTRICT_CODE)

    @field_validator("programme_code")
    @classmethod
    def _code(cls, v: str) -> str:
        return v.strip()
