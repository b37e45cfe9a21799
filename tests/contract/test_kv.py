"""The small key-value store behind schedules and limits: kv_get, kv_set, kv_delete
(owner-checked), kv_extend (owner-checked), kv_scan, TTL expiry, and the key space it
shares with set_if_absent."""

from __future__ import annotations

import asyncio

from workhorse.backends import Backend

from .support import eventually


async def test_set_get_overwrite(backend: Backend, peer: Backend) -> None:
    assert await backend.kv_get("schedule:nightly") is None
    await backend.kv_set("schedule:nightly", '{"task": "export"}')
    assert await peer.kv_get("schedule:nightly") == '{"task": "export"}'
    await peer.kv_set("schedule:nightly", '{"task": "report"}')
    assert await backend.kv_get("schedule:nightly") == '{"task": "report"}'
    assert await backend.kv_get("schedule:nightl") is None  # exact keys, no prefix match


async def test_ttl_expires_and_no_ttl_stays(backend: Backend, peer: Backend) -> None:
    await backend.kv_set("slot", "job-1", ttl=0.3)
    await backend.kv_set("forever", "x")
    assert await peer.kv_get("slot") == "job-1"

    async def gone() -> bool:
        return await peer.kv_get("slot") is None

    await eventually(gone, "a kv key to expire after its ttl")
    assert await peer.kv_get("forever") == "x"
    assert "slot" not in await peer.kv_scan("")


async def test_set_renews_or_clears_a_ttl(backend: Backend) -> None:
    # A cron tick's mark is rewritten with kv_set; the rewrite must push the expiry back.
    await backend.kv_set("renewed", "a", ttl=0.4)
    await backend.kv_set("lasting", "a", ttl=0.4)
    for _ in range(4):
        await asyncio.sleep(0.15)
        await backend.kv_set("renewed", "a", ttl=0.4)
    await backend.kv_set("lasting", "b")  # no ttl: the key lasts from now on
    assert await backend.kv_get("renewed") == "a"
    await asyncio.sleep(0.6)
    assert await backend.kv_get("lasting") == "b"
    assert await backend.kv_get("renewed") is None


async def test_delete_checks_the_owner(backend: Backend, peer: Backend) -> None:
    await backend.kv_set("limit:acct:0", "job-a")
    assert await peer.kv_delete("limit:acct:0", "job-b") is False  # not the holder
    assert await backend.kv_get("limit:acct:0") == "job-a"
    assert await peer.kv_delete("limit:acct:0", "job-a") is True
    assert await backend.kv_get("limit:acct:0") is None
    assert await backend.kv_delete("limit:acct:0", "job-a") is False  # already gone
    await backend.kv_set("plain", "v")
    assert await backend.kv_delete("plain") is True  # no value: delete whatever it holds
    assert await backend.kv_delete("plain") is False
    assert await backend.kv_delete("never-set") is False


async def test_delete_of_an_expired_key_is_refused(backend: Backend) -> None:
    await backend.kv_set("lease-slot", "job-a", ttl=0.2)
    await asyncio.sleep(0.35)
    # The slot expired (its worker died): a late release must not report success.
    assert await backend.kv_delete("lease-slot", "job-a") is False
    assert await backend.kv_delete("lease-slot") is False
    assert await backend.set_if_absent("lease-slot", "job-b", ttl=30) is True


async def test_extend_renews_only_the_keys_still_held(backend: Backend, peer: Backend) -> None:
    # A limit slot is renewed by its owner only: a slot someone else holds stays theirs.
    assert await backend.kv_extend({}, 30) == set()
    assert await backend.set_if_absent("limit:a:0", "token-a", ttl=0.4)
    assert await peer.set_if_absent("limit:a:1", "token-b", ttl=30)
    held = {"limit:a:0": "token-a", "limit:a:1": "token-a", "limit:a:2": "token-a"}
    for _ in range(4):
        await asyncio.sleep(0.15)
        assert await backend.kv_extend(held, 0.4) == {"limit:a:0"}
    assert await peer.kv_get("limit:a:0") == "token-a"  # outlived its first ttl
    assert await peer.kv_get("limit:a:1") == "token-b"
    assert await peer.kv_get("limit:a:2") is None  # never created by an extend
    assert await peer.set_if_absent("limit:a:0", "token-c", ttl=30) is False


async def test_extend_never_revives_an_expired_key(backend: Backend, peer: Backend) -> None:
    assert await backend.set_if_absent("limit:b:0", "token-a", ttl=0.2)
    assert await backend.set_if_absent("limit:b:1", "token-a", ttl=0.2)

    async def taken() -> bool:
        return await peer.set_if_absent("limit:b:0", "token-b", ttl=30)

    await eventually(taken, "an expired slot to be taken by another owner")

    async def gone() -> bool:  # set a moment after b:0, so it may expire a moment later
        return await peer.kv_get("limit:b:1") is None

    await eventually(gone, "the other slot to expire")
    held = {"limit:b:0": "token-a", "limit:b:1": "token-a"}
    assert await backend.kv_extend(held, 30) == set()
    assert await peer.kv_get("limit:b:0") == "token-b"
    assert await peer.kv_get("limit:b:1") is None
    assert await peer.set_if_absent("limit:b:1", "token-c", ttl=30) is True


