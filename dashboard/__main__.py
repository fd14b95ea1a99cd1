"""`python -m dashboard`: the command center's screens on http://GCC_DASHBOARD_HOST:GCC_DASHBOARD_PORT/."""
from __future__ import annotations

import logging
import sys

from config.settings import load_settings
from dashboard.app import create_app


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    settings = load_settings()
    app, socketio, hub = create_app(settings)
    hub.start()
    print(f"dashboard: http://{settings.dashboard_host}:{settings.dashboard_port}/wall", file=sys.stderr, flush=True)
    socketio.run(app.server, host=settings.dashboard_host, port=settings.dashboard_port,
                 allow_unsafe_werkzeug=True, use_reloader=False, log_output=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
