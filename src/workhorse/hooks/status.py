"""Where a hook group stands: its cursors, lag (events behind, age of the oldest unread),
listeners and parked events, and the replay of a parked event."""

from __future__ import annotations

from dataclasses import dataclass

from workhorse.client import Client
from workhorse.errors import ConfigError
from workhorse.hooks import lost as losses
from workhorse.hooks import parked as parking
from workhorse.hooks.group import Group, groups, partition_of
from workhorse.hooks.hook import HookSet
from workhorse.hooks.parked import Parked

# Lag is counted by reading the log: past this many unread events it says "at least".
LAG_CAP = 10_000


@dataclass(slots=True)
class GroupStatus:
    group: str
    partitions: int
    cursor: int  # the slowest partition's
    behind: int  # unread events (capped at LAG_CAP)
    behind_capped: bool
    oldest_unread_age: float | None  # seconds, None when nothing is unread
    listeners: int
    parked: int
    lost_incidents: int  # times the log's retention trimmed events before the group read them
    lost_events: int | None  # at most this many events lost (None: the store cannot count)


async def group_status(client: Client, name: str) -> GroupStatus:
    group = Group(client, name)
    backend = await client.store()
    partitions = await group.existing_partitions()
    if partitions is None:
        known = ", ".join(await groups(client)) or "none yet"
        raise ConfigError(
            f"no hook group {name!r} in the store (groups: {known}); a listener creates "
            f"its group when it starts"
        )
    cursors = {p: c or 0 for p, c in (await group.cursors(partitions)).items()}
    low = min(cursors.values()) if cursors else 0
    behind, oldest, after, capped = 0, None, low, False
    while page := await client.events(after, 1000):
        for ev in page:
            if ev.id > cursors[partition_of(ev.job_id, partitions)]:
                behind += 1
                if oldest is None:
                    oldest = ev.at
        after = page[-1].id
        if behind >= LAG_CAP:
            capped = True
            break
    now = await backend.now()
    lost = await losses.read(group)
    return GroupStatus(
        name,
        partitions,
        low,
        behind,
        capped,
        None if oldest is None else max(0.0, now - oldest),
        len(await backend.kv_scan(group.member_prefix())),
        len(await parking.parked(group)),
        lost.incidents,
        lost.events_at_most,
    )


class Hooks:
    """``app.hooks``: every group's lag, the parked events, and replay."""

    def __init__(self, client: Client, hooks: HookSet) -> None:
        self.client = client
        self.set = hooks

    def _group(self, name: str | None) -> Group:
        return Group(self.client, name or self.client.settings.hook_group)

    async def groups(self) -> list[str]:
        return await groups(self.client)

    async def status(self) -> list[GroupStatus]:
        """Lag of every group that has state in the store."""
        return [await group_status(self.client, g) for g in await groups(self.client)]

    async def lag(self, group: str | None = None) -> GroupStatus:
        return await group_status(self.client, self._group(group).name)

    async def parked(self, group: str | None = None) -> list[Parked]:
        return await parking.parked(self._group(group))

    async def get(self, parked_id: str, group: str | None = None) -> Parked | None:
        """One parked event, or None."""
        return await parking.get(self._group(group), parked_id)

    async def replay(self, parked_id: str, group: str | None = None) -> None:
        """Call the parked event's hook again, here; on success the event leaves the
        parked list, on failure it stays with the new error and the error is raised."""
        g = self._group(group)
        item = await parking.get(g, parked_id)
        if item is None:
            raise ConfigError(
                f"no parked event {parked_id!r} in hook group {g.name!r}: "
                f"list them with `workhorse hooks APP --group {g.name}`"
            )
        hook = self.set.get(item.hook)
        if hook is None:
            known = ", ".join(h.name for h in self.set) or "none"
            raise ConfigError(
                f"hook {item.hook!r} is not subscribed in this app (subscribed: {known}): "
                f"replay from the app that defines it"
            )
        try:
            await hook.call(item.event)
        except Exception as exc:
            await parking.update(g, item, exc)
            raise
        await parking.drop(g, parked_id)

    async def forget(self, group: str) -> int:
        """Delete a group that is no longer used (its cursors, parked events and its hold
        on the event log's retention); how many keys were deleted."""
        return await Group(self.client, group).forget()

    async def drop(self, parked_id: str, group: str | None = None) -> bool:
        """Forget a parked event without calling its hook."""
        return await parking.drop(self._group(group), parked_id)
