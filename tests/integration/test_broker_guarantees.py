"""The Kafka behaviour kafka-sagas builds on, proved on the real broker.

If one of these fails, the runtime's guarantees cannot hold on that broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from tests.support.kafka import create_topic, read_all, tx_producer

pytestmark = pytest.mark.kafka


def test_read_committed_sees_committed_records_and_never_aborted_ones(
    bootstrap: str, unique: str
) -> None:
    create_topic(bootstrap, unique)
    producer = tx_producer(bootstrap, f"{unique}-tx")
    for value, commit in [(b"first", True), (b"aborted", False), (b"second", True)]:
        producer.begin_transaction()
        producer.produce(unique, key=b"k", value=value)
        producer.flush()
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    committed = [v for _, v in read_all(bootstrap, unique, expect=2)]
    everything = [v for _, v in read_all(bootstrap, unique, committed_only=False, expect=3)]

    assert committed == [b"first", b"second"]
    assert everything == [b"first", b"aborted", b"second"]  # the aborted record was written


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(
    bootstrap: str, unique: str
) -> None:
    create_topic(bootstrap, unique)
    zombie = tx_producer(bootstrap, f"{unique}-tx")
    zombie.begin_transaction()
    zombie.produce(unique, key=b"k", value=b"zombie")
    zombie.flush()

    successor = tx_producer(bootstrap, f"{unique}-tx")  # bumps the epoch, aborts the zombie's txn
    successor.begin_transaction()
    successor.produce(unique, key=b"k", value=b"successor")
    successor.commit_transaction(30)

    zombie.produce(unique, key=b"k", value=b"zombie-2")
    with pytest.raises(KafkaException) as caught:
        zombie.commit_transaction(30)
    assert caught.value.args[0].fatal() or "fenced" in str(caught.value).lower()
    assert [v for _, v in read_all(bootstrap, unique, expect=1)] == [b"successor"]


_CRASHING_PROCESSOR = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import Consumer, Producer

    bootstrap, source, sink, group, txid = sys.argv[1:6]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "session.timeout.ms": 6000})
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid,
                         "transaction.timeout.ms": 60000})
    producer.init_transactions(30)

    def process(batch_size, commit):
        msgs = []
        while len(msgs) < batch_size:
            msgs.extend(m for m in consumer.consume(batch_size - len(msgs), 1.0) if not m.error())
        producer.begin_transaction()
        for m in msgs:
            producer.produce(sink, key=m.key(), value=b"out-" + m.value())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.flush()

    process(5, commit=True)
    process(5, commit=False)   # produced and offsets sent, never committed
    print("READY", flush=True)
    time.sleep(600)
    """
)


def test_after_a_crash_before_commit_a_restarted_consumer_rereads_exactly_the_uncommitted_input(
    bootstrap: str, unique: str
) -> None:
    source, sink, group, txid = f"{unique}-in", f"{unique}-out", f"{unique}-g", f"{unique}-tx"
    create_topic(bootstrap, source)
    create_topic(bootstrap, sink)
    feeder = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        feeder.produce(source, key=str(i).encode(), value=str(i).encode())
    feeder.flush(30)

    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_PROCESSOR, bootstrap, source, sink, group, txid],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()

    producer = tx_producer(bootstrap, txid)  # same id: aborts the dead process's transaction
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([source])
    reread: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(reread) < 5 and time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(10, 1.0) if not m.error()]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            reread.append(m.value())
            producer.produce(sink, key=m.key(), value=b"out-" + m.value())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
    # Nothing more than the uncommitted half comes back.
    extra = [m for m in consumer.consume(10, 3.0) if not m.error()]
    consumer.close()

    assert reread == [str(i).encode() for i in range(5, 10)]
    assert extra == []
    outputs = sorted(v for _, v in read_all(bootstrap, sink, expect=10))
    assert outputs == sorted(b"out-" + str(i).encode() for i in range(10))


def test_a_compacted_topic_keeps_the_newest_value_per_key_and_tombstones_remove_keys(
    bootstrap: str, unique: str
) -> None:
    create_topic(
        bootstrap,
        unique,
        **{
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "0",
            "min.compaction.lag.ms": "0",
            "segment.bytes": "1048576",
        },
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for version in range(5):
        for key in range(10):
            producer.produce(unique, key=f"k{key}".encode(), value=f"v{version}".encode())
        producer.flush()
    for key in range(3):
        producer.produce(unique, key=f"k{key}".encode(), value=None)
    producer.flush()

    expected = {f"k{key}".encode(): b"v4" for key in range(3, 10)}
    deadline = time.monotonic() + 120
    records: list[tuple[bytes | None, bytes | None]] = []
    while time.monotonic() < deadline:
        # Appends roll the segments (segment.ms) so that the cleaner may compact the old ones.
        time.sleep(1.0)
        producer.produce(unique, key=b"filler", value=b"x")
        producer.flush()
        records = [(k, v) for k, v in read_all(bootstrap, unique) if k != b"filler"]
        if len(records) == len(expected):
            break
    assert dict(records) == expected, f"not compacted after 120 s: {len(records)} records left"
    assert len(records) == len(expected)


def test_a_broker_stopped_and_started_again_keeps_its_data(
    tmp_path: pytest.TempPathFactory, unique: str
) -> None:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("restarts need the local broker; an external one was given")
    from sagas.dev.kafka import LocalKafka, free_port

    broker = LocalKafka(data_dir=tmp_path / "kafka", port=free_port())  # type: ignore[operator]
    broker.start()
    try:
        create_topic(broker.bootstrap_servers, unique)
        producer = tx_producer(broker.bootstrap_servers, f"{unique}-tx")
        producer.begin_transaction()
        for i in range(100):
            producer.produce(unique, key=str(i).encode(), value=f"value-{i}".encode())
        producer.commit_transaction(30)
        del producer

        broker.stop()
        assert not broker.is_running()
        broker.start()

        values = [v for _, v in read_all(broker.bootstrap_servers, unique, expect=100)]
        assert values == [f"value-{i}".encode() for i in range(100)]
    finally:
        broker.stop()
