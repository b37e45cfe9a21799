import pytest

from workhorse import ConfigError, Settings, Workhorse
from workhorse.settings import DEFAULT_URL


def test_defaults_without_environment() -> None:
    s = Settings.load(env={})
    assert s.url == DEFAULT_URL
    assert s.queues == ("default", "priority")
    assert s.max_payload == 1 << 20


def test_arguments_beat_environment_beats_defaults() -> None:
    env = {"WORKHORSE_URL": "memory://", "WORKHORSE_CONCURRENCY": "4", "WORKHORSE_QUEUES": "a, b"}
    s = Settings.load(env=env, concurrency=7)
    assert s.url == "memory://"
    assert s.concurrency == 7
    assert s.queues == ("a", "b")


def test_bad_values_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        Settings.load(env={"WORKHORSE_CONCURRENCY": "zero"})
    with pytest.raises(ConfigError, match="invalid queue name"):
        Settings.load(env={}, queues=["ok", "bad name!"])


def test_unknown_setting_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid:.*concurrency"):
        Workhorse("memory://", concurency=3)


def test_nothing_is_read_until_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Workhorse()
    monkeypatch.setenv("WORKHORSE_URL", "memory://")
    assert app.settings.url == "memory://"  # read when first needed, not at construction
    app.configure(url="sqlite:///x.db")
    assert app.settings.url == "sqlite:///x.db"


def test_unsupported_url_says_which_are() -> None:
    from workhorse.backends import SCHEMES

    app = Workhorse("mysql://nope")
    with pytest.raises(ConfigError, match="memory://") as caught:
        _ = app.backend
    # Every scheme the parser takes is named (postgres:// is postgresql://'s alias).
    missing = [s for s in SCHEMES if s != "postgres" and f"{s}://" not in str(caught.value)]
    assert missing == []


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("api_prefix", ["", "/api", "/v1/x.y-z_0"], ["/", "api", "/a/", "/a b", "/x\n"]),
        ("dashboard_prefix", ["/admin", "/ops/admin"], ["", "/", "admin", "/a/", "/é"]),
    ],
)
def test_path_prefixes_are_checked(name: str, good: list[str], bad: list[str]) -> None:
    for value in good:
        assert getattr(Settings.load(env={}, **{name: value}), name) == value
    for value in bad:
        with pytest.raises(ConfigError, match=f"{name}: .*use a path such as /api"):
            Settings.load(env={}, **{name: value})


def test_settings_use_no_pydantic_core_regex() -> None:
    """A ``Field(pattern=...)`` makes pydantic-core page in its regex engine, ~0.5 MB of
    every process that builds Settings: paths are checked with Python's re."""
    assert "'pattern'" not in repr(Settings.__pydantic_core_schema__)
