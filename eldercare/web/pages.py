"""The pages and their static files, served from package data with ``no-cache``."""

from __future__ import annotations

import mimetypes
from importlib import resources

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response

router = APIRouter()

_STATIC = resources.files("eldercare.web").joinpath("static")
# No build step means no content hashes in file names; revalidating is cheap (ETag-less
# but small files) and an operator never runs a stale console after an upgrade.
_NO_CACHE = {"Cache-Control": "no-cache"}
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _asset(path: str) -> Response:
    parts = [p for p in path.split("/") if p]
    # Only plain names below static/: no parent references, no hidden files.
    if not parts or any(p.startswith(".") or "\\" in p for p in parts):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    node = _STATIC
    for p in parts:
        node = node.joinpath(p)
    if not node.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    suffix = "." + parts[-1].rsplit(".", 1)[-1] if "." in parts[-1] else ""
    media = _TYPES.get(suffix) or mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    return Response(node.read_bytes(), media_type=media, headers=_NO_CACHE)


@router.get("/console", include_in_schema=False)
def console_page() -> Response:
    return _asset("console.html")


@router.get("/staff", include_in_schema=False)
def staff_page() -> Response:
    return _asset("staff.html")


@router.get("/registry", include_in_schema=False)
def registry_page() -> Response:
    """Registry management (residents, home care beds, districts) for the platform's admins."""
    return _asset("registry.html")


@router.get("/worker", include_in_schema=False)
def worker_page() -> Response:
    """The care worker's phone page: accept, check in and out with the phone's position,
    record the service (provider_worker logins)."""
    return _asset("worker.html")


@router.get("/static/{path:path}", include_in_schema=False)
def static_file(path: str) -> Response:
    return _asset(path)
