-- Issue 8, platform layer part 3 (design §2.3 "0009_anomalies"): visit-verification findings,
-- their append-only decisions and provider evidence, and idempotency keys for mobile retries.

CREATE TABLE anomalies (
    id             bigserial PRIMARY KEY,
    rule_code      text NOT NULL,
    severity       text NOT NULL CHECK (severity IN ('info', 'soft', 'hard')),
    work_order_id  uuid REFERENCES work_orders(id),
    resident_id    bigint REFERENCES residents(id),
    worker_id      bigint REFERENCES workers(id),
    provider_id    bigint REFERENCES providers(id),
    detected_at    timestamptz NOT NULL,
    evidence       jsonb NOT NULL CHECK (jsonb_typeof(evidence) = 'object'),
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'dismissed', 'confirmed')),
    UNIQUE (rule_code, work_order_id)
);
CREATE INDEX anomalies_open ON anomalies (provider_id, status, detected_at);
CREATE INDEX anomalies_order ON anomalies (work_order_id);

CREATE TABLE anomaly_decisions (
    id          bigserial PRIMARY KEY,
    anomaly_id  bigint NOT NULL REFERENCES anomalies(id),
    at          timestamptz NOT NULL,
    by_user     text NOT NULL,
    decision    text NOT NULL CHECK (decision IN ('dismissed', 'confirmed')),
    note        text NOT NULL CHECK (length(note) > 0)
);
CREATE INDEX anomaly_decisions_anomaly ON anomaly_decisions (anomaly_id);
CREATE TRIGGER anomaly_decisions_append_only BEFORE UPDATE OR DELETE ON anomaly_decisions
    FOR EACH ROW EXECUTE FUNCTION eldercare_append_only();

-- A provider's appeal material before the decision (§4 Q20).
CREATE TABLE anomaly_evidence (
    id          bigserial PRIMARY KEY,
    anomaly_id  bigint NOT NULL REFERENCES anomalies(id),
    at          timestamptz NOT NULL,
    by_user     text NOT NULL,
    note        text NOT NULL CHECK (length(note) > 0),
    files       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(files) = 'array')
);
CREATE TRIGGER anomaly_evidence_append_only BEFORE UPDATE OR DELETE ON anomaly_evidence
    FOR EACH ROW EXECUTE FUNCTION eldercare_append_only();

-- A retried create / check-in / check-out with the same key and body gets the first response;
-- the same key with another body is refused (409).
CREATE TABLE idempotency_keys (
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    username        text NOT NULL,
    method_path     text NOT NULL,
    request_sha256  text NOT NULL,
    status_code     smallint NOT NULL,
    response        jsonb NOT NULL,
    at              timestamptz NOT NULL,
    PRIMARY KEY (key, username)
);
CREATE INDEX idempotency_keys_at ON idempotency_keys (at);
