"""An in-memory saga environment with a virtual clock, for your own unit tests.

::

    env = SagaTestEnv(order_saga)
    env.on("ReserveCredit", succeed({"credit_id": "c-1"}))
    env.on("ReserveStock", silent())
    env.start("order", "o-1", {"customer": "ada", "total": 30.0, "items": ["book"]})
    env.advance(timedelta(days=1))          # the deadline passes in milliseconds
    assert env.state("o-1").status == "compensated"
    assert env.command_types("o-1")[-1] == "ReleaseCredit"

The scripted services behave as participants do: a command reaches its service ``lag`` after
it is sent and is refused when that is past its deadline; a command id is handled once (a resend
gets the recorded reply); successful commands make or undo the :class:`Effect` s in
``env.effects()``.
"""

from sagas.testing.env import (
    Effect,
    Responder,
    Response,
    SagaTestEnv,
    fail,
    retryable_fail,
    silent,
    succeed,
)

__all__ = [
    "Effect",
    "Responder",
    "Response",
    "SagaTestEnv",
    "fail",
    "retryable_fail",
    "silent",
    "succeed",
]
