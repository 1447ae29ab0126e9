"""The backend's own memory use, as reported in STATS after every PONG.

Spectrum 2 reports resident and shared memory in KiB, read from
``/proc/self/statm``; the main instance sums them for ``res_memory`` and
``average_memory_per_user``. Where ``/proc`` is missing, the peak resident size
from ``getrusage`` is the best figure available (and shared is then 0).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

_INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    """Resident and shared memory in KiB."""

    resident: int
    shared: int


def _page_kib() -> int:
    try:
        return max(1, os.sysconf("SC_PAGE_SIZE") // 1024)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4


def memory_usage(statm: str = "/proc/self/statm") -> MemoryUsage:
    """Current resident and shared memory of this process, in KiB."""
    try:
        with open(statm, encoding="ascii") as f:
            fields = f.read().split()
        page = _page_kib()
        resident, shared = int(fields[1]) * page, int(fields[2]) * page
    except (OSError, IndexError, ValueError):
        resident, shared = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 0
    return MemoryUsage(min(resident, _INT32_MAX), min(shared, _INT32_MAX))
