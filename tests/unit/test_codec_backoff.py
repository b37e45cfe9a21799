import pytest

from workhorse import ConfigError, Exponential, Fixed, PayloadError
from workhorse.backoff import Custom, make_backoff
from workhorse.codec import encode_payload


def test_payload_must_be_json() -> None:
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        encode_payload({"x": object()}, 100)


def test_payload_cap_names_size_and_fix() -> None:
    with pytest.raises(PayloadError, match=r"over the 10-byte cap.*WORKHORSE_MAX_PAYLOAD"):
        encode_payload("x" * 20, 10)


def test_fixed_and_exponential() -> None:
    assert Fixed(3).delay(5, None) == 3
    exp = Exponential(base=1, factor=2, cap=10, jitter=False)
    assert [exp.delay(n, None) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    jittered = Exponential(base=4, jitter=True)
    assert all(2 <= jittered.delay(1, None) <= 4 for _ in range(100))


def test_backoff_specs() -> None:
    assert isinstance(make_backoff(None), Exponential)
    assert make_backoff(2.5) == Fixed(2.5)
    custom = make_backoff(lambda attempt, err: attempt * 10)
    assert isinstance(custom, Custom)
    assert custom.delay(3, None) == 30
    with pytest.raises(ConfigError, match="unknown backoff"):
        make_backoff("linear")
    with pytest.raises(ConfigError):
        make_backoff(-1)
