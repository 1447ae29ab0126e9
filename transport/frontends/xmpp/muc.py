"""Legacy rooms as XEP-0045 multi-user chats: ``room@transport/nick``.

A presence to ``room@transport/nick`` joins the legacy room (JOIN_ROOM, the
password from the MUC ``<x/>``); a user who was not logged in yet is logged in
by it. The backend's PARTICIPANT_CHANGED frames become occupant presences
(moderator flag → role ``moderator``/affiliation ``admin``), the user's own entry
the self-presence with status 110 - occupants first, then the self-presence,
then the subject, as XEP-0045 orders them. Conflicts, refusals and unknown rooms
become presence errors ``conflict``, ``not-authorized`` and ``item-not-found``;
bans and kicks 301/307; renames 303.

Each resource of the user joins separately (MUC presence is per resource): the
first one joins the legacy room, later ones get the occupant list the transport
kept, and the room is left when the last of them leaves or goes offline. A
presence to the room with another nickname changes the nickname (JOIN_ROOM
with the new nickname; the backend confirms with the user's entry).

Rooms the gateway joins again by itself (stored ones, after a restart of the main
instance) are adopted when the backend's first frame for them arrives: the user's
available resources are their occupants again (see ``_restored``).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error
from twisted.words.protocols.jabber import jid as jidmod
from twisted.words.xish import domish

from transport.core import events as ev
from transport.core import presence as pr
from transport.frontends.xmpp import stanzas as st
from transport.frontends.xmpp.frontend import Target, XmppFrontend, XmppRoom, XmppUser

log = Logger()

MODERATOR, CONFLICT, BANNED, NOT_AUTHORIZED, ME, KICKED, ROOM_NOT_FOUND = 1, 2, 4, 8, 16, 32, 64
_REFUSALS = ((CONFLICT, "conflict", "cancel"), (NOT_AUTHORIZED, "not-authorized", "auth"),
             (ROOM_NOT_FOUND, "item-not-found", "cancel"))
MAX_NICK = 256


class Rooms:
    def __init__(self, frontend: XmppFrontend) -> None:
        self.frontend = frontend
        frontend.on_presence(self.presence)
        frontend.on_message(self.message)
        frontend.on_event(ev.ParticipantChanged, self.participant_changed)
        frontend.on_event(ev.RoomNicknameChanged, self.nickname_changed)
        frontend.on_event(ev.RoomSubjectChanged, self.subject_changed)
        frontend.on_event(ev.RoomList, self.room_list)

    # ------------------------------------------------------------------ queries from other handlers

    def is_joined(self, bare: str, name: str) -> bool:
        user = self.frontend.users.get(bare)
        return user is not None and name in user.rooms

    def resource_gone(self, user: XmppUser, resource: str) -> None:
        """*resource* went offline: it left every room it was in, to be joined again when it comes back soon."""
        now = self.frontend.clock.seconds()
        for room in list(user.rooms.values()):
            if resource in room.resources or resource in room.joining:
                if room.joined and self.frontend.settings["rejoin_window"] > 0:
                    user.rejoin[room.name] = (room.nickname, room.password, now)
                room.resources.discard(resource)
                room.joining.discard(resource)
                if not room.resources and not room.joining:
                    self._leave(user, room)

    def resource_back(self, user: XmppUser, resource: str) -> None:
        """*resource* answered the probe after a reconnection: show it the rooms it is in again."""
        for room in user.rooms.values():
            if room.joined and resource in room.resources:
                self._replay(user, room, resource)

    def rejoin(self, user: XmppUser, resource: str) -> None:
        """The user's first session after their resources vanished: join their rooms again."""
        rooms, user.rejoin = user.rejoin, {}
        oldest = self.frontend.clock.seconds() - self.frontend.settings["rejoin_window"]
        for name, (nick, password, left_at) in rooms.items():
            if left_at < oldest or name in user.rooms:
                continue
            log.info("{user}: joining {room} again after the reconnection", user=user.jid, room=name)
            self._join(user, name, nick, password, resource)

    def _restored(self, user: XmppUser, name: str) -> XmppRoom | None:
        """The room *name* if the gateway is in it for *user* though the frontend does not know it: after a restart
        of the main instance the core joins the rooms it stored again at the user's login, while the frontend's
        memory of who is in which room is gone. The user's clients still consider themselves in the room, so every
        available resource is an occupant again (it gets the occupants, the self-presence and the subject)."""
        if not user.resources or name not in self.frontend.gateway.user_state(user.jid).rooms:
            return None
        known = getattr(self.frontend.gateway, "users", {}).get(user.jid)
        joined = known.rooms.get(name) if known is not None else None
        room = user.rooms[name] = XmppRoom(name, getattr(joined, "nickname", ""), getattr(joined, "password", ""))
        room.restored = True
        room.joining = set(user.resources)
        log.info("{user}: the gateway joined {room} again; its resources are occupants again", user=user.jid,
                 room=name)
        return room

    def _leave(self, user: XmppUser, room: XmppRoom) -> None:
        user.rooms.pop(room.name, None)
        self.frontend.gateway.leave_room(user.jid, room.name)

    # ------------------------------------------------------------------ stanzas

    def occupant_presence(self, user: XmppUser, room: XmppRoom, p: ev.ParticipantChanged, to_resource: str,
                          codes: tuple[str, ...] = (), type_: str | None = None, nick: str = "") -> domish.Element:
        frm = self.frontend.buddy_jid(room.name, p.nickname)
        presence = st.presence(user.full(to_resource), frm, type_, p.presence or pr.ONLINE, p.status_message)
        x = presence.addElement((st.NS_MUC_USER, "x"))
        item = x.addElement("item")
        moderator = bool(p.flags & MODERATOR)
        item["affiliation"] = "admin" if moderator else "member"
        item["role"] = "none" if type_ == "unavailable" else ("moderator" if moderator else "participant")
        if nick:
            item["nick"] = nick
        if p.flags & ME:
            item["jid"] = user.full(to_resource)
        for code in codes:
            x.addElement("status")["code"] = code
        if p.icon_hash and type_ is None:
            presence.addElement((st.NS_VCARD_UPDATE, "x")).addElement("photo", content=p.icon_hash)
        return presence

    def presence(self, stanza: domish.Element, sender: jidmod.JID, target: Target) -> bool:
        type_ = stanza.getAttribute("type")
        bare = sender.userhost()
        resource = sender.resource or ""
        if target.kind != "occupant":
            return False
        if type_ in ("subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error"):
            return True
        if not resource:
            return True
        name, nick = target.name, target.resource[:MAX_NICK]
        if type_ == "unavailable":
            user = self.frontend.users.get(bare)
            if user is not None:
                self._resource_leaves(user, name, resource)
            return True
        if type_ is not None:
            return True
        password = st.text_of(st.child(st.child(stanza, st.NS_MUC, "x") or stanza, st.NS_MUC, "password"), 256)
        user = self.frontend.user(bare)
        login = self.frontend.handlers["login"]
        if resource in user.resources:
            d = login.when_open(bare, resource)
        else:
            # joining a room logs the user in when that resource had not done so yet
            d = login.resource_available(bare, resource, pr.ONLINE, "", False)
        d.addCallbacks(lambda _: self._join(user, name, nick, password, resource),
                       lambda f: self._join_refused(f, stanza))
        return True

    def _join_refused(self, failure: Failure, stanza: domish.Element) -> None:
        from transport.core.gateway import NotRegistered

        if failure.check(NotRegistered):
            self.frontend.send_error(stanza, "registration-required", "register with the transport first", "auth")
        else:
            self.frontend.send_error(stanza, "internal-server-error")

    def _join(self, user: XmppUser, name: str, nick: str, password: str, resource: str) -> None:
        gateway = self.frontend.gateway
        room = user.rooms.get(name)
        if room is None:
            room = user.rooms[name] = XmppRoom(name, nick, password)
            room.joining.add(resource)
            gateway.join_room(user.jid, name, nick, password)
            return
        if not room.joined:
            room.joining.add(resource)
            return
        if resource not in room.resources:
            # another resource joins a room the user is in: replay what the room looks like
            room.resources.add(resource)
            self._replay(user, room, resource)
            return
        if nick != room.nickname:
            room.joining.add(resource)
            gateway.join_room(user.jid, name, nick, room.password)

    def _replay(self, user: XmppUser, room: XmppRoom, resource: str) -> None:
        me = None
        for p in room.participants.values():
            if p.flags & ME:
                me = p
                continue
            self.frontend.send(self.occupant_presence(user, room, p, resource))
        if me is None:
            me = ev.ParticipantChanged(user.jid, room.name, room.nickname, ME, pr.ONLINE)
        self.frontend.send(self.occupant_presence(user, room, me, resource, ("110",)))
        self._send_subject(user, room, [resource])

    def _send_subject(self, user: XmppUser, room: XmppRoom, resources: Any) -> None:
        subject, nick = room.subject or ("", "")
        frm = self.frontend.buddy_jid(room.name, nick) if nick else self.frontend.buddy_jid(room.name)
        for r in resources:
            m = st.message(user.full(r), frm, "groupchat")
            m.addElement("subject", content=subject)
            self.frontend.send(m)

    def _resource_leaves(self, user: XmppUser, name: str, resource: str) -> None:
        if resource not in user.resources:
            # the end of a session that already ended (the server sends the session's last unavailable to the
            # transport first, then to every JID it had sent directed presence to, the room among them):
            # resource_gone() saw it leave, and the room is to be joined again at the next login
            return
        user.rejoin.pop(name, None)  # a client that is still online leaves the room: do not join it again
        room = user.rooms.get(name)
        if room is None:
            return
        if resource in room.resources:
            me = ev.ParticipantChanged(user.jid, name, room.nickname, ME, pr.OFFLINE)
            self.frontend.send(self.occupant_presence(user, room, me, resource, ("110",), "unavailable"))
        room.resources.discard(resource)
        room.joining.discard(resource)
        if not room.resources and not room.joining:
            self._leave(user, room)

    def message(self, stanza: domish.Element, sender: jidmod.JID, target: Target) -> bool:
        type_ = stanza.getAttribute("type", "normal")
        if type_ == "error" or (type_ != "groupchat" and target.kind != "occupant"):
            return False  # chat to room@transport is the buddy of the same name (the message handler's)
        bare = sender.userhost()
        user = self.frontend.users.get(bare)
        room = user.rooms.get(target.name) if user is not None else None
        resource = sender.resource or ""
        if user is not None and resource in user.resources:
            if room is None:
                room = self._restored(user, target.name)
            if room is not None and room.restored and room.joined and resource not in room.resources:
                # a client that was in the room before the restart and came back after the gateway rejoined it
                room.resources.add(resource)
                self._replay(user, room, resource)
        if room is None or resource not in room.resources:
            raise st.StanzaFailure("not-acceptable", "join the room first", "cancel")
        assert user is not None
        body = st.text_of(st.child(stanza, None, "body"), 64 * 1024 + 1)
        gateway = self.frontend.gateway
        if target.kind == "occupant":
            if body:
                gateway.send_message(bare, f"{room.name}/{target.resource}", body, id=stanza.getAttribute("id", ""),
                                     pm=True).addErrback(self._failed, stanza)
            return True
        subject = st.child(stanza, None, "subject")
        if subject is not None and not body:
            gateway.set_subject(bare, room.name, st.text_of(subject, 4096))
            return True
        if body:
            gateway.send_room_message(bare, room.name, body, id=stanza.getAttribute("id", "")[:256]).addErrback(
                self._failed, stanza)
        return True

    def _failed(self, failure: Failure, stanza: domish.Element) -> None:
        self.frontend.handlers["message"]._send_failed(failure, stanza)

    # ------------------------------------------------------------------ events

    def takes(self, event: ev.MessageReceived) -> bool:
        """Deliver *event* when it is a room message; False when it is for the buddy handler."""
        user = self.frontend.users.get(event.user)
        room = user.rooms.get(event.buddy) if user is not None else None
        if room is None and user is not None and (event.nickname or event.pm):
            room = self._restored(user, event.buddy)
        if room is None or user is None or not (event.nickname or event.pm):
            return False  # a buddy may have the name of a room; room messages name their speaker
        frm = self.frontend.buddy_jid(room.name, event.nickname) if event.nickname else \
            self.frontend.buddy_jid(room.name)
        builder = self.frontend.handlers["message"]
        for resource in sorted(room.resources):
            m = builder.build(user.full(resource), frm, event, "chat" if event.pm else "groupchat")
            if event.pm:
                m.addElement((st.NS_MUC_USER, "x"))
            self.frontend.send(m)
        return True

    def participant_changed(self, event: ev.ParticipantChanged) -> None:
        user = self.frontend.users.get(event.user)
        room = user.rooms.get(event.room) if user is not None else None
        if room is None and user is not None:
            room = self._restored(user, event.room)
        if user is None or room is None:
            log.debug("participant in room {room} that {user} did not join", room=event.room, user=event.user)
            return
        for flag, condition, type_ in _REFUSALS:
            if event.flags & flag:
                self._refused(user, room, event, condition, type_)
                return
        if event.flags & ME:
            self._me(user, room, event)
            return
        everyone = room.resources | room.joining
        old = room.participants.get(event.nickname)
        if event.newname:
            room.participants.pop(event.nickname, None)
            renamed = ev.ParticipantChanged(event.user, event.room, event.newname, event.flags,
                                            event.presence or (old.presence if old else pr.ONLINE),
                                            event.status_message, "", event.icon_hash, event.alias)
            room.participants[event.newname] = renamed
            for r in sorted(everyone):
                self.frontend.send(self.occupant_presence(user, room, event, r, ("303",), "unavailable",
                                                          nick=event.newname))
                self.frontend.send(self.occupant_presence(user, room, renamed, r))
            return
        if event.presence == pr.OFFLINE or event.flags & (BANNED | KICKED):
            room.participants.pop(event.nickname, None)
            codes = ("301",) if event.flags & BANNED else ("307",) if event.flags & KICKED else ()
            for r in sorted(everyone):
                self.frontend.send(self.occupant_presence(user, room, event, r, codes, "unavailable"))
            return
        room.participants[event.nickname] = event
        for r in sorted(everyone):
            self.frontend.send(self.occupant_presence(user, room, event, r))

    def _refused(self, user: XmppUser, room: XmppRoom, event: ev.ParticipantChanged, condition: str,
                 type_: str) -> None:
        targets = sorted(room.joining)
        room.joining.clear()
        for r in targets:
            p = st.presence(user.full(r), self.frontend.buddy_jid(room.name, event.nickname), "error")
            p.addElement((st.NS_MUC, "x"))
            p.addChild(error.StanzaError(condition, type=type_, text=event.status_message or None).getElement())
            self.frontend.send(p)
        if not room.joined:
            self._leave(user, room)

    def _me(self, user: XmppUser, room: XmppRoom, event: ev.ParticipantChanged) -> None:
        if event.presence == pr.OFFLINE or event.flags & (BANNED | KICKED):
            codes = ("110",) + (("301",) if event.flags & BANNED else ("307",) if event.flags & KICKED else ())
            for r in sorted(room.resources | room.joining):
                self.frontend.send(self.occupant_presence(user, room, event, r, codes, "unavailable"))
            room.resources.clear()
            room.joining.clear()
            self._leave(user, room)
            return
        renamed = room.joined and event.nickname != room.nickname
        if renamed:
            before = room.participants.pop(room.nickname, None) or ev.ParticipantChanged(
                user.jid, room.name, room.nickname, ME, pr.ONLINE)
            for r in sorted(room.resources):
                self.frontend.send(self.occupant_presence(user, room, before, r, ("303", "110"), "unavailable",
                                                          nick=event.nickname))
        room.nickname = event.nickname
        room.participants[event.nickname] = event
        newcomers = sorted(room.joining - room.resources)
        room.resources |= room.joining
        room.joining.clear()
        first = not room.joined
        room.joined = True
        for r in sorted(room.resources):
            self.frontend.send(self.occupant_presence(user, room, event, r, ("110",)))
        if first:
            self._send_subject(user, room, newcomers)

    def nickname_changed(self, event: ev.RoomNicknameChanged) -> None:
        self.participant_changed(ev.ParticipantChanged(event.user, event.room, event.nickname, ME, pr.ONLINE))

    def subject_changed(self, event: ev.RoomSubjectChanged) -> None:
        user = self.frontend.users.get(event.user)
        room = user.rooms.get(event.room) if user is not None else None
        if user is None or room is None:
            return
        room.subject = (event.subject, event.nickname)
        if room.joined:
            self._send_subject(user, room, sorted(room.resources))

    def room_list(self, event: ev.RoomList) -> None:
        if event.user == "":
            self.frontend.room_list = event.rooms
        else:
            self.frontend.user(event.user).rooms_listed = event.rooms


def install(frontend: XmppFrontend) -> Rooms:
    return Rooms(frontend)
