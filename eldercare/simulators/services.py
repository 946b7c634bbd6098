"""Simulated service activity for the demo (issue 8): a provider, its workers and a month of
home visits, a few of them fraudulent, and the month's entitlement run.

Everything goes through the platform's own services (the same functions the API calls, with
the same lifecycle hooks), with the visit times passed in as ``now``: the work-order code
takes its clock from the caller, so visits can be placed over the past days without
touching the system clock, and the verification rules judge them as they would a real one.
All people here are synthetic (演示 = demo); names carry no personal data.

For the care worker's page (/worker) the demo also keeps a login for the first worker and,
each day it runs, a few orders for the rest of that day: one accepted by that worker, two
offered to the provider, so the page has visits to accept, check in and check out. The
page drives them through the HTTP API, the same lifecycle these functions call.

The frauds are ordinary visits with something wrong that the verification rules (design
§2.8) look for: a check-in 2 km from the home (R05 gps_far), one worker in two homes at once
(R06 worker_overlap), a 10-minute bath (R08 duration_out_of_range) and a visit while the
resident is in hospital (R02 resident_inactive). Whether they are flagged depends on the
rules installed in the lifecycle hooks; what was flagged is counted from the database.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

import psycopg

from eldercare.config import Settings
from eldercare.errors import AuthError, ConflictError, EldercareError
from eldercare.http.app import platform_hooks
from eldercare.platform import entitlements, people, policies, providers, workorders
from eldercare.platform.schemas import (
    AcceptRequest,
    AssessmentCreate,
    CategoryCreate,
    CheckOut,
    ContractCreate,
    DispatchRequest,
    DistrictCreate,
    GeoPoint,
    HouseholdCreate,
    ProviderCreate,
    ServiceItemCreate,
    ServiceRecord,
    StatusPeriodCreate,
    VerifyRequest,
    WorkerCreate,
    WorkOrderCreate,
)
from eldercare.platform.subsidy_schemas import PolicyDraft, ProgrammeCreate
from eldercare.registry import auth
from eldercare.registry import service as registry
from eldercare.registry.auth import Actor
from eldercare.registry.schemas import ResidentCreate
from eldercare.storage import db

log = logging.getLogger(__name__)

PROVIDER_NAME: Final = "SIMdemo 居家养老服务中心"
DISTRICT: Final = "330683"
STREET: Final = "330683001"
# Around Shengzhou (嵊州), the county whose 特困 fees the demo's policies carry.
CENTRE: Final = (29.5900, 120.8200)
DISTRICTS: Final = (
    ("000000", "全国", None, "country", None),
    ("330000", "浙江省", "000000", "province", "east"),
    ("330600", "绍兴市", "330000", "city", "east"),
    ("330683", "嵊州市", "330600", "county", "east"),
    ("330683001", "演示街道", "330683", "street", "east"),
)
ITEMS: Final = (
    ("bath_home", "上门助浴", "bath", "visit", 30, 120),
    ("visit", "探访关爱", "visit", "visit", 15, 120),
    ("meal_delivery", "助餐送餐", "meal", "meal", None, None),
)
PRICES: Final = {"bath_home": 12000, "visit": 3000, "meal_delivery": 1500}
LEVELS: Final = ("moderate", "severe", "complete", "mild", "moderate", "intact")
SCORES: Final = {"intact": 90, "mild": 70, "moderate": 50, "severe": 35, "complete": 20}
RESIDENT_PREFIX: Final = "演示老人"
# The demo's care worker login (published, like every demo password; the demo refuses to
# run in production).
WORKER_LOGIN: Final = ("worker", "demo-worker")
SYSTEM: Final = Actor("demo-sim", "admin")
CIVIL: Final = Actor("demo-sim", "civil_affairs")


@dataclass
class ServiceReport:
    """What the simulator did, for the demo's banner."""

    created: int = 0
    verified: int = 0
    blocked: int = 0
    frauds: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    month: str = ""
    entitled_fen: dict[str, int] = field(default_factory=dict)
    reused: bool = False
    today: int = 0  # orders added for the rest of today (the worker page's)
    worker_login: str = WORKER_LOGIN[0]
    worker_password: str | None = None  # None: an existing account left as it was


