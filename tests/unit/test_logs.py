"""Log lines carry the process's instance id (a worker's id, a participant's instance id)."""

from __future__ import annotations

import io
import json
import logging

from sagas.observe.logs import configure_logging, saga_fields


def test_every_json_line_names_the_instance_and_a_sagas_lines_the_saga() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream, instance="w1")
    try:
        logging.getLogger("sagas.test").info("hello", extra=saga_fields("o-1", "order"))
    finally:
        configure_logging("warning")
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["instance"] == "w1"
    assert (line["saga_id"], line["saga_type"], line["message"]) == ("o-1", "order", "hello")


def test_a_text_line_shows_the_instance_in_brackets() -> None:
    stream = io.StringIO()
    configure_logging("info", "text", stream, instance="p-2")
    try:
        logging.getLogger("sagas.test").warning("careful")
    finally:
        configure_logging("warning")
    assert "WARNING [p-2] sagas.test: careful" in stream.getvalue()


def test_a_failed_command_is_one_warning_with_its_error_and_message() -> None:
    from sagas.observe.logs import SagaLogObserver
    from sagas.protocol import COMMAND_ID, SAGA_ID, SAGA_TYPE

    stream = io.StringIO()
    configure_logging("info", "text", stream)
    try:
        observer = SagaLogObserver()
        headers = {SAGA_ID: "o-1", SAGA_TYPE: "order", COMMAND_ID: "o-1:ship:1"}
        observer.command_handled("svc", "Ship", outcome="failure", seconds=0.01, headers=headers)
        observer.command_failed(
            "svc",
            "Ship",
            outcome="failure",
            error="NoAddress",
            message="no address to ship to",
            headers=headers,
        )
    finally:
        configure_logging("warning")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "WARNING" in lines[0]
    assert lines[0].endswith("svc: Ship for saga o-1 failed: NoAddress (no address to ship to)")
