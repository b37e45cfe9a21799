"""Job ids: unique, sorted by creation time, and never repeated by a forked child (ids
draw their random part from a per-process supply, see job.py)."""

from __future__ import annotations

import os
import sys

import pytest

from workhorse.job import new_job_id, new_job_ids


def test_ids_are_unique_and_sort_by_creation_time() -> None:
    ids = [new_job_id() for _ in range(2_000)]  # several refills of the random supply
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


@pytest.mark.skipif(sys.platform == "win32", reason="no fork")
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_job_id()  # the supply now holds ids the parent has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "".join(new_job_id()[12:] for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        got = pipe.read()
    os.waitpid(pid, 0)
    child = {got[k : k + 20] for k in range(0, len(got), 20)}
    parent = {new_job_id()[12:] for _ in range(10)}
    assert len(child) == 10 and not child & parent


def test_a_bulk_calls_ids_are_unique_ascending_and_of_their_moment() -> None:
    before = new_job_id()[:12]
    ids = new_job_ids(3_000)
    after = new_job_id()[:12]
    assert len(set(ids)) == 3_000 and ids == sorted(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(before <= i[:12] <= after for i in ids)
    assert new_job_ids(0) == []
