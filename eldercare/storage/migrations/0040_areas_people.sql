-- Issue 8, platform layer part 1 (design platform-layer.md §2.3 "0005_areas_people"):
-- administrative districts, households for residents at home without a home care bed,
-- eligibility categories, life-event status periods and GB/T 42195 ability assessments.
CREATE EXTENSION IF NOT EXISTS btree_gist;   -- for the EXCLUDE constraints on (id =, range &&)

-- GB/T 2260 codes (6 digits), plus 9- and 12-digit street / community codes; '000000' is the
-- national root, so national policies (the elderly-care voucher) have a district to belong to.
CREATE TABLE districts (
    code           text PRIMARY KEY CHECK (code ~ '^([0-9]{6}|[0-9]{9}|[0-9]{12})$'),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_code    text REFERENCES districts(code),
    level          text NOT NULL
                   CHECK (level IN ('country', 'province', 'city', 'county', 'street', 'community')),
    fiscal_region  text CHECK (fiscal_region IN ('east', 'central', 'west')),  -- central/local cost sharing
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((level = 'country') = (parent_code IS NULL)),
    CHECK (parent_code IS NULL OR parent_code <> code)
);
CREATE INDEX districts_parent ON districts (parent_code);

ALTER TABLE facilities
    ADD COLUMN district_code      text REFERENCES districts(code),
    ADD COLUMN tekun_institution  boolean NOT NULL DEFAULT false;    -- 特困供养机构
ALTER TABLE home_beds
    ADD COLUMN district_code      text REFERENCES districts(code),
    ADD COLUMN established_on     date,
    ADD COLUMN closed_on          date,
    ADD COLUMN liability_insured  boolean NOT NULL DEFAULT false,    -- Linyi: 纳入养老机构责任险
    ADD COLUMN package_code       text,
    ADD CONSTRAINT home_beds_closed_after_established
        CHECK (closed_on IS NULL OR established_on IS NULL OR closed_on >= established_on);

CREATE TABLE households (
    id             bigserial PRIMARY KEY,
    address        text NOT NULL CHECK (length(address) BETWEEN 1 AND 500),
    district_code  text NOT NULL REFERENCES districts(code),
    area           text NOT NULL DEFAULT 'town' CHECK (area IN ('town', 'remote')),
    lat            double precision CHECK (lat BETWEEN -90 AND 90),
    lon            double precision CHECK (lon BETWEEN -180 AND 180),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((lat IS NULL) = (lon IS NULL))
);
CREATE INDEX households_district ON households (district_code);

-- A resident now lives in a facility, a home care bed or a household (design §4 Q16).
ALTER TABLE residents ADD COLUMN household_id bigint REFERENCES households(id);
ALTER TABLE residents DROP CONSTRAINT residents_check;
ALTER TABLE residents ADD CONSTRAINT residents_placed
    CHECK (facility_id IS NOT NULL OR home_bed_id IS NOT NULL OR household_id IS NOT NULL);
CREATE INDEX residents_household ON residents (household_id);

-- Imported from the assistance system (救助一件事) where one exists; this platform does not
-- decide eligibility (§4 Q14), it records it with its dates and source.
CREATE TABLE resident_categories (
    id            bigserial PRIMARY KEY,
    resident_id   bigint NOT NULL REFERENCES residents(id),
    category      text NOT NULL CHECK (category IN ('tekun', 'dibao', 'dibian', 'difficult_disabled',
                      'severe_disabled', 'living_alone', 'empty_nest', 'gov_purchase')),
    support_mode  text CHECK (support_mode IN ('centralised', 'dispersed')),   -- tekun only
    valid         daterange NOT NULL CHECK (NOT isempty(valid) AND NOT lower_inf(valid)),
    source        text NOT NULL CHECK (source IN ('assistance_system', 'staff', 'import')),
    source_ref    text,
    recorded_by   text NOT NULL,
    recorded_at   timestamptz NOT NULL,
    CHECK ((category = 'tekun') = (support_mode IS NOT NULL)),
    EXCLUDE USING gist (resident_id WITH =, category WITH =, valid WITH &&)
);

