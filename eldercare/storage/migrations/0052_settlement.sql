-- Issue 8, subsidies part 3 (design §2.7): settlement batches per provider and month, built
-- from verified work orders, with clawback lines for claims rejected after settlement.
CREATE TABLE settlement_batches (
    id            bigserial PRIMARY KEY,
    provider_id   bigint NOT NULL REFERENCES providers(id),
    month         date NOT NULL CHECK (extract(day FROM month) = 1),
    status        text NOT NULL DEFAULT 'draft'
                  CHECK (status IN ('draft', 'submitted', 'approved', 'paid', 'rejected')),
    totals        jsonb NOT NULL,
    excluded      jsonb NOT NULL DEFAULT '[]',
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL,
    submitted_by  text,
    submitted_at  timestamptz,
    approved_by   text,
    approved_at   timestamptz,
    rejected_by   text,
    rejected_at   timestamptz,
    reject_reason text,
    paid_at       timestamptz,
    payment_ref   text,
    CHECK (status <> 'paid' OR (paid_at IS NOT NULL AND payment_ref IS NOT NULL)),
    CHECK (status NOT IN ('approved', 'paid') OR approved_at IS NOT NULL)
);
-- One live batch per provider and month; a rejected batch frees the month for a new one.
CREATE UNIQUE INDEX settlement_batches_one ON settlement_batches (provider_id, month)
    WHERE status <> 'rejected';

CREATE TABLE settlement_lines (
    id             bigserial PRIMARY KEY,
    batch_id       bigint NOT NULL REFERENCES settlement_batches(id),
    work_order_id  uuid NOT NULL REFERENCES work_orders(id),
    kind           text NOT NULL CHECK (kind IN ('service', 'clawback', 'adjustment')),
    service_month  date NOT NULL,             -- the order's local month (reports group by it)
    district_code  text NOT NULL,             -- the order's snapshot
    price_fen      bigint NOT NULL,
    ltc_fen        bigint NOT NULL,
    copay_fen      bigint NOT NULL,
    subsidy        jsonb NOT NULL,            -- {"elderly_care_voucher": 6000}
    funding        jsonb NOT NULL,            -- {"central": 5100, "local": 900}
    live           boolean NOT NULL DEFAULT true,   -- false once its batch is rejected
    CHECK (kind <> 'service' OR price_fen >= 0),
    CHECK (kind <> 'clawback' OR price_fen <= 0)
);
CREATE UNIQUE INDEX settlement_once ON settlement_lines (work_order_id) WHERE kind = 'service' AND live;
CREATE UNIQUE INDEX settlement_clawback_once ON settlement_lines (work_order_id)
    WHERE kind = 'clawback' AND live;
CREATE INDEX settlement_lines_batch ON settlement_lines (batch_id);
-- Lines are frozen: only a batch rejection may turn ``live`` off.
CREATE FUNCTION eldercare_settlement_line_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       OR (NEW.batch_id, NEW.work_order_id, NEW.kind, NEW.price_fen, NEW.ltc_fen, NEW.copay_fen,
           NEW.subsidy, NEW.funding) IS DISTINCT FROM
          (OLD.batch_id, OLD.work_order_id, OLD.kind, OLD.price_fen, OLD.ltc_fen, OLD.copay_fen,
           OLD.subsidy, OLD.funding)
       OR (NEW.live AND NOT OLD.live) THEN
        RAISE EXCEPTION 'settlement lines are frozen; corrections are clawback lines'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER settlement_lines_guard BEFORE UPDATE OR DELETE ON settlement_lines
    FOR EACH ROW EXECUTE FUNCTION eldercare_settlement_line_guard();
