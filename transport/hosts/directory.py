"""The network host's directory: announced user hosts, expiry and paged search (no I/O).

Entries are keyed by (host type, online id); a re-announce replaces the entry
and restarts its life. An entry not re-announced within ``expiry`` seconds never
appears in results: expired entries are dropped lazily when a search meets them
and by :meth:`Directory.sweep`, which the service runs periodically.

Results come in online-id order, so a page ends with the id of the first entry
not sent (``next_id``) and the MORE request continues from it: a complete chain
returns every live entry exactly once, even while others announce or expire.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from transport.hosts.packets import MAX_BLOB_DATA, USER_HOST_TYPES, ECommErr, HostedInfo, OnlineId

#: Bounds on announced strings (bytes of UTF-8), so that any one entry fits a reply.
MAX_URL = 1024
MAX_TITLE = 256
MAX_DESCRIPTION = 2048
#: Bounds on search text (characters); empty text matches every entry.
MIN_SEARCH_TEXT = 3
MAX_SEARCH_TEXT = 64


@dataclass
class _Entry:
    info: HostedInfo
    expires_at: float
    #: title + description, folded, for text search
    haystack: str


@dataclass(frozen=True)
class SearchPage:
    """One reply's worth of results."""

    entries: tuple[HostedInfo, ...]
    more_exist: bool
    next_id: OnlineId
    comm_err: ECommErr


def validate_announce(host_type: int, info: HostedInfo) -> ECommErr:
    """Why an announcement is refused (``ECommErr.NONE`` when it is acceptable)."""
    if host_type not in USER_HOST_TYPES:
        return ECommErr.INVALID_HOST_TYPE
    if (not info.online_id or not info.thumb_id or info.last_modified_ms <= 0
            or not info.url or not info.title or not info.description):
        return ECommErr.INVALID_PKT
    if (len(info.url.encode()) > MAX_URL or len(info.title.encode()) > MAX_TITLE
            or len(info.description.encode()) > MAX_DESCRIPTION):
        return ECommErr.INVALID_PKT
    return ECommErr.NONE


def validate_search_text(text: str) -> ECommErr:
    if text and len(text) < MIN_SEARCH_TEXT:
        return ECommErr.SEARCH_TEXT_TOO_SHORT
    if len(text) > MAX_SEARCH_TEXT:
        return ECommErr.SEARCH_TEXT_TOO_LONG
    return ECommErr.NONE


class Directory:
    """Announced user hosts by type.

    *now* returns the current time in seconds (``reactor.seconds`` or a
    ``task.Clock``'s). *page_size* bounds the entries per page; the blob's
    14,320 bytes bound it too. When *max_entries* live entries are held, a new
    host's announcement is refused (InvalidPkt); known hosts still refresh.
    """

    def __init__(self, now: Callable[[], float], expiry: float = 1800.0, page_size: int = 50,
                 max_entries: int = 500_000) -> None:
        self._now = now
        self.expiry = expiry
        self.page_size = page_size
        self.max_entries = max_entries
        self._entries: dict[tuple[int, bytes], _Entry] = {}
        self._order: dict[int, list[bytes]] = {t: [] for t in USER_HOST_TYPES}

    def __len__(self) -> int:
        return len(self._entries)

    def announce(self, host_type: int, info: HostedInfo) -> ECommErr:
        """Add or replace the entry for (*host_type*, ``info.online_id``)."""
        err = validate_announce(host_type, info)
        if err is not ECommErr.NONE:
            return err
        key = (host_type, info.online_id.raw)
        haystack = (info.title + "\n" + info.description).casefold()
        if key not in self._entries:
            if len(self._entries) >= self.max_entries and not self.sweep():
                return ECommErr.INVALID_PKT
            bisect.insort(self._order[host_type], info.online_id.raw)
        self._entries[key] = _Entry(info, self._now() + self.expiry, haystack)
        return ECommErr.NONE

    def remove(self, host_type: int, online_id: OnlineId) -> bool:
        key = (host_type, online_id.raw)
        if self._entries.pop(key, None) is None:
            return False
        order = self._order[host_type]
        i = bisect.bisect_left(order, online_id.raw)
        if i < len(order) and order[i] == online_id.raw:
            del order[i]
        return True

    def _live(self, host_type: int, raw: bytes, now: float) -> _Entry | None:
        entry = self._entries.get((host_type, raw))
        if entry is None:
            return None
        if entry.expires_at <= now:
            self.remove(host_type, entry.info.online_id)
            return None
        return entry

    def lookup(self, host_type: int, online_id: OnlineId) -> HostedInfo | None:
        entry = self._live(host_type, online_id.raw, self._now())
        return entry.info if entry else None

    def search(self, host_type: int, text: str = "", specific: OnlineId | None = None,
               start: OnlineId | None = None) -> SearchPage:
        """A page of live entries of *host_type* matching *text*.

        *specific* asks for that one entry. *start* continues a chain (a MORE
        request): it must name a live entry, else the answer is SearchNoMatch.
        """
        if host_type not in USER_HOST_TYPES:
            return SearchPage((), False, OnlineId(), ECommErr.INVALID_HOST_TYPE)
        err = validate_search_text(text)
        if err is not ECommErr.NONE:
            return SearchPage((), False, OnlineId(), err)
        now = self._now()
        if specific:
            entry = self._live(host_type, specific.raw, now)
            if entry is None:
                return SearchPage((), False, OnlineId(), ECommErr.SEARCH_NO_MATCH)
            return SearchPage((entry.info,), False, OnlineId(), ECommErr.NONE)
        needle = text.casefold()
        order = self._order[host_type]
        index = 0
        if start is not None:
            if self._live(host_type, start.raw, now) is None:
                return SearchPage((), False, OnlineId(), ECommErr.SEARCH_NO_MATCH)
            index = bisect.bisect_left(order, start.raw)
        page: list[HostedInfo] = []
        used = 0
        expired: list[bytes] = []
        next_id: OnlineId | None = None
        while index < len(order):
            raw = order[index]
            index += 1
            entry = self._entries[(host_type, raw)]
            if entry.expires_at <= now:
                expired.append(raw)
                continue
            if needle and needle not in entry.haystack:
                continue
            size = entry.info.size()
            if len(page) >= self.page_size or used + size > MAX_BLOB_DATA:
                next_id = entry.info.online_id
                break
            page.append(entry.info)
            used += size
        for raw in expired:
            self.remove(host_type, OnlineId(raw))
        if not page:
            return SearchPage((), False, OnlineId(), ECommErr.SEARCH_NO_MATCH)
        return SearchPage(tuple(page), next_id is not None, next_id or OnlineId(), ECommErr.NONE)

    def sweep(self) -> int:
        """Drop every expired entry; how many were dropped."""
        now = self._now()
        dead = [key for key, entry in self._entries.items() if entry.expires_at <= now]
        for host_type, raw in dead:
            self.remove(host_type, OnlineId(raw))
        return len(dead)
