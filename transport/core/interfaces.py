"""The core's plug points (zope interfaces).

A frontend (the XMPP component, the WebSocket server, a test frontend)
implements :class:`IFrontend`, registers with :meth:`Gateway.add_frontend`, and
from then on:

* calls the gateway's methods for what its clients do (``session_opened``,
  ``presence_changed``, ``send_message``, ...), passing itself as the
  *frontend* of :meth:`Gateway.session_opened`;
* receives every :mod:`transport.core.events` event of each user that has at
  least one session opened through it, through :meth:`IFrontend.deliver`.

The gateway never calls a frontend for a user with no session on it, and a
frontend never talks to a backend directly.

:class:`IBackendRouter` is what the core needs from the backend side (the
:class:`transport.backend.pool.BackendPool` implements it); it keeps the core
free of sockets and processes, and lets unit tests drive the core alone.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface


class IFrontend(Interface):
    """A way for users to reach the gateway."""

    name = Attribute("Short unique name of the frontend, e.g. 'xmpp' or 'websocket'.")

    def deliver(event: Any) -> None:
        """Handle *event* (a :class:`transport.core.events.Event`) for ``event.user``.

        Called on the reactor thread for every event of a user who has at least
        one session on this frontend (and for events with ``user == ""``).
        Must not block and should not raise: an exception is logged and the
        other frontends still get the event.
        """


class IBackendRouter(Interface):
    """Routes users' frames to backend processes (implemented by the backend pool).

    The router assigns each logged-in user to one backend. It calls back the
    *sink* given to :meth:`start_routing` with:

    * ``sink.backend_packet(user, packet)`` for every frame a backend sends
      about a user (``packet`` is a :class:`transport.backend.codec.Packet`);
    * ``sink.backend_global_packet(packet)`` for frames about nobody in
      particular (a RoomList without user, BACKEND_CONFIG);
    * ``sink.users_lost(users, reason)`` when a backend went away with those
      users (crash, ping timeout, process exit): the core logs them in again.
    """

    def start_routing(sink: Any) -> None:
        """Deliver backend frames to *sink* from now on."""

    def login(user: str, payload: Any, buddies: Any = None) -> None:
        """Assign *user* to a backend (spawning one if needed) and send LOGIN *payload* there.

        *buddies* (``pb.Buddies``) follows the LOGIN when that backend announced
        ``features.send_buddies_on_login``.
        """

    def send(user: str, type_: int, payload: Any) -> bool:
        """Send a frame for *user* to its backend; False when the user has no ready backend."""

    def logout(user: str, payload: Any) -> None:
        """Send LOGOUT *payload* (when the user is on a backend) and free the user's slot."""

    def forget(user: str) -> None:
        """Free the user's slot without sending anything (the backend disconnected the user)."""

    def is_sendable(user: str) -> bool:
        """Whether frames for *user* can go out now (assigned to a ready backend)."""

    def backend_of(user: str) -> Any:
        """Name of the backend serving *user* (``None`` when none)."""

    def confirmation_mark(user: str) -> Any:
        """An opaque mark for a frame just sent for *user*; see :meth:`is_confirmed`."""

    def is_confirmed(mark: Any) -> bool:
        """Whether the backend has handled every frame sent before *mark* was taken.

        The router calls ``sink.backend_confirmed(users)`` when marks may have become confirmed.
        """
