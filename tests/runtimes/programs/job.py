"""A command job for the tests, built on examples/command/workhorse_job.py."""

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "command"))

from workhorse_job import Context, Fatal, run  # type: ignore[import-not-found]


def handler(job: dict[str, Any], ctx: Context) -> Any:
    data = job["data"]
    action = data["action"]
    if action == "all":
        ctx.log("hello from python", lang="python")
        print("a line on stderr")  # print goes to stderr, and into the job's log
        ctx.progress(40)
        before = ctx.state.get("count")
        ctx.state.set("count", (before or 0) + 1)
        ctx.emit("test.python", {"n": data["n"]})
        follow = ctx.enqueue("follow", {"from": "python"})
        return {
            "pid": os.getpid(),
            "before": before,
            "after": ctx.state.get("count"),
            "follow": follow["id"],
            "attempt": ctx.attempt,
            "n": data["n"] * 2,
        }
    if action == "fail":
        raise ValueError("bad input: " + str(data.get("n")))
    if action == "fatal":
        raise Fatal("give up")
    if action == "sleep":
        Path(data["pid_file"]).write_text(str(os.getpid()))
        time.sleep(60)
    if action == "exit":
        sys.stderr.write("about to exit\n")
        sys.stderr.flush()
        os._exit(3)
    if action == "noop":
        return None
    if action == "env":
        return dict(os.environ)
    raise ValueError("unknown action " + action)


if __name__ == "__main__":
    run(handler)
