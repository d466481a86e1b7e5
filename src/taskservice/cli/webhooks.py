"""`taskctl webhook`: create, list, inspect and delete webhooks (see docs/integrations.md)."""

from __future__ import annotations

import click
from rich.table import Table

from taskservice.api import task_service_pb2 as pb
from taskservice.cli import render
from taskservice.cli.options import STATUS, Session, output_option, pass_session


@click.group(name="webhook")
def webhook() -> None:
    """Signed HTTP POSTs of the task events you may see (Standard Webhooks)."""


@webhook.command()
@click.argument("url")
@click.option(
    "-s", "--status", "statuses", type=STATUS, multiple=True, help="Only tasks in this status (repeatable)."
)
@click.option("-l", "--label", "labels", multiple=True, help="Only tasks with this label (repeatable).")
@click.option("--project", "project_ids", multiple=True, help="Only tasks of this project (repeatable).")
@click.option("-d", "--description", default="", help="What the webhook is for.")
@output_option
@pass_session
def create(
    session: Session,
    url: str,
    statuses: tuple[str, ...],
    labels: tuple[str, ...],
    project_ids: tuple[str, ...],
    description: str,
) -> None:
    """Create a webhook that POSTs events to URL. Its signing secret is printed once: keep it."""
    hook = session.client().create_webhook(
        url, statuses=statuses, labels=labels, project_ids=project_ids, description=description
    )
    if session.json:
        render.print_json(hook)
        return
    out = render.console()
    out.print(_table([hook]))
    out.print(f"secret (shown once): {hook.secret}")


@webhook.command(name="list")
@output_option
@pass_session
def list_webhooks(session: Session) -> None:
    """Your webhooks (an admin sees everyone's)."""
    hooks = list(session.client().iter_webhooks())
    if session.json:
        for hook in hooks:
            render.print_json(hook)
        return
    render.console().print(_table(hooks))


@webhook.command()
@click.argument("webhook_id", metavar="ID")
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@output_option
@pass_session
def deliveries(session: Session, webhook_id: str, limit: int) -> None:
    """The webhook's most recent delivery attempts, newest first."""
    found = session.client().webhook_deliveries(webhook_id, limit)
    if session.json:
        for delivery in found:
            render.print_json(delivery)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("WHEN", "SEQUENCE", "ATTEMPT", "RESULT", "HTTP", "MS", "ERROR"):
        table.add_column(column)
    for d in found:
        table.add_row(
            render.when(d.attempted_at),
            str(d.sequence),
            str(d.attempt),
            "ok" if d.success else "failed",
            str(d.http_status or "-"),
            str(d.duration_ms),
            d.error,
        )
    render.console().print(table)


@webhook.command()
@click.argument("webhook_id", metavar="ID")
@pass_session
def delete(session: Session, webhook_id: str) -> None:
    """Delete a webhook and its delivery log."""
    session.client().delete_webhook(webhook_id)


def _table(hooks: list[pb.Webhook]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "URL", "ACTIVE", "DELIVERED", "FILTERS", "LAST ERROR"):
        table.add_column(column, no_wrap=column == "ID")
    for hook in hooks:
        filters = [pb.TaskStatus.Name(s).removeprefix("TASK_STATUS_").lower() for s in hook.statuses]
        filters += [f"label:{label}" for label in hook.labels] + [f"project:{p}" for p in hook.project_ids]
        table.add_row(
            hook.id,
            hook.url,
            "yes" if hook.active else "no",
            str(hook.delivered_sequence),
            " ".join(filters),
            hook.last_error,
        )
    return table
