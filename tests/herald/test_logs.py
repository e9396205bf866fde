"""JSON log lines carry the bound correlation context and never an address or number."""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from herald.logs import HeraldJsonFormatter, current_context, log_context, redact

pytestmark = pytest.mark.fast


def formatted(record: logging.LogRecord) -> dict[str, object]:
    formatter = HeraldJsonFormatter("%(levelname)s %(message)s", static_fields={"component": "t"})
    return dict(json.loads(formatter.format(record)))


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("herald.test", logging.INFO, __file__, 1, message, None, None)
    made.__dict__.update(extra)
    return made


def test_bound_context_lands_on_every_line_and_explicit_fields_win() -> None:
    with log_context(request_id="req-1", tenant="acme"):
        with log_context(notification_id="n-1", tenant=None):
            line = formatted(record("sent", notification_id="n-explicit"))
            assert current_context() == {
                "request_id": "req-1",
                "tenant": "acme",
                "notification_id": "n-1",
            }
        assert current_context() == {"request_id": "req-1", "tenant": "acme"}
    assert current_context() == {}
    assert line["request_id"] == "req-1"
    assert line["tenant"] == "acme"
    assert line["notification_id"] == "n-explicit"
    assert line["component"] == "t"


def test_addresses_numbers_and_credentials_are_masked_everywhere() -> None:
    line = formatted(
        record(
            "550 <ada.lovelace+x@example.co.uk> rejected",
            error="To +4915112345678 failed; Authorization: Bearer abc.def-123",
            nested={"to": ["bob@example.com"]},
        )
    )
    text = json.dumps(line)
    for secret in ("ada.lovelace", "bob@example.com", "4915112345678", "abc.def-123"):
        assert secret not in text
    assert line["message"] == "550 <<email>> rejected"
    assert line["error"] == "To <phone> failed; Authorization: Bearer <redacted>"


def test_ids_and_local_hostnames_are_left_alone() -> None:
    kept = "notification 3f2a9c1e-0000 via <3f2a@localhost> attempt 2 of 3, HTTP 503"
    assert redact(kept) == kept


def test_the_declared_json_logger_releases_all_have_the_module_herald_imports() -> None:
    # herald.logs imports pythonjsonlogger.json, which python-json-logger added in 3.1: an
    # install that resolved an older release allowed by pyproject.toml could not log.
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (declared,) = [
        Requirement(line)
        for line in pyproject["project"]["dependencies"]
        if Requirement(line).name == "python-json-logger"
    ]
    assert not declared.specifier.contains("3.0.1")
    assert not declared.specifier.contains("2.0.7")
    assert declared.specifier.contains("3.1.0")
