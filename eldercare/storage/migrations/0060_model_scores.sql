-- Issue 9 part B: what the models write, read back as plain data by the alert engine, the
-- console and the dashboards (eldercare.alerts never imports eldercare.models).

-- Alarm triage: the probability that an open alarm is a false alarm (accidental press,
-- false sensor alarm), and why. It only orders alarms within their priority band; it
-- never changes a priority, closes an alarm or holds back an escalation. One row per
-- alarm: re-scored while the alarm is open when what the model saw changes (a cancel, a
-- repeat), frozen once it closes, so the dashboards compare what operators were shown
-- with the disposition they recorded.
CREATE TABLE alarm_triage (
    alarm_id     uuid PRIMARY KEY REFERENCES alarms (id) ON DELETE CASCADE,
    p_false      real NOT NULL CHECK (p_false >= 0 AND p_false <= 1),
    -- [{"feature", "text", "weight"}]: the largest contributions, shown to the operator.
    reasons      jsonb NOT NULL DEFAULT '[]',
    model        text NOT NULL,
    version      integer NOT NULL,
    scored_at    timestamptz NOT NULL,
    -- What the score saw, so the scorer knows when to look again.
    seen_cancel  boolean NOT NULL,
    seen_occurrences integer NOT NULL
);
CREATE INDEX alarm_triage_scored ON alarm_triage (scored_at);

-- Device health: battery time-to-empty (robust slope of recent heartbeats) and the risk
-- of going offline in the next 24 h. One row per device, replaced by each scoring run.
CREATE TABLE device_health (
    device_id        text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    computed_at      timestamptz NOT NULL,
    battery          smallint,
    -- Percentage points per hour (negative while draining), from the heartbeats since the
    -- last charge; NULL with too few heartbeats to fit.
    drain_pct_per_h  real,
    hours_to_low     real,
    hours_to_empty   real,
    offline_risk_24h real CHECK (offline_risk_24h IS NULL OR offline_risk_24h BETWEEN 0 AND 1),
    reasons          jsonb NOT NULL DEFAULT '[]',
    model            text NOT NULL,
    version          integer NOT NULL
);
