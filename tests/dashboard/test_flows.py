"""The flows pages on each durable store: runs by flow and state, a run's graph drawn from
the flow's definition and coloured by its steps' states, its timeline and state values,
and the actions start, cancel, restart and resume."""

from __future__ import annotations

import asyncio
import html
import re

import pytest

from tests.dashboard.conftest import Board
from workhorse import Workhorse
from workhorse.dashboard.flowgraph import NODE_W, layout
from workhorse.flows import Flows, StepInfo, listing


def nodes(html: str) -> dict[str, str]:
    """Each step's node in the graph: its state class."""
    found = re.findall(r'class="node node-(\w+)[^"]*" data-step="(\w+)" data-state="(\w+)"', html)
    assert all(cls == state for cls, _, state in found), found
    return {step: state for _, step, state in found}


async def test_a_run_started_from_the_page_draws_its_graph_and_ends_green(board: Board) -> None:
    await board.login()
    csrf = await board.csrf("/admin/flows")
    r = await board.http.post(
        "/admin/flows/order/start",
        data={"csrf": csrf, "data": '{"id": 7, "total": 30, "password": "input-secret"}'},
    )
    assert r.status_code == 303 and "started" in r.headers["location"]
    run_id = r.headers["location"].split("/runs/")[1].split("?")[0]
    page = (await board.http.get(f"/admin/flows/runs/{run_id}")).text
    assert nodes(page) == {  # nothing ran yet: the entry is queued, the rest not started
        "receive": "queued",
        "charge": "pending",
        "reserve": "pending",
        "ship": "pending",
    }
    assert 'hx-get="/admin/parts/flows/runs/' in page  # a running run's page refreshes
    await board.app.start_worker()
    await board.app.flows.handle(run_id).wait(15)
    for _ in range(100):  # an event is readable once no older transaction is in flight
        part = html.unescape((await board.http.get(f"/admin/parts/flows/runs/{run_id}")).text)
        if "flow.completed" in part:
            break
        await asyncio.sleep(0.05)
    assert nodes(part) == dict.fromkeys(["receive", "charge", "reserve", "ship"], "completed")
    assert "hx-get" not in part  # an ended run stops refreshing
    assert 'data-step="ship" data-state="completed"' in part and "⋈ join" in part
    assert len(re.findall(r'<g class="edge" data-from="(\w+)" data-to="(\w+)"', part)) == 4
    assert "completed: completed" in part  # the legend says in words what colours mean
    for secret in ("input-secret", "state-secret-9"):  # input and state values redacted
        assert secret not in part
    assert '"number": "4242"' in part and '"card_secret": "***"' in part
    links = re.findall(r'href="(/admin/jobs/r[0-9a-f]+)"', part)
    assert len(links) == 4  # each step links its job, whose page opens
    assert (await board.http.get(links[0])).status_code == 200
    timeline = part.split('id="timeline"')[1]
    assert "flow.started" in timeline and "step.completed" in timeline
    assert "flow.completed" in timeline
    listing = (await board.http.get("/admin/flows")).text
    assert 'aria-label="1 completed run(s) of order"' in listing
    assert 'aria-label="0 running run(s) of approval"' in listing
    assert f"/admin/flows/runs/{run_id}" in listing
    assert 'hx-get="/admin/parts/flows?' in listing  # the lists reload when the log moves
    fragment = (await board.http.get("/admin/parts/flows")).text
    assert 'aria-label="1 completed run(s) of order"' in fragment
    assert "<form" not in fragment  # a reload never wipes an input being typed
    only = (await board.http.get("/admin/flows?flow=order&state=failed")).text
    assert f"/admin/flows/runs/{run_id}" not in only and "No run matches" in only


async def test_a_waiting_run_is_marked_then_cancelled_and_restarted(board: Board) -> None:
    await board.login()
    await board.app.start_worker()
    run = await board.app.flows.start("approval", {"id": 1})
    for _ in range(200):  # until the entry step ran and the wait began
        if (await board.app.flows.get(run.id)).waits:
            break
        await asyncio.sleep(0.05)
    path = f"/admin/flows/runs/{run.id}"
    page = (await board.http.get(path)).text
    assert nodes(page) == {"ask": "completed", "approve": "waiting"}
    assert "waits: signal approved" in page and "waits for <code>approved</code>" in page
    csrf = await board.csrf(path)
    r = await board.http.post(f"{path}/resume", data={"csrf": csrf})
    assert "resumed%3A%200%20step" in r.headers["location"]  # nothing had failed
    r = await board.http.post(f"{path}/cancel", data={"csrf": csrf})
    assert r.status_code == 303 and "cancelled" in r.headers["location"]
    assert (await board.app.flows.get(run.id)).state == "cancelled"
    for _ in range(100):  # the page read the log before: now it reads what came after
        page = (await board.http.get(path)).text
        if "flow.cancelled" in page:
            break
        await asyncio.sleep(0.05)
    assert 'id="run-state">cancelled' in page and "Cancel run" not in page
    assert "flow.cancelled" in page.split('id="timeline"')[1]
    assert f'action="{path}/resume"' in page  # a cancelled run can go on
    r = await board.http.post(f"{path}/resume", data={"csrf": csrf})
    assert "resumed%3A%200%20step" in r.headers["location"]
    assert (await board.app.flows.get(run.id)).state == "running"
    r = await board.http.post(f"{path}/restart", data={"csrf": csrf})
    assert "restarted" in r.headers["location"]
    assert (await board.app.flows.get(run.id)).state == "running"
    for _ in range(100):  # a new generation: its page reads the timeline again
        timeline = (await board.http.get(path)).text.split('id="timeline"')[1]
        if timeline.count("flow.started") == 2:
            break
        await asyncio.sleep(0.05)
    assert timeline.count("flow.started") == 2 and "flow.cancelled" in timeline


