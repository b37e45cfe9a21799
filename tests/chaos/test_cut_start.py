"""A producer killed while it sends a run's start (issue 15): the server gets the start's
request less its last bytes, then the connection's end, and the producer never sends it
again. No run record or live entry may be left without its entry job, or the sweep would
end the run completed though no step ran. Real Redis behind a proxy that cuts the request
(tests/chaos/proxy.py, ``cut_within``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.proxy import Proxy
from tests.conftest import backend_url
from tests.contract.support import eventually, line_flow
from workhorse import Workhorse
from workhorse.backends.redis import RedisBackend
from workhorse.errors import BackendUnavailable
from workhorse.flows import keys

_INPUT = 918_273_645  # the cut start's input: bytes no other request holds


@dataclass
class Cut:
    producer: Workhorse  # through the proxy
    direct: Workhorse  # straight to the server, to look
    proxy: Proxy


@pytest.fixture
async def cut(tmp_path: Path) -> AsyncIterator[Cut]:
    url = backend_url("redis", tmp_path)
    proxy = Proxy("127.0.0.1", 6379).start()
    backend = RedisBackend(url.replace(":6379/", f":{proxy.port}/", 1))
    direct = RedisBackend(url)
    producer = Workhorse(backend=backend, stats=False)  # its close finds the proxy cut
    looker = Workhorse(backend=direct)
    for app in (producer, looker):
        line_flow(app, 2)
        await app.open()
    try:
        yield Cut(producer, looker, proxy)
    finally:
        await producer.close()
        await looker.close()
        await direct.open()
        await direct.drop()
        await direct.close()
        proxy.close()


async def _runs(app: Workhorse) -> set[str]:
    """The runs with a record or a live entry."""
    backend = app.backend
    found = set()
    for prefix in (keys.runs_prefix(), keys.live_prefix()):
        found |= {k[len(prefix) :] for k in await backend.kv_scan(prefix)}
    return found


@pytest.mark.parametrize("tail", [1, 40])
async def test_a_start_cut_mid_write_leaves_no_run_without_its_entry(cut: Cut, tail: int) -> None:
    await cut.producer.flows.start("line", 0)  # the scripts loaded, the queue listed
    before = await _runs(cut.direct)
    cut.proxy.cut_within(b"%d" % _INPUT, tail)  # in the run's record and its job
    with pytest.raises(BackendUnavailable):
        await cut.producer.flows.start("line", _INPUT)

    async def server_read_it() -> bool:
        return cut.proxy.truncated == 1

    await eventually(server_read_it, "the server to read the cut request and close")
    for run in await _runs(cut.direct) - before:
        steps = (await cut.direct.flows.get(run)).steps
        assert [s.step for s in steps if s.state != "missing"] == ["s1"], (
            f"run {run} was written without its entry job: {steps}"
        )
