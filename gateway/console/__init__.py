"""The gateway's web console, under ``/console`` on the native API's port (docs/console.md).

- ``app``: routes, the refusal and session middlewares, static files, security headers;
- ``auth``: signed session cookies, login challenges, CSRF tokens;
- ``login``: logging in with a pasted wallet signature or an S3 access key, and out;
- ``context``: what the handlers share, and the request's parameters, bounded;
- ``html`` and ``pages``: escaped HTML, the page around every view, tables and bars;
- ``objects``: the user's objects (list, search, download, delete, upload) and deals;
- ``territories``: territories, and the commands that mint, expand and renew them;
- ``network``: miners, challenges, restoral orders and repairs, health and metrics;
- ``events``: the restoral events followed on chain; ``config``: ``[console]``;
- ``errors``: the console's one refusal type.
"""

from gateway.console.app import add_console, make_console_app
from gateway.console.config import ConsoleConfig

__all__ = ["ConsoleConfig", "add_console", "make_console_app"]
