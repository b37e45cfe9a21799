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


def test_an_edited_payload_gets_its_hidden_values_back_where_they_stayed_masked() -> None:
    hide = Redactor(["password", "token"])
    stored = {"user": "ada", "password": "p", "items": [{"token": "t1"}, {"token": "t2"}]}
    edited = hide(stored) | {"user": "grace"}
    edited["items"][1]["token"] = "new-token"  # typed over the mask: the new value wins
    assert hide.restore(edited, stored) == {
        "user": "grace",
        "password": "p",
        "items": [{"token": "t1"}, {"token": "new-token"}],
    }
    # A masked field that is new, or a "***" under a name not hidden, stays as typed.
    assert hide.restore({"token": "***", "note": "***"}, {}) == {"token": "***", "note": "***"}
