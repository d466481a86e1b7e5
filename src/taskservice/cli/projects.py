"""`taskctl project …`: create, list and show projects, and add or remove their members."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from taskservice.api import task_service_pb2 as pb
from taskservice.cli import render
from taskservice.cli.options import KeyValue, Session, output_option, pass_session
from taskservice.client.requests import ROLE_NAMES, role_name

ROLE = click.Choice(ROLE_NAMES, case_sensitive=False)


def projects_table(projects: list[pb.Project]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "TITLE", "MEMBERS", "CREATED BY", "VERSION"):
        table.add_column(column, no_wrap=column == "ID")
    for project in projects:
        table.add_row(
            project.id, project.title, str(len(project.members)), project.created_by, str(project.version)
        )
    return table


def project_detail(project: pb.Project) -> Text:
    """A project as `field  value` lines, then one line per member."""
    rows = [
        ("id", project.id),
        ("title", project.title),
        ("description", project.description),
        ("created by", project.created_by),
        ("created", render.when(project.created_at)),
        ("updated", render.when(project.updated_at)),
        ("version", str(project.version)),
    ]
    rows += [(f"member {m.user}", role_name(m.role)) for m in sorted(project.members, key=lambda m: m.user)]
    rows = [(name, value) for name, value in rows if value or name != "description"]
    width = max(len(name) for name, _ in rows)
    return Text("\n").join(Text.assemble((name.ljust(width), "bold"), "  ", value) for name, value in rows)


def show(session: Session, project: pb.Project) -> None:
    if session.json:
        render.print_json(project)
    else:
        render.console().print(project_detail(project))


@click.group()
def project() -> None:
    """Projects: shared tasks with members (viewer, editor, owner)."""


@project.command()
@click.argument("title")
@click.option("-d", "--description", default="")
@click.option(
    "--member",
    "members",
    type=KeyValue(),
    multiple=True,
    help="USER=ROLE (viewer, editor, owner); repeatable.",
)
@output_option
@pass_session
def create(session: Session, title: str, description: str, members: tuple[tuple[str, str], ...]) -> None:
    """Create a project titled TITLE; you are its owner."""
    for user, role in members:
        if role.lower() not in ROLE_NAMES:
            raise click.BadParameter(
                f"{user}={role}: the role is one of {', '.join(ROLE_NAMES)}", param_hint="--member"
            )
    show(session, session.client().create_project(title, description=description, members=dict(members)))


@project.command(name="list")
@output_option
@pass_session
def list_projects(session: Session) -> None:
    """The projects you belong to (every project, for an admin)."""
    client = session.client()
    found: list[pb.Project] = []
    token = ""
    while True:
        page = client.list_projects(page_size=1000, page_token=token)
        found += page.projects
        token = page.next_page_token
        if not token:
            break
    if session.json:
        for one in found:
            render.print_json(one)
    else:
        render.console().print(projects_table(found))


@project.command(name="show")
@click.argument("project_id", metavar="ID")
@output_option
@pass_session
def show_project(session: Session, project_id: str) -> None:
    """Show project ID and its members."""
    show(session, session.client().get_project(project_id))


@project.command(name="add-member")
@click.argument("project_id", metavar="ID")
@click.argument("user")
@click.option("--role", type=ROLE, default="editor", show_default=True)
@output_option
@pass_session
def add_member(session: Session, project_id: str, user: str, role: str) -> None:
    """Add USER to project ID (or change their role)."""
    show(session, session.client().set_member(project_id, user, role))


@project.command(name="remove-member")
@click.argument("project_id", metavar="ID")
@click.argument("user")
@output_option
@pass_session
def remove_member(session: Session, project_id: str, user: str) -> None:
    """Remove USER from project ID (yourself: leave it)."""
    show(session, session.client().set_member(project_id, user, None))


@project.command(name="delete")
@click.argument("project_id", metavar="ID")
@click.option("--force", is_flag=True, help="Delete the project's tasks too (for good).")
@output_option
@pass_session
def delete_project(session: Session, project_id: str, force: bool) -> None:
    """Delete project ID (refused while it holds tasks, unless --force)."""
    session.client().delete_project(project_id, force=force)
    click.echo("{}" if session.json else f"deleted project {project_id}")
