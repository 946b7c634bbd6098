-- Issue 8 (design §2.13): the two supervisor reports the Grafana dashboard lacked, as views
-- like those of 0054 (they run with their owner's rights, so the read-only Grafana role is
-- granted these aggregates and never a revisit, an order or a resident).

-- Revisit satisfaction (回访) per month of the revisit (local time), district and provider.
-- Same definitions as GET /api/reports/revisits: reach_rate = reached / revisits,
-- confirmed_rate = confirmed / reached, satisfaction_rate = (s1 + s2) / reached on the
-- 4-level scale (1 非常满意 2 满意 3 一般 4 不满意).
CREATE VIEW report_revisits AS
SELECT date_trunc('month', r.done_at AT TIME ZONE 'Asia/Shanghai')::date AS month,
       w.district_code, w.provider_id,
       count(*)::bigint AS revisits,
       count(*) FILTER (WHERE r.reached)::bigint AS reached,
       count(*) FILTER (WHERE r.reached AND r.service_confirmed)::bigint AS confirmed,
       count(*) FILTER (WHERE r.reached AND r.satisfaction = 1)::bigint AS s1,
       count(*) FILTER (WHERE r.reached AND r.satisfaction = 2)::bigint AS s2,
       count(*) FILTER (WHERE r.reached AND r.satisfaction = 3)::bigint AS s3,
       count(*) FILTER (WHERE r.reached AND r.satisfaction = 4)::bigint AS s4
FROM revisits r
JOIN work_orders w ON w.id = r.work_order_id
WHERE r.done_at IS NOT NULL
GROUP BY 1, 2, 3;

-- Service coverage per month, district and programme: eligible = residents with a live,
-- positive entitlement of the month's run; served = those of them with at least one
-- verified (or settled) order checked in during that local month. The API's
-- GET /api/reports/coverage also evaluates residents a run has not reached yet.
--
-- Entitlements arrive only in 0051, after this file: a PL/pgSQL body is resolved when first
-- called, not when created, so the view reads them through this function. SECURITY DEFINER
-- (with a fixed search_path) gives it the owner's rights, as a view's own tables have, so
-- the read-only Grafana role sees the counts and never an entitlement row.
CREATE FUNCTION report_service_coverage_rows()
RETURNS TABLE (month date, district_code text, programme_code text, eligible bigint,
               served bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    RETURN QUERY
    SELECT e.month, e.district_code, e.programme_code,
           count(*)::bigint,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM work_orders w
               WHERE w.resident_id = e.resident_id AND w.status IN ('verified', 'settled')
                 AND w.checked_in_at >= (e.month::timestamp AT TIME ZONE 'Asia/Shanghai')
                 AND w.checked_in_at < ((e.month + interval '1 month')::timestamp
                                        AT TIME ZONE 'Asia/Shanghai')))::bigint
    FROM entitlements e
    WHERE e.status <> 'void' AND e.amount_fen > 0
    GROUP BY e.month, e.district_code, e.programme_code;
END
$$;

CREATE VIEW report_service_coverage AS SELECT * FROM report_service_coverage_rows();
