"""`taskctl`: the command-line client for TaskService.

Every command goes through `taskservice.client.TaskClient`, so deadlines, retries and watch resume
behave exactly as they do for Python programs. Defaults come from flags, then `TASKCTL_*`
variables, then `~/.config/taskctl/config.toml`. Failures are one line on stderr
(`taskctl: NOT_FOUND: task 'x' not found`) and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import os

# gRPC's C core logs transport failures (a refused connection, a TLS handshake) to stderr at INFO
# level; taskctl reports each failure itself in one line, so the core should speak only of errors.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from taskservice.api import task_service_pb2 as pb
from taskservice.cli import bulk, projects, render, webhooks
from taskservice.cli.options import (
    EXIT_FAILED,
    EXIT_USAGE,
    PRIORITY,
    STATUS,
    DueDate,
    KeyValue,
    Session,
    fail,
    filter_options,
    output_option,
    pass_session,
)
from taskservice.cli.transfer import FileFormatError
from taskservice.client import DEFAULT_SERVER, TaskServiceError
from taskservice.client.requests import SORT_FIELDS, list_request

_CONFIG_KEYS = frozenset({"server", "token", "tls", "ca_file", "cert_file", "key_file", "timeout", "output"})


def config_path() -> Path:
    """`$TASKCTL_CONFIG`, else `$XDG_CONFIG_HOME/taskctl/config.toml` (default ~/.config)."""
    if os.environ.get("TASKCTL_CONFIG"):
        return Path(os.environ["TASKCTL_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "taskctl" / "config.toml"


def load_config(path: Path) -> dict[str, Any]:
    """Top-level keys are defaults for the global options; a `[list]`-style table holds defaults for
    one command's options (Click's default_map)."""
    if not path.exists():
        return {}
    with path.open("rb") as file:
        config = {key.replace("-", "_"): value for key, value in tomllib.load(file).items()}
    unknown = [k for k, v in config.items() if k not in _CONFIG_KEYS and not isinstance(v, dict)]
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_CONFIG_KEYS))}")
    return config


class Taskctl(click.Group):
    """Turns the errors a command may meet into one line on stderr and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TaskServiceError as error:
            fail(str(error))
        except FileFormatError as error:
            fail(str(error), EXIT_USAGE)
        except (
            click.exceptions.ClickException,
            click.exceptions.Exit,
            click.exceptions.Abort,
            BrokenPipeError,
        ):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except OSError as error:
            fail(str(error))
        except Exception as error:  # a bug in taskctl: still one line, never a traceback
            fail(f"unexpected error ({type(error).__name__}): {error}")


# -- the group ----------------------------------------------------------------------------------


@click.group(cls=Taskctl, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server",
    envvar="TASKCTL_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    help="host:port of the gRPC API.",
)
@click.option("--token", envvar="TASKCTL_TOKEN", help="Bearer token, sent as `authorization` metadata.")
@click.option("--tls/--no-tls", envvar="TASKCTL_TLS", default=False, help="Connect with TLS.")
@click.option(
    "--ca-file",
    envvar="TASKCTL_CA_FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM file of CA certificates to trust (implies --tls).",
)
@click.option(
    "--cert",
    "cert_file",
    envvar="TASKCTL_CERT",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM client certificate, for servers that require mTLS (with --key).",
)
@click.option(
    "--key",
    "key_file",
    envvar="TASKCTL_KEY",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM private key of the --cert certificate.",
)
@click.option(
    "--timeout",
    envvar="TASKCTL_TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Deadline in seconds for each call, retries included.",
)
@click.option(
    "-o",
    "--output",
    envvar="TASKCTL_OUTPUT",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people; json prints protobuf's canonical JSON, one object per line.",
)
@click.version_option(package_name="taskservice", prog_name="taskctl")
@click.pass_context
def cli(
    ctx: click.Context,
    server: str,
    token: str | None,
    tls: bool,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    timeout: float,
    output: str,
) -> None:
    """Manage TaskService tasks from a terminal or a script."""
    if bool(cert_file) != bool(key_file):
        raise click.UsageError("--cert and --key go together")
    ctx.obj = Session(server, token, tls, ca_file, cert_file, key_file, timeout, output)
    ctx.call_on_close(ctx.obj.close)


# -- single tasks -------------------------------------------------------------------------------


