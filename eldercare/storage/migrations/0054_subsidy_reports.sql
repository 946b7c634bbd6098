-- Issue 8, subsidies part 5 (design §2.13): the supervisor reports' SQL, as views so the API
-- and the Grafana dashboards read the same definitions. Views run with their owner's rights,
-- so the read-only Grafana role is granted these aggregates, never the tables under them.

-- Subsidy spend per month x district x programme, with the central/local funding split.
-- Cash programmes: the month's live entitlements (computed, approved or paid), split by the
-- policy's shares for the district's fiscal region (central floored, local the remainder,
-- design §4 Q4). Voucher and credit programmes: the subsidy of approved or paid settlement
-- lines, in the order's service month; a clawback counts in its batch's month.
CREATE VIEW report_subsidy_spend AS
WITH cash AS (
    SELECT e.month, e.district_code, e.programme_code, e.amount_fen,
           (pv.funding -> 'by_fiscal_region' -> d.fiscal_region ->> 'central')::numeric AS central_share
    FROM entitlements e
    JOIN programmes p ON p.code = e.programme_code AND p.kind IN ('cash_allowance', 'care_fee')
    JOIN districts d ON d.code = e.district_code
    LEFT JOIN policy_versions pv ON pv.id = e.policy_version_id
    WHERE e.status <> 'void'
), settled AS (
    SELECT CASE WHEN sl.kind = 'clawback' THEN b.month ELSE sl.service_month END AS month,
           sl.district_code, s.key AS programme_code, s.value::bigint AS amount_fen,
           coalesce((sl.funding ->> 'central')::bigint, 0) AS central_fen,
           coalesce((sl.funding ->> 'local')::bigint, 0) AS local_fen
    FROM settlement_lines sl
    JOIN settlement_batches b ON b.id = sl.batch_id AND b.status IN ('approved', 'paid')
    CROSS JOIN LATERAL jsonb_each_text(sl.subsidy) s
    WHERE sl.live
)
SELECT month, district_code, programme_code, 'entitlement'::text AS source, amount_fen,
       coalesce(floor(amount_fen * central_share), 0)::bigint AS central_fen,
       (amount_fen - coalesce(floor(amount_fen * central_share), 0))::bigint AS local_fen
FROM cash
UNION ALL
SELECT month, district_code, programme_code, 'settlement', amount_fen, central_fen, local_fen
FROM settled;

-- Verification findings per month (of the check-in), district, provider, rule and severity.
CREATE VIEW report_anomalies AS
SELECT date_trunc('month', coalesce(wo.checked_in_at, a.detected_at) AT TIME ZONE 'Asia/Shanghai')::date
           AS month,
       wo.district_code, a.provider_id, a.rule_code, a.severity, a.status, count(*)::bigint AS n
FROM anomalies a
LEFT JOIN work_orders wo ON wo.id = a.work_order_id
GROUP BY 1, 2, 3, 4, 5, 6;

-- Settlement per provider and batch month: what was claimed, paid out and clawed back.
CREATE VIEW report_settlement AS
SELECT b.month, b.provider_id, b.status, count(sl.id)::bigint AS lines,
       coalesce(sum(sl.price_fen), 0)::bigint AS gross_fen,
       coalesce(sum(sl.copay_fen), 0)::bigint AS copay_fen,
       coalesce(sum((SELECT sum(v::bigint) FROM jsonb_each_text(sl.subsidy) AS t(k, v))), 0)::bigint
           AS subsidy_fen,
       coalesce(sum(CASE WHEN sl.kind = 'clawback' THEN sl.price_fen END), 0)::bigint AS clawback_fen
FROM settlement_batches b
LEFT JOIN settlement_lines sl ON sl.batch_id = b.id AND sl.live
GROUP BY b.id, b.month, b.provider_id, b.status;
