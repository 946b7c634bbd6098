"""The ``eldercare`` command.

Subcommands register themselves through small functions below so the module
imports nothing heavy until a command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from eldercare.errors import EldercareError

Handler = Callable[[argparse.Namespace], int]


def _db_migrate(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.storage.migrate import migrate

    applied = migrate(get_settings().database_url)
    print("applied: " + (", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing"))
    return 0


def _db_retention(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.storage.retention import apply_retention

    settings = get_settings()
    report = apply_retention(
        settings.database_url,
        days=args.days or settings.retention_days,
        dedup_days=settings.dedup_days,
    )
    print(json.dumps(report, default=str))
    return 0


def _devices_provision(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.models.registry import DeviceCreate
    from eldercare.platform import registry
    from eldercare.storage.db import connect

    settings = get_settings()
    spec = DeviceCreate(
        kind=args.kind,
        device_id=args.device_id,
        resident_id=args.resident,
        facility_id=args.facility,
        room=args.room,
        cameras=args.camera or [],
    )
    with connect(settings.database_url) as conn:
        cred = registry.provision_device(conn, settings, spec)
    if args.json:
        print(cred.model_dump_json())
    else:
        for k, v in cred.model_dump().items():
            print(f"{k}: {v}")
    return 0


def _devices_revoke(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.platform import registry
    from eldercare.storage.db import connect

    settings = get_settings()
    with connect(settings.database_url) as conn:
        registry.revoke_device(conn, settings, args.device_id)
    print(f"revoked {args.device_id}")
    return 0


def _broker_sync(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.platform import registry
    from eldercare.storage.db import connect

    settings = get_settings()
    with connect(settings.database_url) as conn:
        registry.sync_broker(conn, settings, wait=not args.no_wait)
    print(f"broker files written to {settings.broker_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eldercare", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="schema and retention").add_subparsers(dest="db", required=True)
    db.add_parser("migrate", help="apply pending migrations").set_defaults(func=_db_migrate)
    ret = db.add_parser("retention", help="drop chunks older than the retention period")
    ret.add_argument("--days", type=int)
    ret.set_defaults(func=_db_retention)

    dev = sub.add_parser("devices", help="device registry").add_subparsers(
        dest="dev", required=True
    )
    prov = dev.add_parser("provision", help="create a device with fresh MQTT credentials")
    prov.add_argument(
        "--kind",
        required=True,
        choices=["sos_button", "fall_sensor", "video_bridge", "home_kit", "wearable"],
    )
    prov.add_argument("--resident", type=int)
    prov.add_argument("--facility", type=int)
    prov.add_argument("--room")
    prov.add_argument("--device-id")
    prov.add_argument("--camera", action="append", help="camera id behind a video bridge")
    prov.add_argument("--json", action="store_true")
    prov.set_defaults(func=_devices_provision)
    rev = dev.add_parser("revoke", help="shut a device out of the broker")
    rev.add_argument("device_id")
    rev.set_defaults(func=_devices_revoke)

    brk = sub.add_parser("broker", help="broker credentials").add_subparsers(
        dest="brk", required=True
    )
    sync = brk.add_parser("sync", help="write password file and ACL from the registry")
    sync.add_argument("--no-wait", action="store_true")
    sync.set_defaults(func=_broker_sync)

    for register in EXTRA_COMMANDS:
        register(sub)
    return p


# Other modules add their subcommands here (gateway, serve, simulate, users, bench).
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    from eldercare import commands  # noqa: F401  (registers the heavier subcommands)

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except EldercareError as exc:
        print(f"eldercare: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
