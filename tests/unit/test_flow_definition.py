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


def _steps(app: Workhorse, flow: str, spec: dict[str, list[str]], **extra: Any) -> None:
    """Add one no-op step per ``name: subscribes`` (an empty list: an entry)."""
    for name, subs in spec.items():
        options: dict[str, Any] = {"entry": True} if not subs else {"subscribes": subs}
        app.task(lambda: None, name=f"{flow}_{name}", flow=flow, **options, **extra.get(name, {}))  # type: ignore[call-overload]


def test_a_closed_flows_last_step_is_known_from_its_definition() -> None:
    """A closed flow (nothing emits, no cycle, one last step, a failure fails the run)
    ends when its last step completes; any other shape needs a look at the store."""
    app = Workhorse("memory://")
    _steps(app, "chain", {"a": [], "b": ["step:chain_a"], "c": ["step:chain_b"]})
    _steps(
        app,
        "dia",
        {"a": [], "b": ["step:dia_a"], "c": ["step:dia_a"], "d": ["step:dia_b", "step:dia_c"]},
    )
    _steps(app, "forked", {"a": [], "b": ["step:forked_a"], "c": ["step:forked_a"]})
    _steps(app, "lenient", {"a": [], "b": ["step:lenient_a"]})
    app.flows.define("lenient", on_failure="continue")
    _steps(
        app,
        "emitting",
        {"a": [], "b": ["item"]},
        a={"emits": ["item"]},
    )
    _steps(
        app,
        "looped",
        {
            "a": [],
            "b": ["step:looped_a", "step:looped_c"],
            "c": ["step:looped_b"],
            "z": ["step:looped_c"],
        },
    )
    last = {name: app.flows[name].last() for name in app.flows.names()}
    assert last["chain"] == "chain_c"
    assert last["dia"] == "dia_d"
    assert last["forked"] is None  # two last steps
    assert last["lenient"] is None  # the other branches go on after a failure
    assert last["emitting"] is None  # an emit may start a step any number of times
    assert last["looped"] is None  # a cycle
    shapes = {name: app.flows[name].shape() for name in app.flows.names()}
    # A completion hands off to new jobs when every subscriber is a plain step.
    assert [s.name for s in shapes["dia"].handoff["dia_a"]] == ["dia_b", "dia_c"]
    assert "dia_b" not in shapes["dia"].handoff  # a join's input
    # What a closed run's last step reads before it ends the run: the steps that start a
    # join inside their attempt, by ids derived from the steps before them.
    assert shapes["dia"].late == {"dia_b", "dia_c"}
    assert shapes["chain"].late == frozenset()
    assert [s.name for s in shapes["chain"].order] == ["chain_a", "chain_b", "chain_c"]
    assert [s.name for s in shapes["dia"].order][::3] == ["dia_a", "dia_d"]
    assert shapes["looped"].order == ()


def test_a_wait_for_a_signal_is_no_handoff_and_a_change_reshapes_the_flow() -> None:
    app = Workhorse("memory://")
    _steps(
        app,
        "w",
        {"a": [], "b": ["step:w_a"]},
        b={"wait": {"signal": "go"}},
    )
    assert app.flows["w"].shape().handoff == {}
    assert app.flows["w"].shape().waits
    assert app.flows["w"].last() == "w_b"
    app.flows.define("w", on_failure="continue")
    assert app.flows["w"].last() is None
    app.task(lambda: None, name="w_c", flow="w", subscribes=["step:w_a"])  # type: ignore[call-overload]
    assert app.flows["w"].shape().last is None  # two last steps now
