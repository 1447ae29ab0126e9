"""Headless Chromium (Debian's ``/usr/bin/chromium``) driven over the DevTools protocol.

No browser download and no Node: the test starts Chromium with a fresh
``--user-data-dir`` and ``--remote-debugging-port=0``, reads the port from the
``DevToolsActivePort`` file Chromium writes, and speaks CDP over a WebSocket
(the ``websockets`` package). :class:`Page` offers what the tests need:
navigate, evaluate JavaScript, wait for a JavaScript condition (polled inside
the page, so no sleeping in the test), and screenshots.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = os.environ.get("TRANSPORT_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1280,800"]


class CDPError(Exception):
    pass


class Browser:
    """One Chromium process and the DevTools connection to it."""

    def __init__(self) -> None:
        if not Path(CHROMIUM).exists():
            raise RuntimeError(f"Chromium is not installed at {CHROMIUM} (Debian package chromium; "
                               "see scripts/install-test-deps)")
        self.profile = Path(tempfile.mkdtemp(prefix="transport-chromium-"))
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.05)  # waiting for the browser process to start
        port, path = port_file.read_text().splitlines()[:2]
        self.ws: ClientConnection = connect(f"ws://127.0.0.1:{port}{path}", max_size=64 * 1024 * 1024,
                                            open_timeout=30)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {method}")
            answer = json.loads(self.ws.recv(timeout=remaining))
            if answer.get("id") == msg_id:
                if "error" in answer:
                    raise CDPError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            self.events.append(answer)
            del self.events[:-500]

    def new_page(self, isolated: bool = False) -> Page:
        params: dict[str, Any] = {"url": "about:blank"}
        if isolated:
            params["browserContextId"] = self.call("Target.createBrowserContext")["browserContextId"]
        target = self.call("Target.createTarget", params)["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Runtime.enable")
        return page

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        return self.browser.call(method, params, self.session, timeout)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'")

    def eval(self, expression: str, timeout: float = 60.0) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, timeout)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result.get("result", {}).get("value")

    def wait_for(self, condition: str, timeout: float = 60.0) -> Any:
        """Wait until the JavaScript expression *condition* is truthy (polled in the page); its value."""
        script = f"""new Promise((resolve, reject) => {{
            const deadline = Date.now() + {int(timeout * 1000)};
            const check = () => {{
                let value;
                try {{ value = ({condition}); }} catch (e) {{ value = undefined; }}
                if (value) resolve(value);
                else if (Date.now() > deadline) reject(new Error("timed out waiting for: " + {json.dumps(condition)}));
                else setTimeout(check, 50);
            }};
            check();
        }})"""
        return self.eval(script, timeout + 10)

    def fill(self, selector: str, value: str) -> None:
        self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.focus(); e.value = {json.dumps(value)};
            e.dispatchEvent(new Event('input', {{bubbles: true}})); }})()""")

    def click(self, selector: str) -> None:
        self.wait_for(f"document.querySelector({json.dumps(selector)})")
        self.eval(f"document.querySelector({json.dumps(selector)}).click()")

    def press_enter(self, selector: str) -> None:
        self.eval(f"""document.querySelector({json.dumps(selector)}).dispatchEvent(
            new KeyboardEvent('keydown', {{key: 'Enter', bubbles: true}}))""")

    def text(self, selector: str) -> str:
        return str(self.eval(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"))

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
