"""Where an attempt runs: ``inline`` (the worker's loop or a thread; see worker/runner.py),
``process`` (a warm pool of child processes, see process.py and child.py) or ``command``
(any executable speaking JSON lines over stdio, see command.py and docs/runtimes.md)."""

from workhorse.runtimes.common import RemoteError, describe_exit

__all__ = ["RemoteError", "describe_exit"]
