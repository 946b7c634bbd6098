"""The gateway's per-message work without the network, for instruction counts.

``python -m bench.hotpath DATABASE_URL CHUNKS DEVICES`` runs CHUNKS (of 4 built) reads of 2,500
pre-encoded QoS 1 ``vitals`` PUBLISH packets through the worker's own code: packet parsing
(wire.Reader), routing and payload validation (GatewayWorker._on_publishes), the batch
commit to the real database (Store.store_batch) and the PUBACK release (AckSequencer).
Run under ``valgrind --tool=callgrind`` with CHUNKS=0 and CHUNKS=n, the difference of the
two instruction totals divided by the messages is the gateway's user-space instructions
per message: a figure other load on the machine cannot move (CPU seconds can: shared
caches and hyperthreads slow every instruction down). Syscalls and PostgreSQL's own work
are not in it. valgrind replaces memchr/memcpy with simpler loops, so string searches
count more instructions than they cost natively.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from eldercare import protocol as p
from eldercare.config import load_settings
from eldercare.gateway.store import Store
from eldercare.gateway.worker import GatewayWorker
from eldercare.protocol import wire

PER_READ = 2500
MAX_CHUNKS = 4


def main() -> int:
    url, chunks = sys.argv[1], int(sys.argv[2])
    devices = sys.argv[3].split(",")
    settings = load_settings(database_url=url, mqtt_port=1, metrics_port=0)
    worker = GatewayWorker(settings, 0)  # never started: no broker, no threads
    worker.acks.new_generation(1)
    store = Store(url, lambda: datetime.now(UTC))
    store.store_batch([])  # connect outside the measured part
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
    streams = [  # built whatever CHUNKS is, so that building them cancels out
        b"".join(
            wire.publish(
                p.topic(devices[i % len(devices)], p.Channel.UP),
                b'{"v":1,"id":"hp-%d-%d","ts":"%s","type":"vitals","heart_rate":%d}'
                % (c, i, ts, 60 + i % 50),
                1,
                i % 65535 + 1,
            )
            for i in range(PER_READ)
        )
        for c in range(MAX_CHUNKS)
    ]
    for stream in streams[:chunks]:
        packets = wire.Reader().feed(stream)
        pubs = [pk for pk in packets if isinstance(pk, wire.Publish)]
        worker._on_publishes(pubs, datetime.now(UTC))
        batch = worker._batch_q.get_nowait()
        res = store.store_batch(batch.events, batch.states, batch.refusals)
        assert res.stored == PER_READ, res
        worker.acks.complete(batch.slots)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
