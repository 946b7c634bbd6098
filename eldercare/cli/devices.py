"""``eldercare devices ...`` and ``eldercare broker sync``: the device registry and the
broker credentials written from it."""

from __future__ import annotations

import argparse


def _devices_provision(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.registry import service as registry
    from eldercare.registry.schemas import DeviceCreate
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
    from eldercare.registry import service as registry
    from eldercare.storage.db import connect

    settings = get_settings()
    with connect(settings.database_url) as conn:
        registry.revoke_device(conn, settings, args.device_id)
    print(f"revoked {args.device_id}")
    return 0


def _broker_sync(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.registry import service as registry
    from eldercare.storage.db import connect

    settings = get_settings()
    with connect(settings.database_url) as conn:
        registry.sync_broker(conn, settings, wait=not args.no_wait)
    print(f"broker files written to {settings.broker_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
