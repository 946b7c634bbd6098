"""Prometheus counters of the gateway. Works across worker processes when
PROMETHEUS_MULTIPROC_DIR is set (the parent serves the merged view)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("eldercare_gateway_received_total", "Messages received", ["channel"])
STORED = Counter("eldercare_gateway_stored_total", "Events committed to the database", ["cls"])
DEDUPLICATED = Counter("eldercare_gateway_deduplicated_total", "Re-sent or redelivered messages")
ID_REUSED = Counter(
    "eldercare_gateway_id_reused_total",
    "Message ids a device reused with a different body (stored as new messages)",
)
RATE_LIMITED = Counter(
    "eldercare_gateway_rate_limited_total", "Messages dropped over a device's budget"
)
REFUSED = Counter("eldercare_gateway_refused_total", "Messages refused (nack)", ["reason"])
ALARM_ACKS = Counter("eldercare_gateway_alarm_acks_total", "Downlink acks sent for alarms")
BATCH_SECONDS = Histogram(
    "eldercare_gateway_batch_seconds",
    "Time to commit one batch",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
BATCH_ROWS = Histogram(
    "eldercare_gateway_batch_rows",
    "Rows per committed batch",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
)
ALARM_COMMIT_SECONDS = Histogram(
    "eldercare_gateway_alarm_commit_seconds",
    "Receive to commit of an alarm",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)
DB_ERRORS = Counter("eldercare_gateway_db_errors_total", "Database errors (retried)")
BROKER_RECONNECTS = Counter("eldercare_gateway_broker_reconnects_total", "Broker (re)connections")
STATE_CHANGES = Counter(
    "eldercare_gateway_state_changes_total", "Online/offline transitions", ["subject", "online"]
)
QUEUE_DEPTH = Gauge(
    "eldercare_gateway_queue_depth", "Messages waiting for commit", multiprocess_mode="livesum"
)
