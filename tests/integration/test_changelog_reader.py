"""A restore reads through every transaction written before it began, against the real broker.

Right after a commit returns, its markers are still on their way: a ``read_committed`` read to
the last stable offset can miss the batch whose input offsets the group already shows as
committed. The restore reader waits for those transactions instead.
"""

from __future__ import annotations

import threading

import pytest

from sagas.errors import BrokerError
from sagas.kafka_io import read_to_end
from sagas.runtime.transactions import changelog_reader
from sagas.settings import KafkaSettings
from tests.support.kafka import create_topic, tx_producer


def _topic_with_open_transaction(bootstrap: str, name: str):  # type: ignore[no-untyped-def]
    """Two committed records, then two in a transaction left open; its producer is returned."""
    create_topic(bootstrap, name)
    done = tx_producer(bootstrap, f"{name}-done")
    done.begin_transaction()
    done.produce(name, b"1", key=b"a")
    done.produce(name, b"2", key=b"b")
    done.commit_transaction(30)
    pending = tx_producer(bootstrap, f"{name}-pending")
    pending.begin_transaction()
    pending.produce(name, b"3", key=b"c")
    pending.produce(name, b"4", key=b"d")
    pending.flush(30)
    return pending


def _values(messages) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [m.value() for m in messages]


def test_a_plain_read_stops_at_the_open_transaction(bootstrap: str, unique: str) -> None:
    """The race itself: read_committed to the last stable offset misses what is undecided."""
    pending = _topic_with_open_transaction(bootstrap, f"{unique}.state")
    reader = changelog_reader(KafkaSettings(bootstrap), unique)
    try:
        assert _values(read_to_end(reader.restorer, f"{unique}.state", 0)) == [b"1", b"2"]
    finally:
        pending.abort_transaction(30)
        reader.close()


@pytest.mark.parametrize("decision", ["commit", "abort"])
def test_a_restore_waits_for_the_transaction_and_follows_its_decision(
    bootstrap: str, unique: str, decision: str
) -> None:
    pending = _topic_with_open_transaction(bootstrap, f"{unique}.state")
    decide = pending.commit_transaction if decision == "commit" else pending.abort_transaction
    timer = threading.Timer(1.5, decide, args=(30,))
    reader = changelog_reader(KafkaSettings(bootstrap), unique)
    try:
        records = reader.read(f"{unique}.state", 0)  # the end is fixed here, before the decision
        timer.start()
        got = _values(records)
    finally:
        timer.join()
        reader.close()
    assert got == ([b"1", b"2", b"3", b"4"] if decision == "commit" else [b"1", b"2"])


def test_a_transaction_never_decided_is_a_clear_error(bootstrap: str, unique: str) -> None:
    pending = _topic_with_open_transaction(bootstrap, f"{unique}.state")
    reader = changelog_reader(KafkaSettings(bootstrap), unique)
    try:
        with pytest.raises(BrokerError, match=r"stayed undecided for 1 s.*transaction\.timeout"):
            _values(reader.read(f"{unique}.state", 0, timeout=1))
    finally:
        pending.abort_transaction(30)
        reader.close()


def test_records_written_after_the_read_began_are_not_waited_for(
    bootstrap: str, unique: str
) -> None:
    pending = _topic_with_open_transaction(bootstrap, f"{unique}.state")
    pending.commit_transaction(30)
    reader = changelog_reader(KafkaSettings(bootstrap), unique)
    later = tx_producer(bootstrap, f"{unique}-later")
    try:
        records = reader.read(f"{unique}.state", 0)
        later.begin_transaction()
        later.produce(f"{unique}.state", b"5", key=b"e")
        later.flush(30)
        assert _values(records) == [b"1", b"2", b"3", b"4"]
    finally:
        later.abort_transaction(30)
        reader.close()
