"""Writes the Grafana dashboards in this directory as JSON: ``python dashboards/build.py``.

Dashboards are code so that a review reads SQL, not a 2,000-line export. Each
dashboard is a module with one function returning the dashboard dict, built from the
blocks in ``grafana.py``; add yours to ``DASHBOARDS`` and re-run. ``--check`` exits
non-zero when a committed JSON file differs from what this script builds (for CI).

Every panel queries the provisioned TimescaleDB data source (see
``provisioning/datasources/eldercare.yaml``) with raw SQL and Grafana macros;
``tests/test_dashboards.py`` expands the macros the way Grafana does and runs
every query against a migrated database, as the read-only Grafana role.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: make the ``dashboards`` package importable
    sys.path.insert(0, str(HERE.parent))

from dashboards.device_ingest_health import device_ingest_health  # noqa: E402
from dashboards.grafana import Json  # noqa: E402
from dashboards.model_quality import model_quality  # noqa: E402
from dashboards.response_times import response_times  # noqa: E402
from dashboards.subsidies import subsidies  # noqa: E402

# File name (without .json) -> builder. Add new dashboards here.
DASHBOARDS: dict[str, Callable[[], Json]] = {
    "device-ingest-health": device_ingest_health,
    "response-times": response_times,
    "subsidies": subsidies,
    "model-quality": model_quality,
}


def render(build: Callable[[], Json]) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if a JSON file is missing or out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / f"{name}.json"
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text("utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, "utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python dashboards/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
