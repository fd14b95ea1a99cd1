"""`python -m dashboard`: the command center's screens on http://GCC_DASHBOARD_HOST:GCC_DASHBOARD_PORT/,
served by gunicorn (dashboard/server.py). SIGTERM or SIGINT stops it."""
from __future__ import annotations

import logging
import sys

from config.settings import load_settings
from dashboard.server import serve


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    print(f"dashboard: http://{settings.dashboard_host}:{settings.dashboard_port}/wall", file=sys.stderr, flush=True)
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
