"""The bundled web client in a real headless Chromium against ``twistd -n transport`` with the echo backend.

Register, see the channel list (local and legacy), talk to ``echo`` and see its
typing indicator and its answer, edit and delete an own message, react, then
survive a server restart (the client reconnects with backoff and logs in again
with the token it was given). A screenshot is saved to
``build/test-artifacts/webclient.png`` (or ``$TRANSPORT_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.cdp import Browser
from tests.browser.processes import TwistdInstance

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TRANSPORT_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


@pytest.fixture
def instance(tmp_path) -> Iterator[TwistdInstance]:
    inst = TwistdInstance(tmp_path / "main")
    inst.start()
    yield inst
    inst.stop()


def test_web_client_end_to_end(instance: TwistdInstance, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(instance.http_url)
    page.wait_for("!document.getElementById('login').hidden")
    assert page.text("#login-subtitle") == "Log in or create an account"

    page.fill("#login-username", "newcomer")
    page.fill("#login-password", "correct horse")
    page.click("#register-btn")
    page.wait_for("!document.getElementById('app').hidden")
    assert page.text("#me-name") == "newcomer"

    # channel list: local channels and the echo buddy (online) as a conversation
    page.wait_for("document.querySelector('#channel-list li[data-channel=general]')")
    page.wait_for("document.querySelector('#legacy-list li[data-channel=\"dm:echo\"] .dot.online')")
    names = page.eval("[...document.querySelectorAll('#channel-list li')].map(li => li.dataset.channel)")
    assert names == ["general", "random", "lounge"]

    # talk to echo: its typing indicator, then its answer
    page.click("#legacy-list li[data-channel='dm:echo']")
    page.wait_for("document.getElementById('channel-title').textContent.includes('Echo')")
    page.fill("#composer", "hello from chromium")
    page.wait_for("document.getElementById('typing').textContent === 'echo is typing…'")
    page.click("#send-btn")
    page.wait_for("[...document.querySelectorAll('#message-list .message[data-user=echo] .content')]"
                  ".some(e => e.textContent === 'hello from chromium')")
    page.wait_for("document.getElementById('typing').textContent === ''")

    # edit and delete an own message in a local channel, react to it
    page.click("#channel-list li[data-channel=general]")
    page.fill("#composer", "first draft")
    page.press_enter("#composer")
    own = "#message-list .message[data-user=newcomer]"
    page.wait_for(f"document.querySelector('{own} .content')?.textContent === 'first draft'")
    page.click(f"{own} .act-react")
    page.wait_for(f"document.querySelector('{own} .reactions button.mine')?.textContent === '👍 1'")
    page.click(f"{own} .act-edit")
    page.fill(f"{own} textarea.edit-box", "final text")
    page.press_enter(f"{own} textarea.edit-box")
    page.wait_for(f"document.querySelector('{own} .content')?.textContent === 'final text(edited)'")
    page.fill("#composer", "this one goes away")
    page.press_enter("#composer")
    page.wait_for(f"document.querySelectorAll('{own}').length === 2")
    page.click(f"{own}:last-child .act-delete")
    page.wait_for(f"document.querySelectorAll('{own}').length === 1")

    page.click("#legacy-list li[data-channel='dm:echo']")
    page.wait_for("document.querySelectorAll('#message-list .message').length === 2")
    shot = page.screenshot(ARTIFACTS / "webclient.png")
    assert shot.stat().st_size > 10000

    # the server restarts: the client notices, retries with backoff, logs in again by itself
    instance.stop()
    page.wait_for("document.getElementById('conn-status').textContent.startsWith('Disconnected')")
    instance.start()
    page.wait_for("document.getElementById('conn-status').textContent === 'Connected'", timeout=90)
    page.wait_for("document.querySelector('#legacy-list li[data-channel=\"dm:echo\"] .dot.online')")
    page.fill("#composer", "after the restart")
    page.press_enter("#composer")
    page.wait_for("[...document.querySelectorAll('#message-list .message[data-user=echo] .content')]"
                  ".some(e => e.textContent === 'after the restart')")
    assert page.eval("document.querySelectorAll('#message-list .message').length") == 4  # history kept


def test_login_errors_are_shown(instance: TwistdInstance, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(instance.http_url)
    page.wait_for("!document.getElementById('login').hidden")
    page.fill("#login-username", "ghost")
    page.fill("#login-password", "nope-nope")
    page.click("#login-btn")
    page.wait_for("document.getElementById('login-error').textContent === 'Invalid username or password'")


def test_history_paging_rooms_and_token_login(tmp_path, browser: Browser) -> None:
    inst = TwistdInstance(tmp_path / "paging", "[websocket]\nrate_limit_burst = 1000\nrate_limit_per_minute = 1000\n")
    inst.start()
    try:
        page = browser.new_page()
        page.goto(inst.http_url)
        page.wait_for("!document.getElementById('login').hidden")
        page.fill("#login-username", "pager")
        page.fill("#login-password", "pager-pass")
        page.click("#register-btn")
        page.wait_for("document.querySelector('#channel-list li.active[data-channel=general]')")
        page.eval("for (let i = 0; i < 60; i++) transportClient.ws.send(JSON.stringify("
                  "{cmd: 'message_new', channel: 'general', content: 'line ' + i}))")
        page.wait_for("document.querySelectorAll('#message-list .message').length === 60")

        # a reload logs in again with the stored token and shows the newest 50, older ones on demand
        page.goto(inst.http_url)
        page.wait_for("!document.getElementById('app').hidden")
        page.wait_for("document.querySelectorAll('#message-list .message').length === 50")
        assert page.text("#message-list .message:first-child .content") == "line 10"
        page.wait_for("!document.getElementById('load-older').hidden")
        page.click("#load-older")
        page.wait_for("document.querySelectorAll('#message-list .message').length === 60")
        assert page.text("#message-list .message:first-child .content") == "line 0"
        page.wait_for("document.getElementById('load-older').hidden")

        # join a legacy room from the sidebar; the echo participant answers there
        page.fill("#join-room", "lobby")
        page.eval("document.getElementById('join-form').requestSubmit()")
        page.wait_for("document.querySelector('#legacy-list li.active[data-channel=\"room:lobby\"]')")
        page.wait_for("document.getElementById('channel-desc').textContent.includes('in the room')")
        page.fill("#composer", "hello room")
        page.press_enter("#composer")
        page.wait_for("[...document.querySelectorAll('#message-list .message[data-user=echo] .content')]"
                      ".some(e => e.textContent.endsWith('hello room'))")
    finally:
        inst.stop()