-- Life events that suspend services and entitlements. Dated periods, never deleted (§4 Q21):
-- a correction closes or adds a period.
CREATE TABLE resident_status_periods (
    id           bigserial PRIMARY KEY,
    resident_id  bigint NOT NULL REFERENCES residents(id),
    status       text NOT NULL CHECK (status IN ('hospitalised', 'deceased', 'moved_out', 'away')),
    during       tstzrange NOT NULL CHECK (NOT isempty(during) AND NOT lower_inf(during)),
    source       text NOT NULL CHECK (source IN ('staff', 'family', 'funeral_registry',
                     'medical_insurance', 'hotline', 'device')),
    source_ref   text,
    recorded_by  text NOT NULL,
    recorded_at  timestamptz NOT NULL,
    CHECK (status <> 'deceased' OR upper_inf(during)),     -- deceased: [time of death, infinity)
    EXCLUDE USING gist (resident_id WITH =, during WITH &&) WHERE (status = 'deceased')
);
CREATE INDEX resident_status_periods_resident ON resident_status_periods USING gist (resident_id, during);

CREATE FUNCTION eldercare_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are never deleted', TG_TABLE_NAME;
END $$;
CREATE TRIGGER resident_status_periods_no_delete BEFORE DELETE ON resident_status_periods
    FOR EACH ROW EXECUTE FUNCTION eldercare_no_delete();
CREATE TRIGGER resident_categories_no_delete BEFORE DELETE ON resident_categories
    FOR EACH ROW EXECUTE FUNCTION eldercare_no_delete();

-- Level on day D = latest final assessment with effective_from <= D and
-- (valid_until IS NULL OR valid_until >= D). residents.ability_level stays a display cache.
CREATE TABLE assessments (
    id                 bigserial PRIMARY KEY,
    resident_id        bigint NOT NULL REFERENCES residents(id),
    standard           text NOT NULL DEFAULT 'GB/T 42195-2022',
    item_scores        jsonb CHECK (item_scores IS NULL OR jsonb_typeof(item_scores) = 'object'),
    total_score        smallint NOT NULL CHECK (total_score BETWEEN 0 AND 90),
    preliminary_level  text NOT NULL
                       CHECK (preliminary_level IN ('intact', 'mild', 'moderate', 'severe', 'complete')),
    adjustments        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(adjustments) = 'object'),
    final_level        text NOT NULL
                       CHECK (final_level IN ('intact', 'mild', 'moderate', 'severe', 'complete')),
    reason             text NOT NULL CHECK (reason IN ('initial', 'periodic', 'change', 'dispute', 'other')),
    assessed_at        timestamptz NOT NULL,
    effective_from     date NOT NULL,
    valid_until        date CHECK (valid_until IS NULL OR valid_until >= effective_from),
    assessor           text NOT NULL,
    agency             text,
    status             text NOT NULL DEFAULT 'final' CHECK (status IN ('draft', 'final', 'revoked')),
    recorded_by        text NOT NULL,
    recorded_at        timestamptz NOT NULL,
    revoked_by         text,
    revoked_at         timestamptz,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX assessments_resident ON assessments (resident_id, effective_from DESC, id DESC);
CREATE TRIGGER assessments_no_delete BEFORE DELETE ON assessments
    FOR EACH ROW EXECUTE FUNCTION eldercare_no_delete();
-- Only the revocation may change an assessment: a correction is a new assessment.
CREATE FUNCTION eldercare_assessment_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'revoked'
       OR (NEW.resident_id, NEW.total_score, NEW.final_level, NEW.effective_from,
           NEW.valid_until, NEW.assessed_at, NEW.item_scores, NEW.adjustments)
          IS DISTINCT FROM
          (OLD.resident_id, OLD.total_score, OLD.final_level, OLD.effective_from,
           OLD.valid_until, OLD.assessed_at, OLD.item_scores, OLD.adjustments) THEN
        RAISE EXCEPTION 'assessments are corrected by a new assessment, not edited';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER assessments_guard BEFORE UPDATE ON assessments
    FOR EACH ROW EXECUTE FUNCTION eldercare_assessment_guard();
