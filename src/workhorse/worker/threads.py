"""The threads that run sync tasks.

Not a ``ThreadPoolExecutor``: its threads are joined when the interpreter exits, so one
handler stuck in blocking code (which nothing can interrupt) would keep a worker that was
told to stop from ever exiting. These threads are daemons, and the pool grows whenever no
thread is idle, so a stuck thread never starves the next sync job of the slot it gave back.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")

_IDLE_EXIT = 60.0  # seconds an idle thread waits for work before it ends

_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None


class DaemonThreads(Executor):
    def __init__(self, name: str = "workhorse-task") -> None:
        self._name = name
        self._work: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for work and not yet promised an item
        self._threads = 0
        self._closed = False
        self._count = 0

    @property
    def size(self) -> int:
        return self._threads

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        fut: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot run a sync task: the worker's threads are shut down")
            if self._idle:
                self._idle -= 1  # promised to the item put below
            else:
                self._spawn()
            self._work.put((fut, fn, args, kwargs))
        return fut

    def _spawn(self) -> None:
        self._threads += 1
        self._count += 1
        threading.Thread(target=self._loop, name=f"{self._name}-{self._count}", daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                item = self._work.get(timeout=_IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    # Nothing queued means no item was promised to this thread.
                    if self._idle and self._work.empty():
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            if item is None:
                with self._lock:
                    self._threads -= 1
                return
            fut, fn, args, kwargs = item
            if fut.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # handed to the awaiting coroutine
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)
                del fut, fn, args, kwargs, item  # drop references while idle
            with self._lock:
                if self._closed:
                    self._threads -= 1
                    return
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Idle threads end now, busy ones when their call returns; never waits for a
        stuck one (``wait`` is accepted for the Executor interface and ignored)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        if cancel_futures:
            while True:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in range(idle):
            self._work.put(None)
