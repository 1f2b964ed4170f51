"""callvault's HTTP API (aiohttp): ingest, QA access, audio, governance, health.

Build the app with :func:`build_web_app` over a :class:`WebContext`; the route
table, the view style and the error table are in ``streams/http/README.md``.
"""

from streams.http.app import build_web_app
from streams.http.context import WebContext

__all__ = ["build_web_app", "WebContext"]
