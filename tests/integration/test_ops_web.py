"""Metrics, status page and SIGHUP against a real gateway (echo backend processes, real HTTP, real signal).

The gateway runs in the test's reactor (tests/peers/backends.py's TestGateway:
the real pool spawning ``python -m transport_backends.echo``, SQLite, a
recording frontend); the ops service and the web site are the ones
``twistd transport`` builds. Chromium (Debian's, headless) renders the status
page; the screenshot is kept in ``build/test-artifacts/`` (or
``$TRANSPORT_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, endpoints, reactor, utils
from twisted.web import server

from tests.peers.backends import ECHO, TestGateway, _kill_quietly, wait_until
from transport import config as configuration
from transport.core import events as ev
from transport.core.gateway import RegistrationRefused
from transport.ops.logs import LevelPolicy
from transport.ops.service import OpsService, make_service
from transport.service import ServiceContext
from transport.web.site import WebRoot

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "status-token-123"


def _ini(tmp_path: Path, extra: str = "") -> str:
    return (f"[service]\nbackend = {ECHO}\nstate_dir = {tmp_path / 'state'}\nweb_port = tcp:0\n"
            f"admin_token = {TOKEN}\nping_interval = 0.3\nusers_per_backend = 10\n"
            f"[monitoring]\nsample_interval = 1\n[logging]\nlevel = info\n{extra}")


class Instance:
    """A gateway, its ops service and a web site on a free loopback port."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.gw = TestGateway(configuration.load(path))
        self.web_root = WebRoot()
        self.context = ServiceContext(config=self.gw.config, reactor=reactor, database=self.gw.database,
                                      web_root=self.web_root, gateway=self.gw.gateway,
                                      registry={"backend_pool": self.gw.pool})
        self.ops = make_service(self.context)
        assert isinstance(self.ops, OpsService)
        self.ops.policy = LevelPolicy.from_config(self.gw.config)
        self.port: Any = None

    @defer.inlineCallbacks
    def start(self) -> Any:
        yield self.gw.start()
        self.ops.startService()
        endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
        self.port = yield endpoint.listen(server.Site(self.web_root))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    @defer.inlineCallbacks
    def stop(self) -> Any:
        if self.ops.running:
            self.ops.stopService()
        if self.port is not None:
            yield self.port.stopListening()
        pids = self.gw.backend_pids()
        yield self.gw.stop()
        for pid in pids:
            _kill_quietly(pid)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Callable[[str], defer.Deferred[Instance]]]:
    made: list[Instance] = []

    @defer.inlineCallbacks
    def make(extra: str = "") -> Any:
        path = tmp_path / "transport.ini"
        path.write_text(_ini(tmp_path, extra))
        inst = Instance(path)
        made.append(inst)
        yield inst.start()
        return inst

    yield make
    for inst in made:
        pytest_twisted.blockon(inst.stop())


