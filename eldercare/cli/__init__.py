"""The ``eldercare`` command.

One module per subcommand, listed literally in ``COMMANDS``; each has
``register(subparsers)`` and imports nothing heavy until its command runs, so
``eldercare --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from eldercare.cli import db, demo, devices, gateway, models, serve, simulate, users
from eldercare.errors import EldercareError

COMMANDS = (db, devices, gateway, serve, simulate, users, demo, models)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eldercare", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Imported here, not at the top: ``eldercare --help`` must not pay for psycopg.
    from eldercare.storage.db import translate

    try:
        # Commands share the API's one map from psycopg's errors to eldercare's.
        with translate():
            return int(args.func(args) or 0)
    except EldercareError as exc:
        print(f"eldercare: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
