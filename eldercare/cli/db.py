"""``eldercare db ...``: schema migrations and retention."""

from __future__ import annotations

import argparse
import json


def _db_migrate(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.storage.migrate import migrate

    settings = get_settings()
    # As the owner; then the app's role (ELDERCARE_DATABASE_URL's user) is created or
    # reset and granted exactly the app's rights (storage/roles.py, audit H11).
    applied = migrate(settings.migration_url, settings.database_url)
    print("applied: " + (", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing"))
    return 0


def _db_retention(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.storage.retention import apply_retention

    settings = get_settings()
    report = apply_retention(
        settings.migration_url,  # drop_chunks needs the tables' owner
        days=args.days or settings.retention_days,
        dedup_days=settings.dedup_days,
    )
    print(json.dumps(report, default=str))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="schema and retention").add_subparsers(dest="db", required=True)
    db.add_parser("migrate", help="apply pending migrations").set_defaults(func=_db_migrate)
    ret = db.add_parser("retention", help="drop chunks older than the retention period")
    ret.add_argument("--days", type=int)
    ret.set_defaults(func=_db_retention)
