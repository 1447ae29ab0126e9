"""HMAC tokens (transport.auth.tokens), shared by chatd and statusd."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from transport.auth.tokens import HMACTokenValidator, check_token, issue_token, load_secret, token_expiry, validate

SECRET = b"s" * 32


def test_layout_is_expiry_then_mac_over_userid_and_expiry() -> None:
    token = issue_token(SECRET, 0x0102, expiry=1000)
    assert token[:8] == (1000).to_bytes(8, "little")
    expected = hmac.new(SECRET, (0x0102).to_bytes(8, "little") + (1000).to_bytes(8, "little"), hashlib.sha256)
    assert token[8:] == expected.digest()
    assert token_expiry(token) == 1000


def test_check() -> None:
    token = issue_token(SECRET, 5, expiry=1000)
    assert check_token(SECRET, 5, token, now=999)
    assert not check_token(SECRET, 5, token, now=1000)  # expired
    assert not check_token(SECRET, 6, token, now=0)  # another user
    assert not check_token(b"other", 5, token, now=0)  # another secret
    assert not check_token(SECRET, 5, token[:-1] + bytes([token[-1] ^ 1]), now=0)  # tampered mac
    assert not check_token(SECRET, 5, (2000).to_bytes(8, "little") + token[8:], now=0)  # extended expiry
    assert not check_token(SECRET, 5, token + b"x", now=0)
    assert not check_token(SECRET, 0, issue_token(SECRET, 5, expiry=1000), now=0)


def test_issue_refuses_user_zero_and_empty_secret() -> None:
    with pytest.raises(ValueError):
        issue_token(SECRET, 0)
    with pytest.raises(ValueError):
        issue_token(b"", 1)


@pytest_twisted.inlineCallbacks
def test_validator_uses_its_clock():
    clock = Clock()
    clock.advance(500)
    validator = HMACTokenValidator(SECRET, clock)
    token = issue_token(SECRET, 9, expiry=600)
    assert (yield validate(validator, 9, token)) is True
    clock.advance(100)
    assert (yield validate(validator, 9, token)) is False


@pytest_twisted.inlineCallbacks
def test_a_failing_validator_means_no():
    class Broken:
        def validate(self, userid: int, token: bytes) -> bool:
            raise RuntimeError("down")

    assert (yield validate(Broken(), 1, b"")) is False


def test_secret_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tokens.key"
    first = load_secret("", path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret("", path) == first
    assert load_secret("literal", path) == b"literal"
