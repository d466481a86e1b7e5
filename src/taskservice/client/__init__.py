"""A small Python client for TaskService, so programs never touch the generated stubs.

    from taskservice.client import TaskClient

    with TaskClient("127.0.0.1:50051", token=token) as tasks:
        task = tasks.create("Write the docs", labels=["docs"], priority="high")
        for event in tasks.watch(labels=["docs"], include_initial=True):
            print(event.sequence, event.task.title)

`AsyncTaskClient` has the same methods as coroutines and async iterators.
"""

from taskservice.client.aio import AsyncTaskClient
from taskservice.client.errors import TaskServiceError
from taskservice.client.policy import DEFAULT_SERVER, NO_RETRY, Retry
from taskservice.client.requests import create_request, list_request, update_request, watch_request
from taskservice.client.sync import TaskClient

__all__ = [
    "DEFAULT_SERVER",
    "NO_RETRY",
    "AsyncTaskClient",
    "Retry",
    "TaskClient",
    "TaskServiceError",
    "create_request",
    "list_request",
    "update_request",
    "watch_request",
]
