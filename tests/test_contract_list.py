"""ListTasks: page sizes, filters, orders, tamper-evident tokens, exactly-once paging under writes."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from tests.rpc import expect_invalid
from tests.servers import ServerProcess

PRIORITIES = [pb.PRIORITY_LOW, pb.PRIORITY_MEDIUM, pb.PRIORITY_HIGH, pb.PRIORITY_CRITICAL]
STATUSES = [pb.TASK_STATUS_TODO, pb.TASK_STATUS_IN_PROGRESS, pb.TASK_STATUS_DONE, pb.TASK_STATUS_CANCELLED]
Corpus = tuple[rpc.TaskServiceStub, str, dict[str, pb.Task]]
"""The module's shared tasks: a stub, their label and each task as last read, by id."""

ORDERS = ["", "created_at", "updated_at", "priority", "due_date"]


def page_through(
    stub: rpc.TaskServiceStub,
    request: pb.ListTasksRequest,
    between_pages: Callable[[], object] | None = None,
) -> list[pb.Task]:
    seen: list[pb.Task] = []
    request = pb.ListTasksRequest.FromString(request.SerializeToString())
    while True:
        page = stub.ListTasks(request)
        seen.extend(page.tasks)
        if not page.next_page_token:
            return seen
        if between_pages:
            between_pages()
        request.page_token = page.next_page_token


def fill(stub: rpc.TaskServiceStub, tag: str, count: int) -> list[pb.Task]:
    tasks = []
    for i in range(count):
        request = pb.CreateTaskRequest(
            title=f"task {i}",
            labels=[tag, f"{tag}-{i % 3}"],
            priority=PRIORITIES[i % 4],
            assigned_to=f"user{i % 2}",
        )
        if i % 3:
            request.due_date.CopyFrom(timestamp_pb2.Timestamp(seconds=1_900_000_000 + (i * 7919) % 1000))
        task = stub.CreateTask(request)
        if i % 4 == 1:
            task = stub.UpdateTask(
                pb.UpdateTaskRequest(id=task.id, status=STATUSES[i % 4 + 1 if i % 4 < 3 else 0])
            )
        tasks.append(task)
    return tasks


def test_page_size_defaults_clamps_and_rejects_negative(stub: rpc.TaskServiceStub, tag: str) -> None:
    fill(stub, tag, 3)
    assert len(stub.ListTasks(pb.ListTasksRequest(labels=[tag])).tasks) == 3
    expect_invalid("page_size", lambda: stub.ListTasks(pb.ListTasksRequest(page_size=-1)))
    big = stub.ListTasks(pb.ListTasksRequest(page_size=5000, labels=[tag]))
    assert len(big.tasks) == 3 and big.total_count == 3 and not big.next_page_token


def test_unknown_order_is_invalid(stub: rpc.TaskServiceStub) -> None:
    expect_invalid("order_by", lambda: stub.ListTasks(pb.ListTasksRequest(order_by="title")))


def test_filters_combine_with_and_values_with_or(stub: rpc.TaskServiceStub, tag: str) -> None:
    tasks = fill(stub, tag, 12)
    request = pb.ListTasksRequest(
        labels=[f"{tag}-0", f"{tag}-1"], priorities=[pb.PRIORITY_LOW, pb.PRIORITY_HIGH], assigned_to="user0"
    )
    expected = {
        t.id
        for t in tasks
        if ({f"{tag}-0", f"{tag}-1"} & set(t.labels))
        and t.priority in request.priorities
        and t.assigned_to == "user0"
    }
    response = stub.ListTasks(request)
    assert {t.id for t in response.tasks} == expected
    assert response.total_count == len(expected)


def test_tampered_forged_and_mismatched_tokens_are_invalid(stub: rpc.TaskServiceStub, tag: str) -> None:
    fill(stub, tag, 5)
    first = stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=2))
    token = first.next_page_token
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[12] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for bad in (tampered, "not-a-token", "AAAA", token[:-3]):
        expect_invalid(
            "page_token",
            functools.partial(stub.ListTasks, pb.ListTasksRequest(labels=[tag], page_size=2, page_token=bad)),
        )
    expect_invalid(
        "page_token",
        lambda: stub.ListTasks(pb.ListTasksRequest(labels=[tag], order_by="priority", page_token=token)),
    )
    # The same token with the same query still works, with any page size.
    assert stub.ListTasks(pb.ListTasksRequest(labels=[tag], page_size=10, page_token=token)).tasks


