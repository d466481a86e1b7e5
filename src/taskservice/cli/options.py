"""What every taskctl command shares: the session (global options and one client), exit statuses,
and the option types and filters several commands use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click

from taskservice.api import task_service_pb2 as pb
from taskservice.cli import render
from taskservice.client import TaskClient
from taskservice.client.requests import PRIORITY_NAMES, STATUS_NAMES, timestamp

EXIT_FAILED = 1  # the server refused something (or a row/command failed)
EXIT_USAGE = 2  # bad flags, file or config: click's own convention


def fail(message: str, status: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"taskctl: {render.plain(message)}", err=True)  # server messages quote other people's text
    raise click.exceptions.Exit(status)


@dataclass
class Session:
    """The global options, and the one client all of a command's calls share."""

    server: str
    token: str | None
    tls: bool
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    timeout: float | None
    output: str
    _client: TaskClient | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return self.output == "json"

    def client(self) -> TaskClient:
        if self._client is None:
            self._client = TaskClient(
                self.server,
                token=self.token,
                tls=self.tls,
                ca_file=self.ca_file,
                cert_file=self.cert_file,
                key_file=self.key_file,
                timeout=self.timeout,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def show_task(self, task: pb.Task) -> None:
        if self.json:
            render.print_json(task)
        else:
            render.console().print(render.task_detail(task))


class DueDate(click.ParamType[Any]):
    """ISO 8601 date or time; with `clearable`, an empty value means "remove the due date"."""

    name = "DATE"

    def __init__(self, clearable: bool = False) -> None:
        self.clearable = clearable

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if self.clearable and str(value).strip().lower() in ("", "none"):
            return ""
        try:
            return timestamp(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


class KeyValue(click.ParamType[Any]):
    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        key, sep, val = str(value).partition("=")
        if not sep or not key:
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key, val


def _override_output(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_object(Session).output = value  # type: ignore[union-attr]


# `-o` is accepted after the command name as well (`taskctl list -o json`).
output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    expose_value=False,
    callback=_override_output,
    help="table or json (same as the global -o).",
)
STATUS = click.Choice(STATUS_NAMES, case_sensitive=False)
PRIORITY = click.Choice(PRIORITY_NAMES, case_sensitive=False)
pass_session = click.make_pass_decorator(Session)


def filter_options(*, priorities: bool = True, assignee: bool = True) -> Callable[[Any], Any]:
    """The filters list, export and watch share."""

    def decorate(command: Any) -> Any:
        if assignee:
            command = click.option("--assignee", default="", help="Only tasks assigned to this user.")(
                command
            )
        command = click.option(
            "-l", "--label", "labels", multiple=True, help="Only tasks with this label (repeat: any of them)."
        )(command)
        if priorities:
            command = click.option(
                "-p",
                "--priority",
                "priorities",
                type=PRIORITY,
                multiple=True,
                help="Only this priority (repeatable).",
            )(command)
        return click.option(
            "-s", "--status", "statuses", type=STATUS, multiple=True, help="Only this status (repeatable)."
        )(command)

    return decorate
