"""The alert engine, the heart of the product: pure rules and the state machine
(``rules``), alarm intake and correlation (``intake``), the alarm lifecycle
(``lifecycle``), dispatch and escalation (``dispatch``), device-health alarms (``health``),
response-time metrics (``metrics``), the transactional outbox (``events``), delivery to
devices and webhooks (``notify``) and the running engine (``engine``).

Layer: below ``http``/``gateway``/``platform``/``models``, above ``registry``. It knows
nothing of HTTP: live changes leave through :class:`~eldercare.alerts.engine.Feed`.
"""
