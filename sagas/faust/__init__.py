"""Sagas inside Faust apps (install the ``faust`` extra).

* :class:`FaustParticipant`: a participant's handlers served by a Faust agent, each command id
  handled once through a table of recorded replies.
* :class:`SagaWorkerService`: the saga worker started and stopped with a Faust app.
* Start and await sagas from agents with :class:`sagas.async_client.AsyncSagaClient`: its calls
  run on threads and never block the event loop.
"""

from sagas.faust.participant import FaustParticipant
from sagas.faust.service import SagaWorkerService

__all__ = ["FaustParticipant", "SagaWorkerService"]