async def test_concurrent_owner_checked_deletes_one_wins(backend: Backend, peer: Backend) -> None:
    await backend.kv_set("lock", "me")
    results = await asyncio.gather(*(b.kv_delete("lock", "me") for b in [backend, peer] * 5))
    assert sorted(results) == [False] * 9 + [True]


async def test_scan_by_prefix(backend: Backend, peer: Backend) -> None:
    await backend.kv_set("schedule:a", "1")
    await backend.kv_set("schedule:b", "2")
    await backend.kv_set("schedule:c", "3", ttl=0.2)
    await backend.kv_set("schedules", "not under the prefix")
    await backend.kv_set("cron:a:last", "x")
    await backend.kv_set("sched%:_", "LIKE wildcards are plain characters")
    assert await peer.kv_scan("schedule:") == {
        "schedule:a": "1",
        "schedule:b": "2",
        "schedule:c": "3",
    }
    assert await peer.kv_scan("sched%:") == {"sched%:_": "LIKE wildcards are plain characters"}
    assert await peer.kv_scan("nothing:") == {}

    async def expired() -> bool:
        return "schedule:c" not in await peer.kv_scan("schedule:")

    await eventually(expired, "an expired key to leave kv_scan")
    await backend.kv_delete("schedule:a")
    assert await peer.kv_scan("schedule:") == {"schedule:b": "2"}
    everything = await peer.kv_scan("")
    assert {"schedule:b", "schedules", "cron:a:last"} <= set(everything)


async def test_a_bounded_scan_reads_the_first_keys_in_byte_order(
    backend: Backend, peer: Backend
) -> None:
    # Written out of order; in UTF-8 byte order: Z < a < b < z < é < € < 𝄞.
    for key in ("q:€", "q:z", "q:a", "q:𝄞", "q:Z", "q:é"):
        await backend.kv_set(key, key[2:])
    await backend.kv_set("q:b", "expires", ttl=0.2)
    await backend.kv_set("q;", "past the prefix")
    await backend.kv_set("p:", "before it")
    assert list(await peer.kv_scan("q:", limit=3)) == ["q:Z", "q:a", "q:b"]
    assert await peer.kv_scan("q:", limit=100) == {
        "q:Z": "Z", "q:a": "a", "q:b": "expires", "q:z": "z", "q:é": "é", "q:€": "€",
        "q:𝄞": "𝄞",
    }  # fmt: skip
    assert list(await peer.kv_scan("q:", limit=100)) == sorted(
        await peer.kv_scan("q:"), key=lambda k: k.encode()
    )
    assert await peer.kv_scan("q:", limit=0) == {}
    assert list(await peer.kv_scan("", limit=1)) == ["p:"]

    async def expired() -> bool:
        return await peer.kv_get("q:b") is None

    await eventually(expired, "a key's expiry")
    # The expired key takes no place: the next one does.
    assert list(await peer.kv_scan("q:", limit=3)) == ["q:Z", "q:a", "q:z"]
    await backend.kv_delete("q:a")
    assert list(await peer.kv_scan("q:", limit=3)) == ["q:Z", "q:z", "q:é"]


async def test_scan_unicode_prefix(backend: Backend) -> None:
    await backend.kv_set("tenant:zürich:1", "a")
    await backend.kv_set("tenant:zürich:2", "b")
    await backend.kv_set("tenant:zz", "c")
    await backend.kv_set("tenant:ü", "d")
    assert await backend.kv_scan("tenant:zü") == {"tenant:zürich:1": "a", "tenant:zürich:2": "b"}
    assert await backend.kv_scan("tenant:ü") == {"tenant:ü": "d"}


async def test_set_if_absent_shares_the_key_space(backend: Backend, peer: Backend) -> None:
    # A key taken with set_if_absent is a kv key: readable and deletable. kv_scan lists
    # the lasting ones; a claim with a ttl (a tick, a limit slot) need not be listed (Redis
    # keeps those out of its scan index, which would otherwise grow by one per tick).
    assert await backend.set_if_absent("limit:k:0", "job-a", ttl=30)
    assert await backend.set_if_absent("cron:n:since", "123.5")
    assert await peer.kv_get("limit:k:0") == "job-a"
    assert await peer.kv_get("cron:n:since") == "123.5"
    assert await peer.kv_scan("cron:") == {"cron:n:since": "123.5"}
    # A key written with kv_set is taken for set_if_absent.
    await peer.kv_set("limit:k:1", "job-b", ttl=30)
    assert await backend.set_if_absent("limit:k:1", "job-c", ttl=30) is False
    # Released (owner-checked), the key is free again.
    assert await peer.kv_delete("limit:k:0", "job-a")
    assert await backend.set_if_absent("limit:k:0", "job-d", ttl=30) is True
    assert await backend.kv_get("limit:k:0") == "job-d"


