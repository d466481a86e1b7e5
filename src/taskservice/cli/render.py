"""How taskctl shows things: Rich tables for people, protobuf canonical JSON (one object per line)
for programs. Colour only when stdout is a terminal (and NO_COLOR is unset, which Rich honours).

Everything that comes from the server is other people's text: it reaches Rich only as `Text`
(never parsed as markup, so `[link=…]` stays literal and `[/bold]` cannot crash), and with its
control characters shown as escapes (`plain`), so a title cannot clear the screen, move the cursor
or reorder what is shown (bidi overrides)."""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterable

import click
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from rich.text import Text

from taskservice.api import task_service_pb2 as pb
from taskservice.client.requests import priority_name, status_name

_STATUS_STYLE = {"todo": "cyan", "in-progress": "yellow", "done": "green", "cancelled": "dim"}
_PRIORITY_STYLE = {"low": "dim", "medium": "", "high": "bold yellow", "critical": "bold red"}
_EVENT_STYLE = {"CREATED": "green", "UPDATED": "yellow", "DELETED": "red"}


_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: str, *, lines: bool = False) -> str:
    """`text` with every control character (and bidi override) written as an escape, `\\x1b`;
    newlines stay when `lines` (a description), tabs become spaces."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char == "\n" and lines:
            out.append(char)
        elif char == "\t":
            out.append(" ")
        elif unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS or char in "\u2028\u2029":
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def shown(text: str, style: str = "") -> Text:
    """Other people's text for Rich: literal (no markup) and without control characters."""
    return Text(plain(text), style=style)


def console(stderr: bool = False) -> Console:
    """A console that wraps at the terminal's width, and never wraps when writing to a pipe."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 10_000
    return Console(file=stream, width=width, highlight=False, soft_wrap=width is not None)


def to_json(message: Message) -> str:
    """Protobuf's canonical JSON on one line (what `-o json` prints). JSON already escapes C0
    controls; DEL, C1 controls and bidi overrides are escaped too (`\\u009b`), the same string."""
    text = json_format.MessageToJson(message, indent=None, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def print_json(message: Message) -> None:
    click.echo(to_json(message))


def when(stamp: Timestamp) -> str:
    """`2026-12-31` for midnight UTC, else `2026-12-31 17:00Z`; empty for an unset timestamp."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    moment = stamp.ToDatetime()
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%MZ")


def _status(task: pb.Task) -> Text:
    name = status_name(task.status)
    return Text(name, style=_STATUS_STYLE.get(name, ""))


def _priority(task: pb.Task) -> Text:
    name = priority_name(task.priority)
    return Text(name, style=_PRIORITY_STYLE.get(name, ""))


def tasks_table(tasks: Iterable[pb.Task]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "TITLE", "STATUS", "PRIORITY", "LABELS", "ASSIGNEE", "DUE", "VERSION"):
        table.add_column(column, no_wrap=column == "ID")
    for task in tasks:
        table.add_row(
            shown(task.id),
            shown(task.title),
            _status(task),
            _priority(task),
            shown(",".join(task.labels)),
            shown(task.assigned_to),
            when(task.due_date) if task.HasField("due_date") else "",
            str(task.version),
        )
    return table


def task_detail(task: pb.Task) -> Text:
    """One task as `field  value` lines."""
    rows: list[tuple[str, str | Text]] = [
        ("id", plain(task.id)),
        ("title", plain(task.title)),
        ("status", _status(task)),
        ("priority", _priority(task)),
        ("labels", plain(", ".join(task.labels))),
        ("assigned to", plain(task.assigned_to)),
        ("due", when(task.due_date) if task.HasField("due_date") else ""),
        ("created by", plain(task.created_by)),
        ("created", when(task.created_at)),
        ("updated", when(task.updated_at)),
        ("version", str(task.version)),
    ]
    rows += [
        (name, value)
        for name, value in (
            ("project", task.project_id),
            ("parent", task.parent_id),
            ("in trash since", when(task.delete_time) if task.HasField("delete_time") else ""),
        )
        if value
    ]
    if task.description:
        rows.insert(2, ("description", plain(task.description, lines=True)))
    rows += [(f"meta {plain(key)}", plain(value)) for key, value in sorted(task.metadata.items())]
    width = max(len(name) for name, _ in rows)
    lines = [Text.assemble((name.ljust(width), "bold"), "  ", value) for name, value in rows]
    for line in lines:
        line.rstrip()
    return Text("\n").join(lines)


def event_line(event: pb.TaskEvent) -> Text:
    """`#42 UPDATED <id> done high "title" [labels]` for the watch table output."""
    kind = pb.EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    task = event.task
    line = Text(f"#{event.sequence} ")
    line.append(f"{kind:<7}", style=_EVENT_STYLE.get(kind, ""))
    line.append(f" {plain(task.id)} ")
    line.append_text(_status(task))
    line.append(" ")
    line.append_text(_priority(task))
    line.append(f' "{plain(task.title)}"')
    if task.labels:
        line.append(f" [{plain(', '.join(task.labels))}]", style="dim")
    return line


def history_line(event: pb.TaskEvent) -> Text:
    """`2025-01-31 12:00 UPDATED by ana: status, priority (v3)` for `taskctl history`."""
    kind = pb.EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    line = Text(f"{when(event.timestamp)} ")
    line.append(f"{kind:<7}", style=_EVENT_STYLE.get(kind, ""))
    line.append(f" by {event.triggered_by or '-'}")
    if event.changed_paths.paths:
        line.append(": " + ", ".join(event.changed_paths.paths))
    line.append(f" (v{event.task.version})", style="dim")
    return line
