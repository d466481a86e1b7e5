"""The AIP-160 filter grammar: each operator, precedence, values, and bad input named by column."""

from __future__ import annotations

import pytest

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import InvalidArgument
from taskservice.domain.filters import (
    FILTER_MAX_CHARS,
    FILTER_MAX_DEPTH,
    And,
    Compare,
    Expr,
    Not,
    Or,
    parse,
    parse_query,
)
from taskservice.domain.paging import SortKey, parse_order

NOW = 1_750_000_000 * 1_000_000
DAY = 86_400 * 1_000_000


def expr(text: str) -> Expr:
    parsed = parse(text, now=NOW)
    assert parsed is not None
    return parsed.expr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status = DONE", Compare("status", "=", pb.TASK_STATUS_DONE)),
        ("status = TASK_STATUS_DONE", Compare("status", "=", pb.TASK_STATUS_DONE)),
        ("status != done", Compare("status", "!=", pb.TASK_STATUS_DONE)),
        ("priority >= HIGH", Compare("priority", ">=", pb.PRIORITY_HIGH)),
        ("priority < 3", Compare("priority", "<", 3)),
        ("priority > LOW", Compare("priority", ">", pb.PRIORITY_LOW)),
        ("priority <= MEDIUM", Compare("priority", "<=", pb.PRIORITY_MEDIUM)),
        ('labels:"bug"', Compare("labels", "has", "bug")),
        ("labels:bug", Compare("labels", "has", "bug")),
        ("labels:*", Compare("labels", "has", None)),
        ('title = "Fix the \\"login\\" page"', Compare("title", "=", 'Fix the "login" page')),
        ("title:'login'", Compare("title", "has", "login")),
        ("metadata.team:*", Compare("metadata", "has", None, "team")),
        ('metadata.team = "core"', Compare("metadata", "=", "core", "team")),
        ("metadata:team", Compare("metadata", "has", None, "team")),
        ("version = 3", Compare("version", "=", 3)),
        ("version:3", Compare("version", "=", 3)),
        ("due_date < now", Compare("due_date", "<", NOW)),
        ("due_date < now-7d", Compare("due_date", "<", NOW - 7 * DAY)),
        ("due_date < now+24h", Compare("due_date", "<", NOW + DAY)),
        ('created_at >= "2025-01-31T12:00:00Z"', Compare("created_at", ">=", 1738324800 * 1_000_000)),
        ('created_at >= "2025-01-31T13:00:00+01:00"', Compare("created_at", ">=", 1738324800 * 1_000_000)),
        ("updated_at > 2025-01-31", Compare("updated_at", ">", 1738281600 * 1_000_000)),
        ("due_date:*", Compare("due_date", "has", None)),
        ('assigned_to = "ana"', Compare("assigned_to", "=", "ana")),
    ],
)
def test_each_operator_and_value(text: str, expected: Compare) -> None:
    assert expr(text) == expected


def test_or_binds_tighter_than_and() -> None:
    a, b, c = (Compare("status", "=", n) for n in (1, 2, 3))
    assert expr("status = 1 OR status = 2 AND status = 3") == And((Or((a, b)), c))
    assert expr("status = 1 AND status = 2 OR status = 3") == And((a, Or((b, c))))
    assert expr("(status = 1 AND status = 2) OR status = 3") == Or((And((a, b)), c))


def test_juxtaposition_is_and_and_negation_binds_to_one_term() -> None:
    a, b = Compare("status", "=", 1), Compare("priority", "=", 2)
    assert expr("status = 1 priority = 2") == And((a, b))
    assert expr("NOT status = 1 priority = 2") == And((Not(a), b))
    assert expr("-status = 1 OR priority = 2") == Or((Not(a), b))
    assert expr("NOT (status = 1 OR priority = 2)") == Not(Or((a, b)))


def test_empty_filter_is_none() -> None:
    assert parse("   ") is None


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("status = ", 10, "expected a value"),
        ("status DONE", 8, "expected a comparator"),
        ("colour = red", 1, "unknown field 'colour'"),
        ("status = PURPLE", 10, "'PURPLE' is not a status"),
        ("(status = DONE", 15, "expected ')'"),
        ("status = DONE)", 14, "unexpected ')'"),
        ('title = "open', 9, "unterminated string"),
        ('title < "b"', 7, "can be compared with = != and : only"),
        ("due_date < yesterday", 12, "expected a time"),
        ("version = many", 11, "expected a whole number"),
        ("status = *", 10, "'*' is only allowed after ':'"),
        ("status = DONE AND", 18, "expected a comparison"),
        ("title.x = 1", 1, "has no sub-fields"),
        ("status = DONE & x", 15, "unexpected character '&'"),
        ("()", 2, "empty parentheses"),
    ],
)
def test_bad_input_names_the_column(text: str, column: int, words: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse(text, now=NOW)
    message = raised.value.message
    assert f"filter: at column {column}:" in message and words in message, message


def test_limits_on_length_and_depth() -> None:
    with pytest.raises(InvalidArgument, match="characters long"):
        parse("status = DONE AND " * (FILTER_MAX_CHARS // 10), now=NOW)
    deep = "(" * (FILTER_MAX_DEPTH + 2) + "status = DONE" + ")" * (FILTER_MAX_DEPTH + 2)
    with pytest.raises(InvalidArgument, match="nested more than"):
        parse(deep, now=NOW)
    assert parse("(" * FILTER_MAX_DEPTH + "status = DONE" + ")" * FILTER_MAX_DEPTH, now=NOW) is not None


def test_matches_in_memory() -> None:
    task = pb.Task(title="Fix login", status=pb.TASK_STATUS_TODO, priority=pb.PRIORITY_HIGH, labels=["bug"])
    task.metadata["team"] = "core"
    task.due_date.FromMicroseconds(NOW - 2 * DAY)
    for text, expected in [
        ("status = TODO AND priority >= HIGH", True),
        ('labels:"bug" AND -labels:"ui"', True),
        ("title:login", True),
        ("title:Login", False),  # case-sensitive, as in SQL
        ("due_date < now-1d", True),
        ("due_date > now-1d", False),
        ("metadata.team = core", True),
        ("metadata.other != x", True),  # != is NOT =, also for a missing key
        ("assigned_to:*", False),
    ]:
        parsed = parse(text, now=NOW)
        assert parsed is not None and parsed.matches(task) is expected, text


def test_unset_due_date_fails_every_comparison() -> None:
    task = pb.Task(title="t")
    for op in ("=", "<", "<=", ">", ">="):
        parsed = parse(f"due_date {op} now", now=NOW)
        assert parsed is not None and not parsed.matches(task)
    assert parse("due_date != now", now=NOW).matches(task)  # type: ignore[union-attr]


def test_query_words_prefixes_and_phrases() -> None:
    search = parse_query('Release rele* "login page" foo-bar')
    assert search is not None
    assert [(t.words, t.prefix) for t in search.terms] == [
        (("release",), False),
        (("rele",), True),
        (("login", "page"), False),
        (("foo", "bar"), False),
    ]
    assert parse_query("  ... ") is None


def test_order_by_lists() -> None:
    assert parse_order("due_date desc, priority", False) == (SortKey("due_date", True), SortKey("priority"))
    assert parse_order("priority", True) == (SortKey("priority", True),)
    assert parse_order("", False) == (SortKey("created_at"),)
    for bad in ("colour", "priority sideways", "priority, priority", "due_date desc,"):
        with pytest.raises(InvalidArgument, match="order_by"):
            parse_order(bad, False)
