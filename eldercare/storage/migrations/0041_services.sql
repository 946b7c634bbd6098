-- Issue 8, platform layer part 2 (design §2.3 "0006_services"): the service catalogue,
-- providers with their workers and contracts, care agreements, 12349 calls, work orders (工单)
-- with their append-only timeline, revisits (回访) and complaints.

CREATE TABLE service_items (
    code                    text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{0,63}$'),
    name_zh                 text NOT NULL CHECK (length(name_zh) BETWEEN 1 AND 200),
    category                text NOT NULL CHECK (category IN ('meal', 'bath', 'medical', 'cleaning',
                                'mobility', 'emergency', 'visit', 'rehab', 'day_care', 'respite',
                                'institutional', 'device_maintenance', 'other')),
    setting                 text NOT NULL CHECK (setting IN ('home', 'community', 'institution')),
    unit                    text NOT NULL CHECK (unit IN ('visit', 'hour', 'day', 'month', 'meal')),
    min_duration_min        integer CHECK (min_duration_min >= 0),
    max_duration_min        integer CHECK (max_duration_min > 0),
    requires_presence       boolean NOT NULL DEFAULT true,   -- meal delivery to the door: false
    required_qualification  text,                            -- e.g. 'nurse' for 助医
    active                  boolean NOT NULL DEFAULT true,
    CHECK (min_duration_min IS NULL OR max_duration_min IS NULL OR max_duration_min >= min_duration_min)
);

CREATE TABLE providers (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    credit_code    text UNIQUE,                               -- 统一社会信用代码
    kind           text NOT NULL CHECK (kind IN ('facility', 'company', 'social_org', 'volunteer_org')),
    facility_id    bigint REFERENCES facilities(id),
    district_code  text REFERENCES districts(code),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'blacklisted')),
    status_reason  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'facility' OR facility_id IS NOT NULL)
);
CREATE INDEX providers_facility ON providers (facility_id);

-- Prices in fen per unit, keyed by service item code: {"bath_home": 12000, ...}.
CREATE TABLE provider_contracts (
    id              bigserial PRIMARY KEY,
    provider_id     bigint NOT NULL REFERENCES providers(id),
    district_code   text NOT NULL REFERENCES districts(code),
    programme_code  text,                                      -- null: any programme
    valid           daterange NOT NULL CHECK (NOT isempty(valid) AND NOT lower_inf(valid)),
    price_list      jsonb NOT NULL CHECK (jsonb_typeof(price_list) = 'object'),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL
);
CREATE INDEX provider_contracts_provider ON provider_contracts (provider_id);

CREATE TABLE workers (
    id              bigserial PRIMARY KEY,
    provider_id     bigint NOT NULL REFERENCES providers(id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    phone           text,
    qualifications  text[] NOT NULL DEFAULT '{}',
    responder_id    bigint UNIQUE REFERENCES responders(id),  -- so the alert engine can send a worker on site
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider_id, id)                                   -- target of users' composite FK
);

-- 照料/托养协议 and home-bed packages: resident x provider, dated.
CREATE TABLE care_agreements (
    id           bigserial PRIMARY KEY,
    resident_id  bigint NOT NULL REFERENCES residents(id),
    provider_id  bigint NOT NULL REFERENCES providers(id),
    kind         text NOT NULL CHECK (kind IN ('tekun_dispersed_care', 'home_bed', 'gov_purchase', 'private')),
    package      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(package) = 'object'),
    valid        daterange NOT NULL CHECK (NOT isempty(valid) AND NOT lower_inf(valid)),
    signed_on    date NOT NULL,
    doc_ref      text,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX care_agreements_resident ON care_agreements (resident_id);

-- 12349 calls (CallInfo model, design §1b): caller numbers are personal data and are only
-- served to staff roles, never logged.
CREATE TABLE hotline_calls (
    id             bigserial PRIMARY KEY,
    caller         text,
    agent          text,
    started_at     timestamptz NOT NULL,
    answered_at    timestamptz,
    ended_at       timestamptz,
    request_type   text NOT NULL CHECK (request_type IN ('emergency', 'consultation', 'referral', 'complaint')),
    resident_id    bigint REFERENCES residents(id),
    alarm_id       uuid REFERENCES alarms(id),
    satisfaction   smallint CHECK (satisfaction BETWEEN 1 AND 4),   -- 1 非常满意 .. 4 不满意
    recording_ref  text,
    note           text,
    recorded_by    text NOT NULL,
    recorded_at    timestamptz NOT NULL,
    CHECK (answered_at IS NULL OR answered_at >= started_at),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);

CREATE SEQUENCE work_order_number_seq;   -- the <seq6> of WO-<district6>-<yyyymmdd>-<seq6>

