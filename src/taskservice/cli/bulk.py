"""The taskctl commands that move many tasks or commands at once: export, import and batch."""

from __future__ import annotations

import itertools
import sys
from collections import deque
from collections.abc import Iterator
from typing import IO

import click
import grpc
from google.protobuf import json_format
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from taskservice.api import task_service_pb2 as pb
from taskservice.cli import render
from taskservice.cli.options import EXIT_FAILED, Session, filter_options, output_option, pass_session
from taskservice.cli.transfer import Row, RowError, detect_format, read_rows, write_tasks
from taskservice.client import TaskClient
from taskservice.client.errors import code_name

_IMPORT_CHUNK = 500  # rows per BulkCreateTasks stream: keeps each response far below 4 MiB


@click.command(name="export")
@filter_options()
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@pass_session
def export_tasks(
    session: Session,
    statuses: tuple[str, ...],
    priorities: tuple[str, ...],
    labels: tuple[str, ...],
    assignee: str,
    fmt: str,
) -> None:
    """Write every matching task to stdout, oldest first, as CSV or JSON Lines."""
    tasks = session.client().iter_tasks(
        statuses=statuses, priorities=priorities, labels=labels, assigned_to=assignee, page_size=1000
    )
    count = write_tasks(tasks, fmt, sys.stdout)
    if sys.stderr.isatty():
        click.echo(f"exported {count} tasks", err=True)


@click.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "csv", "jsonl"]), default="auto", show_default=True
)
@output_option
@pass_session
def import_tasks(session: Session, file: str, fmt: str) -> None:
    """Create a task for each row of FILE (CSV with a header row, or JSON Lines; - for stdin).

    Rejected rows are reported with their line number and reason, and the exit status is 1."""
    with _open_text(file) as stream:
        first = stream.readline()
        if fmt == "auto":
            fmt = detect_format(file, first)
        lines = itertools.chain([first], stream)
        total = None if file == "-" else max(_count_lines(file) - (fmt == "csv"), 0)
        created, rejected = _import_rows(session.client(), read_rows(lines, fmt), total)
    if session.json:
        for task in created:
            render.print_json(task)
    for error in sorted(rejected, key=lambda e: e.line):
        click.echo(f"{file}:{error.line}: {error.reason}", err=True)
    click.echo(f"imported {len(created)} tasks; {len(rejected)} rows rejected", err=True)
    if rejected:
        raise click.exceptions.Exit(EXIT_FAILED)


def _open_text(file: str) -> IO[str]:
    if file == "-":
        return sys.stdin
    return open(file, encoding="utf-8-sig", newline="")


def _count_lines(file: str) -> int:
    with open(file, "rb") as stream:
        return sum(1 for line in stream if line.strip())


def _import_rows(
    client: TaskClient, rows: Iterator[Row | RowError], total: int | None
) -> tuple[list[pb.Task], list[RowError]]:
    """Create the rows in chunks through BulkCreateTasks, then set the statuses that are not todo
    (a new task always starts as todo) through one ProcessTaskStream."""
    created: list[tuple[Row, pb.Task]] = []
    rejected: list[RowError] = []
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        console=render.console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    with progress:
        bar = progress.add_task("import", total=total)
        chunk: list[Row] = []

        def sent(rows: list[Row]) -> Iterator[pb.CreateTaskRequest]:
            for row in rows:
                yield row.request
                progress.advance(bar)

        def flush() -> None:
            response = client.bulk_create(sent(chunk))
            failed = {error.index: error for error in response.errors}
            tasks = iter(response.tasks)
            for index, row in enumerate(chunk):
                if index in failed:
                    error = failed[index]
                    rejected.append(RowError(row.line, f"{code_name(error.code)}: {error.error_message}"))
                else:
                    created.append((row, next(tasks)))
            chunk.clear()

        for item in rows:
            if isinstance(item, RowError):
                rejected.append(item)
                progress.advance(bar)
                continue
            chunk.append(item)
            if len(chunk) >= _IMPORT_CHUNK:
                flush()
        if chunk:
            flush()
    return _apply_statuses(client, created, rejected), rejected


def _apply_statuses(
    client: TaskClient, created: list[tuple[Row, pb.Task]], rejected: list[RowError]
) -> list[pb.Task]:
    wanted = [(row, task) for row, task in created if row.status]
    if not wanted:
        return [task for _, task in created]
    commands = (
        pb.TaskCommand(command_id=task.id, update=pb.UpdateTaskRequest(id=task.id, status=row.status))  # type: ignore[arg-type]
        for row, task in wanted
    )
    updated: dict[str, pb.Task] = {}
    for (row, _), result in zip(wanted, client.process(commands), strict=True):
        if result.success:
            updated[result.task.id] = result.task
        else:
            rejected.append(
                RowError(row.line, f"created, but its status was not set: {result.error_message}")
            )
    return [updated.get(task.id, task) for _, task in created]


# -- streams of commands ------------------------------------------------------------------------


@click.command()
@pass_session
def batch(session: Session) -> None:
    """Run JSON Lines commands from stdin through one ProcessTaskStream.

    Each line is the canonical JSON of a TaskCommand, e.g. {"create": {"title": "x"}, "commandId": "a"}.
    One JSON TaskResult per line comes back on stdout, in order; the exit status is 1 if any failed."""
    # A line that is not a valid command is answered here; `pending` keeps those answers in
    # their place among the server's: None marks a slot whose answer comes from the server.
    pending: deque[pb.TaskResult | None] = deque()
    failures = 0

    def commands() -> Iterator[pb.TaskCommand]:
        for number, text in enumerate(sys.stdin, start=1):
            if not text.strip():
                continue
            try:
                command = json_format.Parse(text, pb.TaskCommand())
            except json_format.ParseError as error:
                reason = f"line {number}: not a TaskCommand: {error}"
                pending.append(
                    pb.TaskResult(
                        success=False, code=grpc.StatusCode.INVALID_ARGUMENT.value[0], error_message=reason
                    )
                )
                continue
            pending.append(None)
            yield command

    def emit(result: pb.TaskResult) -> None:
        nonlocal failures
        failures += not result.success
        render.print_json(result)

    for result in session.client().process(commands()):
        while pending and pending[0] is not None:
            emit(pending.popleft())  # type: ignore[arg-type]
        pending.popleft()
        emit(result)
    for local in pending:
        if local is not None:
            emit(local)
    if failures:
        raise click.exceptions.Exit(EXIT_FAILED)
