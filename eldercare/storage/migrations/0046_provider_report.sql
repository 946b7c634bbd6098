-- Issue 8 (design §2.13, §2.4): the provider KPIs of GET /api/reports/providers for the
-- Grafana dashboard, per month of check-in (local time), district and provider. A view like
-- those of 0045 and 0054, so the read-only Grafana role reads counts, never an order.
--   on_time: check-in within ±2 h of the scheduled start (of the visits that had one);
--   flagged: visits with a soft or hard finding;
--   evv_complete: verified visits with all six EVV elements (service, resident, worker,
--   both times, both points), as eldercare.platform.lifecycle.evv_missing decides; the
--   target is 90 %.
CREATE VIEW report_provider_visits AS
SELECT date_trunc('month', wo.checked_in_at AT TIME ZONE 'Asia/Shanghai')::date AS month,
       wo.district_code, wo.provider_id,
       count(*)::bigint AS visits,
       count(*) FILTER (WHERE wo.scheduled_start IS NOT NULL)::bigint AS scheduled,
       count(*) FILTER (WHERE abs(extract(epoch FROM wo.checked_in_at - wo.scheduled_start))
                              <= 7200)::bigint AS on_time,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM anomalies a
                                      WHERE a.work_order_id = wo.id AND a.severity <> 'info'))
           ::bigint AS flagged,
       count(*) FILTER (WHERE wo.status IN ('verified', 'settled'))::bigint AS verified,
       count(*) FILTER (WHERE wo.status IN ('verified', 'settled')
                          AND wo.service_item_code IS NOT NULL AND wo.resident_id IS NOT NULL
                          AND wo.worker_id IS NOT NULL AND wo.checked_out_at IS NOT NULL
                          AND wo.check_in ->> 'lat' IS NOT NULL
                          AND wo.check_in ->> 'lon' IS NOT NULL
                          AND wo.check_out ->> 'lat' IS NOT NULL
                          AND wo.check_out ->> 'lon' IS NOT NULL)::bigint AS evv_complete
FROM work_orders wo
WHERE wo.checked_in_at IS NOT NULL AND wo.provider_id IS NOT NULL
GROUP BY 1, 2, 3;
