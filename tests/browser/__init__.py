"""Support for the WebSocket frontend's integration and browser tests (real servers, clients, Chromium)."""
