"""Secrets stay secret: no message shows a URL's password, a command program gets only
the environment it needs, TLS verifies, and a URL option no backend reads is refused."""

from __future__ import annotations

import pytest

from workhorse import ConfigError, Workhorse
from workhorse.backends import backend_from_url
from workhorse.urls import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://u:s3cret@h/db?schema=x", "postgresql://u:***@h/db?schema=x"),
        ("rediss+cluster://u:s3cret@h1:7000,h2:7001/", "rediss+cluster://u:***@h1:7000,h2:7001/"),
        ("mongodb://u:s3/cret@h/db", "mongodb://u:***@h/db"),
        ("u:s3cret@h", "u:***@h"),
        ("redis://h:6379/0?tag=a@b", "redis://h:6379/0?tag=a@b"),
        ("redis://u@h/0", "redis://u@h/0"),
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
    ],
)
def test_redact_hides_only_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize("url", ["mongodb://u:s3cret@h/db", "redis:/u:s3cret@h", "u:s3cret@h"])
def test_an_unknown_scheme_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        backend_from_url(url)
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


def test_an_apps_unknown_scheme_is_refused_without_its_password() -> None:
    app = Workhorse("amqp://guest:s3cret@rabbit:5672//")
    with pytest.raises(ConfigError) as info:
        app.backend  # noqa: B018 - built on first use
    assert "s3cret" not in str(info.value)
