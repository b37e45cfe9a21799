"""The app ``python -m bench.idle`` runs with ``workhorse worker``: the benchmark's tasks,
every setting at its default, on the store named by WORKHORSE_URL."""

from __future__ import annotations

import os

from bench.tasks import make_app

app = make_app(os.environ.get("WORKHORSE_URL", "memory://"))
