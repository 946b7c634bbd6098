"""The duty operator's console (``/console``) and the facility staff page (``/staff``).

Plain HTML, CSS and JavaScript served from package data: the machines that run a
12349 hotline are often offline from the internet, so nothing comes from a CDN and
there is no build step. The pages talk to the documented API (docs/api.md) and its
websocket; this router only adds what the API does not offer: shift handover notes
and, per open alarm, the place to draw on the map and who holds it now.
"""

from __future__ import annotations

from fastapi import APIRouter

from eldercare.web import console, pages

# pages: /console, /staff, /static/...; console: /api/console/open and /handover.
router = APIRouter()
router.include_router(pages.router)
router.include_router(console.router)
