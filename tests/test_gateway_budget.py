"""The per-device budget (audit H3) as the routing loop applies it to ``up`` messages: the
bucket is settled once per read, spent message by message in arrival order. No broker and
no database: the worker is built, never started, and fed one read at a time."""

from __future__ import annotations

from datetime import UTC, datetime

from eldercare import protocol as p
from eldercare.config import Settings
from eldercare.gateway.worker import RATE_LIMITED, GatewayWorker, TokenBuckets
from eldercare.protocol import wire


def _read(device_id: str, first: int, n: int, now: datetime) -> list[wire.Publish]:
    topic = p.topic(device_id, p.Channel.UP)
    return [
        wire.Publish(topic, p.uplink(f"m{i}", "vitals", now, heart_rate=70), 1, i, False, False)
        for i in range(first, first + n)
    ]


def test_a_read_spends_each_devices_budget_in_arrival_order_and_acks_everything(
    settings: Settings,
) -> None:
    s = settings.model_copy(update={"device_burst": 5, "device_rate_per_s": 0.001})
    worker = GatewayWorker(s, 0, sweep=False)  # never started: no broker, no threads
    worker.acks.new_generation(1)
    now = datetime.now(UTC)
    a, b = "bud-a", "bud-b"
    pubs = _read(a, 1, 8, now)
    pubs[3:3] = _read(b, 100, 2, now)  # another device's messages in between

    worker._on_publishes(pubs, now)
    chunk = worker._batch_q.get_nowait()
    # The first five of a's eight (arrival order) and both of b's are admitted.
    assert [(e.device_id, e.msg_id) for e in chunk.events] == [
        (a, "m1"), (a, "m2"), (a, "m3"), (b, "m100"), (b, "m101"), (a, "m4"), (a, "m5"),
    ]  # fmt: skip
    # The flood is kept once (a rate_limited dead letter), the rest only counted.
    assert [(r.device_id, r.reason) for r in chunk.refusals] == [(a, RATE_LIMITED)]
    # Every QoS 1 message is acknowledged to the broker, refused ones too (no redelivery).
    assert [mid for slot in chunk.slots for mid in slot.mids] == [pb.pid for pb in pubs]

    worker._on_publishes(_read(a, 20, 3, now) + _read(b, 200, 1, now), now)
    chunk = worker._batch_q.get_nowait()
    # a's bucket stayed empty across reads (written back at the end of the first); within
    # a minute of the kept dead letter, a's refusals are counted, not kept again.
    assert [(e.device_id, e.msg_id) for e in chunk.events] == [(b, "m200")]
    assert chunk.refusals == []


def test_token_bucket_level_and_put_take_several_tokens_at_once() -> None:
    tb = TokenBuckets(rate=2.0, burst=10)
    assert tb.level("d", 100.0) == 10.0  # a new key starts full
    tb.put("d", 3.0, 100.0)
    assert tb.level("d", 101.0) == 5.0  # refilled at 2 a second
    assert tb.level("d", 99.0) == 3.0  # an earlier instant never takes tokens away
    assert tb.level("d", 200.0) == 10.0  # at most the burst
    assert tb.take("d", 101.0) and tb.level("d", 101.0) == 4.0
