"""The Python client with no broker: one error within the connect timeout that names the address
and says what to do, as the CLI does (no broker runs here: the port is free)."""

from __future__ import annotations

import time

import pytest

from sagas import KafkaSettings, SagaClient
from sagas.dev.kafka import free_port
from sagas.errors import BrokerUnavailableError


@pytest.mark.parametrize("call", ["start", "status"])
def test_the_client_names_the_address_no_broker_answers_at(call: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    client = SagaClient(KafkaSettings(address, connect_timeout=2), "shop")
    ask = (
        (lambda: client.start("order", {"customer": "c-1"}))
        if call == "start"
        else (lambda: client.status("order", "o-1"))
    )
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as raised:
        ask()
    elapsed = time.monotonic() - started
    client.close()
    assert str(raised.value) == (
        f"no Kafka broker answers at {address} within 2 s; check the address "
        "(--bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS) and that the broker runs, or wait "
        "longer with --connect-timeout / SAGAS_CONNECT_TIMEOUT"
    )
    assert elapsed < 6, f"answered after {elapsed:.1f} s"
