-- Issue 8, subsidies part 4 (design §2.3, §3.11): facility grading (等级评定) and the yearly
-- awards a band_table policy gives for a grade (Linyi: 3-8万 nursing homes, 1-3万 day centres).
CREATE TABLE facility_ratings (
    id           bigserial PRIMARY KEY,
    facility_id  bigint NOT NULL REFERENCES facilities(id),
    scheme       text NOT NULL CHECK (length(scheme) BETWEEN 1 AND 200),
    level        smallint NOT NULL CHECK (level BETWEEN 1 AND 5),
    score        numeric,
    rated_on     date NOT NULL,
    valid        daterange NOT NULL CHECK (NOT isempty(valid) AND NOT lower_inf(valid)),
    rated_by     text NOT NULL,
    doc_ref      text,
    recorded_at  timestamptz NOT NULL,
    EXCLUDE USING gist (facility_id WITH =, scheme WITH =, valid WITH &&)
);
CREATE TRIGGER facility_ratings_append_only BEFORE UPDATE OR DELETE ON facility_ratings
    FOR EACH ROW EXECUTE FUNCTION eldercare_append_only();

CREATE TABLE facility_awards (
    id                 bigserial PRIMARY KEY,
    facility_id        bigint NOT NULL REFERENCES facilities(id),
    programme_code     text NOT NULL REFERENCES programmes(code),
    year               int NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    amount_fen         bigint NOT NULL CHECK (amount_fen >= 0),
    policy_version_id  bigint NOT NULL REFERENCES policy_versions(id),
    rating_id          bigint REFERENCES facility_ratings(id),
    basis              jsonb NOT NULL,
    status             text NOT NULL DEFAULT 'computed' CHECK (status IN ('computed', 'approved', 'paid')),
    created_at         timestamptz NOT NULL,
    UNIQUE (facility_id, programme_code, year)
);
