"""The asyncio client: :class:`AsyncSagaClient`, the methods of :class:`SagaClient`, awaitable."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from sagas.client import SagaClient, StartWait
from sagas.dsl.saga import Saga
from sagas.engine.model import JournalEvent, SagaState, Start
from sagas.settings import KafkaSettings
from sagas.typed import TypedState, saga_type_of
from sagas.watch import Verdict, accepted_start, at_rest, ended, no_answer, not_ended, outcome

if TYPE_CHECKING:
    from sagas.operate.control import Resumed
    from sagas.operate.history import History

__all__ = ["AsyncSagaClient"]

D = TypeVar("D")


class AsyncSagaClient:
    """The asyncio face of :class:`SagaClient`: the same methods, awaitable.

    Blocking Kafka and HTTP calls run on worker threads (``asyncio.to_thread``), so the event loop
    never waits on I/O. (``confluent_kafka.aio.AIOProducer`` is not used: its batched produce
    refuses headers, and the wire contract needs them.)
    """

    def __init__(self, settings: KafkaSettings, namespace: str, **options: Any) -> None:
        self.sync = SagaClient(settings, namespace, **options)

    async def start(
        self,
        saga_type: Saga[Any] | str,
        data: Mapping[str, Any],
        *,
        saga_id: str | None = None,
        wait: StartWait | None = None,
        timeout: float = 30.0,
    ) -> str:
        """See :meth:`SagaClient.start`."""
        saga_type, data = saga_type_of(saga_type), dict(data)
        if wait is None:
            return await asyncio.to_thread(self.sync.start, saga_type, data, saga_id=saga_id)
        sid = saga_id or uuid.uuid4().hex
        if saga_id is not None:  # refused when it exists, as the sync client does
            await asyncio.to_thread(self.sync.start, saga_type, data, saga_id=sid, wait=wait,
                                    timeout=timeout)  # fmt: skip
            return sid
        deadline = time.monotonic() + timeout
        async with self._watching(saga_type, sid) as events:
            await asyncio.to_thread(self.sync.send, saga_type, Start(sid, data))
            await self._await(saga_type, sid, events, deadline, accepted_start)
            if wait == "finished":
                await self._await(saga_type, sid, events, deadline, ended, recheck=True)
                outcome(saga_type, await asyncio.to_thread(self.sync._settled, saga_type, sid))
        return sid

    async def signal(
        self,
        saga_type: str,
        saga_id: str,
        name: str,
        payload: dict[str, Any],
        *,
        wait: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """See :meth:`SagaClient.signal`."""
        await asyncio.to_thread(
            self.sync.signal, saga_type, saga_id, name, payload, wait=wait, timeout=timeout
        )

    async def cancel(
        self,
        saga_type: str,
        saga_id: str,
        reason: str = "cancelled by client",
        *,
        wait: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """See :meth:`SagaClient.cancel`."""
        await asyncio.to_thread(
            self.sync.cancel, saga_type, saga_id, reason, wait=wait, timeout=timeout
        )

    async def terminate(self, saga_type: str, saga_id: str, reason: str, *, by: str) -> None:
        """See :meth:`SagaClient.terminate`."""
        await asyncio.to_thread(self.sync.terminate, saga_type, saga_id, reason, by=by)

    async def resume(
        self, saga_type: str, saga_id: str, *, by: str, step: str | None = None
    ) -> Resumed:
        """See :meth:`SagaClient.resume`."""
        return await asyncio.to_thread(self.sync.resume, saga_type, saga_id, by=by, step=step)

    async def settle(
        self, saga_type: str, saga_id: str, *, done: bool, reason: str, by: str
    ) -> SagaState:
        """See :meth:`SagaClient.settle`."""
        return await asyncio.to_thread(
            self.sync.settle, saga_type, saga_id, done=done, reason=reason, by=by
        )

    async def history(self, saga_type: str, saga_id: str, **window: int | None) -> History:
        """See :meth:`SagaClient.history`."""
        return await asyncio.to_thread(self.sync.history, saga_type, saga_id, **window)

    @overload
    async def status(self, saga_type: Saga[D], saga_id: str) -> TypedState[D] | None: ...
    @overload
    async def status(self, saga_type: str, saga_id: str) -> SagaState | None: ...
    async def status(self, saga_type: Saga[Any] | str, saga_id: str) -> SagaState | None:
        """See :meth:`SagaClient.status`."""
        saga_type = saga_type_of(saga_type)
        return await asyncio.to_thread(self.sync.status, saga_type, saga_id)

    async def list(
        self, saga_type: str, *, status: str | None = None, limit: int = 100
    ) -> list[SagaState]:
        """See :meth:`SagaClient.list`."""
        return await asyncio.to_thread(self.sync.list, saga_type, status=status, limit=limit)

    @overload
    async def result(self, saga_type: Saga[D], saga_id: str, *, timeout: float = ...) -> D: ...
    @overload
    async def result(
        self, saga_type: str, saga_id: str, *, timeout: float = ...
    ) -> dict[str, Any]: ...
    async def result(
        self, saga_type: Saga[Any] | str, saga_id: str, *, timeout: float = 60.0
    ) -> Any:
        """See :meth:`SagaClient.result`: pushed from the client's one journal reader, so any
        number of sagas are awaited at once without a thread each."""
        saga_type = saga_type_of(saga_type)
        deadline = time.monotonic() + timeout
        async with self._watching(saga_type, saga_id) as events:
            state = await self.status(saga_type, saga_id)
            if state is None or not at_rest(state):
                try:
                    await self._await(saga_type, saga_id, events, deadline, ended, recheck=True)
                except TimeoutError:
                    raise not_ended(saga_id, timeout, seen=state is not None) from None
                state = await asyncio.to_thread(self.sync._settled, saga_type, saga_id)
        return outcome(saga_type, state)

    @contextlib.asynccontextmanager
    async def _watching(
        self, saga_type: str, saga_id: str
    ) -> AsyncIterator[asyncio.Queue[JournalEvent]]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[JournalEvent] = asyncio.Queue()

        def hand_over(event: JournalEvent) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        journal = self.sync.journal()
        stop = await asyncio.to_thread(journal.watch, saga_type, saga_id, hand_over)
        try:
            yield events
        finally:
            stop()

    async def _await(
        self,
        saga_type: str,
        saga_id: str,
        events: asyncio.Queue[JournalEvent],
        deadline: float,
        verdict: Verdict,
        *,
        recheck: bool = False,
    ) -> None:
        """See :meth:`SagaClient._await`."""
        again = time.monotonic() + 1.0 if recheck else None
        while True:
            left = min(deadline, again or deadline) - time.monotonic()
            try:
                event = await asyncio.wait_for(events.get(), max(left, 0.0))
            except TimeoutError:
                event = None
            if event is not None:
                if verdict(saga_type, event):
                    return
                continue
            if again is not None and time.monotonic() >= again:
                again = None
                state = await self.status(saga_type, saga_id)
                if state is not None and at_rest(state):
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(no_answer(self.sync.namespace, saga_type, saga_id, verdict))

    async def close(self) -> None:
        """See :meth:`SagaClient.close`."""
        await asyncio.to_thread(self.sync.close)