async def test_set_if_absent_takes_an_expired_kv_key(backend: Backend, peer: Backend) -> None:
    await backend.kv_set("slot", "dead-worker-job", ttl=0.2)

    async def taken() -> bool:
        return await peer.set_if_absent("slot", "new-job", ttl=30)

    await eventually(taken, "set_if_absent to take an expired kv key")
    assert await backend.kv_get("slot") == "new-job"


async def test_counters_live_apart_from_kv(backend: Backend) -> None:
    assert await backend.counter_add("rate:k:1", 3, ttl=30) == 3
    assert await backend.kv_get("rate:k:1") is None
    assert await backend.kv_scan("rate:") == {}
    await backend.kv_set("rate:k:1", "text")
    assert await backend.counter_add("rate:k:1", 1) == 4


async def test_concurrent_deletes_each_get_their_own_answer(
    backend: Backend, peer: Backend
) -> None:
    # Many at once (PostgreSQL sends them in shared statements): each answered as alone.
    for i in range(20):
        await backend.kv_set(f"many:{i}", "mine" if i % 2 else "yours")
    await backend.kv_set("twice", "v")
    asks = [(f"many:{i}", "mine" if i % 3 else None) for i in range(20)] + [("absent", None)]
    calls = [(backend if i % 2 else peer).kv_delete(k, v) for i, (k, v) in enumerate(asks)]
    calls += [backend.kv_delete("twice", "other"), backend.kv_delete("twice")]
    got = await asyncio.gather(*calls)
    wanted = [i % 3 == 0 or i % 2 == 1 for i in range(20)] + [False, False, True]
    assert got == wanted
    left = await backend.kv_scan("many:")
    assert sorted(left) == sorted(f"many:{i}" for i in range(20) if not wanted[i])
    assert await backend.kv_get("twice") is None


async def test_many_calls_at_once_all_answer(backend: Backend) -> None:
    """More calls in flight than a store keeps connections (redis-py's cluster pool holds
    100 per node and used to raise past them): they wait their turn, none fails."""
    await asyncio.gather(*(backend.kv_set(f"many:{i}", str(i)) for i in range(300)))
    got = await asyncio.gather(*(backend.counter_add("many", 1) for _ in range(300)))
    assert sorted(got) == list(range(1, 301))
    assert await backend.kv_get("many:299") == "299"


async def test_scan_pages_in_byte_order(backend: Backend, peer: Backend) -> None:
    # A bounded, ordered scan: what a listing of flow runs newest first reads per page.
    keys = [f"page:{i:03d}" for i in range(12)] + ["page:z\u4e2d", "page:\u00e9"]
    for k in reversed(keys):
        await backend.kv_set(k, k[5:])
    await backend.kv_set("page:007x", "gone", ttl=0.05)  # expired: read past, never listed
    await backend.kv_set("pagf", "outside")
    await backend.kv_set("pag", "outside")
    await asyncio.sleep(0.1)
    assert list(await peer.kv_scan("page:")) == keys
    assert list(await peer.kv_scan("page:", 5)) == keys[:5]
    assert list(await peer.kv_scan("page:", 5, after=keys[4])) == keys[5:10]
    assert list(await peer.kv_scan("page:", 5, after="page:007")) == keys[8:13]
    assert list(await peer.kv_scan("page:", reverse=True)) == keys[::-1]
    assert list(await peer.kv_scan("page:", 3, reverse=True)) == keys[:-4:-1]
    assert list(await peer.kv_scan("page:", 4, reverse=True, after="page:009")) == keys[8:4:-1]
    assert list(await peer.kv_scan("page:", 4, reverse=True, after="page:008")) == keys[7:3:-1]
    assert list(await peer.kv_scan("page:", reverse=True, after="page:002")) == keys[1::-1]
    # A key to start past that is outside the prefix: the whole prefix, or none of it.
    assert list(await peer.kv_scan("page:", 2, after="pag")) == keys[:2]
    assert list(await peer.kv_scan("page:", 2, after="pagf")) == []
    assert list(await peer.kv_scan("page:", 2, reverse=True, after="pagf")) == keys[:-3:-1]
    assert list(await peer.kv_scan("page:", 2, reverse=True, after="pag")) == []
    assert await peer.kv_scan("page:", 2) == {"page:000": "000", "page:001": "001"}
    assert await peer.kv_scan("page:", 0) == {}


async def test_get_many_reads_the_live_keys(backend: Backend, peer: Backend) -> None:
    await backend.kv_set("many:a", "1")
    await backend.kv_set("many:\u00e9", "2")
    await backend.kv_set("many:gone", "3", ttl=0.05)
    await asyncio.sleep(0.1)
    asked = ["many:a", "many:missing", "many:gone", "many:\u00e9"]
    assert await peer.kv_get_many(asked) == {"many:a": "1", "many:\u00e9": "2"}
    assert await peer.kv_get_many([]) == {}
    for i in range(700):  # more than one statement's worth on SQLite
        await backend.kv_set(f"many:{i}", str(i))
    found = await peer.kv_get_many([f"many:{i}" for i in range(-10, 700)])
    assert found == {f"many:{i}": str(i) for i in range(700)}
