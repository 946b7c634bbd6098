"""The served application: the HTTP API (:mod:`eldercare.http`) with the operator console
and staff page (:mod:`eldercare.web`) mounted on it.

This is the composition root, so it sits above both in the layers contract: ``web`` imports
``http.deps`` for its own routes, and ``http`` never imports ``web``. ``eldercare serve`` runs
``create_app(settings)``; tests pass the same keyword arguments as
:func:`eldercare.http.app.build_api`.
"""

from __future__ import annotations

from fastapi import FastAPI

from eldercare import web
from eldercare.alerts import notify, rules
from eldercare.config import Settings
from eldercare.http.app import build_api


def create_app(
    settings: Settings,
    *,
    clock: rules.Clock | None = None,
    publisher: notify.Publisher | None = None,
    poster: notify.Poster | None = None,
    background: bool = True,
) -> FastAPI:
    app = build_api(
        settings, clock=clock, publisher=publisher, poster=poster, background=background
    )
    app.include_router(web.router)
    return app
