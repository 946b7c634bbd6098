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
from collections.abc import Callable


class Slot:
    __slots__ = ("done", "generation", "mid")

    def __init__(self, mid: int, generation: int) -> None:
        self.mid = mid
        self.generation = generation
        self.done = False


class AckSequencer:
    def __init__(self, send_acks: Callable[[list[int]], None]) -> None:
        self._send = send_acks
        self._lock = threading.Lock()
        self._queue: deque[Slot] = deque()
        self._generation = 0

    def new_generation(self) -> None:
        with self._lock:
            self._generation += 1
            self._queue.clear()

    def take(self, mid: int) -> Slot:
        with self._lock:
            slot = Slot(mid, self._generation)
            self._queue.append(slot)
            return slot

    def complete(self, slots: list[Slot] | tuple[Slot, ...]) -> int:
        """Mark slots done and send every PUBACK now releasable; returns how many were sent."""
        ready: list[int] = []
        with self._lock:
            for s in slots:
                s.done = True
            q = self._queue
            while q and q[0].done:
                slot = q.popleft()
                if slot.generation == self._generation:
                    ready.append(slot.mid)
            # Sent under the lock: two lanes releasing at once must not reorder PUBACKs.
            if ready:
                self._send(ready)
        return len(ready)