CREATE TABLE work_orders (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number             text UNIQUE NOT NULL CHECK (number ~ '^WO-[0-9]{6}-[0-9]{8}-[0-9]{6,}$'),
    resident_id        bigint NOT NULL REFERENCES residents(id),
    -- Snapshots taken at creation: later moves of the resident never rewrite history.
    home_bed_id        bigint REFERENCES home_beds(id),
    household_id       bigint REFERENCES households(id),
    facility_id        bigint REFERENCES facilities(id),
    district_code      text NOT NULL REFERENCES districts(code),
    ref_lat            double precision CHECK (ref_lat BETWEEN -90 AND 90),   -- the GPS reference point
    ref_lon            double precision CHECK (ref_lon BETWEEN -180 AND 180),
    area               text NOT NULL DEFAULT 'town' CHECK (area IN ('town', 'remote')),
    ability_level      text,
    service_item_code  text NOT NULL REFERENCES service_items(code),
    quantity           numeric(8,2) NOT NULL DEFAULT 1 CHECK (quantity > 0),
    source             text NOT NULL CHECK (source IN ('hotline', 'app', 'plan', 'alarm', 'staff', 'revisit')),
    alarm_id           uuid REFERENCES alarms(id),
    hotline_call_id    bigint REFERENCES hotline_calls(id),
    care_agreement_id  bigint REFERENCES care_agreements(id),
    status             text NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'dispatched',
                           'accepted', 'checked_in', 'checked_out', 'verified', 'settled',
                           'cancelled', 'rejected')),
    provider_id        bigint REFERENCES providers(id),
    worker_id          bigint REFERENCES workers(id),
    scheduled_start    timestamptz,
    scheduled_end      timestamptz,
    due_by             timestamptz,
    unit_price_fen     bigint CHECK (unit_price_fen >= 0),    -- copied from the contract at dispatch
    price_fen          bigint CHECK (price_fen >= 0),         -- unit price x quantity at check-out
    ltc_fen            bigint NOT NULL DEFAULT 0 CHECK (ltc_fen >= 0),
    dispatched_at      timestamptz,
    accepted_at        timestamptz,
    checked_in_at      timestamptz,
    checked_out_at     timestamptz,
    verified_at        timestamptz,
    settled_at         timestamptz,
    cancelled_at       timestamptz,
    rejected_at        timestamptz,
    check_in           jsonb,     -- {lat, lon, accuracy_m, client_time, distance_m, tap_msg_id}
    check_out          jsonb,
    record             jsonb,     -- service record: tasks done, notes, photo sha256s, vitals
    revisit_required   boolean NOT NULL DEFAULT false,
    verification       text CHECK (verification IN ('auto', 'manual')),
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL,
    CHECK (scheduled_end IS NULL OR scheduled_start IS NULL OR scheduled_end > scheduled_start),
    CHECK (status IN ('created', 'cancelled') OR provider_id IS NOT NULL),
    CHECK (status NOT IN ('accepted', 'checked_in', 'checked_out', 'verified', 'settled')
           OR worker_id IS NOT NULL),
    CHECK (status NOT IN ('checked_in', 'checked_out', 'verified', 'settled') OR checked_in_at IS NOT NULL),
    CHECK (status NOT IN ('checked_out', 'verified', 'settled') OR
           (checked_out_at IS NOT NULL AND checked_out_at >= checked_in_at AND price_fen IS NOT NULL)),
    CHECK (ltc_fen <= coalesce(price_fen, ltc_fen)),
    CHECK (worker_id IS NULL OR provider_id IS NOT NULL)
);
CREATE INDEX work_orders_resident ON work_orders (resident_id, checked_in_at);
CREATE INDEX work_orders_worker ON work_orders (worker_id, checked_in_at);
CREATE INDEX work_orders_provider ON work_orders (provider_id, status);
CREATE INDEX work_orders_status ON work_orders (status, created_at);
CREATE INDEX work_orders_alarm ON work_orders (alarm_id) WHERE alarm_id IS NOT NULL;
CREATE INDEX work_orders_district ON work_orders (district_code, checked_in_at);

-- 服务记录: a checked-out order is the service record.
CREATE VIEW service_records AS
    SELECT id, number, resident_id, district_code, service_item_code, quantity, provider_id, worker_id,
           checked_in_at, checked_out_at, check_in, check_out, record, price_fen, status
    FROM work_orders WHERE status IN ('checked_out', 'verified', 'settled', 'rejected');

CREATE TABLE work_order_events (
    id             bigserial PRIMARY KEY,
    work_order_id  uuid NOT NULL REFERENCES work_orders(id),
    at             timestamptz NOT NULL,
    actor          text NOT NULL,
    action         text NOT NULL,
    from_status    text,
    to_status      text,
    detail         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object')
);
CREATE INDEX work_order_events_order ON work_order_events (work_order_id, id);
CREATE TRIGGER work_order_events_append_only BEFORE UPDATE OR DELETE ON work_order_events
    FOR EACH ROW EXECUTE FUNCTION eldercare_append_only();

-- 回访. An unreached revisit is retried with a new row; a required revisit gates verification.
CREATE TABLE revisits (
    id                 bigserial PRIMARY KEY,
    work_order_id      uuid NOT NULL REFERENCES work_orders(id),
    reason             text NOT NULL DEFAULT 'manual'
                       CHECK (reason IN ('soft_anomaly', 'first_order', 'sample', 'manual')),
    due_at             timestamptz NOT NULL,
    done_at            timestamptz,
    channel            text CHECK (channel IN ('phone', 'visit', 'app')),
    reached            boolean,
    service_confirmed  boolean,
    satisfaction       smallint CHECK (satisfaction BETWEEN 1 AND 4),   -- 1 非常满意 2 满意 3 一般 4 不满意
    comment            text,
    by_user            text,
    created_at         timestamptz NOT NULL,
    CHECK ((done_at IS NULL) = (reached IS NULL)),
    CHECK (reached IS DISTINCT FROM false OR (service_confirmed IS NULL AND satisfaction IS NULL))
);
CREATE INDEX revisits_order ON revisits (work_order_id);
CREATE INDEX revisits_due ON revisits (due_at) WHERE done_at IS NULL;

CREATE TABLE complaints (
    id               bigserial PRIMARY KEY,
    hotline_call_id  bigint REFERENCES hotline_calls(id),
    resident_id      bigint REFERENCES residents(id),
    provider_id      bigint REFERENCES providers(id),
    work_order_id    uuid REFERENCES work_orders(id),
    severity         text NOT NULL CHECK (severity IN ('red', 'orange', 'yellow')),
    due_at           timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'investigating', 'closed')),
    note             text,
    resolution       text,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL,
    closed_by        text,
    closed_at        timestamptz,
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
CREATE INDEX complaints_provider ON complaints (provider_id, status);
