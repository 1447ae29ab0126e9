"""GatewayStore on both engines (the ``database`` fixture runs every test on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from transport.storage.crypto import EncryptionError, WrongEncryptionKey
from transport.storage.database import Database
from transport.storage.gateway import MIGRATIONS, BuddyRecord, GatewayStore, RoomRecord, UserRecord

pytestmark = pytest.mark.integration

KEY = "a long and secret passphrase"


def has_result(d: defer.Deferred[Any]) -> bool:
    """Whether *d* already has its result (without consuming it)."""
    seen: list[bool] = []

    def mark(result: Any) -> Any:
        seen.append(True)
        return result
    d.addBoth(mark)
    return bool(seen)


@pytest_twisted.inlineCallbacks
def started(database: Database, key: str = "") -> Any:
    store = GatewayStore(database, encryption_key=key)
    yield store.start()
    return store


@pytest_twisted.inlineCallbacks
def test_users_crud(database: Database) -> Any:
    store = yield started(database)
    assert (yield store.get_user("alice@example.org")) is None
    alice = yield store.register_user("alice@example.org", "alice_legacy", "pw1", extra='{"x": 1}')
    assert isinstance(alice, UserRecord)
    assert (alice.jid, alice.legacy_name, alice.password, alice.extra) == (
        "alice@example.org", "alice_legacy", "pw1", '{"x": 1}')
    bob = yield store.register_user("bob@example.org", "bob", "")
    assert bob.id != alice.id
    assert (yield store.get_user("alice@example.org")) == alice
    assert (yield store.get_user_by_id(bob.id)) == bob
    assert (yield store.get_user_by_id(bob.id + alice.id + 1000)) is None
    assert (yield store.all_users()) == [alice, bob]
    assert (yield store.count_users()) == 2
    assert (yield store.unregister_user("alice@example.org")) is True
    assert (yield store.unregister_user("alice@example.org")) is False
    assert (yield store.all_users()) == [bob]


@pytest_twisted.inlineCallbacks
def test_unicode_everywhere(database: Database) -> Any:
    store = yield started(database, KEY)
    names = ["Ünïcødé 名前", "emoji 😀🎉", "rtl עברית", "quote ' \" \\ ; --", "tab\tnew\nline", "％ ? %s"]
    for i, name in enumerate(names):
        user = yield store.register_user(f"u{i}@例え.jp", name, f"pässwörd {name}")
        yield store.set_setting(user.id, f"clé {name}", name)
        yield store.upsert_buddy(user.id, BuddyRecord(name, alias=name, groups=(name, "Friends"), subscription="to"))
        yield store.add_room(user.id, f"#{name}", name, password=name)
    for i, name in enumerate(names):
        user = yield store.get_user(f"u{i}@例え.jp")
        assert user.legacy_name == name and user.password == f"pässwörd {name}"
        assert (yield store.get_settings(user.id)) == {f"clé {name}": name}
        assert (yield store.get_buddies(user.id)) == [BuddyRecord(name, name, (name, "Friends"), "to", 0)]
        assert (yield store.get_rooms(user.id)) == [RoomRecord(f"#{name}", name, name)]


@pytest_twisted.inlineCallbacks
def test_settings(database: Database) -> Any:
    store = yield started(database)
    user = yield store.register_user("a@x", "a", "p")
    other = yield store.register_user("b@x", "b", "p")
    assert (yield store.get_settings(user.id)) == {}
    yield store.set_setting(user.id, "send_headlines", "1")
    yield store.set_setting(user.id, "stay_connected", "0")
    yield store.set_setting(user.id, "send_headlines", "0")
    yield store.set_setting(other.id, "send_headlines", "1")
    assert (yield store.get_settings(user.id)) == {"send_headlines": "0", "stay_connected": "0"}
    assert (yield store.remove_setting(user.id, "stay_connected")) is True
    assert (yield store.remove_setting(user.id, "stay_connected")) is False
    assert (yield store.get_settings(user.id)) == {"send_headlines": "0"}
    assert (yield store.get_settings(other.id)) == {"send_headlines": "1"}


@pytest_twisted.inlineCallbacks
def test_buddies(database: Database) -> Any:
    store = yield started(database)
    user = yield store.register_user("a@x", "a", "p")
    other = yield store.register_user("b@x", "b", "p")
    yield store.upsert_buddy(user.id, BuddyRecord("zed"))
    yield store.upsert_buddy(user.id, BuddyRecord("amy", "Amy A.", ("Work", "Friends"), "both", 3))
    yield store.upsert_buddy(other.id, BuddyRecord("amy", "other's amy"))
    assert (yield store.get_buddies(user.id)) == [
        BuddyRecord("amy", "Amy A.", ("Work", "Friends"), "both", 3),
        BuddyRecord("zed", "", (), "both", 0),
    ]
    yield store.upsert_buddy(user.id, BuddyRecord("amy", "Amy", (), "from", 1))
    buddies = yield store.get_buddies(user.id)
    assert buddies[0] == BuddyRecord("amy", "Amy", (), "from", 1)
    assert (yield store.remove_buddy(user.id, "amy")) is True
    assert (yield store.remove_buddy(user.id, "amy")) is False
    assert [b.name for b in (yield store.get_buddies(user.id))] == ["zed"]
    assert (yield store.get_buddies(other.id)) == [BuddyRecord("amy", "other's amy")]


@pytest_twisted.inlineCallbacks
def test_rooms(database: Database) -> Any:
    store = yield started(database)
    user = yield store.register_user("a@x", "a", "p")
    yield store.add_room(user.id, "#python", "alice")
    yield store.add_room(user.id, "#secret", "al", password="door")
    yield store.add_room(user.id, "#python", "alice2")
    assert (yield store.get_rooms(user.id)) == [RoomRecord("#python", "alice2", ""),
                                                RoomRecord("#secret", "al", "door")]
    assert (yield store.remove_room(user.id, "#python")) is True
    assert (yield store.remove_room(user.id, "#python")) is False
    assert (yield store.get_rooms(user.id)) == [RoomRecord("#secret", "al", "door")]


@pytest_twisted.inlineCallbacks
def test_unregister_cascades(database: Database) -> Any:
    store = yield started(database)
    user = yield store.register_user("a@x", "a", "p")
    keep = yield store.register_user("b@x", "b", "p")
    for uid in (user.id, keep.id):
        yield store.set_setting(uid, "k", "v")
        yield store.upsert_buddy(uid, BuddyRecord("friend"))
        yield store.add_room(uid, "#room", "nick")
    assert (yield store.unregister_user("a@x")) is True
    for table in ("gateway_settings", "gateway_buddies", "gateway_rooms"):
        rows = yield database.run_query(f"SELECT user_id FROM {table}")
        assert rows == [(keep.id,)], table
    again = yield store.register_user("a@x", "a", "p")
    assert again.id != user.id
    assert (yield store.get_settings(again.id)) == {}
    assert (yield store.get_buddies(again.id)) == []
    assert (yield store.get_rooms(again.id)) == []


@pytest_twisted.inlineCallbacks
def test_reregister_updates(database: Database) -> Any:
    store = yield started(database)
    first = yield store.register_user("a@x", "legacy", "old", extra="e1")
    yield store.set_setting(first.id, "k", "v")
    yield store.upsert_buddy(first.id, BuddyRecord("friend"))
    yield store.add_room(first.id, "#room", "nick")
    # same legacy account, new password: everything kept
    second = yield store.register_user("a@x", "legacy", "new")
    assert second == UserRecord(first.id, "a@x", "legacy", "new", "")
    assert (yield store.get_user("a@x")) == second
    assert (yield store.get_buddies(first.id)) == [BuddyRecord("friend")]
    # another legacy account: its buddies and rooms were the old account's; settings stay
    third = yield store.register_user("a@x", "someone_else", "pw3")
    assert third.id == first.id and third.legacy_name == "someone_else"
    assert (yield store.get_buddies(first.id)) == []
    assert (yield store.get_rooms(first.id)) == []
    assert (yield store.get_settings(first.id)) == {"k": "v"}
    assert (yield store.count_users()) == 1


@pytest_twisted.inlineCallbacks
def test_start_twice_and_versions(database: Database) -> Any:
    store = yield started(database, KEY)
    user = yield store.register_user("a@x", "a", "secret")
    yield store.start()  # a second start of the same store is a no-op
    again = yield started(database, KEY)  # a restart: migrations already applied, key verified
    assert (yield again.get_user("a@x")) == user
    versions = yield database.schema_versions()
    assert versions["gateway"] == max(m.version for m in MIGRATIONS)
    rows = yield database.run_query("SELECT version FROM schema_versions WHERE component = ?", ("gateway",))
    assert rows == [(versions["gateway"],)]


@pytest_twisted.inlineCallbacks
def test_calls_wait_for_start_and_need_it(database: Database) -> Any:
    store = GatewayStore(database)
    with pytest.raises(RuntimeError, match="start"):
        yield store.get_user("a@x")
    starting = store.start()
    pending = store.register_user("a@x", "a", "p")  # queued behind start()
    assert not has_result(starting) and not has_result(pending)
    user = yield pending
    yield starting
    assert (yield store.get_user("a@x")) == user


@pytest_twisted.inlineCallbacks
def test_password_encrypted_at_rest(database: Database) -> Any:
    store = yield started(database, KEY)
    assert store.encrypted
    user = yield store.register_user("a@x", "legacy", "hunter2 plaintext")
    yield store.add_room(user.id, "#r", "nick", password="room door key")
    rows = yield database.run_query("SELECT password FROM gateway_users")
    stored = rows[0][0]
    assert "hunter2" not in stored and stored.startswith("enc1:")
    rows = yield database.run_query("SELECT password FROM gateway_rooms")
    assert "door" not in rows[0][0] and rows[0][0].startswith("enc1:")
    assert (yield store.get_user("a@x")).password == "hunter2 plaintext"
    assert (yield store.all_users())[0].password == "hunter2 plaintext"
    assert (yield store.get_rooms(user.id)) == [RoomRecord("#r", "nick", "room door key")]
    # a ciphertext moved to another user's row does not decrypt (bound to the JID)
    other = yield store.register_user("b@x", "b", "other")
    yield database.run_operation("UPDATE gateway_users SET password = ? WHERE id = ?", (stored, other.id))
    with pytest.raises(EncryptionError):
        yield store.get_user("b@x")


@pytest_twisted.inlineCallbacks
def test_plaintext_without_key(database: Database) -> Any:
    store = yield started(database)
    assert not store.encrypted
    yield store.register_user("a@x", "legacy", "visible")
    rows = yield database.run_query("SELECT password FROM gateway_users")
    assert rows == [("visible",)]


@pytest_twisted.inlineCallbacks
def test_plaintext_that_looks_encrypted_is_refused_without_key(database: Database) -> Any:
    """Stored as it is it would read back as a ciphertext and break every listing of the users."""
    store = yield started(database)
    alice = yield store.register_user("a@x", "alice", "pw")
    with pytest.raises(EncryptionError):
        yield store.register_user("m@x", "mallory", "enc1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    with pytest.raises(EncryptionError):
        yield store.add_room(alice.id, "#r", "n", password="enc1:x")
    assert [u.jid for u in (yield store.all_users())] == ["a@x"]
    assert (yield store.get_rooms(alice.id)) == []
    keyed = yield started(database, KEY)  # with a key it is just a password
    mallory = yield keyed.register_user("m@x", "mallory", "enc1:x")
    assert (yield keyed.get_user("m@x")).password == "enc1:x" and mallory.password == "enc1:x"


@pytest_twisted.inlineCallbacks
def test_wrong_or_missing_key_is_a_clear_error(database: Database) -> Any:
    store = yield started(database, KEY)
    yield store.register_user("a@x", "legacy", "secret")
    wrong = GatewayStore(database, encryption_key="not the key")
    with pytest.raises(WrongEncryptionKey, match="encryption_key does not match"):
        yield wrong.start()
    with pytest.raises(WrongEncryptionKey):  # and every later call says so too
        yield wrong.get_user("a@x")
    missing = GatewayStore(database)
    with pytest.raises(EncryptionError, match="encryption_key is not set"):
        yield missing.start()


@pytest_twisted.inlineCallbacks
def test_setting_a_key_encrypts_existing_passwords(database: Database) -> Any:
    plain = yield started(database)
    user = yield plain.register_user("a@x", "legacy", "was plain")
    yield plain.add_room(user.id, "#r", "n", password="room pw")
    yield plain.register_user("b@x", "nopw", "")
    store = yield started(database, KEY)
    rows = yield database.run_query("SELECT jid, password FROM gateway_users ORDER BY id")
    assert rows[0][1].startswith("enc1:") and "plain" not in rows[0][1]
    assert rows[1] == ("b@x", "")
    rows = yield database.run_query("SELECT password FROM gateway_rooms")
    assert rows[0][0].startswith("enc1:")
    assert (yield store.get_user("a@x")).password == "was plain"
    assert (yield store.get_rooms(user.id)) == [RoomRecord("#r", "n", "room pw")]


@pytest_twisted.inlineCallbacks
def test_many_registrations_at_once(database: Database) -> Any:
    store = yield started(database, KEY)
    n = 100
    calls = [store.register_user(f"user{i}@x", f"legacy{i}", f"pw{i}") for i in range(n)]
    calls += [store.register_user("same@x", "same", f"pw{i}") for i in range(20)]
    users = yield defer.gatherResults(calls, consumeErrors=True)
    distinct = {u.id for u in users[:n]}
    assert len(distinct) == n
    assert len({u.id for u in users[n:]}) == 1
    all_users = yield store.all_users()
    assert len(all_users) == n + 1
    assert {u.jid: u.password for u in all_users if u.jid != "same@x"} == {f"user{i}@x": f"pw{i}" for i in range(n)}
    same = yield store.get_user("same@x")
    assert same.password in {f"pw{i}" for i in range(20)}
    # concurrent buddy updates for one user
    yield defer.gatherResults([store.upsert_buddy(same.id, BuddyRecord(f"b{i % 10}", alias=str(i)))
                               for i in range(60)], consumeErrors=True)
    assert [b.name for b in (yield store.get_buddies(same.id))] == [f"b{i}" for i in range(10)]


@pytest_twisted.inlineCallbacks
def test_calls_return_unfired_deferreds(database: Database) -> Any:
    store = yield started(database)
    d = store.register_user("a@x", "a", "p")
    assert isinstance(d, defer.Deferred) and not has_result(d)
    user = yield d
    calls = [store.get_user("a@x"), store.get_settings(user.id), store.get_buddies(user.id),
             store.get_rooms(user.id), store.all_users()]
    assert [has_result(call) for call in calls] == [False] * len(calls)
    yield defer.gatherResults(calls, consumeErrors=True)


@pytest_twisted.inlineCallbacks
def test_two_instances_set_up_encryption_at_once(database: Database) -> Any:
    first, second = GatewayStore(database, KEY), GatewayStore(database, KEY)
    yield defer.gatherResults([first.start(), second.start()], consumeErrors=True)
    user = yield first.register_user("a@x", "a", "shared secret")
    assert (yield second.get_user("a@x")) == user
    rows = yield database.run_query("SELECT COUNT(*) FROM gateway_meta WHERE name = 'kdf_salt'")
    assert rows == [(1,)]