@cli.command()
@click.argument("title")
@click.option("-d", "--description", default="", help="Longer text.")
@click.option("-p", "--priority", type=PRIORITY, help="Default: medium.")
@click.option("-l", "--label", "labels", multiple=True, help="A label (repeatable).")
@click.option("-a", "--assign", "assigned_to", default="", help="User the task is assigned to.")
@click.option(
    "--due", type=DueDate(), help="Due date: 2026-12-31 or 2026-12-31T17:00:00Z (UTC if no offset)."
)
@click.option("-m", "--meta", "metadata", type=KeyValue(), multiple=True, help="Metadata entry (repeatable).")
@click.option(
    "--request-id", help="Idempotency key: repeating it returns the first task (default: a fresh one)."
)
@click.option("--project", "project_id", default="", help="Create the task in this project.")
@click.option("--parent", "parent_id", default="", help="Make it a subtask of this task (same project).")
@output_option
@pass_session
def create(
    session: Session,
    title: str,
    description: str,
    priority: str | None,
    labels: tuple[str, ...],
    assigned_to: str,
    due: Any,
    metadata: tuple[tuple[str, str], ...],
    request_id: str | None,
    project_id: str,
    parent_id: str,
) -> None:
    """Create a task titled TITLE."""
    task = session.client().create(
        title,
        description=description,
        priority=priority,
        labels=labels,
        assigned_to=assigned_to,
        due=due,
        metadata=dict(metadata),
        request_id=request_id,
        project_id=project_id,
        parent_id=parent_id,
    )
    session.show_task(task)


@cli.command()
@click.argument("task_id", metavar="ID")
@click.option("--deleted", is_flag=True, help="Show it even if it is in the trash.")
@output_option
@pass_session
def get(session: Session, task_id: str, deleted: bool) -> None:
    """Show one task."""
    session.show_task(session.client().get(task_id, show_deleted=deleted))


@cli.command()
@click.argument("task_id", metavar="ID")
@click.option("--title")
@click.option("-d", "--description")
@click.option("-s", "--status", type=STATUS)
@click.option("-p", "--priority", type=PRIORITY)
@click.option("-l", "--label", "labels", multiple=True, help="Replace the labels with these (repeatable).")
@click.option("--clear-labels", is_flag=True, help="Remove every label.")
@click.option("-a", "--assign", "assigned_to", help="Assign to this user ('' to unassign).")
@click.option("--due", type=DueDate(clearable=True), help="New due date; '' or none removes it.")
@click.option(
    "-m", "--meta", "metadata", type=KeyValue(), multiple=True, help="Set a metadata entry (merged)."
)
@click.option(
    "--if-version", type=click.IntRange(min=1), help="Fail with ABORTED unless the task is at this version."
)
@click.option("--project", "project_id", help="Move it to this project ('' for your personal tasks).")
@click.option("--parent", "parent_id", help="Make it a subtask of this task ('' for none).")
@output_option
@pass_session
def update(
    session: Session,
    task_id: str,
    title: str | None,
    description: str | None,
    status: str | None,
    priority: str | None,
    labels: tuple[str, ...],
    clear_labels: bool,
    assigned_to: str | None,
    due: Any,
    metadata: tuple[tuple[str, str], ...],
    if_version: int | None,
    project_id: str | None,
    parent_id: str | None,
) -> None:
    """Change the given fields of task ID; the others stay as they are."""
    if labels and clear_labels:
        raise click.UsageError("--label and --clear-labels contradict each other")
    changes: dict[str, Any] = {
        "title": title,
        "description": description,
        "status": status,
        "priority": priority,
        "labels": [] if clear_labels else (list(labels) or None),
        "assigned_to": assigned_to,
        "due": due,
        "metadata": dict(metadata) or None,
        "project_id": project_id,
        "parent_id": parent_id,
    }
    if all(value is None for value in changes.values()):
        raise click.UsageError("nothing to update: give at least one field option")
    task = session.client().update(task_id, expected_version=if_version or 0, **changes)
    session.show_task(task)


@cli.command()
@click.argument("task_id", metavar="ID")
@click.option(
    "--if-version", type=click.IntRange(min=1), help="Fail with ABORTED unless the task is at this version."
)
@output_option
@pass_session
def delete(session: Session, task_id: str, if_version: int | None) -> None:
    """Move task ID to the trash (`taskctl undelete ID` restores it)."""
    session.client().delete(task_id, expected_version=if_version or 0)
    if session.json:
        click.echo("{}")  # the canonical JSON of google.protobuf.Empty
    else:
        click.echo(f"deleted {task_id}")


@cli.command()
@click.argument("task_id", metavar="ID")
@output_option
@pass_session
def undelete(session: Session, task_id: str) -> None:
    """Take task ID out of the trash."""
    session.show_task(session.client().undelete(task_id))


# -- many tasks ---------------------------------------------------------------------------------