def _seed_registry(conn: psycopg.Connection, now: datetime, tz: Any) -> dict[str, Any]:
    """Districts, policies, catalogue, provider, workers, homes and residents (once)."""
    for code, name, parent, level, region in DISTRICTS:
        if not db.rows(conn, "SELECT 1 FROM districts WHERE code = %s", (code,)):
            body = {"code": code, "name": name, "parent_code": parent, "level": level}
            people.create_district(
                conn, DistrictCreate.model_validate({**body, "fiscal_region": region})
            )
    _seed_policies(conn, now)
    for code, name, cat, unit, lo, hi in ITEMS:
        if not db.rows(conn, "SELECT 1 FROM service_items WHERE code = %s", (code,)):
            item = {"code": code, "name_zh": name, "category": cat, "setting": "home"}
            providers.create_item(
                conn,
                ServiceItemCreate.model_validate(
                    {
                        **item,
                        "unit": unit,
                        "min_duration_min": lo,
                        "max_duration_min": hi,
                        "requires_presence": code != "meal_delivery",
                    }
                ),
            )
    prov = providers.create_provider(
        conn, ProviderCreate(name=PROVIDER_NAME, kind="company", district_code=DISTRICT)
    )
    providers.create_contract(
        conn,
        prov["id"],
        ContractCreate(
            district_code=DISTRICT,
            valid_from=date(now.year - 1, 1, 1),
            valid_to=date(now.year + 2, 1, 1),
            price_list=PRICES,
        ),
        SYSTEM.username,
        now,
    )
    workers = [
        providers.create_worker(conn, prov["id"], WorkerCreate(name=f"演示服务员{n}"))["id"]
        for n in (1, 2, 3)
    ]
    homes: list[dict[str, Any]] = []
    for n, level in enumerate(LEVELS, 1):
        lat, lon = CENTRE[0] + n * 0.004, CENTRE[1] + (n % 3) * 0.004
        hh = people.create_household(
            conn,
            HouseholdCreate(
                address=f"演示路{n}号", district_code=STREET, area="town", lat=lat, lon=lon
            ),
        )
        res = registry.create_resident(
            conn,
            ResidentCreate(
                name=f"{RESIDENT_PREFIX}{n:02d}",
                birth_date=date(1936 + n * 3, 1 + n, 1),
                household_id=hh["id"],
            ),
        )
        people.add_assessment(
            conn,
            res["id"],
            AssessmentCreate(
                total_score=SCORES[level],
                reason="initial",
                assessed_at=now - timedelta(days=400),
                effective_from=(now - timedelta(days=400)).date(),
                assessor="演示评估员",
            ),
            SYSTEM.username,
            now,
            tz,
        )
        if n <= 2:  # two 特困 residents in dispersed support
            people.add_category(
                conn,
                res["id"],
                CategoryCreate(
                    category="tekun",
                    support_mode="dispersed",
                    valid_from=date(now.year - 1, 1, 1),
                    source="assistance_system",
                    source_ref=f"救助一件事-DEMO-{n}",
                ),
                SYSTEM.username,
                now,
            )
        homes.append({"resident_id": res["id"], "lat": lat, "lon": lon})
    return {"provider_id": prov["id"], "workers": workers, "homes": homes}


def _seed_policies(conn: psycopg.Connection, now: datetime) -> None:
    """The design's F4 policies (seed 001 amounts, voucher test parameters), once each."""
    seeds: list[tuple[ProgrammeCreate, PolicyDraft]] = [
        (
            ProgrammeCreate(
                code="tekun_living",
                name_zh="特困供养生活费",
                kind="cash_allowance",
                payee="resident",
                period="month",
            ),
            PolicyDraft(
                programme_code="tekun_living",
                district_code=DISTRICT,
                effective_from=date(2022, 7, 1),
                rules=[
                    {
                        "code": "living",
                        "when": {"category": "tekun"},
                        "formula": {"type": "fixed", "amount_fen": 138300},
                    }
                ],
                source_doc="001_43bd6416e6636711.txt",
                source_quote="特困供养生活费1383元/月",
            ),
        ),
        (
            ProgrammeCreate(
                code="tekun_care",
                name_zh="特困人员照料护理补贴",
                kind="care_fee",
                payee="resident",
                period="month",
            ),
            PolicyDraft(
                programme_code="tekun_care",
                district_code=DISTRICT,
                effective_from=date(2022, 7, 1),
                rules=[
                    {
                        "code": "care_by_level",
                        "when": {"category": "tekun"},
                        "formula": {
                            "type": "table",
                            "key": "ability_level",
                            "table_fen": {
                                "complete": 165600,
                                "severe": 165600,
                                "moderate": 82800,
                                "mild": 41400,
                                "intact": 20700,
                            },
                        },
                        "modifiers": [{"when": {"support_mode": "dispersed"}, "multiply": 0.5}],
                    }
                ],
                source_doc="001_43bd6416e6636711.txt",
                source_quote="完全丧失自理能力1656元,中度828元,轻度414元,完全具备自理能力207元"
                "(分散供养护理费是集中供养的50%)",
            ),
        ),
        (
            ProgrammeCreate(
                code="elderly_care_voucher",
                name_zh="养老服务消费补贴",
                kind="voucher",
                payee="provider",
                period="month",
            ),
            PolicyDraft(
                programme_code="elderly_care_voucher",
                district_code="000000",
                effective_from=date(2026, 1, 1),
                rules=[
                    {
                        "code": "voucher",
                        "when": {
                            "age_min": 60,
                            "ability_level_in": ["moderate", "severe", "complete"],
                        },
                        "formula": {
                            "type": "voucher",
                            "ratio_by_setting": {"home": 0.5, "community": 0.5, "institution": 0.4},
                            "monthly_cap_fen": 80000,
                        },
                    }
                ],
                funding={"by_fiscal_region": {"east": {"central": 0.85, "local": 0.15}}},
                source_doc="demo test parameters (design platform-layer.md §1b)",
            ),
        ),
    ]
    for prog, draft in seeds:
        if db.rows(conn, "SELECT 1 FROM programmes WHERE code = %s", (prog.code,)):
            continue
        policies.create_programme(conn, prog)
        pv = policies.create_draft(conn, draft, SYSTEM.username, now)
        policies.publish(conn, pv["id"], SYSTEM.username, now)


