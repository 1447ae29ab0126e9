"""The echo backend: a legacy network where everyone repeats what you say.

It needs no account anywhere, which makes it the out-of-the-box backend and the
reference for the protocol:

* any login succeeds, except a legacy name or password containing ``fail``
  (answered with DISCONNECTED / AUTHENTICATION_FAILED, to exercise failure paths);
* the roster holds one online buddy, ``echo`` ("Echo"); a message to any buddy
  comes back from that buddy, with a receipt (CONV_MESSAGE_ACK) when it had an id;
  chat states and attention come back too;
* any room name can be joined (rooms are ad hoc); the participant ``echo`` is in
  every room and repeats each message; the user's own message is reflected first,
  as a room reflects it; subjects can be set;
* vCards are answered (full name, nickname, a generated PNG photo);
* features announced with BACKEND_CONFIG: receipts and MUC, no password needed;
  the room list offers ``echo``.

Run it as ``transport-backend-echo`` or ``python -m transport_backends.echo``
with the standard backend arguments (``--host H --port P CONFIG``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from transport.backend import transport_pb2 as pb
from transport.sdk import NetworkPlugin, Shutdown, run

from .png import echo_avatar

ECHO = "echo"
ECHO_ALIAS = "Echo"
ECHO_GROUP = "Echo"
ECHO_ROOM = "echo"
ECHO_ROOM_SUBJECT = "Everything said here is said again"
#: Generated vCard photos kept (by buddy name).
AVATAR_CACHE = 256

FEATURES = {
    "features": {"receipts": 1, "muc": 1},
    "registration": {"needPassword": 0},
}


class EchoBackend(NetworkPlugin):
    """Every user gets their own echo: a buddy, rooms, and their vCard."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        #: user JID -> legacy name, for the users logged in here
        self.users: dict[str, str] = {}
        #: (user, room) -> the user's nickname there
        self.rooms: dict[tuple[str, str], str] = {}
        #: (user, room) -> (subject, who set it)
        self.subjects: dict[tuple[str, str], tuple[str, str]] = {}
        #: user -> their own vCard, as last updated
        self.own_vcards: dict[str, pb.VCard] = {}
        self._avatars: dict[str, bytes] = {}

    # life cycle

    def backend_connected(self) -> None:
        self.send_backend_config(FEATURES)
        self.send_room_list([ECHO_ROOM], ["Echo room"])

    def backend_stopped(self, shutdown: Shutdown) -> None:
        self.users.clear()
        self.rooms.clear()

    # accounts

    def handle_login(self, login: pb.Login) -> None:
        if "fail" in login.legacyName.lower() or "fail" in login.password.lower():
            self.log.info("refusing login of {user} (asked to fail)", user=login.user)
            self.send_disconnected(
                login.user, pb.CONNECTION_ERROR_AUTHENTICATION_FAILED, "the echo network refuses this account"
            )
            return
        self.users[login.user] = login.legacyName
        self.log.info("{user} logged in as {name}", user=login.user, name=login.legacyName)
        self.send_connected(login.user)
        self.send_buddy_changed(
            login.user,
            ECHO,
            alias=ECHO_ALIAS,
            groups=[ECHO_GROUP],
            status=pb.STATUS_ONLINE,
            status_message="I repeat everything",
        )

    def handle_logout(self, logout: pb.Logout) -> None:
        self.users.pop(logout.user, None)
        for key in [key for key in self.rooms if key[0] == logout.user]:
            del self.rooms[key]
        self.log.info("{user} logged out", user=logout.user)

    def handle_status_changed(self, status: pb.Status) -> None:
        self.log.info(
            "{user} is now {status} ({message!r})",
            user=status.userName,
            status=pb.StatusType.Name(status.status),
            message=status.statusMessage,
        )

    # conversations

    def _is_room(self, user: str, name: str) -> bool:
        return (user, name) in self.rooms

    def handle_message(self, message: pb.ConversationMessage) -> None:
        user, target = message.userName, message.buddyName
        if message.HasField("id") and message.id:
            self.send_message_ack(user, target, message.id)
        if self._is_room(user, target):
            nickname = self.rooms[(user, target)]
            options = {"xhtml": message.xhtml} if message.HasField("xhtml") else {}
            self.send_room_message(user, target, nickname, message.message, **options)
            self.send_room_message(user, target, ECHO, message.message, **options)
        else:
            self.send_message(user, target, message.message, xhtml=message.xhtml if message.HasField("xhtml") else None)

    def handle_typing(self, buddy: pb.Buddy) -> None:
        self.send_typing(buddy.userName, buddy.buddyName)

    def handle_typed(self, buddy: pb.Buddy) -> None:
        self.send_typed(buddy.userName, buddy.buddyName)

    def handle_stopped_typing(self, buddy: pb.Buddy) -> None:
        self.send_stopped_typing(buddy.userName, buddy.buddyName)

    def handle_attention(self, message: pb.ConversationMessage) -> None:
        self.send_attention(message.userName, message.buddyName, message.message)

    # roster

    def handle_buddy_changed(self, buddy: pb.Buddy) -> None:
        # Spectrum 2's rule: the backend confirms with the buddy as it now is.
        self.send_buddy_changed(
            buddy.userName,
            buddy.buddyName,
            alias=buddy.alias if buddy.HasField("alias") else None,
            groups=list(buddy.group),
            status=pb.STATUS_ONLINE,
            blocked=buddy.blocked if buddy.HasField("blocked") else None,
        )

    def handle_buddy_removed(self, buddy: pb.Buddy) -> None:
        self.log.info("{user} removed buddy {buddy}", user=buddy.userName, buddy=buddy.buddyName)

    # rooms

    def handle_join_room(self, room: pb.Room) -> None:
        user, name, nickname = room.userName, room.room, room.nickname
        self.send_participant_changed(user, name, ECHO, flag=pb.PARTICIPANT_FLAG_MODERATOR)
        if nickname.lower() == ECHO:
            self.send_participant_changed(user, name, nickname, flag=pb.PARTICIPANT_FLAG_CONFLICT)
            return
        self.rooms[(user, name)] = nickname
        self.send_participant_changed(user, name, nickname, flag=pb.PARTICIPANT_FLAG_ME)
        subject = self.subjects.get((user, name))
        if subject is None and name == ECHO_ROOM:
            subject = (ECHO_ROOM_SUBJECT, ECHO)
        if subject is not None:
            self.send_room_subject_changed(user, name, subject[0], subject[1])

    def handle_leave_room(self, room: pb.Room) -> None:
        self.rooms.pop((room.userName, room.room), None)

    def handle_room_subject(self, message: pb.ConversationMessage) -> None:
        user, name = message.userName, message.buddyName
        nickname = self.rooms.get((user, name), self.users.get(user, user))
        self.subjects[(user, name)] = (message.message, nickname)
        self.send_room_subject_changed(user, name, message.message, nickname)

    # vCards

    def handle_vcard_request(self, vcard: pb.VCard) -> None:
        name = vcard.buddyName
        photo = self._avatars.get(name)
        if photo is None:
            photo = echo_avatar(name)
            if len(self._avatars) < AVATAR_CACHE:  # any name may be asked for: the cache is bounded
                self._avatars[name] = photo
        fullname = ECHO_ALIAS if name == ECHO else f"Echo of {name}"
        self.send_vcard(vcard.userName, name, vcard.id, fullname=fullname, nickname=name, photo=photo)

    def handle_vcard_update(self, vcard: pb.VCard) -> None:
        stored = pb.VCard()
        stored.CopyFrom(vcard)
        self.own_vcards[vcard.userName] = stored
        self.log.info(
            "{user} updated their vCard (nickname {nickname!r}, photo {size} bytes)",
            user=vcard.userName,
            nickname=vcard.nickname,
            size=len(vcard.photo),
        )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console script ``transport-backend-echo``."""
    run(EchoBackend, argv, prog="transport-backend-echo")
