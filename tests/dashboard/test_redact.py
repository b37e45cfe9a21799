"""Redaction: the field names of a setting, at any depth, case-insensitive, inside names."""

from __future__ import annotations

from workhorse.dashboard.redact import Redactor
from workhorse.settings import Settings


def test_the_default_names_hide_values_at_any_depth() -> None:
    hide = Redactor(Settings.load(env={}).dashboard_redact)
    given = {
        "user": "ada",
        "DB_Password": "p",
        "nested": [{"Authorization": "Bearer x", "note": "ok"}, "plain"],
        "api_key": {"whole": "subtree"},
        "tokens_left": 3,  # contains "token": hidden too, better safe
    }
    assert hide(given) == {
        "user": "ada",
        "DB_Password": "***",
        "nested": [{"Authorization": "***", "note": "ok"}, "plain"],
        "api_key": "***",
        "tokens_left": "***",
    }
    assert given["DB_Password"] == "p"  # a copy: the record is untouched


def test_the_names_come_from_the_setting() -> None:
    s = Settings.load(env={"WORKHORSE_DASHBOARD_REDACT": "ssn, Card"})
    assert s.dashboard_redact == ("ssn", "Card")
    hide = Redactor(s.dashboard_redact)
    assert hide({"ssn": 1, "card_number": 2, "password": 3}) == {
        "ssn": "***",
        "card_number": "***",
        "password": 3,
    }
