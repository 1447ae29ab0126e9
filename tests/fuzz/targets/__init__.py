"""The fuzz targets: one harness per parser, each usable by atheris and by pytest.

A target is a function ``harness(data: bytes) -> None`` that feeds *data* (a
:mod:`tests.fuzz.script`) to one parser or protocol state machine and raises
only on a finding: an exception the parser's contract does not allow, or a
broken invariant (``AssertionError``). Each module declares its targets with
:func:`target`, the contract in the docstring, and the seeds - inputs made
from the module's own encoders, the same bytes its unit tests use.

``python tests/fuzz/run.py TARGET`` runs one under atheris (coverage-guided);
``tests/fuzz/test_fuzz.py`` replays the corpus and runs a bounded hypothesis
search for each in CI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import globalLogPublisher

#: Modules that declare targets, imported by :func:`all_targets`.
MODULES = (
    "tests.fuzz.targets.backend",
    "tests.fuzz.targets.hosts",
    "tests.fuzz.targets.mux",
    "tests.fuzz.targets.chatd",
    "tests.fuzz.targets.websocket",
    "tests.fuzz.targets.xmpp",
    "tests.fuzz.targets.config",
)

Harness = Callable[[bytes], None]


@dataclass(frozen=True)
class Target:
    name: str
    harness: Harness
    #: Seed inputs (scripts); written to the corpus by ``run.py --seed``.
    seeds: Callable[[], Iterable[bytes]]
    doc: str = field(default="", compare=False)


_TARGETS: dict[str, Target] = {}


def target(name: str, seeds: Callable[[], Iterable[bytes]]) -> Callable[[Harness], Harness]:
    """Declare the decorated function as the harness of target *name*."""

    def register(fn: Harness) -> Harness:
        if name in _TARGETS:
            raise ValueError(f"fuzz target {name} declared twice")
        _TARGETS[name] = Target(name, fn, seeds, (fn.__doc__ or "").strip())
        return fn

    return register


def all_targets() -> dict[str, Target]:
    for module in MODULES:
        importlib.import_module(module)
    return dict(sorted(_TARGETS.items()))


#: Open findings (see tests/fuzz/findings/ and OPEN_FINDINGS in test_fuzz.py) that harnesses step around, so
#: that a long run explores past them instead of stopping at the same crash again. The findings test
#: empties this set before it replays the reproducers; drop a name once its bug is fixed.
SUPPRESSED: set[str] = set()


def suppressed(name: str) -> bool:
    return name in SUPPRESSED


class LoggedFailure(AssertionError):
    """Code under test logged a failure (``log.failure``): an exception it did not expect."""


class FailureWatch:
    """Turns ``log.failure`` events into findings.

    Protocol adapters catch their handlers' exceptions and log them (so one bad
    peer cannot take the process down); for a fuzzer such a logged traceback is
    exactly the crash to report. Use as a context manager around one input.
    """

    def __init__(self, ignore: Callable[[Any], bool] | None = None) -> None:
        self.failures: list[dict[str, Any]] = []
        self.ignore = ignore

    def __call__(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        if failure is not None and not (self.ignore is not None and self.ignore(failure)):
            self.failures.append(event)

    def __enter__(self) -> FailureWatch:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)
        if self.failures and exc[0] is None:
            event = self.failures[0]
            failure = event["log_failure"]
            text = event.get("log_format", "")
            raise LoggedFailure(f"logged failure ({text}): {failure.getTraceback()}") from failure.value
