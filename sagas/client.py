"""Start, signal, cancel and watch sagas from a service.

The client writes to the saga type's inbox (key = saga id) and reads a saga's snapshot from the
state partition its key maps to. Starting is idempotent on the saga id: the worker ignores a
second start of an existing saga.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from sagas.app import TopicNames
from sagas.engine.model import Cancel, Input, SagaState, Signal, Start
from sagas.errors import BrokerError, SagaFailedError
from sagas.partitioning import partition_for
from sagas.runtime.config import KafkaSettings
from sagas.runtime.kafka_errors import kafka_errors, watermarks
from sagas.serde.records import decode_state
from sagas.wire import input_record

__all__ = ["SagaClient"]


class SagaClient:
    """A synchronous client for one namespace.

    Args:
        settings: Kafka connection settings.
        namespace: the app's namespace (topic prefix).
    """

    def __init__(self, settings: KafkaSettings, namespace: str) -> None:
        self.settings = settings
        self.namespace = namespace
        self._producer = Producer(
            settings.client_config(
                **{"partitioner": "murmur2_random", "enable.idempotence": True, "linger.ms": 1}
            )
        )

    def _send(self, saga_type: str, inp: Input) -> None:
        rec = input_record(TopicNames(self.namespace, saga_type).inbox, inp)
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, msg: object) -> None:
            if err is not None:
                errors.append(err)

        with kafka_errors(f"sending to {rec.topic}"):
            self._producer.produce(
                rec.topic,
                key=rec.key,
                value=rec.value,
                headers=rec.headers,
                on_delivery=on_delivery,
            )
            remaining = self._producer.flush(30)
        if errors or remaining:
            reason = errors[0].str() if errors else "not acknowledged within 30 s"
            raise BrokerError(f"could not write to {rec.topic}: {reason}", retriable=True)

    def start(self, saga_type: str, data: dict[str, Any], *, saga_id: str | None = None) -> str:
        """Start a saga; return its id. A second start with the same id starts nothing new."""
        sid = saga_id or uuid.uuid4().hex
        self._send(saga_type, Start(sid, data))
        return sid

    def signal(self, saga_type: str, saga_id: str, name: str, payload: dict[str, Any]) -> None:
        """Send a signal to a saga waiting for it (or about to)."""
        self._send(saga_type, Signal(saga_id, name, payload))

    def cancel(self, saga_type: str, saga_id: str, reason: str = "cancelled by client") -> None:
        """Ask a saga to stop and compensate (it refuses after its pivot; see its journal)."""
        self._send(saga_type, Cancel(saga_id, reason))

    def status(self, saga_type: str, saga_id: str, *, timeout: float = 30.0) -> SagaState | None:
        """The saga's latest committed snapshot, or ``None`` if none was written yet.

        Reads only the state partition the saga's key maps to.
        """
        topic = TopicNames(self.namespace, saga_type).state
        consumer = Consumer(
            self.settings.client_config(
                **{
                    "group.id": f"sagas-client-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                }
            )
        )
        key = saga_id.encode()
        try:
            with kafka_errors(f"reading {topic}"):
                metadata = consumer.list_topics(topic, timeout=timeout)
                partitions = len(metadata.topics[topic].partitions)
                if partitions == 0:
                    return None
                p = partition_for(key, partitions)
                low, high = watermarks(consumer, TopicPartition(topic, p), timeout)
                if high <= low:
                    return None
                consumer.assign([TopicPartition(topic, p, low)])
                latest: bytes | None = None
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    msg = consumer.poll(1.0)
                    if msg is None:
                        continue
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            break
                        continue
                    if msg.key() == key:
                        latest = msg.value()
        finally:
            consumer.close()
        return decode_state(latest) if latest is not None else None

    def result(
        self, saga_type: str, saga_id: str, *, timeout: float = 60.0, poll: float = 0.5
    ) -> dict[str, Any]:
        """Wait for the saga to end; return its data if it completed.

        Raises:
            SagaFailedError: it ended compensated, failed or cancelled.
            TimeoutError: it did not end within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            state = self.status(saga_type, saga_id)
            if state is not None and state.terminal:
                if state.status == "completed":
                    return dict(state.data)
                raise SagaFailedError(saga_id, state.status, state.reason)
            if time.monotonic() > deadline:
                raise TimeoutError(f"saga {saga_id!r} did not end within {timeout:.0f}s")
            time.sleep(poll)

    def close(self) -> None:
        """Flush pending writes."""
        self._producer.flush(30)