@dataclass(frozen=True, slots=True)
class Visit:
    home: int
    worker: int
    item: str
    start: datetime
    minutes: int
    offset_m: float = 0.0  # how far from the home the worker checks in (north, metres)
    fraud: str | None = None


def _plan(now: datetime, rng: random.Random) -> list[Visit]:
    """About a month of visits ending an hour ago; the last four are the frauds."""
    base = now.replace(second=0, microsecond=0) - timedelta(hours=1)
    visits: list[Visit] = []
    for n in range(14):
        start = base - timedelta(hours=31 * (n + 2)) - timedelta(minutes=rng.randrange(0, 60))
        item = ("bath_home", "visit", "meal_delivery")[n % 3]
        minutes = {"bath_home": 45, "visit": 25, "meal_delivery": 5}[item]
        visits.append(Visit(n % len(LEVELS), n % 2, item, start, minutes))
    t = base - timedelta(hours=3)
    visits += [
        Visit(0, 2, "visit", t - timedelta(days=1), 30, offset_m=2000, fraud="gps_far"),
        Visit(1, 1, "bath_home", t, 60, fraud="worker_overlap"),
        Visit(2, 1, "bath_home", t + timedelta(minutes=20), 60, fraud="worker_overlap"),
        Visit(3, 0, "bath_home", t - timedelta(days=2), 10, fraud="duration_out_of_range"),
        Visit(4, 2, "visit", t - timedelta(days=3), 30, fraud="resident_inactive"),
    ]
    return sorted(visits, key=lambda v: v.start)


def _do_visit(
    conn: psycopg.Connection, env: workorders.Env, reg: dict[str, Any], v: Visit
) -> tuple[str, bool]:
    home = reg["homes"][v.home]
    worker_id = reg["workers"][v.worker]
    worker = Actor(
        f"demo-worker-{v.worker + 1}",
        "provider_worker",
        provider_id=reg["provider_id"],
        worker_id=worker_id,
    )
    desk = Actor("demo-sim", "operator")
    created_at = v.start - timedelta(hours=2)
    with conn.transaction():
        order = workorders.create(
            conn,
            desk,
            WorkOrderCreate(
                resident_id=home["resident_id"],
                service_item_code=v.item,
                source="plan",
                scheduled_start=v.start,
            ),
            created_at,
            env,
        )
        oid = order["id"]
        workorders.act(
            conn,
            desk,
            oid,
            "dispatch",
            DispatchRequest(provider_id=reg["provider_id"]),
            created_at,
            env,
        )
        workorders.act(conn, worker, oid, "accept", AcceptRequest(), created_at, env)
    lat = home["lat"] + v.offset_m / 111_195
    end = v.start + timedelta(minutes=v.minutes)
    with conn.transaction():
        workorders.act(
            conn,
            worker,
            oid,
            "check_in",
            GeoPoint(lat=lat, lon=home["lon"], accuracy_m=12, client_time=v.start),
            v.start,
            env,
        )
    with conn.transaction():
        workorders.act(
            conn,
            worker,
            oid,
            "check_out",
            CheckOut(
                lat=lat,
                lon=home["lon"],
                accuracy_m=12,
                client_time=end,
                record=ServiceRecord(tasks=[v.item]),
            ),
            end,
            env,
        )
    try:
        with conn.transaction():
            workorders.act(
                conn, CIVIL, oid, "verify", VerifyRequest(), end + timedelta(hours=1), env
            )
        return oid, True
    except ConflictError as exc:  # an open hard finding or a required revisit
        log.info("demo order %s not verified: %s", order["number"], exc)
        return oid, False


