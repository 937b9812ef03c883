"""The window of records handed to a broker and not yet acknowledged, confirmed strictly in order.

A broker acknowledges QoS 1 publishes one by one and not necessarily in the order they were sent, but the
outbox keeps one cursor per sink: "everything up to this row is delivered". So a row counts as confirmed
only once every row sent before it is acknowledged too. The window also says how long its oldest row has
waited, which is how a broker that takes publishes and never acknowledges them is found. Pure: the caller
passes the time in, and the message ids are the client library's.
"""

from __future__ import annotations

import attrs

__all__ = ["InFlight"]


@attrs.define
class InFlight:
    confirmed: int = 0
    """Every row up to this one is acknowledged."""
    _topics: dict[int, tuple[int, str]] = attrs.field(factory=dict)  # message id -> (row, topic)
    _order: list[int] = attrs.field(factory=list)  # rows sent on this connection, oldest first
    _sent_at: dict[int, float] = attrs.field(factory=dict)
    _acked: set[int] = attrs.field(factory=set)

    def __len__(self) -> int:
        return len(self._order)

    @property
    def last_sent(self) -> int:
        """The newest row handed over (``confirmed`` when nothing waits)."""
        return self._order[-1] if self._order else self.confirmed

    def sent(self, message_id: int, row: int, topic: str, now: float) -> None:
        self._topics[message_id] = (row, topic)
        self._order.append(row)
        self._sent_at[row] = now

    def acknowledged(self, message_id: int) -> tuple[int, str] | None:
        """The broker acknowledged ``message_id``: its (row, topic), or ``None`` for an id not in flight (an
        acknowledgement from before a reconnect). Rows confirm in order (:attr:`confirmed`)."""
        sent = self._topics.pop(message_id, None)
        if sent is None:
            return None
        self._acked.add(sent[0])
        while self._order and self._order[0] in self._acked:
            row = self._order.pop(0)
            self._acked.discard(row)
            self._sent_at.pop(row, None)
            self.confirmed = max(self.confirmed, row)
        return sent

    def refused(self, message_id: int) -> tuple[int, str] | None:
        """The broker refused ``message_id``: its (row, topic); nothing after the last confirmed row counts."""
        return self._topics.pop(message_id, None)

    def oldest_age(self, now: float) -> float:
        """How long the oldest unacknowledged row has waited (0 when none waits)."""
        return now - self._sent_at.get(self._order[0], now) if self._order else 0.0

    def forget(self) -> None:
        """The connection is gone or given up: whatever was not confirmed is sent again from the outbox."""
        self._topics.clear()
        self._order.clear()
        self._sent_at.clear()
        self._acked.clear()
