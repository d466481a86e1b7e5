"""The shape of a BulkCreateTasks answer: what fits in one response a default client can receive.

A default grpcio (or grpc-js, grpc-go) client refuses a response over 4 MiB, after the server has
stored every task. So an answer that would pass `RESPONSE_BUDGET` lists every stored task by its
`id` alone (in stream order; a reader tells them by `version == 0`, and GetTask reads them), and,
should the errors' messages still not fit, every error by `index` and `code` alone.
`success_count` always counts every stored task. docs/operations.md ("Bulk create") says this for
clients.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from taskservice.api import task_service_pb2 as pb

RESPONSE_BUDGET = 4 * 1024 * 1024 - 128 * 1024  # under a default client's 4 MiB receive limit
COMPACT_TASK_BYTES = 40  # a listed Task holding only its 36-character id, with its field's tag


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.cache
def _head(id_length: int) -> bytes:
    """What precedes an id of `id_length` bytes in the `tasks` field: the element's tag and length,
    then the Task's `id` tag and length."""
    inner = 1 + len(_varint(id_length)) + id_length
    return b"\x0a" + _varint(inner) + b"\x0a" + _varint(id_length)


def _ids_only(tasks: Iterable[pb.Task]) -> bytes:
    """The `tasks` field (1) of a BulkCreateResponse holding Task{id} for each task, encoded at
    once: building 100,000 messages one by one blocks the event loop for a third of a second."""
    ids = [task.id.encode() for task in tasks]
    return b"".join([_head(len(task_id)) + task_id for task_id in ids])


def fitted(response: pb.BulkCreateResponse, budget: int = RESPONSE_BUDGET) -> pb.BulkCreateResponse:
    """`response` itself when it fits in `budget` bytes; else its tasks by id alone, and then, if
    that is still too big, its errors by index and code alone."""
    if response.ByteSize() <= budget:
        return response
    out = pb.BulkCreateResponse.FromString(_ids_only(response.tasks))
    out.success_count = response.success_count
    out.errors.extend(response.errors)
    if out.ByteSize() > budget:
        del out.errors[:]
        for error in response.errors:
            out.errors.add(index=error.index, code=error.code)
    return out


def largest_response(items: int) -> int:
    """The most bytes a fitted response to a stream of `items` can take (every task compact)."""
    return items * COMPACT_TASK_BYTES + 64
