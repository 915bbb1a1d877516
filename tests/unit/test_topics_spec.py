"""The reference apps' topic specs in topics/ match what their compiled apps need."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors import orders, provisioning
from sagas.app import App
from sagas.errors import ConfigurationError
from sagas.operate import AppSpec, TopicDecl, read_spec, spec_of

TOPICS = Path(__file__).resolve().parents[2] / "topics"


@pytest.mark.parametrize(
    ("name", "app"), [("orders", orders.app), ("provisioning", provisioning.app)]
)
def test_reference_specs_do_not_drift_from_the_compiled_apps(name: str, app: App) -> None:
    written = read_spec(TOPICS / f"{name}.json")
    assert written == spec_of(app), (
        f"topics/{name}.json drifted from processors.{name}:app; regenerate it with "
        f"sagas topics plan processors.{name}:app --write"
    )


def test_a_spec_holds_every_topic_the_worker_creates_with_compacted_state() -> None:
    spec = spec_of(orders.app)
    names = {t.name: t for t in spec.topics}
    state = orders.app.topics("order").state
    assert names[state].compacted
    assert names[state].partitions == names[orders.app.topics("order").inbox].partitions
    assert f"{orders.app.topics('order').dlq}.replayed" in names
    assert {t.replication_factor for t in spec.topics} == {3}
    assert {t.config["min.insync.replicas"] for t in spec.topics} == {"2"}


def test_a_state_topic_that_is_not_compacted_is_refused(tmp_path: Path) -> None:
    spec = spec_of(orders.app).to_dict()
    state = orders.app.topics("order").state
    for t in spec["topics"]:
        if t["name"] == state:
            t["config"]["cleanup.policy"] = "delete"
    with pytest.raises(ConfigurationError, match=r"must have cleanup\.policy=compact"):
        AppSpec.from_dict(spec)
    with pytest.raises(ConfigurationError, match="not a topic spec"):
        AppSpec.from_dict({"topics": [{"name": "x"}]})
    assert TopicDecl("t", 1, 1, {"cleanup.policy": "compact,delete"}).compacted
