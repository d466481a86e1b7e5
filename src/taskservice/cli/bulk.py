"""The taskctl commands that move many tasks or commands at once: export, import and batch."""

from __future__ import annotations

import itertools
import sys
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import click
import grpc
from google.protobuf import json_format
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from taskservice.api import task_service_pb2 as pb
from taskservice.cli import render
from taskservice.cli.options import EXIT_FAILED, Session, filter_options, output_option, pass_session
from taskservice.cli.transfer import Row, RowError, detect_format, read_rows, write_tasks
from taskservice.client import TaskClient, TaskServiceError
from taskservice.client.errors import code_name

_IMPORT_CHUNK = 500  # rows per BatchCreateTasks call (at most 1,000): each response far below 4 MiB


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
    run = ImportRun(session.client())
    try:
        with _open_text(file) as stream:
            first = stream.readline()
            if fmt == "auto":
                fmt = detect_format(file, first)
            lines = itertools.chain([first], stream)
            total = None if file == "-" else max(_count_lines(file) - (fmt == "csv"), 0)
            run.create(read_rows(lines, fmt), total)
        tasks = run.apply_statuses()
    except TaskServiceError:
        run.report(file)
        last = max((row.line for row, _ in run.created), default=0)
        click.echo(f"taskctl: the import stopped part-way; rows up to line {last} were handled", err=True)
        raise
    if session.json:
        for task in tasks:
            render.print_json(task)
    run.report(file)
    if run.rejected:
        raise click.exceptions.Exit(EXIT_FAILED)


def _open_text(file: str) -> IO[str]:
    if file == "-":
        return sys.stdin
    return open(file, encoding="utf-8-sig", newline="")


def _count_lines(file: str) -> int:
    with open(file, "rb") as stream:
        return sum(1 for line in stream if line.strip())


@dataclass
class ImportRun:
    """One import: rows are created in chunks through BatchCreateTasks (BulkCreateTasks on a server
    that does not have it yet), then the statuses that are not todo (a new task always starts as
    todo) are set through one ProcessTaskStream. It keeps what it has done, so a failure part-way
    can still be reported row by row."""

    client: TaskClient
    created: list[tuple[Row, pb.Task]] = field(default_factory=list)
    rejected: list[RowError] = field(default_factory=list)
    batch: bool = True  # whether the server answers BatchCreateTasks (learnt from the first chunk)

    def create(self, rows: Iterator[Row | RowError], total: int | None) -> None:
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
            for item in rows:
                if isinstance(item, RowError):
                    self.rejected.append(item)
                    progress.advance(bar)
                    continue
                chunk.append(item)
                if len(chunk) >= _IMPORT_CHUNK:
                    self._send(chunk)
                    progress.advance(bar, len(chunk))
                    chunk = []
            if chunk:
                self._send(chunk)
                progress.advance(bar, len(chunk))

    def _send(self, chunk: list[Row]) -> None:
        # A request_id on every row makes the chunk safe to send again: the client retries it
        # through a server restart, and rows already created come back instead of doubling.
        for row in chunk:
            if not row.request.request_id:
                row.request.request_id = str(uuid.uuid4())
        response = self._create_many([row.request for row in chunk])
        failed = {error.index: error for error in response.errors}
        tasks = iter(response.tasks)
        for index, row in enumerate(chunk):
            if index in failed:
                error = failed[index]
                self.rejected.append(RowError(row.line, f"{code_name(error.code)}: {error.error_message}"))
            else:
                self.created.append((row, next(tasks)))

    def _create_many(self, requests: list[pb.CreateTaskRequest]) -> pb.BulkCreateResponse:
        if self.batch:
            try:
                return self.client.batch_create(requests)
            except TaskServiceError as error:
                if error.code != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                self.batch = False  # an older server: stream the chunks instead
        return self.client.bulk_create(requests)

    def apply_statuses(self) -> list[pb.Task]:
        """Set each non-todo status; returns every created task as it now is."""
        wanted = [(row, task) for row, task in self.created if row.status]
        commands = (
            pb.TaskCommand(command_id=task.id, update=pb.UpdateTaskRequest(id=task.id, status=row.status))  # type: ignore[arg-type]
            for row, task in wanted
        )
        updated: dict[str, pb.Task] = {}
        results = self.client.process(commands) if wanted else iter(())
        for (row, _), result in zip(wanted, results, strict=True):
            if result.success:
                updated[result.task.id] = result.task
            else:
                reason = f"created, but its status was not set: {result.error_message}"
                self.rejected.append(RowError(row.line, reason))
        return [updated.get(task.id, task) for _, task in self.created]

    def report(self, file: str) -> None:
        for error in sorted(self.rejected, key=lambda e: e.line):
            click.echo(f"{file}:{error.line}: {render.plain(error.reason)}", err=True)
        click.echo(f"imported {len(self.created)} tasks; {len(self.rejected)} rows rejected", err=True)


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