@cli.command(name="list")
@filter_options()
@click.option("--created-by", default="", help="Only tasks created by this user.")
@click.option(
    "--sort", type=click.Choice(SORT_FIELDS), default=None, help="Sort by one field (default created_at)."
)
@click.option("--desc", is_flag=True, help="Sort descending.")
@click.option(
    "--filter",
    "filter_text",
    default="",
    help="A filter in the AIP-160 language, e.g. 'status = TODO AND due_date < now+7d'.",
)
@click.option(
    "--query", "-q", default="", help='Full-text words in title and description: release "login page" rele*.'
)
@click.option("--order-by", default="", help='Sort by several fields, e.g. "due_date desc, priority".')
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show at most N tasks."
)
@click.option("--all", "show_all", is_flag=True, help="Show every matching task (pages through them).")
@click.option("--project", "project_id", default="", help="Only this project's tasks.")
@click.option("--parent", "parent_id", default="", help="Only the subtasks of this task.")
@click.option("--trash", is_flag=True, help="List the trash instead.")
@output_option
@pass_session
def list_tasks(
    session: Session,
    statuses: tuple[str, ...],
    priorities: tuple[str, ...],
    labels: tuple[str, ...],
    assignee: str,
    created_by: str,
    sort: str | None,
    desc: bool,
    filter_text: str,
    query: str,
    order_by: str,
    limit: int,
    show_all: bool,
    project_id: str,
    parent_id: str,
    trash: bool,
) -> None:
    """List tasks, oldest first unless --sort/--desc/--order-by say otherwise (best matches first
    with --query alone)."""
    if sort and order_by:
        raise click.UsageError("use --sort or --order-by, not both")
    most = None if show_all else limit
    request = list_request(
        statuses=statuses,
        priorities=priorities,
        labels=labels,
        assigned_to=assignee,
        created_by=created_by,
        order_by=order_by or sort or ("" if query else "created_at"),
        descending=desc,
        page_size=min(most or 1000, 1000),
        project_id=project_id,
        parent_id=parent_id,
        show_deleted=trash,
        filter=filter_text,
        query=query,
    )
    client = session.client()
    shown: list[pb.Task] = []
    total = 0
    while True:
        page = client.list(request)
        total = total or page.total_count
        for task in page.tasks[: None if most is None else most - len(shown)]:
            shown.append(task)
            if session.json:
                render.print_json(task)
        if not page.next_page_token or (most is not None and len(shown) >= most):
            break
        request.page_token = page.next_page_token
    if not session.json:
        out = render.console()
        out.print(render.tasks_table(shown))
        more = " (--all or --limit to see more)" if len(shown) < total else ""
        out.print(f"[dim]{len(shown)} of {total} tasks{more}[/dim]")


@cli.command()
@filter_options(priorities=False, assignee=False)
@click.option("--id", "task_ids", multiple=True, help="Only this task (repeatable).")
@click.option("--initial", is_flag=True, help="First print the current matching tasks (as CREATED).")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this event sequence.")
@click.option("--project", "project_ids", multiple=True, help="Only this project's tasks (repeatable).")
@click.option("--filter", "filter_text", default="", help="Only tasks this AIP-160 filter matches.")
@output_option
@pass_session
def watch(
    session: Session,
    statuses: tuple[str, ...],
    labels: tuple[str, ...],
    task_ids: tuple[str, ...],
    initial: bool,
    after: int,
    project_ids: tuple[str, ...],
    filter_text: str,
) -> None:
    """Print task events as they happen, until interrupted.

    When the connection drops (a server restart, a network failure) it reconnects with backoff and
    resumes after the last event it printed, so nothing is missed or printed twice."""
    out = render.console()
    last = after

    def on_retry(error: TaskServiceError, delay: float) -> None:
        where = f"after sequence {last}" if last else "from the start"
        click.echo(
            f"taskctl: {render.plain(str(error))}; reconnecting in {delay:.1f}s, resuming {where}", err=True
        )

    events = session.client().watch(
        task_ids=task_ids,
        statuses=statuses,
        labels=labels,
        include_initial=initial,
        after_sequence=after,
        project_ids=project_ids,
        filter=filter_text,
        on_retry=on_retry,
    )
    for event in events:
        last = event.sequence
        if session.json:
            render.print_json(event)
        else:
            out.print(render.event_line(event))


@cli.command()
@click.argument("task_id", metavar="ID")
@output_option
@pass_session
def history(session: Session, task_id: str) -> None:
    """Print the history of task ID, oldest first: who changed what, and when."""
    client = session.client()
    out = render.console()
    token = ""
    while True:
        page = client.history(task_id, page_size=500, page_token=token)
        for event in page.events:
            if session.json:
                render.print_json(event)
            else:
                out.print(render.history_line(event))
        token = page.next_page_token
        if not token:
            return


for command in (bulk.import_tasks, bulk.export_tasks, bulk.batch, projects.project, webhooks.webhook):
    cli.add_command(command)


@cli.command(short_help="Print a shell completion script.")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script, e.g. `eval "$(taskctl completion bash)"`."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # every choice above is a shell click supports
    click.echo(completer(cli, {}, "taskctl", "_TASKCTL_COMPLETE").source())


def main() -> None:
    try:
        defaults = load_config(config_path())
    except (OSError, ValueError) as error:  # tomllib.TOMLDecodeError is a ValueError
        click.echo(f"taskctl: config file {config_path()}: {error}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        cli.main(prog_name="taskctl", default_map=defaults)
    except BrokenPipeError:
        # The reader went away (`taskctl list | head`): stop quietly, and keep Python's flush at
        # exit from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
