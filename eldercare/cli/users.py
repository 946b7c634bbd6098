"""``eldercare users ...``: desk, facility, civil-affairs, assessor and provider logins."""

from __future__ import annotations

import argparse


def _users_add(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.registry import auth
    from eldercare.storage.db import connect

    with connect(get_settings().database_url, autocommit=True) as conn:
        row = auth.create_user(
            conn,
            args.username,
            args.password,
            args.role,
            args.facility,
            args.responder,
            args.provider,
            args.worker,
        )
    # The password is never echoed; the id and role are enough to confirm.
    print(f"user {row['username']} (id {row['id']}, role {row['role']}) created")
    return 0


def _users_list(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.storage.db import connect

    with connect(get_settings().database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT username, role, facility_id, responder_id, provider_id, worker_id, active"
            " FROM users ORDER BY username"
        ).fetchall()
    for username, role, fac, rsp, prv, wrk, active in rows:
        print(
            f"{username}\t{role}\tfacility={fac or '-'}\tresponder={rsp or '-'}"
            f"\tprovider={prv or '-'}\tworker={wrk or '-'}\t{'active' if active else 'disabled'}"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", help="console and API logins").add_subparsers(
        dest="users", required=True
    )
    add = users.add_parser("add", help="create a login")
    add.add_argument("--username", required=True)
    add.add_argument("--password", required=True)
    from eldercare.registry.auth import ROLES

    add.add_argument("--role", required=True, choices=list(ROLES))
    add.add_argument("--facility", type=int, help="required for facility_staff")
    add.add_argument("--responder", type=int, help="link to a responder (accepts offers)")
    add.add_argument(
        "--provider", type=int, help="the provider of a provider_admin or provider_worker"
    )
    add.add_argument(
        "--worker", type=int, help="the worker record of a provider_worker (implies --provider)"
    )
    add.set_defaults(func=_users_add)
    users.add_parser("list", help="list logins").set_defaults(func=_users_list)
