-- Issue 8, subsidies part 2 (design §2.6): monthly entitlement runs, the entitlements they
-- compute (one non-void row per resident x programme x month; a re-run voids and supersedes),
-- and the append-only voucher ledger.
CREATE TABLE entitlement_runs (
    id             bigserial PRIMARY KEY,
    month          date NOT NULL CHECK (extract(day FROM month) = 1),
    district_code  text NOT NULL REFERENCES districts(code),
    started_by     text NOT NULL,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    stats          jsonb
);
CREATE INDEX entitlement_runs_month ON entitlement_runs (month, district_code);

CREATE TABLE entitlements (
    id                 bigserial PRIMARY KEY,
    run_id             bigint NOT NULL REFERENCES entitlement_runs(id),
    resident_id        bigint NOT NULL REFERENCES residents(id),
    programme_code     text NOT NULL REFERENCES programmes(code),
    month              date NOT NULL CHECK (extract(day FROM month) = 1),
    amount_fen         bigint NOT NULL CHECK (amount_fen >= 0),
    policy_version_id  bigint REFERENCES policy_versions(id),
    rule_code          text,
    district_code      text NOT NULL REFERENCES districts(code),   -- snapshot at the run
    basis              jsonb NOT NULL,          -- level, mode, age, categories, why
    status             text NOT NULL DEFAULT 'computed'
                       CHECK (status IN ('computed', 'approved', 'paid', 'void')),
    supersedes_id      bigint REFERENCES entitlements(id),
    created_at         timestamptz NOT NULL
);
CREATE UNIQUE INDEX entitlements_one ON entitlements (resident_id, programme_code, month)
    WHERE status <> 'void';
CREATE INDEX entitlements_month ON entitlements (month, district_code);
-- Only the status moves (computed -> approved -> paid, or -> void when superseded).
CREATE FUNCTION eldercare_entitlement_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.status = 'void'
       OR (NEW.run_id, NEW.resident_id, NEW.programme_code, NEW.month, NEW.amount_fen,
           NEW.policy_version_id, NEW.basis, NEW.district_code)
          IS DISTINCT FROM
          (OLD.run_id, OLD.resident_id, OLD.programme_code, OLD.month, OLD.amount_fen,
           OLD.policy_version_id, OLD.basis, OLD.district_code) THEN
        RAISE EXCEPTION 'entitlements are corrected by a new run, not edited'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER entitlements_guard BEFORE UPDATE OR DELETE ON entitlements
    FOR EACH ROW EXECUTE FUNCTION eldercare_entitlement_guard();

-- balance(resident, programme, month) = credit - debit + reversal - expiry. Append-only.
CREATE TABLE subsidy_ledger (
    id              bigserial PRIMARY KEY,
    resident_id     bigint NOT NULL REFERENCES residents(id),
    programme_code  text NOT NULL REFERENCES programmes(code),
    month           date NOT NULL CHECK (extract(day FROM month) = 1),
    kind            text NOT NULL CHECK (kind IN ('credit', 'debit', 'reversal', 'expiry')),
    amount_fen      bigint NOT NULL,      -- credits may be negative when a re-run lowers them
    work_order_id   uuid REFERENCES work_orders(id),
    entitlement_id  bigint REFERENCES entitlements(id),
    at              timestamptz NOT NULL,
    note            text,
    CHECK (kind = 'credit' OR amount_fen >= 0),
    CHECK (kind NOT IN ('debit', 'reversal') OR work_order_id IS NOT NULL)
);
CREATE INDEX subsidy_ledger_account ON subsidy_ledger (resident_id, programme_code, month);
CREATE UNIQUE INDEX subsidy_ledger_one_debit ON subsidy_ledger (work_order_id, programme_code)
    WHERE kind = 'debit';
CREATE TRIGGER subsidy_ledger_append_only BEFORE UPDATE OR DELETE ON subsidy_ledger
    FOR EACH ROW EXECUTE FUNCTION eldercare_append_only();
