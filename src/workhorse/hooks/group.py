"""A hook group's state in the store's key-value space: its partitions' leases and cursors.

Events are split into partitions by a stable hash of the job id, so one job's events stay
in one partition, in order. Each partition is owned by one listener through a lease with a
ttl and has its own cursor, the id of the last event its hooks finished with."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable

from workhorse import codec
from workhorse.client import Client
from workhorse.errors import ConfigError
from workhorse.events import HOLD_PREFIX
from workhorse.settings import check_name

PREFIX = "hooks:"


def check_group(name: str) -> str:
    check_name(name, "hook group")
    if ":" in name:  # a group's keys are "hooks:NAME:...": one name must not prefix another's
        raise ConfigError(
            f"invalid hook group name {name!r}: use no ':' (e.g. {name.replace(':', '-')!r})"
        )
    return name


def partition_of(job_id: str | None, partitions: int) -> int:
    """Events without a job (published ones) all go to partition 0."""
    return 0 if job_id is None else zlib.crc32(job_id.encode()) % partitions


class Group:
    """Key names and reads and writes of one group's state."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = check_group(name)
        self.base = f"{PREFIX}{self.name}:"

    def meta_key(self) -> str:
        return self.base + "meta"

    def lease_key(self, p: int) -> str:
        return f"{self.base}lease:{p}"

    def cursor_key(self, p: int) -> str:
        return f"{self.base}cursor:{p}"

    def member_prefix(self) -> str:
        return self.base + "member:"

    def parked_prefix(self) -> str:
        return self.base + "parked:"

    async def partitions(self, wanted: int) -> int:
        """The group's partition count: the first listener's choice, kept in the store
        (cursors are per partition, so the count cannot change under a live group)."""
        backend = await self.client.store()
        meta = codec.dumps({"partitions": wanted}).decode()
        await backend.set_if_absent(self.meta_key(), meta)
        stored = await backend.kv_get(self.meta_key())
        if stored is None:
            raise ConfigError(f"hook group {self.name!r}: its state vanished from the store")
        count = int(codec.loads(stored)["partitions"])
        return count

    async def existing_partitions(self) -> int | None:
        """The partition count of a group that exists, else None (nothing is created)."""
        backend = await self.client.store()
        stored = await backend.kv_get(self.meta_key())
        return None if stored is None else int(codec.loads(stored)["partitions"])

    async def cursor(self, p: int, start: Callable[[], Awaitable[int]]) -> int:
        """The partition's cursor; a partition never read starts at ``await start()``
        (asked only then: finding the log's end reads the log)."""
        backend = await self.client.store()
        value = await backend.kv_get(self.cursor_key(p))
        if value is not None:
            return int(value)
        first = await start()
        await backend.set_if_absent(self.cursor_key(p), str(first))
        value = await backend.kv_get(self.cursor_key(p))
        return first if value is None else int(value)

    async def cursors(self, partitions: int) -> dict[int, int | None]:
        backend = await self.client.store()
        out: dict[int, int | None] = {}
        for p in range(partitions):
            value = await backend.kv_get(self.cursor_key(p))
            out[p] = None if value is None else int(value)
        return out

    async def hold(self) -> None:
        """Tell the stores' retention where the group's slowest partition stands: the log
        keeps the events above it (up to a bound), for a listener that is down a while."""
        backend = await self.client.store()
        cursors = await backend.kv_scan(self.base + "cursor:")
        if cursors:
            floor = min(int(v) for v in cursors.values())
            await backend.kv_set(HOLD_PREFIX + self.name, str(floor))

    async def forget(self) -> int:
        """Delete the group's state (cursors, parked events, its hold on the log); how
        many keys. Its live listeners would start it again at the end of the log."""
        backend = await self.client.store()
        keys = [*await backend.kv_scan(self.base), HOLD_PREFIX + self.name]
        gone = 0
        for k in keys:
            gone += await backend.kv_delete(k)
        return gone

    async def owners(self, partitions: int) -> dict[int, str | None]:
        backend = await self.client.store()
        return {p: await backend.kv_get(self.lease_key(p)) for p in range(partitions)}


async def head(client: Client) -> int:
    """The id of the newest event in the log (0 when empty): where a new group starts."""
    return await client.events_head()


async def groups(client: Client) -> list[str]:
    """Every hook group that has state in the store."""
    backend = await client.store()
    keys = await backend.kv_scan(PREFIX)
    return sorted(k[len(PREFIX) : -len(":meta")] for k in keys if k.endswith(":meta"))
