"""An example job for runtime="command":

@app.task(runtime="command", command=["python3", "examples/command/wordcount.py"])
def wordcount(data: dict) -> dict: ...   # the body never runs; it types the payload
"""

from workhorse_job import run


def handler(job, ctx):
    words = str(job["data"].get("text", "")).split()
    ctx.log("counting", words=len(words))
    ctx.progress(100)
    runs = (ctx.state.get("runs") or 0) + 1
    ctx.state.set("runs", runs)
    return {"words": len(words), "runs": runs}


if __name__ == "__main__":
    run(handler)
