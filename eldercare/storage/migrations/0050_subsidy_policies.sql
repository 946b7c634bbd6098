-- Issue 8, subsidies part 1 (design platform-layer.md §2.3 "0007_subsidies", §2.5): benefit
-- programmes and their policy versions as dated data, each citing the text it comes from.
CREATE TABLE programmes (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,62}$'),
    name_zh     text NOT NULL CHECK (length(name_zh) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('cash_allowance', 'care_fee', 'voucher', 'service_credit',
                    'facility_award', 'bed_subsidy', 'worker_subsidy')),
    payee       text NOT NULL CHECK (payee IN ('resident', 'provider', 'facility', 'worker')),
    period      text NOT NULL CHECK (period IN ('month', 'year', 'once')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A version belongs to one programme and one district for a date range; the most specific
-- district wins (community over street over county ... over national, §2.5). Published
-- versions never overlap for the same programme and district, and never change: a correction
-- is a withdrawal plus a new version, so every amount ever paid can be traced to its text.
CREATE TABLE policy_versions (
    id              bigserial PRIMARY KEY,
    programme_code  text NOT NULL REFERENCES programmes(code),
    district_code   text NOT NULL REFERENCES districts(code),
    effective       daterange NOT NULL CHECK (NOT isempty(effective) AND NOT lower_inf(effective)),
    status          text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'withdrawn')),
    rules           jsonb NOT NULL CHECK (jsonb_typeof(rules) = 'array'),
    funding         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(funding) = 'object'),
    rounding        text NOT NULL DEFAULT 'floor_fen' CHECK (rounding = 'floor_fen'),
    as_of           text NOT NULL DEFAULT 'month_start' CHECK (as_of = 'month_start'),
    source_doc      text NOT NULL CHECK (length(source_doc) BETWEEN 1 AND 500),
    source_quote    text,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    published_by    text,
    published_at    timestamptz,
    withdrawn_by    text,
    withdrawn_at    timestamptz,
    CHECK ((status = 'draft') = (published_at IS NULL)),
    CHECK ((status = 'withdrawn') = (withdrawn_at IS NOT NULL)),
    EXCLUDE USING gist (programme_code WITH =, district_code WITH =, effective WITH &&)
        WHERE (status = 'published')
);
CREATE INDEX policy_versions_lookup ON policy_versions (programme_code, district_code, status);

-- Once published, only the withdrawal may touch a version (status, withdrawn_by/_at); a draft
-- may still be edited. Versions are never deleted.
CREATE FUNCTION eldercare_policy_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'policy versions are never deleted' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status = 'withdrawn'
       OR (OLD.status = 'published' AND (
            NEW.status NOT IN ('published', 'withdrawn')
            OR (NEW.programme_code, NEW.district_code, NEW.effective, NEW.rules, NEW.funding,
                NEW.rounding, NEW.as_of, NEW.source_doc, NEW.source_quote, NEW.published_at,
                NEW.published_by)
               IS DISTINCT FROM
               (OLD.programme_code, OLD.district_code, OLD.effective, OLD.rules, OLD.funding,
                OLD.rounding, OLD.as_of, OLD.source_doc, OLD.source_quote, OLD.published_at,
                OLD.published_by))) THEN
        RAISE EXCEPTION 'a published policy version is immutable: withdraw it and publish a new one'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER policy_versions_guard BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION eldercare_policy_guard();
