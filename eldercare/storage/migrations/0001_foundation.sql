-- Foundation: registry, device events, state transitions, dead letters, dedup, alarms.
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- ---------------------------------------------------------------- registry
CREATE TABLE facilities (
    id          bigserial PRIMARY KEY,
    code        text UNIQUE NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL DEFAULT 'nursing_home'
                CHECK (kind IN ('nursing_home', 'day_care', 'community_center')),
    area        text NOT NULL DEFAULT 'town' CHECK (area IN ('town', 'remote')),
    address     text,
    lat         double precision CHECK (lat BETWEEN -90 AND 90),
    lon         double precision CHECK (lon BETWEEN -180 AND 180),
    phone       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A home care bed (家庭养老床位): an older person's home, served by a facility.
CREATE TABLE home_beds (
    id            bigserial PRIMARY KEY,
    facility_id   bigint NOT NULL REFERENCES facilities(id),
    address       text NOT NULL,
    access_notes  text,
    area          text NOT NULL DEFAULT 'town' CHECK (area IN ('town', 'remote')),
    lat           double precision CHECK (lat BETWEEN -90 AND 90),
    lon           double precision CHECK (lon BETWEEN -180 AND 180),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX home_beds_facility ON home_beds (facility_id);

CREATE TABLE residents (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL,
    id_number      text,
    birth_date     date,
    gender         text CHECK (gender IN ('female', 'male', 'other')),
    ability_level  text,
    medical_notes  text,
    allergies      text,
    contacts       jsonb NOT NULL DEFAULT '[]',
    facility_id    bigint REFERENCES facilities(id),
    room           text,
    home_bed_id    bigint REFERENCES home_beds(id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (facility_id IS NOT NULL OR home_bed_id IS NOT NULL)
);
CREATE INDEX residents_facility ON residents (facility_id);
CREATE INDEX residents_home_bed ON residents (home_bed_id);

CREATE TABLE devices (
    id             text PRIMARY KEY,               -- also the MQTT username
    kind           text NOT NULL
                   CHECK (kind IN ('sos_button', 'fall_sensor', 'video_bridge', 'home_kit', 'wearable')),
    resident_id    bigint REFERENCES residents(id),
    facility_id    bigint REFERENCES facilities(id),  -- the facility that answers for it
    home_bed_id    bigint REFERENCES home_beds(id),
    room           text,
    password_hash  text NOT NULL,                  -- Mosquitto $7$ PBKDF2-SHA512
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
CREATE INDEX devices_facility ON devices (facility_id);
CREATE INDEX devices_resident ON devices (resident_id);

-- Cameras behind a facility's video bridge (NVR).
CREATE TABLE cameras (
    device_id   text NOT NULL REFERENCES devices(id),
    camera_id   text NOT NULL,
    location    text,
    PRIMARY KEY (device_id, camera_id)
);

-- ---------------------------------------------------------------- events
CREATE TABLE device_events (
    time         timestamptz NOT NULL,   -- device time, or receive time when the clock is off
    received_at  timestamptz NOT NULL,
    device_ts    timestamptz NOT NULL,   -- as the device sent it
    device_id    text NOT NULL,
    facility_id  bigint,
    msg_id       text NOT NULL,
    type         text NOT NULL,
    clock_skew   boolean NOT NULL DEFAULT false,
    payload      jsonb NOT NULL
);
SELECT create_hypertable('device_events', 'time', chunk_time_interval => interval '1 day');
CREATE INDEX device_events_device_time ON device_events (device_id, time DESC);
CREATE INDEX device_events_facility_time ON device_events (facility_id, time DESC);

-- Dedup of (device, message id). A plain table: a hypertable's unique index must
-- include its time column, and a re-sent message's receive time differs.
CREATE TABLE message_ids (
    device_id    text NOT NULL,
    msg_id       text NOT NULL,
    received_at  timestamptz NOT NULL,
    alarm_id     uuid,
    PRIMARY KEY (device_id, msg_id)
);
CREATE INDEX message_ids_received ON message_ids (received_at);

-- ---------------------------------------------------------------- liveness
CREATE TABLE device_status (
    device_id          text PRIMARY KEY REFERENCES devices(id),
    state_online       boolean,             -- the retained state topic (Last Will sets false)
    online             boolean NOT NULL DEFAULT false,
    last_seen_at       timestamptz,
    last_heartbeat_at  timestamptz,
    interval_s         integer,
    battery            integer,
    rssi               integer,
    changed_at         timestamptz
);

CREATE TABLE camera_status (
    device_id    text NOT NULL,
    camera_id    text NOT NULL,
    status       text NOT NULL,
    recording    boolean,
    online       boolean NOT NULL,    -- status online and its bridge online
    reported_at  timestamptz NOT NULL,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (device_id, camera_id)
);

CREATE TABLE state_changes (
    time         timestamptz NOT NULL,
    device_id    text NOT NULL,
    camera_id    text,                 -- null: the device itself
    facility_id  bigint,
    online       boolean NOT NULL,
    status       text NOT NULL,        -- online/offline, or a camera status
    cause        text NOT NULL         -- state, last_will, heartbeat_timeout, message, camera_status, bridge
);
SELECT create_hypertable('state_changes', 'time', chunk_time_interval => interval '7 days');
CREATE INDEX state_changes_device ON state_changes (device_id, time DESC);
CREATE INDEX state_changes_facility ON state_changes (facility_id, time DESC);

-- ---------------------------------------------------------------- refusals
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    device_id    text,
    msg_id       text,
    reason       text NOT NULL,
    detail       text NOT NULL,
    payload      bytea NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at DESC);
CREATE INDEX dead_letters_device ON dead_letters (device_id, received_at DESC);

-- ---------------------------------------------------------------- alarms
CREATE TABLE alarms (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind             text NOT NULL,        -- sos, fall, ..., device_offline, low_battery, camera_offline
    priority         smallint NOT NULL,    -- 1 highest
    status           text NOT NULL DEFAULT 'raised',
    device_id        text,
    camera_id        text,
    resident_id      bigint,
    facility_id      bigint,
    home_bed_id      bigint,
    source_msg_id    text,
    event_time       timestamptz NOT NULL,  -- at the device (or receive time when skewed)
    received_at      timestamptz NOT NULL,
    clock_skew       boolean NOT NULL DEFAULT false,
    occurrences      integer NOT NULL DEFAULT 1,
    last_occurrence_at timestamptz NOT NULL,
    details          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alarms_open ON alarms (status, priority, received_at) WHERE status <> 'closed';
CREATE INDEX alarms_device ON alarms (device_id, received_at DESC);
CREATE INDEX alarms_facility ON alarms (facility_id, received_at DESC);
