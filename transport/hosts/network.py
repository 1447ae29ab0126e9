"""The network host: answers announcements and searches against a :class:`Directory`.

A user host connects, sends HOST_INVITE_ANN_REQ and gets HOST_INVITE_ANN_REPLY
(commErr InvalidPkt when a field is missing). A client sends
HOST_INVITE_SEARCH_REQ (a host type, optional text, optional specific online
id) and continues with HOST_INVITE_MORE_REQ while ``moreExist`` is set. The
search text of a chain is remembered per connection under its
searchSessionId (a bounded number of sessions per connection).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.logger import Logger

from transport.hosts.directory import Directory
from transport.hosts.packets import (
    Announce,
    ECommErr,
    HostedInfo,
    HostInviteAnnounceReply,
    HostInviteAnnounceReq,
    HostInviteMoreReply,
    HostInviteMoreReq,
    HostInviteSearchReply,
    HostInviteSearchReq,
    OnlineId,
    Packet,
)
from transport.hosts.protocol import PeerConnection

log = Logger()

#: Search chains remembered per connection (their text, for MORE).
MAX_SEARCH_SESSIONS = 32


class NetworkHost:
    """The :class:`~transport.hosts.protocol.PacketHandler` of the network host."""

    def __init__(self, directory: Directory, online_id: OnlineId) -> None:
        self.directory = directory
        self.online_id = online_id
        self.announcements = 0
        self.searches = 0

    def announce_local(self, host_type: int, info: HostedInfo) -> ECommErr:
        """The "network host is me" path: a user host in this process updates the directory directly."""
        self.announcements += 1
        return self.directory.announce(host_type, info)

    # PacketHandler --------------------------------------------------------------

    def connection_made(self, conn: PeerConnection) -> None:
        conn.state["searches"] = OrderedDict()

    def connection_lost(self, conn: PeerConnection) -> None:
        conn.state.clear()

    def packet_received(self, conn: PeerConnection, packet: Packet) -> None:
        if isinstance(packet, HostInviteAnnounceReq):
            self._announce(conn, packet)
        elif isinstance(packet, HostInviteSearchReq):
            self._search(conn, packet)
        elif isinstance(packet, HostInviteMoreReq):
            self._more(conn, packet)
        elif not isinstance(packet, Announce):
            log.debug("hosts: network host ignores {type} from {peer}", type=type(packet).__name__,
                      peer=conn.peer_id)

    def _reply_common(self, conn: PeerConnection, packet: Packet) -> dict[str, Any]:
        return {"src": self.online_id, "dst": conn.peer_id, "seq": packet.seq, "plugin_num": packet.plugin_num}

    def _announce(self, conn: PeerConnection, req: HostInviteAnnounceReq) -> None:
        assert conn.peer_id is not None
        info = HostedInfo(conn.peer_id, req.last_modified_ms, req.url, req.title, req.description, req.thumb_id)
        self.announcements += 1
        err = self.directory.announce(req.host_type, info)
        if err is not ECommErr.NONE:
            log.info("hosts: announcement from {peer} refused: {err}", peer=conn.peer_id, err=err.name)
        conn.send(HostInviteAnnounceReply(host_type=req.host_type, comm_err=err, session_id=req.session_id,
                                          **self._reply_common(conn, req)))

    def _search(self, conn: PeerConnection, req: HostInviteSearchReq) -> None:
        self.searches += 1
        sessions: OrderedDict[bytes, tuple[int, str]] = conn.state["searches"]
        sessions[req.session_id.raw] = (req.host_type, req.text)
        sessions.move_to_end(req.session_id.raw)
        while len(sessions) > MAX_SEARCH_SESSIONS:
            sessions.popitem(last=False)
        page = self.directory.search(req.host_type, req.text, specific=req.specific_id or None)
        conn.send(HostInviteSearchReply(host_type=req.host_type, more_exist=page.more_exist, comm_err=page.comm_err,
                                        session_id=req.session_id, next_id=page.next_id, entries=page.entries,
                                        **self._reply_common(conn, req)))

    def _more(self, conn: PeerConnection, req: HostInviteMoreReq) -> None:
        sessions: OrderedDict[bytes, tuple[int, str]] = conn.state["searches"]
        _, text = sessions.get(req.session_id.raw, (req.host_type, ""))
        page = self.directory.search(req.host_type, text, start=req.next_id)
        conn.send(HostInviteMoreReply(host_type=req.host_type, more_exist=page.more_exist, comm_err=page.comm_err,
                                      session_id=req.session_id, next_id=page.next_id, entries=page.entries,
                                      **self._reply_common(conn, req)))
