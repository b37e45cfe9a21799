"""A small project's jobs: a signup enqueues a welcome email, which enqueues a reminder a
day later. Its tests (test_jobs.py) use workhorse's pytest plugin: no server needed."""

from __future__ import annotations

from pydantic import BaseModel

from workhorse import JobContext, Workhorse

app = Workhorse()

SENT: list[str] = []  # stands in for an email provider


class Email(BaseModel):
    to: str


@app.task(retries=2, backoff=30)
async def send_welcome(data: Email, ctx: JobContext) -> dict[str, str]:
    if data.to.endswith("@flaky.example"):
        raise ConnectionError("the mail server refused the connection")
    SENT.append(f"welcome:{data.to}")
    await ctx.enqueue("send_reminder", {"to": data.to}, delay=86_400)
    return {"sent": data.to}


@app.task
async def send_reminder(data: Email) -> None:
    SENT.append(f"reminder:{data.to}")


async def signup(email: str) -> str:
    """What the web app calls: it only enqueues."""
    handle = await send_welcome.enqueue(Email(to=email))
    return handle.id
