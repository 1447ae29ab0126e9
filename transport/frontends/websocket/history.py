"""Best-effort history writes for the legacy conversations (private channels).

A message from (or to) the legacy network is shown to the user at once; storing it in
the history must never hold that up nor lose it when the database is briefly away.
:class:`HistoryQueue` writes it; when the write fails, the message waits in a bounded
in-memory queue (the oldest are dropped beyond ``limit``, and counted) that is retried
on the clock with a doubling delay (``initial_delay`` up to ``max_delay``) until the
database answers again. While anything waits, later writes queue behind it so that the
history keeps their order. Each outage is logged once when it starts and once when the
queue is flushed. The queue lives in memory: what is still waiting when the process
stops is not stored.

Local channels do not use it: there the history is the contract, and a message that
cannot be stored is refused (see ``ChatServer.cmd_message_new``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from .store import Store, StoredMessage

log = Logger()

#: Messages held while the database is down, at most.
MAX_QUEUED = 10000
INITIAL_DELAY = 1.0
MAX_DELAY = 15.0

_Entry = tuple[StoredMessage, str, int]


class HistoryQueue:
    """Writes messages to the history of private channels; retries failed writes with backoff."""

    def __init__(self, store: Store, clock: Any, limit: int = MAX_QUEUED, initial_delay: float = INITIAL_DELAY,
                 max_delay: float = MAX_DELAY) -> None:
        self.store = store
        self.clock = clock
        self.limit = limit
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.pending: deque[_Entry] = deque()
        self.delay = initial_delay
        self._retry: Any = None
        self._flushing = False
        self._outage = False
        self._stopped = False
        #: writes that failed (direct and retried), messages stored late by a flush, messages dropped because
        #: the queue was full, outages (a failure while nothing was waiting)
        self.failures = 0
        self.flushed = 0
        self.dropped = 0
        self.outages = 0

    def counters(self) -> dict[str, int]:
        return {"history_queued": len(self.pending), "history_write_failures": self.failures,
                "history_flushed": self.flushed, "history_dropped": self.dropped, "history_outages": self.outages}

    def write(self, message: StoredMessage, legacy_id: str = "", keep: int = 0) -> None:
        """Store *message* now or, while the database is away, later. Never raises, returns nothing to wait on."""
        entry = (message, legacy_id, keep)
        if self.pending or self._flushing or self._retry is not None:
            self._enqueue(entry)
            return
        d = self.store.add_message(message, legacy_id=legacy_id, keep=keep)
        d.addErrback(self._failed, entry)

    def stop(self) -> None:
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self.pending:
            log.warn("{n} history messages were still waiting for the database at shutdown and are not stored",
                     n=len(self.pending))

    def _failed(self, failure: Any, entry: _Entry) -> None:
        self.failures += 1
        if not self._outage:
            self._outage = True
            self.outages += 1
            log.warn("storing conversation history failed ({error}); messages are kept in memory (at most {limit}) "
                     "and stored when the database is back", error=failure.getErrorMessage(), limit=self.limit)
        self._enqueue(entry)
        self._schedule()

    def _enqueue(self, entry: _Entry) -> None:
        if len(self.pending) >= self.limit:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append(entry)

    def _schedule(self) -> None:
        if self._retry is None and not self._flushing and not self._stopped:
            self._retry = self.clock.callLater(self.delay, self._flush)

    def _flush(self) -> defer.Deferred[None]:
        self._retry = None
        self._flushing = True
        return defer.ensureDeferred(self._drain())

    async def _drain(self) -> None:
        while self.pending and not self._stopped:
            message, legacy_id, keep = self.pending[0]
            try:
                await self.store.add_message(message, legacy_id=legacy_id, keep=keep, if_absent=True)
            except Exception:
                self.failures += 1
                self._flushing = False
                self.delay = min(self.delay * 2, self.max_delay)
                self._schedule()
                return
            if self.pending and self.pending[0][0] is message:
                self.pending.popleft()
            self.flushed += 1
        self._flushing = False
        self.delay = self.initial_delay
        if self._outage and not self.pending:
            self._outage = False
            log.info("the database is back: conversation history stored ({flushed} messages stored late, "
                     "{dropped} dropped so far)", flushed=self.flushed, dropped=self.dropped)
