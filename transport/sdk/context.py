"""What a backend knows when it starts: its command line, its config file, its memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

from transport.sdk.config import BackendConfigFile
from transport.sdk.memory import MemoryUsage, memory_usage


@dataclass(frozen=True)
class BackendArguments:
    """The command line a backend receives."""

    host: str = "127.0.0.1"
    port: int = 0
    backend_id: str = ""
    config_path: str | None = None
    jid: str | None = None
    verbose: bool = False
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackendContext:
    """What a backend knows at start: its arguments, its config file, its memory at start."""

    arguments: BackendArguments = field(default_factory=BackendArguments)
    config: BackendConfigFile = field(default_factory=BackendConfigFile)
    initial_memory: MemoryUsage = field(default_factory=memory_usage)
    clock: IReactorTime | None = None
