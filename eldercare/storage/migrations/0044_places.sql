-- Issue 8: where each resident is, for snapshots, reports and the GPS reference point, and the
-- district tree as a set (a county's report includes its streets and communities).

-- Every district at or below ``root`` (design §2.13: reports include descendant districts).
CREATE FUNCTION district_subtree(root text) RETURNS SETOF text LANGUAGE sql STABLE AS $$
    WITH RECURSIVE t(code) AS (
        SELECT code FROM districts WHERE code = root
        UNION ALL
        SELECT d.code FROM districts d JOIN t ON d.parent_code = t.code)
    SELECT code FROM t
$$;

-- Every district at or above ``leaf``, nearest first (design §2.5: the most specific wins).
CREATE FUNCTION district_ancestors(leaf text) RETURNS TABLE (code text, depth int)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE t(code, parent_code, depth) AS (
        SELECT code, parent_code, 0 FROM districts WHERE code = leaf
        UNION ALL
        SELECT d.code, d.parent_code, t.depth + 1 FROM districts d JOIN t ON d.code = t.parent_code)
    SELECT code, depth FROM t
$$;

-- A resident's place: the home care bed, else the household, else the facility they live in.
-- The district of a home bed without one of its own is its serving facility's.
CREATE VIEW resident_places AS
SELECT r.id AS resident_id,
       CASE WHEN r.home_bed_id IS NOT NULL THEN 'home_bed'
            WHEN r.household_id IS NOT NULL THEN 'household' ELSE 'facility' END AS setting,
       COALESCE(r.facility_id, hb.facility_id) AS facility_id,
       r.home_bed_id, r.household_id,
       CASE WHEN r.home_bed_id IS NOT NULL THEN COALESCE(hb.district_code, hbf.district_code)
            WHEN r.household_id IS NOT NULL THEN hh.district_code
            ELSE f.district_code END AS district_code,
       CASE WHEN r.home_bed_id IS NOT NULL THEN hb.lat
            WHEN r.household_id IS NOT NULL THEN hh.lat ELSE f.lat END AS lat,
       CASE WHEN r.home_bed_id IS NOT NULL THEN hb.lon
            WHEN r.household_id IS NOT NULL THEN hh.lon ELSE f.lon END AS lon,
       COALESCE(CASE WHEN r.home_bed_id IS NOT NULL THEN hb.area
                     WHEN r.household_id IS NOT NULL THEN hh.area ELSE f.area END, 'town') AS area
FROM residents r
LEFT JOIN home_beds hb ON hb.id = r.home_bed_id
LEFT JOIN facilities hbf ON hbf.id = hb.facility_id
LEFT JOIN households hh ON hh.id = r.household_id
LEFT JOIN facilities f ON f.id = r.facility_id;
