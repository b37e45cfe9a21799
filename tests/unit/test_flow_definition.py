"""A flow's steps are checked when they are defined (or when a run starts): a step with
neither an entry nor subscriptions, a trigger nobody emits, an undeclared emit, a bad
policy, each fails with an error that names the fix."""

import textwrap
from pathlib import Path
from typing import Any

import pytest

from workhorse import ConfigError, Workhorse


def test_a_step_needs_entry_or_subscriptions_and_not_both() -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match="entry=True or subscribes"):
        app.task(lambda: None, name="neither", flow="f")  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="entry=True or subscribes"):
        app.task(lambda: None, name="both", flow="f", entry=True, subscribes=["x"])  # type: ignore[call-overload]
    assert "neither" not in app.tasks
    assert "both" not in app.tasks


def test_step_options_need_a_flow() -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match="add flow='name'"):
        app.task(lambda: None, name="lost", entry=True)  # type: ignore[call-overload]


def test_triggers_are_names_in_a_list() -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match="list of trigger names"):
        app.task(lambda: None, name="s", flow="f", subscribes="step:a")  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="invalid trigger name"):
        app.task(lambda: None, name="s", flow="f", subscribes=["a b"])  # type: ignore[call-overload]


def test_external_triggers_are_names_on_an_entry_only() -> None:
    app = Workhorse("memory://")

    async def handler(data: Any) -> Any:
        return data

    with pytest.raises(ConfigError, match="only an entry step"):
        app.task(name="later", flow="f", subscribes=["x"], triggers=["user.signup"])(handler)
    with pytest.raises(ConfigError, match="list of trigger names"):
        app.task(name="a", flow="f", entry=True, triggers="user.signup")(handler)
    with pytest.raises(ConfigError, match="strings"):
        app.task(name="b", flow="f", entry=True, triggers=[3])(handler)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="twice"):
        app.task(name="c", flow="f", entry=True, triggers=["t", "t"])(handler)
    with pytest.raises(ConfigError, match="without that prefix"):
        app.task(name="d", flow="f", entry=True, triggers=["step:x"])(handler)
    with pytest.raises(ConfigError, match="add flow='name'"):
        app.task(name="e", triggers=["t"])(handler)
    # A refused step leaves nothing registered.
    assert not {"later", "a", "b", "c", "d", "e"} & set(app.tasks)
    app.task(name="ok", flow="f", entry=True, triggers=["t"])(handler)
    assert app.flows["f"].steps["ok"].triggers == ("t",)
    assert [f.name for f in app.flows.graph.started_by("t")] == ["f"]


async def test_a_flow_is_checked_whole_when_a_run_starts() -> None:
    app = Workhorse("memory://")

    @app.task(name="b", flow="f", subscribes=["user.created"])
    async def b(data: Any) -> None: ...

    async with app:
        with pytest.raises(ConfigError, match="no entry step"):
            await app.flows.start("f")

        @app.task(name="a", flow="f", entry=True)
        async def a(data: Any) -> None: ...

        with pytest.raises(ConfigError, match=r"add emits=\['user.created'\]"):
            await app.flows.start("f")

        app.task(lambda: None, name="h_entry", flow="h", entry=True)  # type: ignore[call-overload]
        app.task(lambda: None, name="h_next", flow="h", subscribes=["step:nope"])  # type: ignore[call-overload]
        with pytest.raises(ConfigError, match="no such step"):
            await app.flows.start("h")
        with pytest.raises(ConfigError, match="unknown flow 'g'; known flows: f, h"):
            await app.flows.start("g")


def test_flow_policies_are_checked() -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match="on_failure must be one of"):
        app.flows.define("f", on_failure="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs state_ttl"):
        app.flows.define("f", cleanup="ttl")
    assert app.flows.define("f", cleanup="ttl", state_ttl=60).state_ttl == 60.0


def test_a_step_may_belong_to_several_flows() -> None:
    app = Workhorse("memory://")
    app.task(lambda: None, name="shared", flow=["one", "two"], entry=True)  # type: ignore[call-overload]
    assert app.flows["one"].steps["shared"].entry
    assert app.flows["two"].steps["shared"].entry


def test_discovery_reads_step_options(tmp_path: Path) -> None:
    jobs = tmp_path / "flow_jobs"
    jobs.mkdir()
    (jobs / "first.py").write_text(
        "flow = 'found'\nentry = True\ntriggers = ['found.it']\ndef handler(data):\n    return 1\n"
    )
    (jobs / "second.py").write_text(
        textwrap.dedent(
            """
            flow = "found"
            subscribes = ["step:first"]
            def handler(data):
                return data
            """
        )
    )
    app = Workhorse("memory://")
    app.discover(jobs)
    assert app.flows["found"].steps["second"].subscribes == ("step:first",)
    assert app.flows["found"].steps["first"].triggers == ("found.it",)
    app.flows["found"].check()
