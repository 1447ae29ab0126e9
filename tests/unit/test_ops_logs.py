"""Logging: levels per subsystem, text and JSON lines, rotation, twistd's choices."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
from twisted.application import service
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure

from transport import config as configuration
from transport.ops.logs import (
    LevelPolicy,
    TransportLogObserver,
    TwistdRoot,
    format_json,
    format_text,
    make_observer,
    open_log_file,
    under_journal,
)


def _event(namespace: str, level: LogLevel = LogLevel.info, fmt: str = "hello {who}", **fields: object) -> dict:
    return {"log_namespace": namespace, "log_level": level, "log_format": fmt, "log_time": 1767323045.678,
            "who": "world", **fields}


def test_policy_longest_prefix_wins() -> None:
    p = LevelPolicy("info", {"transport.backend": "debug", "transport.backend.pool": "error", "backend": "warn"})
    assert p.threshold("transport.backend.link") == "debug"
    assert p.threshold("transport.backend.pool") == "error"
    assert p.threshold("transport.backendish") == "info"  # not a sub-namespace
    assert p.threshold("backend-3") == "warn"              # the backends' output
    assert p.threshold("transport.core.gateway") == "info"
    assert p.allows(_event("transport.backend.link", LogLevel.debug))
    assert not p.allows(_event("transport.backend.pool", LogLevel.warn))
    assert not p.allows(_event("backend-3", LogLevel.info))
    assert not p.allows(_event("transport.core", LogLevel.debug))


def test_policy_update_applies_at_once() -> None:
    p = LevelPolicy("info")
    assert not p.allows(_event("x", LogLevel.debug))  # cached
    p.update("debug", {})
    assert p.allows(_event("x", LogLevel.debug))
    p.update("error", {"x": "warn"})
    assert p.allows(_event("x", LogLevel.warn)) and not p.allows(_event("y", LogLevel.warn))


def test_text_lines() -> None:
    e = _event("transport.core.gateway")
    assert format_text(e) == "2026-01-02T03:04:05.678Z info transport.core.gateway: hello world\n"
    assert format_text(e, timestamps=False, priority_prefix=True) == "<6>info transport.core.gateway: hello world\n"
    assert format_text(_event("n", LogLevel.error), timestamps=False).startswith("error n:")


def test_json_lines_parse_with_failure() -> None:
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        failure = Failure()
    line = format_json(_event("transport.x", LogLevel.critical, "boom for {user}", user="alice", log_failure=failure,
                              obj=object()))
    assert line.endswith("\n") and line.count("\n") == 1
    data = json.loads(line)
    assert data["time"] == "2026-01-02T03:04:05.678Z"
    assert data["level"] == "critical" and data["namespace"] == "transport.x"
    assert data["message"] == "boom for alice"
    assert "ZeroDivisionError" in data["failure"]
    assert data["fields"] == {"who": "world", "user": "alice"}  # scalars only


def test_observer_through_a_real_logger() -> None:
    out = io.StringIO()
    publisher = LogPublisher()
    publisher.addObserver(TransportLogObserver(out, LevelPolicy("info", {"noisy": "error"}), "json"))
    Logger(namespace="quiet", observer=publisher).info("kept {n}", n=1)
    Logger(namespace="quiet", observer=publisher).debug("dropped")
    Logger(namespace="noisy.part", observer=publisher).warn("dropped too")
    Logger(namespace="noisy", observer=publisher).error("kept {n}", n=2)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["kept 1", "kept 2"]


def test_rotation_at_the_configured_size(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "transport.log"
    observer = TransportLogObserver(open_log_file(path, 2000, 2), LevelPolicy("info"), "json")
    publisher = LogPublisher(observer)
    log = Logger(namespace="rot", observer=publisher)
    for i in range(200):
        log.info("line {i} {pad}", i=i, pad="x" * 40)
    observer.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["transport.log", "transport.log.1", "transport.log.2"]  # keep = 2
    line_size = max(len(line) for line in path.read_bytes().splitlines(keepends=True))
    for name in files:
        size = (path.parent / name).stat().st_size
        assert size <= 2000 + line_size, (name, size)
        for line in (path.parent / name).read_text().splitlines():
            json.loads(line)
    assert (path.parent / "transport.log.1").stat().st_size >= 2000  # rotated once it reached the size
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["message"].startswith("line 199 ")


def _config(tmp_path: Path, text: str = "") -> configuration.Config:
    p = tmp_path / "t.ini"
    p.write_text(text)
    return configuration.load(p)


def test_make_observer_follows_the_config_and_twistd(tmp_path: Path) -> None:
    out = io.StringIO()
    # [logging] file wins
    o = make_observer(_config(tmp_path, "[logging]\nfile = logs/x.log\nmax_size = 1KiB\nkeep = 3\n"),
                      {"nodaemon": True, "logfile": "-"})
    assert o is not None and o.log_file is not None
    assert Path(o.log_file.path) == tmp_path / "logs" / "x.log"
    assert o.log_file.rotateLength == 1024 and o.log_file.maxRotatedFiles == 3
    o.close()
    plain = _config(tmp_path)
    # -n without -l: stdout; timestamps unless stdout is the journal
    o = make_observer(plain, {"nodaemon": True, "logfile": ""}, stdout=out, environ={})
    assert o is not None and o.output is out and o.timestamps and not o.priority_prefix
    # -l FILE: that file, rotated as configured
    o = make_observer(plain, {"nodaemon": True, "logfile": str(tmp_path / "l.log")})
    assert o is not None and o.log_file is not None and o.log_file.rotateLength == 10 * 1024 * 1024
    o.close()
    # daemon mode without -l: twistd.log in the working directory, as twistd does
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        o = make_observer(plain, {"nodaemon": False, "logfile": ""})
        assert o is not None and o.log_file is not None and Path(o.log_file.path) == tmp_path / "twistd.log"
        o.close()
        with pytest.raises(SystemExit):
            make_observer(plain, {"nodaemon": False, "logfile": "-"})
    finally:
        os.chdir(cwd)
    # --syslog / --logger: left to twistd
    assert make_observer(plain, {"syslog": True}) is None
    assert make_observer(plain, {"logger": "x.y"}) is None
    # not under twistd: stdout
    o = make_observer(_config(tmp_path, "[logging]\ntimestamps = no\nformat = json\n"), None, stdout=out)
    assert o is not None and o.output is out and o.format == "json" and not o.timestamps


def test_journal_stream_detection(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as f:
        st = os.fstat(f.fileno())
        assert under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f)
        assert not under_journal({"JOURNAL_STREAM": "1:2"}, f)
        assert not under_journal({}, f)
        o = make_observer(_config(tmp_path), {"nodaemon": True}, stdout=f,  # type: ignore[arg-type]
                          environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert o is not None and not o.timestamps and o.priority_prefix


def test_twistd_root_sets_the_application_observer() -> None:
    observer = TransportLogObserver(sys.stdout, LevelPolicy())
    application = service.Application("transport")
    root = TwistdRoot(observer)
    root.setServiceParent(application)
    assert application.getComponent(ILogObserver) is observer
    assert root in list(service.IServiceCollection(application))
