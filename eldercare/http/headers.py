"""Browser hardening headers on every response, pages and API alike (audit M9).

The pages load only their own scripts, styles and JSON (no inline script or style, no
CDN: see eldercare/web), so the policy can be strict. The interactive API docs load
Swagger UI from a CDN with an inline script; they get no policy rather than a broken page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import FastAPI, Request, Response

CSP: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
ALWAYS: Final = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_DOCS: Final = ("/docs", "/redoc")


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        path = request.url.path
        for name, value in ALWAYS.items():
            response.headers.setdefault(name, value)
        if not path.startswith(_DOCS):
            response.headers.setdefault("Content-Security-Policy", CSP)
        if path.startswith("/api/"):
            # Answers carry personal data: neither the browser nor a proxy keeps them.
            response.headers["Cache-Control"] = "no-store"
        return response