def _ensure_worker_login(conn: psycopg.Connection, provider_id: int) -> str | None:
    """The first demo worker's login; its password, or None for an account that exists
    with another role or password (left untouched, and its password not printed)."""
    username, password = WORKER_LOGIN
    worker_id = db.one(
        conn, "SELECT min(id) AS id FROM workers WHERE provider_id = %s", (provider_id,)
    )["id"]
    found = db.rows(conn, "SELECT role, worker_id FROM users WHERE username = %s", (username,))
    if not found:
        auth.create_user(conn, username, password, "provider_worker", worker_id=worker_id)
        return password
    if found[0]["role"] == "provider_worker" and found[0]["worker_id"] == worker_id:
        try:
            auth.authenticate(conn, username, password)
            return password
        except AuthError:
            pass
    log.info("login %s exists with another role or password; left unchanged", username)
    return None


def _today(conn: psycopg.Connection, env: workorders.Env, provider_id: int, now: datetime) -> int:
    """Orders for the rest of today, once a day: the first worker's accepted visit in an
    hour, and two offered to the provider after it. Nothing when today already has open
    ones (a second run the same day)."""
    day = now.astimezone(env.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    if db.rows(
        conn,
        "SELECT 1 FROM work_orders WHERE provider_id = %s AND scheduled_start >= %s"
        " AND status IN ('dispatched', 'accepted', 'checked_in') LIMIT 1",
        (provider_id, day),
    ):
        return 0
    worker_id = db.one(
        conn, "SELECT min(id) AS id FROM workers WHERE provider_id = %s", (provider_id,)
    )["id"]
    residents = db.rows(
        conn,
        "SELECT id FROM residents WHERE name LIKE %s ORDER BY name LIMIT 3",
        (RESIDENT_PREFIX + "%",),
    )
    worker = Actor(WORKER_LOGIN[0], "provider_worker", provider_id=provider_id, worker_id=worker_id)
    desk = Actor("demo-sim", "operator")
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=60 - now.minute % 5)
    plan = zip(residents, ("visit", "bath_home", "meal_delivery"), (0, 1, 2), strict=False)
    made = 0
    for res, item, n in plan:
        with conn.transaction():
            order = workorders.create(
                conn,
                desk,
                WorkOrderCreate(
                    resident_id=res["id"],
                    service_item_code=item,
                    source="plan",
                    scheduled_start=start + timedelta(hours=n),
                ),
                now,
                env,
            )
            workorders.act(
                conn,
                desk,
                order["id"],
                "dispatch",
                DispatchRequest(provider_id=provider_id),
                now,
                env,
            )
            if n == 0:
                workorders.act(conn, worker, order["id"], "accept", AcceptRequest(), now, env)
        made += 1
    return made


def simulate(
    conn: psycopg.Connection, settings: Settings, now: datetime, seed: int = 1
) -> ServiceReport:
    """Seed the service side once, add visits when this month has none yet, run the month's
    entitlements (idempotent per month x district). Commits as it goes."""
    tz = settings.tz
    env = workorders.Env(tz=tz, revisit_sample_pct=0, hooks=platform_hooks(settings))
    report = ServiceReport(month=entitlements.local_month(now, tz).strftime("%Y-%m"))
    existing = db.rows(conn, "SELECT id FROM providers WHERE name = %s", (PROVIDER_NAME,))
    if existing:
        report.reused = True
    else:
        with conn.transaction():
            reg = _seed_registry(conn, now, tz)
        rng = random.Random(seed)
        plan = _plan(now, rng)
        hospital = next(v for v in plan if v.fraud == "resident_inactive")
        with conn.transaction():
            people.add_status_period(
                conn,
                reg["homes"][hospital.home]["resident_id"],
                StatusPeriodCreate.model_validate(
                    {
                        "status": "hospitalised",
                        "from": hospital.start - timedelta(days=1),
                        "to": hospital.start + timedelta(days=2),
                        "source": "hotline",
                    }
                ),
                SYSTEM.username,
                now,
            )
        for v in plan:
            try:
                _, ok = _do_visit(conn, env, reg, v)
            except EldercareError as exc:
                log.warning("demo visit refused (%s): %s", v.fraud or v.item, exc)
                continue
            report.created += 1
            report.verified += ok
            report.blocked += not ok
            report.frauds += v.fraud is not None
    provider = db.one(conn, "SELECT id FROM providers WHERE name = %s", (PROVIDER_NAME,))
    with conn.transaction():
        report.worker_password = _ensure_worker_login(conn, provider["id"])
    report.today = _today(conn, env, provider["id"], now)
    for r in db.rows(
        conn,
        "SELECT rule_code, count(*)::int AS n FROM anomalies WHERE provider_id = %s"
        " GROUP BY rule_code ORDER BY rule_code",
        (provider["id"],),
    ):
        report.findings[r["rule_code"]] = r["n"]
    with conn.transaction():
        run = entitlements.run(
            conn, entitlements.local_month(now, tz), DISTRICT, SYSTEM.username, now, tz
        )
    report.entitled_fen = {k: int(v) for k, v in run["stats"]["total_fen"].items()}
    return report