async def test_bad_input_and_unknown_runs_say_what_to_fix(board: Board) -> None:
    await board.login()
    csrf = await board.csrf("/admin/flows")
    r = await board.http.post("/admin/flows/order/start", data={"csrf": csrf, "data": "{oops"})
    assert "not%20JSON" in r.headers["location"]
    r = await board.http.post("/admin/flows/nope/start", data={"csrf": csrf, "data": "{}"})
    assert "unknown%20flow" in r.headers["location"]
    assert (await board.http.get("/admin/flows/runs/0123456789abcdef")).status_code == 404
    assert (await board.http.get("/admin/flows/runs/not-a-run")).status_code == 422
    assert await board.app.flows.list() == []


async def test_runs_are_listed_fifty_a_page_by_cursor(board: Board) -> None:
    started = [(await board.app.flows.start("approval", {"n": n})).id for n in range(51)]
    await board.login()
    first = (await board.http.get("/admin/flows?flow=approval")).text
    older = re.search(r'href="(/admin/flows\?[^"]*cursor=[^"]+)" rel="next"', first)
    assert older, "no link to older runs"
    second = (await board.http.get(html.unescape(older.group(1)))).text
    on = [re.findall(r"/admin/flows/runs/([0-9a-f]{16})", t) for t in (first, second)]
    assert len(on[0]) == 50 and len(on[1]) == 1 and 'rel="next"' not in second
    assert sorted(on[0] + on[1]) == sorted(started)
    assert 'aria-label="51 running run(s) of approval"' in first


async def test_counts_say_when_they_cover_the_newest_runs_only(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "COUNTED", 3)
    for n in range(3):
        await board.app.flows.start("approval", {"n": n})
    await board.login()
    page = (await board.http.get("/admin/flows")).text
    assert 'aria-label="3 running run(s) of approval"' in page
    assert 'id="flow-counted"' not in page
    await board.app.flows.start("approval", {"n": 3})
    page = (await board.http.get("/admin/flows")).text
    assert 'aria-label="3 running run(s) of approval"' in page  # of the newest 3
    assert re.search(r'id="flow-counted"[^>]*>Counted over the newest 3 runs', page)
    assert len(re.findall(r"/admin/flows/runs/([0-9a-f]{16})", page)) == 4  # all listed


def test_the_layout_puts_each_step_below_what_it_follows_and_marks_it() -> None:
    flows = Flows(Workhorse("memory://").client)
    flows.add_step("fetch", "crawl", entry=True, emits=["page"])
    flows.add_step("parse", "crawl", subscribes=["page"], wait={"signal": "ok", "timeout": 60})
    flows.add_step("index", "crawl", subscribes=["step:fetch", "step:parse"])
    flows.add_step("notify", "crawl", subscribes=["step:index"], wait={"webhook": True})
    done = StepInfo("fetch", "j1", "completed")
    drawing = layout(flows["crawl"], [done, done], {"parse"}, {"index": "process"})
    at = {n.name: n for n in drawing.nodes}
    assert at["fetch"].y < at["parse"].y < at["index"].y  # the join sits below both
    assert (at["fetch"].state, at["fetch"].jobs) == ("completed", 2)
    assert (at["parse"].state, at["parse"].wait) == ("waiting", "signal ok, 60 s")
    index = at["index"]
    assert (index.state, index.join, index.runtime) == ("pending", True, "process")
    assert at["notify"].y > at["index"].y and at["notify"].wait == "webhook"
    edges = {(e.source, e.target): e.label for e in drawing.edges}
    assert edges == {
        ("fetch", "parse"): "page",
        ("fetch", "index"): "",
        ("parse", "index"): "",
        ("index", "notify"): "",
    }
    assert all(n.x >= 0 and n.x + NODE_W <= drawing.width for n in drawing.nodes)


async def test_a_restart_form_sent_twice_restarts_the_run_once(board: Board) -> None:
    # A double click, or a form the browser sends again: the form carries its page's
    # generation, and the second send restarts nothing.
    await board.login()
    await board.app.start_worker()
    run = await board.app.flows.start("order", {"id": 9})
    await run.result(timeout=10)
    path = f"/admin/flows/runs/{run.id}"
    page = (await board.http.get(path)).text
    csrf = await board.csrf(path)
    found = re.search(r'name="key" value="([^"]+)"', page)
    assert found, "no key in the restart form"
    form = {"csrf": csrf, "key": html.unescape(found.group(1))}
    first = await board.http.post(f"{path}/restart", data=form)
    assert "restarted%20from" in first.headers["location"]
    second = await board.http.post(f"{path}/restart", data=form)
    assert "asked%20for%20twice" in second.headers["location"]
    await board.app.flows.handle(run.id, "order").result(timeout=10)
    started = [e for e in await board.app.flows.events(run.id) if e.type == "flow.started"]
    assert len(started) == 2
