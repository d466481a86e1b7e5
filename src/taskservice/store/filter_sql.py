"""Filters (domain/filters.py) as SQL WHERE conditions, for SQLite and PostgreSQL.

Every condition this emits is true or false, never NULL, so `NOT` means what it means in memory
(`filters.matches`); tests/test_filter_agreement.py runs random filters both ways on both stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from taskservice.domain.filters import STRING_FIELDS, And, Compare, Expr, Not, Or
from taskservice.domain.values import NO_DUE_DATE

if TYPE_CHECKING:
    from taskservice.store.sql import Params

Dialect = Literal["sqlite", "postgres"]

COLUMNS = {
    "status": "tasks.status",
    "priority": "tasks.priority",
    "version": "tasks.version",
    "created_at": "tasks.created_us",
    "updated_at": "tasks.updated_us",
    "due_date": "tasks.due_key",
}


def condition(expr: Expr, params: Params, dialect: Dialect) -> str:
    """The WHERE condition (over the `tasks` table) that holds exactly when `filters.matches` does."""
    if isinstance(expr, And):
        return "(" + " AND ".join(condition(item, params, dialect) for item in expr.items) + ")"
    if isinstance(expr, Or):
        return "(" + " OR ".join(condition(item, params, dialect) for item in expr.items) + ")"
    if isinstance(expr, Not):
        return f"(NOT {condition(expr.item, params, dialect)})"
    return _compare(expr, params, dialect)


def _compare(c: Compare, params: Params, dialect: Dialect) -> str:
    if c.op == "!=":
        return f"(NOT {_compare(Compare(c.field, '=', c.value, c.key), params, dialect)})"
    if c.field == "labels":
        if c.value is None:
            return "EXISTS (SELECT 1 FROM task_labels l WHERE l.task_id = tasks.id)"
        return f"EXISTS (SELECT 1 FROM task_labels l WHERE l.task_id = tasks.id AND l.label = {params.add(c.value)})"
    if c.field == "metadata":
        return _metadata(c, params, dialect)
    if c.field in STRING_FIELDS:
        if c.value is None:
            return f"tasks.{c.field} <> ''"
        if c.op == "has":
            return _contains(f"tasks.{c.field}", params.add(c.value), dialect)
        return f"tasks.{c.field} = {params.add(c.value)}"
    column = COLUMNS[c.field]
    if c.value is None:
        return f"{column} <> {NO_DUE_DATE if c.field == 'due_date' else 0}"
    test = f"{column} {c.op} {params.add(c.value)}"
    if c.field == "due_date" and c.op in (">", ">="):
        return f"({test} AND tasks.due_key <> {NO_DUE_DATE})"  # the sentinel sorts after every date
    return test


def _contains(column: str, placeholder: str, dialect: Dialect) -> str:
    if dialect == "sqlite":
        return f"instr({column}, {placeholder}) > 0"
    return f"strpos({column}, {placeholder}) > 0"


def _metadata(c: Compare, params: Params, dialect: Dialect) -> str:
    if c.value is None and not c.key:
        return "tasks.metadata <> '{}'" if dialect == "sqlite" else "tasks.metadata <> '{}'::jsonb"
    key = params.add(c.key)
    if dialect == "sqlite":
        # json_each rather than a JSON path: a key may hold any character, a path would need quoting.
        if c.value is None:
            return f"EXISTS (SELECT 1 FROM json_each(tasks.metadata) m WHERE m.key = {key})"
        test = (
            _contains("m.value", params.add(c.value), dialect)
            if c.op == "has"
            else f"m.value = {params.add(c.value)}"
        )
        return f"EXISTS (SELECT 1 FROM json_each(tasks.metadata) m WHERE m.key = {key} AND {test})"
    if c.value is None:
        return f"jsonb_exists(tasks.metadata, {key})"
    value = f"(tasks.metadata ->> {key})"
    test = (
        _contains(value, params.add(c.value), dialect)
        if c.op == "has"
        else f"{value} = {params.add(c.value)}"
    )
    return f"coalesce({test}, false)"


def required_values(expr: Expr, field: str) -> set[str] | None:
    """The values `field` must equal for `expr` to hold (`project_id = "a"`, or an AND with such a
    term, or an OR of them), or None when `expr` does not pin it. A list may then skip reading
    the tasks it excludes (store/sql.py)."""
    if isinstance(expr, Compare):
        if expr.field == field and expr.op == "=" and isinstance(expr.value, str):
            return {expr.value}
        return None
    if isinstance(expr, And):
        found = [v for v in (required_values(item, field) for item in expr.items) if v is not None]
        return set.intersection(*found) if found else None
    if isinstance(expr, Or):
        alternatives = [required_values(item, field) for item in expr.items]
        if any(v is None for v in alternatives):
            return None
        return set().union(*(v for v in alternatives if v is not None))
    return None
