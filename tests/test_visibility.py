"""The one visibility rule in its two forms agrees: `TaskFilter.matches` (in memory: get, update,
delete, watch) and the SQL that `store/sql.py` compiles from it (lists, counts, snapshots), on
random tasks, memberships and filters, on a real SQLite store."""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.paging import TaskFilter
from taskservice.domain.values import new_task_id, now_us, timestamp_from_us
from taskservice.domain.visibility import Sight
from taskservice.store.base import NewTask
from taskservice.store.sqlite import SQLiteStore

USERS = ("ann", "bob", "cy")
PROJECTS = ("p1", "p2", "p3")

tasks_strategy = st.lists(
    st.tuples(
        st.sampled_from(USERS),  # created_by
        st.sampled_from((*USERS, "")),  # assigned_to
        st.sampled_from((*PROJECTS, "")),  # project_id
        st.booleans(),  # in the trash
    ),
    max_size=20,
)
sight_strategy = st.one_of(
    st.none(), st.builds(Sight, st.sampled_from(USERS), st.frozensets(st.sampled_from(PROJECTS)))
)


def test_sql_and_memory_agree_on_who_sees_what() -> None:
    loop = asyncio.new_event_loop()
    store = SQLiteStore(None, durable=False)
    loop.run_until_complete(store.open())
    try:

        @settings(max_examples=150, deadline=None)
        @given(
            rows=tasks_strategy,
            sight=sight_strategy,
            trashed=st.booleans(),
            projects=st.frozensets(st.sampled_from((*PROJECTS, ""))),
        )
        def agree(
            rows: list[tuple[str, str, str, bool]],
            sight: Sight | None,
            trashed: bool,
            projects: frozenset[str],
        ) -> None:
            prefix = uuid.uuid4().hex[:6] + "-"  # this example's users and projects only

            def ns(name: str) -> str:
                return prefix + name if name else ""

            tasks = []
            for created_by, assigned_to, project_id, deleted in rows:
                task = pb.Task(
                    id=new_task_id(),
                    title="t",
                    created_by=ns(created_by),
                    assigned_to=ns(assigned_to),
                    project_id=ns(project_id),
                    created_at=timestamp_from_us(now_us()),
                    updated_at=timestamp_from_us(now_us()),
                )
                if deleted:
                    task.delete_time.CopyFrom(timestamp_from_us(now_us()))
                tasks.append(task)
            if tasks:
                loop.run_until_complete(store.create_many([NewTask(t) for t in tasks]))
            scoped = None if sight is None else Sight(ns(sight.user), frozenset(map(ns, sight.projects)))
            task_filter = TaskFilter(
                task_ids=tuple(sorted(t.id for t in tasks)) or ("none",),
                project_ids=tuple(sorted(map(ns, projects))),
                trashed=trashed,
                visible_to=scoped,
            )
            in_memory = sorted(t.id for t in tasks if task_filter.matches(t))
            found, _ = loop.run_until_complete(store.snapshot(task_filter))
            assert sorted(t.id for t in found) == in_memory
            assert loop.run_until_complete(store.count(task_filter, keep=False)) == len(in_memory)

        agree()
    finally:
        loop.run_until_complete(store.close())
        loop.close()
