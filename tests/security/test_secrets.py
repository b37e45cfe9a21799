"""Secrets stay secret: no message shows a URL's password, a command program gets only
the environment it needs, TLS verifies, and a URL option no backend reads is refused."""

from __future__ import annotations

import ssl

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


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("memory://?max_events=10", "valid: none"),
        ("sqlite:///jobs.db?lock_timout=5", "lock_timeout"),
        ("redis://h:6379/0?socket_timeout=5", "call_timeout"),
        ("redis://h:6379/0?ssl_cert_reqs=none", "prefix"),  # TLS options need rediss://
        ("rediss://h:6379/0?ssl_check_hostname=false", "ssl_cert_reqs"),
        ("postgresql://h/db?shema=jobs", "schema"),
    ],
)
def test_an_unknown_url_option_is_refused_with_the_known_ones(url: str, names: str) -> None:
    with pytest.raises(ConfigError, match="unknown .*URL option") as info:
        backend_from_url(url)
    assert names in str(info.value)


def test_known_url_options_are_accepted() -> None:
    backend_from_url("redis://h:6379/0?prefix=a&db=1&call_timeout=5")
    backend_from_url("rediss://h:6379/0?ssl_ca_certs=/etc/ssl/ca.pem&ssl_cert_reqs=required")
    backend_from_url("postgresql://u:p@h/db?schema=jobs&sslmode=require&application_name=w")


@pytest.mark.parametrize("reqs", ["required", "optional"])
def test_redis_tls_verifies_the_server_unless_told_none(reqs: str) -> None:
    """ssl_cert_reqs=optional used to turn verification off; only none does."""
    from workhorse.backends.redis.wire import Wire

    wire = Wire(f"rediss://h:6380/0?ssl_cert_reqs={reqs}", "rediss://h:6380/0")
    assert wire.ssl is not None
    assert wire.ssl.verify_mode is ssl.CERT_REQUIRED and wire.ssl.check_hostname
    off = Wire("rediss://h:6380/0?ssl_cert_reqs=none", "rediss://h:6380/0")
    assert off.ssl is not None and off.ssl.verify_mode is ssl.CERT_NONE


def test_redis_tls_refuses_an_unknown_cert_reqs() -> None:
    with pytest.raises(ConfigError, match="ssl_cert_reqs='maybe'"):
        backend_from_url("rediss://h:6380/0?ssl_cert_reqs=maybe")


def test_the_cli_shows_the_url_without_its_password() -> None:
    from click.testing import CliRunner

    from workhorse.cli import main

    result = CliRunner().invoke(main, ["settings", "--url", "postgresql://u:s3cret@db/app"])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "postgresql://u:***@db/app" in result.output
