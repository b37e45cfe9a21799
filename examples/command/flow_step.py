"""An example flow step for runtime="command": it keeps a value in its run's state and
emits one trigger per item (a fan-out), through the worker.

    @app.task(flow="mixed", entry=True, emits=["item"], runtime="command",
              command=["python3", "examples/command/flow_step.py"])
"""

from typing import Any

from workhorse_job import Context, run


def handler(job: dict[str, Any], ctx: Context) -> dict[str, Any]:
    assert ctx.flow is not None, "this program runs as a flow step"
    items = job["data"]
    ctx.state.set("count", len(items))
    for x in items:
        ctx.flow.emit("item", x)
    return {"run": ctx.flow.run_id, "step": ctx.flow.step, "count": ctx.state.get("count")}


if __name__ == "__main__":
    run(handler)
