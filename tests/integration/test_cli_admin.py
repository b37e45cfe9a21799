"""The operator commands: check, migrate, cron."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import POSTGRES_URL, require_service
from workhorse import Workhorse
from workhorse.cli import main
from workhorse.urls import redact


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_store(url: str) -> None:
    async def create() -> None:
        app = Workhorse(url)
        await app.open()
        await app.close()

    asyncio.run(create())


def test_check_reports_a_reachable_store(tmp_path: Path) -> None:
    create_store(f"sqlite:///{tmp_path}/c.db")
    result = CliRunner().invoke(main, ["check", "--json", "--url", f"sqlite:///{tmp_path}/c.db"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "SQLiteBackend"
    assert report["capabilities"]["durable"] is True
    assert "multi_machine" in report["lacks"]


def test_check_names_an_unreachable_store_without_its_password() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(main, ["check", "--url", url])
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert "Check that the server runs" in result.output


def test_redact() -> None:
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_migrate(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["migrate", "--url", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 0
    assert "nothing to migrate" in result.output
    require_service("postgres", "127.0.0.1", 5432)
    url = f"{POSTGRES_URL}?schema=whcli{uuid.uuid4().hex[:8]}"
    try:
        first = CliRunner().invoke(main, ["migrate", "--url", url])
        assert first.exit_code == 0, first.output
        again = CliRunner().invoke(main, ["migrate", "--url", url])
        assert "already up to date" in again.output
    finally:
        from workhorse.backends import backend_from_url

        async def drop() -> None:
            b = backend_from_url(url)
            await b.open()
            await b.drop()  # type: ignore[attr-defined]
            await b.close()

        asyncio.run(drop())


def test_cron_lists_schedules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cron.db"
    app = Workhorse(url)

    @app.task
    async def export(data: dict[str, str]) -> None: ...

    async def add() -> None:
        await app.add_schedule("nightly", export, "0 2 * * *", data={"format": "csv"})
        await app.close()

    asyncio.run(add())
    result = CliRunner().invoke(main, ["cron", "--json", "--url", url])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert (row["name"], row["task"], row["pattern"]) == ("nightly", "export", "0 2 * * *")
    assert row["data"] == {"format": "csv"}
    assert row["last_job_id"] is None


def test_check_fails_on_a_task_queue_no_configuration_knows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "queue_typo_app.py").write_text(
        "from workhorse import Workhorse\n"
        f"app = Workhorse('sqlite:///{tmp_path}/c.db', known_queues=['mail'])\n"
        "@app.task(queue='mail')\n"
        "async def send_mail() -> None: ...\n"
        "@app.task(queue='priorty')\n"
        "async def send_otp() -> None: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("WORKHORSE_QUEUES", raising=False)
    result = CliRunner().invoke(main, ["check", "--app", "queue_typo_app:app"])
    assert result.exit_code == 1
    assert "'send_otp' names 'priorty'" in result.output
    assert "Known queues: default, mail, priority" in result.output

    monkeypatch.setenv("WORKHORSE_QUEUES", "default,priority,priorty")  # run here: known
    create_store(f"sqlite:///{tmp_path}/c.db")
    result = CliRunner().invoke(main, ["check", "--json", "--app", "queue_typo_app:app"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["queues"] == {"consumed": ["default", "priority", "priorty"], "known": ["mail"]}


def test_commands_that_look_never_create_a_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/.workhorse/workhorse.db"
    for command in (["status"], ["jobs"], ["check"], ["cron"], ["job", "0" * 32]):
        result = CliRunner().invoke(main, [*command, "--url", url])
        assert result.exit_code == 1, (command, result.output)
        assert "no store at" in result.output and "--url" in result.output
    assert not (tmp_path / ".workhorse").exists()


def test_check_reports_a_missing_postgres_schema_without_creating_it() -> None:
    require_service("postgres", "127.0.0.1", 5432)
    schema = f"whcli{uuid.uuid4().hex[:8]}"
    url = f"{POSTGRES_URL}?schema={schema}"
    result = CliRunner().invoke(main, ["check", "--json", "--url", url])
    assert result.exit_code == 1
    assert "no store at" in json.loads(result.stdout)["error"]
    assert "workhorse migrate" in result.output
    from workhorse.backends import backend_from_url

    async def version() -> int:
        backend = backend_from_url(url)
        return int(await backend.schema_version())  # type: ignore[attr-defined]

    assert asyncio.run(version()) == 0
