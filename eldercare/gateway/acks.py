"""PUBACK sequencing: acknowledge to the broker only after commit, in receive order.

MQTT requires PUBACKs in the order the PUBLISHes arrived, but alarms commit
before the batch that holds older telemetry. Slots are released from the head
only while done. A broker reconnect starts a new generation: message ids of the
old connection must never be acknowledged on the new one (the broker redelivers
those messages and dedup stores them once).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable


class Slot:
    """A run of consecutive messages (packet ids in arrival order) that commit together:
    one per alarm, one per stretch of batch-lane messages of a read. Per run rather than
    per message, since a read brings thousands and each object costs."""

    __slots__ = ("done", "generation", "mids")

    def __init__(self, mids: list[int], generation: int) -> None:
        self.mids = mids
        self.generation = generation
        self.done = False


SendAcks = Callable[[list[int], int], object]  # (packet ids, generation)


class AckSequencer:
    def __init__(self, send_acks: SendAcks) -> None:
        self._send = send_acks
        self._lock = threading.Lock()
        self._queue: deque[Slot] = deque()
        self._pending = 0
        self._generation = 0

    def new_generation(self, generation: int | None = None) -> None:
        """A new connection: forget the old one's slots; ``generation`` names the new one."""
        with self._lock:
            self._generation = self._generation + 1 if generation is None else generation
            self._queue.clear()
            self._pending = 0

    def take(self, mids: list[int]) -> Slot:
        """A slot for these consecutive messages, queued behind every earlier one."""
        with self._lock:
            slot = Slot(mids, self._generation)
            self._queue.append(slot)
            self._pending += len(mids)
            return slot

    def complete(self, slots: Iterable[Slot]) -> int:
        """Mark slots done and send every PUBACK now releasable; returns how many were sent."""
        ready: list[int] = []
        with self._lock:
            for s in slots:
                s.done = True
            q = self._queue
            gen = self._generation
            while q and q[0].done:
                slot = q.popleft()
                if slot.generation == gen:
                    ready += slot.mids
            self._pending -= len(ready)
            # Sent under the lock: two lanes releasing at once must not reorder PUBACKs.
            if ready:
                self._send(ready, gen)
        return len(ready)

    def __len__(self) -> int:
        """Messages received and not yet acknowledged (a queue bound's measure)."""
        return self._pending
