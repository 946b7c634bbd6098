-- Alert engine: alarm lifecycle clocks, audit trail, users, responders, rota,
-- response policies, dispatch offers, notification outbox, audited reveals.

-- ---------------------------------------------------------------- alarm lifecycle
ALTER TABLE alarms
    ADD COLUMN kinds                  text[] NOT NULL DEFAULT '{}',
    ADD COLUMN devices                text[] NOT NULL DEFAULT '{}',
    ADD COLUMN acknowledged_at        timestamptz,
    ADD COLUMN acknowledged_by        text,
    ADD COLUMN dispatched_at          timestamptz,
    ADD COLUMN accepted_at            timestamptz,
    ADD COLUMN on_site_at             timestamptz,
    ADD COLUMN resolved_at            timestamptz,
    ADD COLUMN closed_at              timestamptz,
    ADD COLUMN cleared_at             timestamptz,
    ADD COLUMN disposition            text,
    ADD COLUMN merged_into            uuid REFERENCES alarms(id),
    ADD COLUMN escalation_step        integer,
    ADD COLUMN escalation_due_at      timestamptz,
    ADD COLUMN supervisor_notified_at timestamptz,
    ADD COLUMN policy_id              bigint,
    ADD COLUMN area                   text NOT NULL DEFAULT 'town',
    ADD CONSTRAINT alarms_status_ok CHECK (status IN
        ('raised', 'acknowledged', 'dispatched', 'accepted', 'on_site', 'resolved', 'closed',
         'merged')),
    ADD CONSTRAINT alarms_disposition_ok CHECK (disposition IS NULL OR disposition IN
        ('genuine_emergency', 'fall_without_injury', 'accidental_press', 'test',
         'false_sensor_alarm', 'service_request', 'no_response_needed', 'other'));

-- Alarms raised by the gateway before this migration.
UPDATE alarms SET kinds = ARRAY[kind], devices = CASE WHEN device_id IS NULL THEN '{}'
    ELSE ARRAY[device_id] END WHERE kinds = '{}';

CREATE INDEX alarms_resident_open ON alarms (resident_id, received_at DESC)
    WHERE status NOT IN ('closed', 'merged');
CREATE INDEX alarms_escalation_due ON alarms (escalation_due_at)
    WHERE escalation_due_at IS NOT NULL;
CREATE INDEX alarms_raised ON alarms (received_at) WHERE status = 'raised';
CREATE INDEX alarms_received ON alarms (received_at);

-- Append-only: who did what, when. Rows are never updated or deleted.
CREATE TABLE alarm_events (
    id           bigserial PRIMARY KEY,
    alarm_id     uuid NOT NULL REFERENCES alarms(id),
    at           timestamptz NOT NULL,
    actor        text NOT NULL,        -- a username, 'system', or 'device:<id>'
    action       text NOT NULL,
    from_status  text,
    to_status    text,
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alarm_events_alarm ON alarm_events (alarm_id, id);

CREATE FUNCTION eldercare_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER alarm_events_append_only BEFORE UPDATE OR DELETE ON alarm_events
    FOR EACH ROW EXECUTE FUNCTION eldercare_append_only();

-- ---------------------------------------------------------------- people
CREATE TABLE responders (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('facility_staff', 'outreach', 'provider')),
    name         text NOT NULL,
    phone        text,
    facility_id  bigint REFERENCES facilities(id),
    lat          double precision CHECK (lat BETWEEN -90 AND 90),
    lon          double precision CHECK (lon BETWEEN -180 AND 180),
    available    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX responders_facility ON responders (facility_id, kind);

CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    username       text UNIQUE NOT NULL,
    password_hash  text NOT NULL,          -- bcrypt
    role           text NOT NULL CHECK (role IN ('operator', 'supervisor', 'facility_staff', 'admin')),
    facility_id    bigint REFERENCES facilities(id),
    responder_id   bigint REFERENCES responders(id),
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'facility_staff' OR facility_id IS NOT NULL)
);

CREATE TABLE rota (
    id            bigserial PRIMARY KEY,
    responder_id  bigint NOT NULL REFERENCES responders(id),
    facility_id   bigint NOT NULL REFERENCES facilities(id),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX rota_facility_time ON rota (facility_id, starts_at, ends_at);

-- ---------------------------------------------------------------- policies and dispatch
CREATE TABLE response_policies (
    id                  bigserial PRIMARY KEY,
    facility_id         bigint UNIQUE REFERENCES facilities(id),
    area                text CHECK (area IN ('town', 'remote')),
    name                text NOT NULL,
    ack_target_s        integer NOT NULL DEFAULT 60,
    ack_target2_s       integer NOT NULL DEFAULT 180,
    on_site_target_s    integer NOT NULL,
    supervisor_after_s  integer NOT NULL DEFAULT 60,
    steps               jsonb NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (facility_id IS NULL OR area IS NULL)
);
CREATE UNIQUE INDEX response_policies_area ON response_policies (area) WHERE facility_id IS NULL;

CREATE TABLE dispatch_offers (
    id              bigserial PRIMARY KEY,
    alarm_id        uuid NOT NULL REFERENCES alarms(id),
    step            integer NOT NULL,
    responder_id    bigint REFERENCES responders(id),
    responder_kind  text NOT NULL,
    name            text,
    phone           text,
    distance_m      double precision,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'accepted', 'declined', 'expired', 'withdrawn',
                                      'called')),
    offered_at      timestamptz NOT NULL,
    due_at          timestamptz,
    answered_at     timestamptz,
    answered_by     text,
    reason          text
);
CREATE INDEX dispatch_offers_alarm ON dispatch_offers (alarm_id, id);
CREATE INDEX dispatch_offers_responder ON dispatch_offers (responder_id) WHERE status = 'pending';

-- ---------------------------------------------------------------- notifications
CREATE TABLE webhooks (
    id           bigserial PRIMARY KEY,
    url          text NOT NULL,
    secret       text NOT NULL,
    events       text[] NOT NULL DEFAULT '{}',   -- empty: every event
    facility_id  bigint REFERENCES facilities(id),
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The outbox: written in the same transaction as the change it announces, so a
-- crash or a failing channel never loses it.
CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    alarm_id         uuid REFERENCES alarms(id),
    channel          text NOT NULL CHECK (channel IN ('device', 'webhook')),
    target           text NOT NULL,          -- device id, or webhook id
    event            text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_alarm ON notifications (alarm_id);

CREATE TABLE notification_attempts (
    id               bigserial PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES notifications(id),
    at               timestamptz NOT NULL,
    ok               boolean NOT NULL,
    status_code      integer,
    error            text
);
CREATE INDEX notification_attempts_n ON notification_attempts (notification_id, id);
CREATE TRIGGER notification_attempts_append_only BEFORE UPDATE OR DELETE
    ON notification_attempts FOR EACH ROW EXECUTE FUNCTION eldercare_append_only();

-- ---------------------------------------------------------------- sensitive-data access
CREATE TABLE reveals (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL,
    username     text NOT NULL,
    resident_id  bigint NOT NULL REFERENCES residents(id),
    alarm_id     uuid,
    reason       text NOT NULL
);
CREATE INDEX reveals_resident ON reveals (resident_id, at DESC);
CREATE TRIGGER reveals_append_only BEFORE UPDATE OR DELETE ON reveals
    FOR EACH ROW EXECUTE FUNCTION eldercare_append_only();
