"""A WatchTasks stream consumed on a thread, so tests can wait for events with a timeout."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

import grpc

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc


class Watch:
    def __init__(
        self,
        stub: rpc.TaskServiceStub,
        request: pb.WatchTasksRequest,
        metadata: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        self.call = stub.WatchTasks(request, metadata=metadata)
        self._events: queue.Queue[pb.TaskEvent | grpc.RpcError | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for event in self.call:
                self._events.put(event)
            self._events.put(None)
        except grpc.RpcError as error:
            self._events.put(error)

    def next(self, timeout: float = 5.0) -> pb.TaskEvent:
        item = self._events.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        assert item is not None, "the stream ended"
        return item

    def take(self, count: int, timeout: float = 5.0) -> list[pb.TaskEvent]:
        return [self.next(timeout) for _ in range(count)]

    def end(self, timeout: float = 10.0) -> pb.TaskEvent | grpc.RpcError | None:
        """Wait for the stream to finish; returns the terminating error (or None on a clean end)."""
        while True:
            item = self._events.get(timeout=timeout)
            if item is None or isinstance(item, grpc.RpcError):
                return item

    def quiet(self, seconds: float = 0.3) -> bool:
        """True when nothing arrives for `seconds`."""
        try:
            item = self._events.get(timeout=seconds)
        except queue.Empty:
            return True
        self._events.put(item)
        return False

    def cancel(self) -> None:
        self.call.cancel()
        self._thread.join(timeout=5)
