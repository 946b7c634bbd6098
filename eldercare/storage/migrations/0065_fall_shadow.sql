-- Issue 9B: the wearable fall model in shadow mode. One row per scored `imu` window, next
-- to the device's own decision for the same moment (its `fall` message and alarm, if any).
-- Written only by `eldercare models shadow fall`; nothing reads it to raise, suppress or
-- reorder an alarm: the model is synthetic-trained and not clinically validated.
CREATE TABLE fall_shadow_scores (
    time               timestamptz NOT NULL,   -- the window's end: its imu message's time
    scored_at          timestamptz NOT NULL,
    device_id          text NOT NULL,
    msg_id             text NOT NULL,          -- the imu message that closed the window
    facility_id        bigint,
    model_version      integer NOT NULL,
    model_sha256       text NOT NULL,
    score              real NOT NULL CHECK (score >= 0 AND score <= 1),
    threshold          real NOT NULL CHECK (threshold > 0 AND threshold < 1),
    suspected          boolean NOT NULL,       -- score >= threshold
    coverage_s         real NOT NULL CHECK (coverage_s >= 0),  -- seconds of real samples
    device_fall_msg_id text,                   -- the device's own `fall` for this moment
    device_alarm_id    uuid,                   -- and the alarm it raised or joined
    device_confidence  real,
    latency_us         integer NOT NULL CHECK (latency_us >= 0)  -- features + trees, per window
);
SELECT create_hypertable('fall_shadow_scores', 'time', chunk_time_interval => interval '7 days');
-- A window is scored once (a hypertable's unique index must include its time column).
CREATE UNIQUE INDEX fall_shadow_scores_msg ON fall_shadow_scores (device_id, msg_id, time);
CREATE INDEX fall_shadow_scores_alarm ON fall_shadow_scores (device_alarm_id)
    WHERE device_alarm_id IS NOT NULL;
CREATE INDEX fall_shadow_scores_facility ON fall_shadow_scores (facility_id, time DESC);
