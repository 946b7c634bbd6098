"""The subsidies dashboard: spend, funding split, settlement, verification findings,
coverage and revisit satisfaction, from the report views only.
"""

from __future__ import annotations

from dashboards.grafana import (
    Json,
    Layout,
    bargauge,
    dashboard,
    stat,
    table,
)


# The months a panel shows: every month that overlaps the picked time range. Report rows are
# keyed by the month's first day, which a 6 h range would otherwise never contain.
def months_in_range(col: str = "month") -> str:
    return (
        f"{col} >= date_trunc('month',"
        " $__timeFrom()::timestamptz AT TIME ZONE 'Asia/Shanghai')::date"
        f" AND {col} <= ($__timeTo()::timestamptz AT TIME ZONE 'Asia/Shanghai')::date"
    )


def subsidies() -> Json:
    """Subsidy spend, funding split, settlement, verification findings, service coverage and
    revisit satisfaction (design §2.13).

    Panels read only the report views of migrations 0054, 0045 and 0046, so the read-only role sees
    aggregates per month, district, programme and provider, never a resident.
    """
    lay = Layout()
    panels: list[Json] = [lay.row("Spend (yuan; cash entitlements + approved settlements)")]
    panels.append(
        lay.place(
            stat(
                "Subsidy spend in range",
                "All programmes, months overlapping the time range. Cash programmes count "
                "their live entitlements; vouchers count approved settlement lines in the "
                "order's service month, clawbacks in their batch's month.",
                f"""
                SELECT coalesce(sum(amount_fen), 0) / 100.0 AS "yuan"
                FROM report_subsidy_spend
                WHERE {months_in_range()}
                """,
                unit="currencyCNY",
                decimals=2,
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            bargauge(
                "Funding: central / local",
                "The policy's shares for the district's fiscal region; the central share is "
                "floored to the fen, local takes the remainder (design §4 Q4).",
                f"""
                SELECT 'central' AS "share", coalesce(sum(central_fen), 0) / 100.0 AS "yuan"
                FROM report_subsidy_spend WHERE {months_in_range()}
                UNION ALL
                SELECT 'local', coalesce(sum(local_fen), 0) / 100.0
                FROM report_subsidy_spend WHERE {months_in_range()}
                """,
                unit="currencyCNY",
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            table(
                "Spend by district and programme",
                "Same definition as GET /api/reports/subsidy-spend (which also sums a "
                "district's sub-districts).",
                f"""
                SELECT to_char(s.month, 'YYYY-MM') AS "month", s.district_code AS "district",
                       d.name AS "name", s.programme_code AS "programme",
                       sum(s.amount_fen) / 100.0 AS "yuan",
                       sum(s.central_fen) / 100.0 AS "central",
                       sum(s.local_fen) / 100.0 AS "local"
                FROM report_subsidy_spend s
                LEFT JOIN districts d ON d.code = s.district_code
                WHERE {months_in_range("s.month")}
                GROUP BY s.month, s.district_code, d.name, s.programme_code
                ORDER BY s.month DESC, s.district_code, s.programme_code
                """,
            ),
            12,
            8,
        )
    )
    panels.append(lay.row("Settlement and verification"))
    panels.append(
        lay.place(
            table(
                "Settlement batches",
                "Per provider and batch month: lines, gross price, subsidy payable, copay "
                "collected by the provider, and clawbacks (negative).",
                f"""
                SELECT to_char(r.month, 'YYYY-MM') AS "month", p.name AS "provider",
                       r.status AS "status", r.lines AS "lines",
                       r.gross_fen / 100.0 AS "gross", r.subsidy_fen / 100.0 AS "subsidy",
                       r.copay_fen / 100.0 AS "copay", r.clawback_fen / 100.0 AS "clawback"
                FROM report_settlement r
                JOIN providers p ON p.id = r.provider_id
                WHERE {months_in_range("r.month")}
                ORDER BY r.month DESC, p.name
                """,
            ),
            12,
            8,
        )
    )
    panels.append(
        lay.place(
            bargauge(
                "Verification findings by rule",
                "Anomalies of work orders checked in during the months in range (all "
                "severities and decisions). Hard findings block verification.",
                f"""
                SELECT rule_code AS "rule", sum(n) AS "findings"
                FROM report_anomalies
                WHERE {months_in_range()}
                GROUP BY rule_code ORDER BY 2 DESC, 1
                """,
            ),
            12,
            8,
        )
    )
    panels.append(lay.row("Service coverage and revisit satisfaction"))
    panels.append(
        lay.place(
            stat(
                "Revisit satisfaction (满意 of reached)",
                "Share of reached revisits answered 1 非常满意 or 2 满意 on the 4-level "
                "scale, revisits done in the months in range. Same definition as "
                "GET /api/reports/revisits.",
                f"""
                SELECT coalesce(round(100.0 * sum(s1 + s2) / nullif(sum(reached), 0), 1), 0)
                       AS "satisfied %"
                FROM report_revisits
                WHERE {months_in_range()}
                """,
                unit="percent",
                decimals=1,
            ),
            6,
            6,
        )
    )
    panels.append(
        lay.place(
            table(
                "Revisits by provider",
                "回访 per provider and month: reach, confirmation of the service and the "
                "satisfaction distribution (1 非常满意 .. 4 不满意).",
                f"""
                SELECT to_char(r.month, 'YYYY-MM') AS "month", p.name AS "provider",
                       sum(r.revisits) AS "revisits", sum(r.reached) AS "reached",
                       round(100.0 * sum(r.reached) / nullif(sum(r.revisits), 0), 1)
                           AS "reach %",
                       round(100.0 * sum(r.confirmed) / nullif(sum(r.reached), 0), 1)
                           AS "confirmed %",
                       round(100.0 * sum(r.s1 + r.s2) / nullif(sum(r.reached), 0), 1)
                           AS "satisfied %",
                       sum(r.s1) AS "1", sum(r.s2) AS "2", sum(r.s3) AS "3", sum(r.s4) AS "4"
                FROM report_revisits r
                LEFT JOIN providers p ON p.id = r.provider_id
                WHERE {months_in_range("r.month")}
                GROUP BY r.month, p.name
                ORDER BY r.month DESC, p.name
                """,
            ),
            18,
            6,
        )
    )
    panels.append(
        lay.place(
            table(
                "Service coverage by district and programme",
                "Residents with a positive entitlement of the month's run (eligible) and "
                "those of them with a verified service that month (served). Same "
                "definition as GET /api/reports/coverage, which also sums sub-districts.",
                f"""
                SELECT to_char(c.month, 'YYYY-MM') AS "month", c.district_code AS "district",
                       d.name AS "name", c.programme_code AS "programme",
                       sum(c.eligible) AS "eligible", sum(c.served) AS "served",
                       round(100.0 * sum(c.served) / nullif(sum(c.eligible), 0), 1)
                           AS "coverage %"
                FROM report_service_coverage c
                LEFT JOIN districts d ON d.code = c.district_code
                WHERE {months_in_range("c.month")}
                GROUP BY c.month, c.district_code, d.name, c.programme_code
                ORDER BY c.month DESC, c.district_code, c.programme_code
                """,
            ),
            24,
            8,
        )
    )
    panels.append(
        lay.place(
            table(
                "Providers: on time, findings, EVV completeness (target 90 %)",
                "Visits checked in during the month: on time = within ±2 h of the scheduled "
                "start; flagged = a soft or hard verification finding; EVV = verified visits "
                "with all six elements (service, resident, worker, start and end times, both "
                "points). Same definitions as GET /api/reports/providers.",
                f"""
                SELECT to_char(v.month, 'YYYY-MM') AS "month", p.name AS "provider",
                       sum(v.visits) AS "visits",
                       round(100.0 * sum(v.on_time) / nullif(sum(v.scheduled), 0), 1)
                           AS "on time %",
                       round(100.0 * sum(v.flagged) / nullif(sum(v.visits), 0), 1)
                           AS "flagged %",
                       sum(v.verified) AS "verified",
                       round(100.0 * sum(v.evv_complete) / nullif(sum(v.verified), 0), 1)
                           AS "EVV %"
                FROM report_provider_visits v
                LEFT JOIN providers p ON p.id = v.provider_id
                WHERE {months_in_range("v.month")}
                GROUP BY v.month, p.name
                ORDER BY v.month DESC, p.name
                """,
            ),
            24,
            8,
        )
    )
    return dashboard(
        "eldercare-subsidies",
        "Subsidies and settlement",
        "Monthly subsidy spend by district, programme and funding source, settlement batches "
        "per provider, verification findings, service coverage and revisit satisfaction. "
        "Same definitions as the /api/reports endpoints; money in yuan (stored as fen).",
        panels,
        variables=[],
        tags=["eldercare", "platform", "subsidies"],
        time_from="now-90d",
    )
