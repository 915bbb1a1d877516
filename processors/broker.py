"""The broker the reference apps use: ``KAFKA_BOOTSTRAP_SERVERS``, else a local one started here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sagas.dev.kafka import LocalKafka, free_port


@contextmanager
def broker_for_demo(data_dir: Path = Path(".kafka/demo")) -> Iterator[str]:
    """Yield a bootstrap address; a broker started here stops when the block (or process) ends."""
    if address := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        print(f"using the broker at {address} (KAFKA_BOOTSTRAP_SERVERS)", flush=True)
        yield address
        return
    broker = LocalKafka(data_dir=data_dir, port=free_port())
    print(
        f"starting a local Kafka broker (jars cached in {broker.distribution.home}, "
        f"log {broker.log_file})",
        flush=True,
    )
    broker.start()
    print(f"Kafka is ready at {broker.bootstrap_servers}", flush=True)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()
