"""Grafana building blocks the dashboards share: data source, variables, targets, panels,
the grid layout and the dashboard envelope. Each dashboard module builds on these and
``build.py`` writes them out.
"""

from __future__ import annotations

from typing import Any

# Must match provisioning/datasources/eldercare.yaml (the test checks it does).
DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "eldercare-timescaledb"}
SCHEMA_VERSION = 39  # Grafana 11's dashboard schema; newer Grafana migrates it on load.

Json = dict[str, Any]

# The facility picker. "All" is a custom value (-1), not the list of ids, so rows
# with no facility (events from unknown devices) still count under "All".
FACILITY_FILTER = "(-1 IN ($facility) OR {col} IN ($facility))"


def facility_filter(col: str) -> str:
    return FACILITY_FILTER.format(col=col)


def facility_variable() -> Json:
    return {
        "name": "facility",
        "label": "Facility",
        "type": "query",
        "datasource": DATASOURCE,
        "query": "SELECT id AS __value, name AS __text FROM facilities ORDER BY name",
        "definition": "SELECT id AS __value, name AS __text FROM facilities ORDER BY name",
        "refresh": 1,  # on dashboard load: facilities are added while the platform runs
        "includeAll": True,
        "allValue": "-1",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 0,
        "hide": 0,
    }


def constant_variable(name: str, value: str, description: str) -> Json:
    return {
        "name": name,
        "type": "constant",
        "query": value,
        "description": description,
        "hide": 2,
        "current": {"text": value, "value": value},
    }


def target(sql: str, fmt: str, ref: str = "A") -> Json:
    if fmt not in ("time_series", "table"):
        raise ValueError(f"unknown format {fmt}")
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "editorMode": "code",
        "format": fmt,
        "rawQuery": True,
        "rawSql": _dedent(sql),
    }


def _dedent(sql: str) -> str:
    lines = [line.rstrip() for line in sql.strip("\n").splitlines()]
    indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
    return "\n".join(x[indent:] for x in lines)


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping rows."""

    def __init__(self) -> None:
        self.x = self.y = self.row_h = 0
        self.next_id = 1

    def place(self, panel: Json, w: int, h: int) -> Json:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel

    def place_row(self, panels: list[Json], w: int, h: int) -> list[Json]:
        """Places panels of one size in order: a row of headline stats reads as a table."""
        return [self.place(p, w, h) for p in panels]

    def row(self, title: str) -> Json:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {
            "type": "row",
            "title": title,
            "collapsed": False,
            "panels": [],
            "id": self.next_id,
            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
        }
        self.next_id += 1
        self.y += 1
        return panel


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str | None = None,
    options: Json | None = None,
    overrides: list[Json] | None = None,
    interval: str | None = None,
    thresholds: list[tuple[float | None, str]] | None = None,
    custom: Json | None = None,
    decimals: int | None = None,
) -> Json:
    defaults: Json = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if thresholds:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"value": v, "color": c} for v, c in thresholds],
        }
    if custom:
        defaults["custom"] = custom
    p: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if interval:
        p["interval"] = interval  # the smallest $__interval this panel is given
    return p


def stat(title: str, description: str, sql: str, **kw: Any) -> Json:
    kw.setdefault(
        "options",
        {
            "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
            "colorMode": "background",
            "graphMode": "none",
        },
    )
    return panel("stat", title, description, [target(sql, "table")], **kw)


def timeseries(
    title: str, description: str, sql: str, *, stacked: bool = False, bars: bool = False, **kw: Any
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else 10,
        "spanNulls": False,
        "showPoints": "never",
    }
    if stacked:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    kw.setdefault(
        "options",
        {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["sum", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )
    return panel(
        "timeseries", title, description, [target(sql, "time_series")], custom=custom, **kw
    )


def table(title: str, description: str, sql: str, **kw: Any) -> Json:
    kw.setdefault("options", {"showHeader": True, "cellHeight": "sm"})
    return panel("table", title, description, [target(sql, "table")], **kw)


def bargauge(title: str, description: str, sql: str, **kw: Any) -> Json:
    kw.setdefault(
        "options",
        {
            "orientation": "horizontal",
            "displayMode": "basic",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "values": True},
        },
    )
    return panel("bargauge", title, description, [target(sql, "table")], **kw)


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Json],
    *,
    variables: list[Json],
    tags: list[str],
    time_from: str = "now-6h",
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": tags,
        "editable": False,  # provisioned: change build.py, not the UI
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "timezone": "browser",
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }
