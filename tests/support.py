"""Moved to :mod:`harness.services` (so ``bench/`` need not import ``tests/``); kept as a
re-export for branches written against the old path."""

from harness.services import (  # noqa: F401
    ADMIN_URL,
    ROOT,
    Broker,
    PrivatePostgres,
    Proc,
    add_user,
    create_database,
    drop_database,
    free_port,
    have_chromium,
    make_settings,
    running_broker,
    serve_in_thread,
    settings_env,
    wait_for,
    wait_port,
)
