"""A queue name that is a typo fails start-up, in either direction, without breaking the
split topology where each worker service runs some of the app's queues."""

from __future__ import annotations

from typing import Any

import pytest

from workhorse import ConfigError, Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.settings import Settings


def app_with_tasks(**settings: Any) -> Workhorse:
    app = Workhorse(backend=MemoryBackend(), **settings)

    @app.task(queue="priority")
    async def send_otp() -> None: ...

    @app.task(queue="mail")
    async def send_mail() -> None: ...

    @app.task
    async def rebuild_user_feed() -> None: ...

    return app


def test_a_task_naming_a_queue_no_configuration_knows_fails_start_up() -> None:
    app = app_with_tasks(known_queues=["mail"])

    @app.task(queue="priorty")
    async def send_sms() -> None: ...

    for queues in (["default", "priority"], ["mail"]):
        with pytest.raises(ConfigError) as err:
            app.worker(queues=queues)
        message = str(err.value)
        assert "'send_sms' names 'priorty'" in message
        assert "Known queues: default, mail, priority" in message
        assert "known_queues" in message


def test_split_topology_declares_the_other_services_queues() -> None:
    app = app_with_tasks(known_queues=["mail"])
    app.worker(queues=["default", "priority"])  # leaves mail to the mail service
    app.worker(queues=["mail"])  # leaves default and priority to the other one

    # Without the declaration, a worker that does not run "mail" cannot tell a queue
    # that another service runs from a typo: it fails and says how to declare it.
    bare = app_with_tasks()
    with pytest.raises(ConfigError, match=r"WORKHORSE_KNOWN_QUEUES=mail\)"):
        bare.worker(queues=["default", "priority"])
    bare.worker(queues=["default", "priority", "mail"])  # a queue run here is known


def test_a_consumed_queue_that_is_a_typo_fails_start_up() -> None:
    app = app_with_tasks(known_queues=["mail", "reports"])
    with pytest.raises(ConfigError, match=r"consumes unknown queue\(s\) \['mial'\]"):
        app.worker(queues=["default", "mial"])
    app.worker(queues=["reports"])  # known, though no task of this app uses it yet


def test_known_queues_from_the_environment() -> None:
    loaded = Settings.load(env={"WORKHORSE_KNOWN_QUEUES": "mail, reports"})
    assert loaded.known_queues == ("mail", "reports")
    assert Settings.load(env={"WORKHORSE_KNOWN_QUEUES": ""}).known_queues == ()
    assert Settings.load(env={}).known_queues == ()
    with pytest.raises(ConfigError, match="invalid queue name"):
        Settings.load(env={"WORKHORSE_KNOWN_QUEUES": "mail,bad name"})
