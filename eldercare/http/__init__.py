"""The HTTP API: ``deps`` (``Conn``/``User``/``Now``), ``routes/<resource>.py``, ``schemas``,
``live`` (the websocket hub) and ``app.build_api``.

Why the served app is not built here: ``web`` (console and staff pages) sits above ``http``
and imports only :mod:`eldercare.http.deps`; if ``http`` mounted ``web`` the two would import
each other. So :func:`eldercare.app.create_app`, one layer up, composes ``build_api`` with
``web.router``.
"""