def expected_order(tasks: list[pb.Task], order_by: str, descending: bool) -> list[str]:
    def key(task: pb.Task) -> tuple[int | str, ...]:
        value: tuple[int, ...]
        if order_by in ("", "created_at"):
            value = (task.created_at.seconds, task.created_at.nanos)
        elif order_by == "updated_at":
            value = (task.updated_at.seconds, task.updated_at.nanos)
        elif order_by == "priority":
            value = (task.priority,)
        else:
            value = (task.due_date.seconds, task.due_date.nanos) if task.HasField("due_date") else (2**62,)
        return (*value, task.id)

    return [t.id for t in sorted(tasks, key=key, reverse=descending)]


@pytest.fixture(scope="module")
def corpus(server: ServerProcess) -> Corpus:
    stub = server.stub()
    tag = "corpus-list"
    tasks = fill(stub, tag, 40)
    current = {t.id: stub.GetTask(pb.GetTaskRequest(id=t.id)) for t in tasks}
    return stub, tag, current


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order_by=st.sampled_from(ORDERS),
    descending=st.booleans(),
    page_size=st.integers(1, 9),
    statuses=st.lists(st.sampled_from(STATUSES), max_size=2),
    priorities=st.lists(st.sampled_from(PRIORITIES), max_size=2),
    label_suffixes=st.lists(st.sampled_from(["0", "1", "2"]), max_size=2),
)
def test_paging_visits_every_match_once_in_order(
    corpus: Corpus,
    order_by: str,
    descending: bool,
    page_size: int,
    statuses: list[pb.TaskStatus.ValueType],
    priorities: list[pb.Priority.ValueType],
    label_suffixes: list[str],
) -> None:
    stub, tag, current = corpus
    labels = [f"{tag}-{s}" for s in label_suffixes] or [tag]
    request = pb.ListTasksRequest(
        page_size=page_size,
        order_by=order_by,
        descending=descending,
        statuses=statuses,
        priorities=priorities,
        labels=labels,
    )
    matching = [
        t
        for t in current.values()
        if (not statuses or t.status in statuses)
        and (not priorities or t.priority in priorities)
        and set(labels) & set(t.labels)
    ]
    seen = page_through(stub, request)
    assert [t.id for t in seen] == expected_order(matching, order_by, descending)
    if seen:
        assert stub.ListTasks(request).total_count == len(matching)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order_by=st.sampled_from(ORDERS),
    descending=st.booleans(),
    page_size=st.integers(1, 6),
    writes=st.integers(1, 4),
)
def test_paging_while_tasks_are_created_never_repeats_or_skips_existing(
    server: ServerProcess, order_by: str, descending: bool, page_size: int, writes: int
) -> None:
    stub = server.stub()
    import uuid

    tag = "w-" + uuid.uuid4().hex[:10]
    existing = {t.id for t in fill(stub, tag, 12)}

    pages = 0

    def create_more() -> None:
        nonlocal pages
        pages += 1
        if pages > 4:  # writes stop eventually, so a page that sorts new tasks last still ends
            return
        for i in range(writes):
            stub.CreateTask(pb.CreateTaskRequest(title=f"late {i}", labels=[tag], priority=PRIORITIES[i % 4]))

    request = pb.ListTasksRequest(page_size=page_size, order_by=order_by, descending=descending, labels=[tag])
    seen = [t.id for t in page_through(stub, request, between_pages=create_more)]
    assert len(seen) == len(set(seen)), "a task was returned twice"
    assert existing <= set(seen), "a task that existed throughout was skipped"


def test_list_error_never_leaks_internals(stub: rpc.TaskServiceStub) -> None:
    error = expect_invalid(
        "statuses[0]", lambda: stub.ListTasks(pb.ListTasksRequest(statuses=[pb.TaskStatus.ValueType(99)]))
    )
    assert "Traceback" not in error
    with pytest.raises(grpc.RpcError):
        stub.ListTasks(pb.ListTasksRequest(labels=[""]))
