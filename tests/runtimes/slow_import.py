"""A process task whose module takes 1.5 s to import in a child: an app with heavy imports."""

from __future__ import annotations

import multiprocessing
import time

if multiprocessing.parent_process() is not None:
    time.sleep(1.5)


def quick() -> str:
    return "ok"