def _basic(password: str, user: str = "admin") -> dict[str, list[str]]:
    return {"Authorization": ["Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()]}


@defer.inlineCallbacks
def _scrape(url: str) -> Any:
    response = yield treq.get(url + "/metrics")
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type")[0].startswith("text/plain")
    text = yield response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return families


def _value(families: dict[str, Any], name: str, **labels: str) -> float:
    for sample in families[name].samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()) and not sample.name.endswith("_created"):
            return float(sample.value)
    raise KeyError(f"{name} {labels}")


@defer.inlineCallbacks
def _login_and_chat(inst: Instance, users: list[str], messages: int) -> Any:
    for user in users:
        yield inst.gw.login(user)
    frontend = inst.gw.frontend
    for user in users:
        for i in range(messages):
            yield inst.gw.gateway.send_message(user, "echo", f"hello {i}")
    yield wait_until(lambda: len(frontend.of(ev.MessageReceived)) >= len(users) * messages, timeout=60)


@pytest_twisted.inlineCallbacks
def test_metrics_parse_and_move_with_traffic(instance: Callable[..., Any]) -> Any:
    inst = yield instance()
    yield wait_until(lambda: inst.gw.pool.ready_backends(), timeout=60)
    before = yield _scrape(inst.url)
    for family in ("transport_users_online", "transport_sessions", "transport_backends", "transport_backend_users",
                   "transport_backend_memory_bytes", "transport_messages", "transport_queued_messages",
                   "transport_backend_frames", "transport_backend_frames_skipped", "transport_backend_crashes",
                   "transport_backend_ping_latency_seconds", "transport_main_memory_bytes", "transport_info",
                   "process_cpu_seconds"):
        assert family in before, family
    assert _value(before, "transport_users_online") == 0
    assert _value(before, "transport_backends", state="running") == 1
    frames_before = _value(before, "transport_backend_frames", direction="out")

    yield _login_and_chat(inst, ["alice@example.org", "bob@example.org"], 5)
    # a periodic PING answered after the logins: latency is known
    yield wait_until(lambda: all(b.ping_latency is not None for b in inst.gw.pool.ready_backends()), timeout=30)
    after = yield _scrape(inst.url)
    assert _value(after, "transport_users_online") == 2
    assert _value(after, "transport_sessions", frontend="test") == 2
    assert _value(after, "transport_users", state="online") == 2
    assert _value(after, "transport_backend_users", backend="backend-1") == 2
    assert _value(after, "transport_messages", direction="from_frontend") == 10
    assert _value(after, "transport_messages", direction="to_frontend") >= 10
    assert _value(after, "transport_frontend_messages_delivered", frontend="test") >= 10
    assert _value(after, "transport_logins") == 2
    assert _value(after, "transport_backend_frames", direction="out") >= frames_before + 10
    assert _value(after, "transport_backend_link_frames", backend="backend-1", direction="in") >= 10
    assert _value(after, "transport_backend_memory_bytes", backend="backend-1", kind="resident") > 1024 * 1024
    assert 0 <= _value(after, "transport_backend_ping_latency_seconds", backend="backend-1") < 30
    assert _value(after, "transport_main_memory_bytes", kind="resident") > 1024 * 1024
    assert _value(after, "transport_queued_messages") == 0
    assert _value(after, "transport_backend_crashes") == 0

    # a crash is counted, the backend's users move on
    inst.gw.pool.kill(1, "killed by the test")
    crashed = yield _scrape(inst.url)
    assert _value(crashed, "transport_backend_crashes") == 1
    assert _value(crashed, "transport_users", state="reconnecting") == 2
    yield wait_until(lambda: len(inst.gw.gateway.online_users()) == 2, timeout=60)  # logged in again elsewhere
    again = yield _scrape(inst.url)
    assert _value(again, "transport_relogins") == 2 and _value(again, "transport_users_online") == 2


@pytest_twisted.inlineCallbacks
def test_metrics_auth_when_asked(instance: Callable[..., Any]) -> Any:
    inst = yield instance("[monitoring]\nmetrics_auth = true\n")
    anonymous = yield treq.get(inst.url + "/metrics")
    assert anonymous.code == 401
    yield anonymous.content()
    bearer = yield treq.get(inst.url + "/metrics", headers={"Authorization": [f"Bearer {TOKEN}"]})
    assert bearer.code == 200
    text = yield bearer.text()
    assert "transport_users_online" in text


@pytest_twisted.inlineCallbacks
def test_status_page_needs_the_token_and_shows_the_gateway(instance: Callable[..., Any]) -> Any:
    inst = yield instance()
    yield _login_and_chat(inst, ["carol@example.org"], 3)
    for headers in ({}, _basic("wrong"), {"Authorization": ["Bearer nope"]}):
        for path in ("/status", "/status/", "/status/data.json", "/status/status.js"):
            r = yield treq.get(inst.url + path, headers=headers)
            body = yield r.content()
            assert r.code == 401, (path, headers)
            assert TOKEN.encode() not in body
            if not headers:
                assert r.headers.getRawHeaders("www-authenticate")[0].startswith("Basic ")
    page = yield treq.get(inst.url + "/status/", headers=_basic(TOKEN))
    html = yield page.text()
    assert page.code == 200 and "<svg id=\"chart-users\"" in html and "status.js" in html
    assert "http" not in re.sub(r"http://www.w3.org/2000/svg", "", html).replace("../metrics", "")  # no CDN
    redirect = yield treq.get(inst.url + "/status", headers=_basic(TOKEN), allow_redirects=False)
    assert redirect.code == 302 and redirect.headers.getRawHeaders("location") == ["/status/"]
    yield redirect.content()
    for name in ("status.js", "status.css"):
        r = yield treq.get(f"{inst.url}/status/{name}", headers=_basic(TOKEN))
        assert r.code == 200
        yield r.content()
    inst.ops.sampler.sample()
    r = yield treq.get(inst.url + "/status/data.json", headers={"Authorization": [f"Bearer {TOKEN}"]})
    data = yield r.json()
    assert data["online"] == ["carol@example.org"] and data["online_count"] == 1
    [backend] = data["backends"]
    assert backend["name"] == "backend-1" and backend["users"] == ["carol@example.org"]
    assert backend["state"] == "ready" and backend["memory_kib"] > 1000
    series = data["series"]
    assert len(series["t"]) >= 2 and series["users_online"][-1] == 1
    assert all(len(v) == len(series["t"]) for v in series.values())


@pytest_twisted.inlineCallbacks
def test_status_page_without_a_token_is_closed(tmp_path: Path) -> Any:
    path = tmp_path / "t.ini"
    path.write_text(_ini(tmp_path).replace(f"admin_token = {TOKEN}\n", ""))
    inst = Instance(path)
    try:
        yield inst.start()
        r = yield treq.get(inst.url + "/status/", headers=_basic(""))
        assert r.code == 403
        yield r.content()
    finally:
        yield inst.stop()


@pytest_twisted.inlineCallbacks
def test_sighup_applies_log_level_and_registration_without_dropping_users(instance: Callable[..., Any]) -> Any:
    inst = yield instance()
    gateway = inst.gw.gateway
    yield _login_and_chat(inst, ["dave@example.org"], 1)
    pids = inst.gw.backend_pids()
    events_before = len(inst.gw.frontend.events)
    text = inst.path.read_text().replace("level = info", "level = warn\nlevels = transport.backend:debug")
    text += "[registration]\nusername_mask = ^.*@example\\.org$\nenable_public_registration = false\n"
    text = text.replace("users_per_backend = 10", "users_per_backend = 1").replace("ping_interval = 0.3",
                                                                                   "ping_interval = 9")
    inst.path.write_text(text)
    os.kill(os.getpid(), signal.SIGHUP)  # the real signal, through the handler the service installed
    yield wait_until(lambda: inst.ops.reloader.last is not None, timeout=10)
    result = inst.ops.reloader.last
    assert result is not None and result.ok
    assert {c.name for c in result.restart} == {"[service] ping_interval"}
    assert inst.ops.policy is not None and inst.ops.policy.threshold("transport.core.gateway") == "warn"
    assert inst.ops.policy.threshold("transport.backend.pool") == "debug"
    # the new registration policy is in force
    with pytest.raises(RegistrationRefused):
        yield gateway.register("eve@example.org", "eve", "")
    yield gateway.register("eve@example.org", "eve", "", admin=True)
    with pytest.raises(RegistrationRefused):
        yield gateway.register("mallory@elsewhere.net", "mallory", "", admin=True)
    # nobody was dropped: same backend processes, no Reconnecting/Disconnected, still chatting
    assert inst.gw.backend_pids() == pids
    assert gateway.online_users() == ["dave@example.org"]
    new_events = inst.gw.frontend.events[events_before:]
    assert not [e for e in new_events if isinstance(e, ev.Reconnecting | ev.Disconnected)]
    yield gateway.send_message("dave@example.org", "echo", "still here")
    yield inst.gw.frontend.wait_for(lambda e: isinstance(e, ev.MessageReceived) and "still here" in e.body)
    # users_per_backend applies to the next assignment: a second user needs a second backend now
    yield gateway.session_opened(inst.gw.frontend, "eve@example.org", "s1", 4)
    yield inst.gw.frontend.wait_for(lambda e: isinstance(e, ev.Connected) and e.user == "eve@example.org")
    assert len(inst.gw.pool.ready_backends()) == 2
    assert inst.gw.pool.backend_of("eve@example.org") != inst.gw.pool.backend_of("dave@example.org")
    assert inst.gw.config.get("service", "ping_interval") == 0.3  # needs a restart: unchanged


def _artifacts_dir() -> Path:
    path = Path(os.environ.get("TRANSPORT_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--virtual-time-budget=8000", "--window-size=1200,1100"]


@pytest_twisted.inlineCallbacks
def test_status_page_renders_in_chromium(instance: Callable[..., Any]) -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (scripts/install-test-deps)"
    inst = yield instance()
    yield _login_and_chat(inst, ["frank@example.org", "grace@example.org"], 4)
    for _ in range(3):
        inst.ops.sampler.sample()
    url = f"http://admin:{TOKEN}@127.0.0.1:{inst.port.getHost().port}/status/"
    profile = tempfile.mkdtemp(prefix="transport-chromium-")
    try:
        flags = CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]
        out, err, code = yield utils.getProcessOutputAndValue(chromium, [*flags, "--dump-dom", url],
                                                              env=dict(os.environ))
        dom = out.decode("utf-8", "replace")
        assert code == 0, err.decode(errors="replace")[-2000:]
        assert 'data-loaded="1"' in dom, dom[:3000]
        assert "backend-1" in dom and "frank@example.org" in dom and "grace@example.org" in dom
        assert dom.count("<polyline") >= 5  # users, in, out, backends, memory
        shot = _artifacts_dir() / "status-page.png"
        shot.unlink(missing_ok=True)
        out, err, code = yield utils.getProcessOutputAndValue(chromium, [*flags, f"--screenshot={shot}", url],
                                                              env=dict(os.environ))
        assert code == 0, err.decode(errors="replace")[-2000:]
        assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10000
        # anonymous: the browser gets the 401, not the page
        anon = [*flags, "--dump-dom", url.replace(f"admin:{TOKEN}@", "")]
        out, err, code = yield utils.getProcessOutputAndValue(chromium, anon, env=dict(os.environ))
        assert "frank@example.org" not in out.decode("utf-8", "replace")
        assert "data-loaded" not in out.decode("utf-8", "replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
