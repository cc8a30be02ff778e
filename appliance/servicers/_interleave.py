"""The requests of one ModelStreamInfer stream, answered side by side.

Triton's decoupled streaming lets a client send many requests on one stream and take
their responses as they come, told apart by ``id``. Requests that answer at once (an
ONNX model's) are answered in arrival order, before the next is read, as before;
requests that answer over time (a generation) run as tasks of their own, so eight
generations on one stream share the engine's batch. When the stream ends early (the
client cancels, the deadline passes, the daemon stops) every task still running is
cancelled, and a cancelled generation frees its sequence at the engine's next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

Request = TypeVar("Request")
Response = TypeVar("Response")


class _End:
    """The reader is done: every request read and every task finished."""


class Interleaved(Generic[Request, Response]):
    def __init__(
        self,
        answer: Callable[[Request], AsyncIterator[Response]],
        runs_long: Callable[[Request], bool],
    ):
        self._answer = answer
        self._runs_long = runs_long
        self._out: asyncio.Queue[Response | _End | BaseException] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    async def responses(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                item = await self._out.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reader.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(reader, *self._tasks, return_exceptions=True)

    async def _read(self, requests: AsyncIterator[Request]) -> None:
        try:
            async for request in requests:
                if self._runs_long(request):
                    task = asyncio.create_task(self._run(request))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    await self._run(request)
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the request stream failed: end the call with it
            await self._out.put(exc)
            return
        await self._out.put(_End())

    async def _run(self, request: Request) -> None:
        try:
            async for response in self._answer(request):
                await self._out.put(response)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # not an answerable error: end the call with it
            await self._out.put(exc)


__all__ = ["Interleaved"]
