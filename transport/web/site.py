"""The web port: one twisted.web site for the web client, WebSocket paths, status and metrics.

Parts attach their resources to :class:`WebRoot` while the service tree is
built (``context.web_root.put_child("chatd", resource)``); the site listens on
the ``[service] web_port`` endpoint string.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service, strports
from twisted.web import resource, server


class WebRoot(resource.Resource):
    """The site's root; ``/`` itself is served by whichever part calls :meth:`set_index`."""

    def __init__(self) -> None:
        super().__init__()
        self._index: resource.Resource | None = None

    def put_child(self, path: str, child: resource.Resource) -> None:
        if path.encode() in self.children:
            raise ValueError(f"/{path} is already served by another part")
        self.putChild(path.encode(), child)

    def set_index(self, index: resource.Resource) -> None:
        self._index = index

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        if self._index is not None:
            if path == b"":
                return self._index
            return self._index.getChildWithDefault(path, request)
        return resource.NoResource()

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Transport\n"


class WebSiteService(service.MultiService):
    """Listens on the web port endpoint with a Site over *root*."""

    name = "web"

    def __init__(self, endpoint: str, root: WebRoot, reactor: Any = None) -> None:
        super().__init__()
        self.site = server.Site(root)
        self.endpoint = endpoint
        strports.service(endpoint, self.site, reactor=reactor).setServiceParent(self)
