"""The AIP-160 filter language over tasks: one parser, one meaning.

`parse` turns a filter string into a small tree of `And`, `Or`, `Not` and `Compare` nodes whose
values are already typed and resolved (enum names to numbers, `now-7d` to microseconds), so the
SQL compiler (`store/filter_sql.py`) and the in-memory test here (`matches`, used by watches and
count upkeep) read the same decisions and cannot drift apart.

Meaning, for every field (the property test in tests/test_filter_agreement.py holds both sides to it):
- `a != v` is exactly `NOT a = v`.
- Strings (title, description, assigned_to, created_by, project_id, parent_id, metadata.KEY):
  `=` is exact, case-sensitive equality; `:` is a case-sensitive substring test.
- `labels = "x"` and `labels:"x"` hold when the task carries the label "x".
- status and priority compare by enum number, so `priority >= HIGH` works.
- due_date, created_at, updated_at compare in microseconds; an unset due date fails every comparison.
- `field:*` holds when the field is set (non-empty string, any label, a due date, the metadata key).
- `metadata:KEY` holds when the key is present.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import InvalidArgument
from taskservice.domain.values import NO_DUE_DATE, due_key, now_us, us_from_timestamp

FILTER_MAX_CHARS = 2000
FILTER_MAX_DEPTH = 20
FILTER_MAX_TERMS = 100

STRING_FIELDS = ("title", "description", "assigned_to", "created_by", "project_id", "parent_id")
ENUM_FIELDS = {"status": pb.TaskStatus, "priority": pb.Priority}
TIME_FIELDS = ("due_date", "created_at", "updated_at")
INT_FIELDS = ("version",)
FIELDS = (*STRING_FIELDS, *ENUM_FIELDS, "labels", *TIME_FIELDS, *INT_FIELDS, "metadata")

ORDERING = ("<", "<=", ">", ">=")
COMPARATORS = ("=", "!=", *ORDERING, ":")


@dataclass(frozen=True, slots=True)
class Compare:
    """One restriction. `op` is a comparator, or "has" for `:` (`value` None: `:*`, presence).
    `key` is the metadata key for metadata restrictions (`metadata:KEY` is `key=KEY, value=None`)."""

    field: str
    op: str
    value: str | int | None
    key: str = ""


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr = Compare | And | Or | Not


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed filter and the text it came from (the text identifies it in page tokens)."""

    text: str
    expr: Expr
    uses_now: bool = False  # resolved against the time of parsing: the same text means another filter later

    def matches(self, task: pb.Task) -> bool:
        return matches(self.expr, task)


# -- lexing -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<cmp><=|>=|!=|=|<|>|:)
  | (?P<paren>[()])
  | (?P<word>-?[A-Za-z0-9_*][A-Za-z0-9_.*+\-]*)
  | (?P<minus>-)
  | (?P<bad>["'])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, cmp, paren, word, minus, end
    text: str
    column: int  # 1-based

    @property
    def value(self) -> str:
        """A string token's content, unescaped; a word as written."""
        if self.kind != "string":
            return self.text
        return re.sub(r"\\(.)", r"\1", self.text[1:-1])


def _error(column: int, reason: str) -> InvalidArgument:
    return InvalidArgument.field("filter", f"at column {column}: {reason}")


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    at = 0
    while at < len(text):
        found = _TOKEN.match(text, at)
        if found is None:
            raise _error(at + 1, f"unexpected character {text[at]!r}")
        kind = found.lastgroup or ""
        if kind == "bad":
            raise _error(at + 1, "unterminated string (a quote without its closing quote)")
        # A minus at the start of a term negates it (`-status = DONE`); inside a value it is a sign.
        if kind == "word" and found.group().startswith("-") and not found.group()[1:2].isdigit():
            tokens.append(_Token("minus", "-", at + 1))
            found = _TOKEN.match(text, at + 1)
            assert found is not None
            kind = found.lastgroup or ""
            at += 1
        if kind != "space":
            tokens.append(_Token(kind, found.group(), at + 1))
        at = found.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


# -- parsing ------------------------------------------------------------------------------------


def parse(text: str, *, now: int | None = None) -> Filter | None:
    """Parse a filter; None for an empty one. `now` (microseconds) resolves `now`-relative times,
    once, so every task is tested against the same instant. Raises InvalidArgument naming the column."""
    if len(text) > FILTER_MAX_CHARS:
        raise InvalidArgument.field("filter", f"is {len(text)} characters long; at most {FILTER_MAX_CHARS}")
    if "\x00" in text:
        raise _error(text.index("\x00") + 1, "NUL characters are not allowed")
    if not text.strip():
        return None
    parser = _Parser(_tokens(text), now_us() if now is None else now)
    expr = parser.expression(0)
    end = parser.peek()
    if end.kind != "end":
        raise _error(
            end.column, f"unexpected {end.text!r}" + (" (no '(' to close)" if end.text == ")" else "")
        )
    return Filter(text, expr, parser.uses_now)


class _Parser:
    """Recursive descent over AIP-160's grammar:
    expression = sequence {AND sequence}; sequence = factor {factor}; factor = term {OR term};
    term = [NOT | -] simple; simple = restriction | "(" expression ")";
    restriction = field comparator value. OR binds tighter than AND, as AIP-160 specifies."""

    def __init__(self, tokens: list[_Token], now: int) -> None:
        self._tokens = tokens
        self._at = 0
        self._now = now
        self._terms = 0
        self.uses_now = False

    def peek(self) -> _Token:
        return self._tokens[self._at]

    def _take(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text == word

    def expression(self, depth: int) -> Expr:
        if depth > FILTER_MAX_DEPTH:
            raise _error(self.peek().column, f"nested more than {FILTER_MAX_DEPTH} levels deep")
        items = [self._sequence(depth)]
        while self._keyword("AND"):
            self._take()
            items.append(self._sequence(depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def _sequence(self, depth: int) -> Expr:
        items = [self._factor(depth)]
        while self._starts_term():
            items.append(self._factor(depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def _starts_term(self) -> bool:
        token = self.peek()
        if token.kind in ("minus", "string") or token.text == "(":
            return True
        return token.kind == "word" and token.text not in ("AND", "OR")

    def _factor(self, depth: int) -> Expr:
        items = [self._term(depth)]
        while self._keyword("OR"):
            self._take()
            items.append(self._term(depth))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _term(self, depth: int) -> Expr:
        token = self.peek()
        if token.kind == "minus" or self._keyword("NOT"):
            self._take()
            return Not(self._simple(depth))
        return self._simple(depth)

    def _simple(self, depth: int) -> Expr:
        token = self.peek()
        if token.text == "(" and token.kind == "paren":
            self._take()
            if self.peek().text == ")":
                raise _error(self.peek().column, "empty parentheses")
            inner = self.expression(depth + 1)
            close = self._take()
            if close.text != ")":
                raise _error(close.column, f"expected ')' to close the '(' at column {token.column}")
            return inner
        self._terms += 1
        if self._terms > FILTER_MAX_TERMS:
            raise _error(token.column, f"more than {FILTER_MAX_TERMS} comparisons")
        return self._restriction()

    def _restriction(self) -> Compare:
        name = self._take()
        if name.kind == "end":
            raise _error(name.column, "expected a comparison such as status = DONE")
        if name.kind != "word":
            raise _error(name.column, f"expected a field name, found {name.text!r}")
        field, _, key = name.text.partition(".")
        if field not in FIELDS:
            raise _error(name.column, f"unknown field {field!r}; fields: {', '.join(FIELDS)}")
        if key and field != "metadata":
            raise _error(name.column, f"{field!r} has no sub-fields")
        cmp = self._take()
        if cmp.kind != "cmp":
            raise _error(
                cmp.column,
                f"expected a comparator (= != < <= > >= :) after {name.text!r}"
                + (
                    "; for words in title and description use the query parameter"
                    if cmp.kind != "end"
                    else ""
                ),
            )
        arg = self._take()
        if arg.kind not in ("word", "string"):
            raise _error(arg.column, f"expected a value after {cmp.text!r}")
        if field in TIME_FIELDS and arg.value.startswith("now"):
            self.uses_now = True
        return _restriction(field, key, cmp, arg, self._now)


def _restriction(field: str, key: str, cmp: _Token, arg: _Token, now: int) -> Compare:
    op = "has" if cmp.text == ":" else cmp.text
    star = arg.kind == "word" and arg.text == "*"
    if star and op != "has":
        raise _error(arg.column, "'*' is only allowed after ':' (field:* tests that a field is set)")
    if field == "metadata" and not key:
        if op != "has":
            raise _error(cmp.column, "compare a metadata value as metadata.KEY; metadata:KEY tests for a key")
        return Compare("metadata", "has", None, "" if star else arg.value)
    if star:
        return Compare(field, "has", None, key)
    if op in ORDERING and (field in STRING_FIELDS or field in ("labels", "metadata")):
        raise _error(cmp.column, f"{field} can be compared with = != and : only")
    if field in STRING_FIELDS or field in ("labels", "metadata"):
        return Compare(field, op, arg.value, key)
    if op == "has":
        op = "="  # `:` on a single-valued, non-text field is equality (AIP-160)
    if field in ENUM_FIELDS:
        return Compare(field, op, _enum(field, arg))
    if field in TIME_FIELDS:
        return Compare(field, op, _time(arg, now))
    return Compare(field, op, _integer(arg))


def _enum(field: str, arg: _Token) -> int:
    enum = ENUM_FIELDS[field]
    prefix = "TASK_STATUS_" if field == "status" else "PRIORITY_"
    name = arg.value.upper()
    known = enum.DESCRIPTOR.values_by_name
    if name.isdigit() and int(name) in enum.DESCRIPTOR.values_by_number:
        return int(name)
    for candidate in (name, prefix + name):
        if candidate in known:
            return int(known[candidate].number)
    names = ", ".join(n.removeprefix(prefix) for n in known if not n.endswith("UNSPECIFIED"))
    raise _error(arg.column, f"{arg.value!r} is not a {field}; use one of {names}")


def _integer(arg: _Token) -> int:
    try:
        value = int(arg.value)
    except ValueError:
        raise _error(arg.column, f"expected a whole number, found {arg.value!r}") from None
    if not -(2**63) <= value < 2**63:
        raise _error(arg.column, "number out of range")
    return value


_RELATIVE = re.compile(r"now(?:([+-])(\d{1,6})([smhdw]))?")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _time(arg: _Token, now: int) -> int:
    """RFC 3339 (or a date, as midnight UTC), `now`, or `now` plus or minus N s/m/h/d/w."""
    relative = _RELATIVE.fullmatch(arg.value)
    if relative:
        sign, amount, unit = relative.groups()
        if sign is None:
            return now
        delta = int(amount) * _UNITS[unit] * 1_000_000
        return now + delta if sign == "+" else now - delta
    text = arg.value
    try:
        if len(text) == 10:
            moment = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
            if "T" not in text.upper() or moment.tzinfo is None:
                raise ValueError
    except ValueError:
        raise _error(
            arg.column, f'expected a time such as "2025-01-31T12:00:00Z", now or now-7d, found {text!r}'
        ) from None
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# -- in-memory matching -------------------------------------------------------------------------


def matches(expr: Expr, task: pb.Task) -> bool:
    """Whether `task` satisfies `expr`: the same meaning as the SQL the stores run."""
    if isinstance(expr, Compare):
        return _compare(expr, task)
    if isinstance(expr, And):
        return all(matches(item, task) for item in expr.items)
    if isinstance(expr, Or):
        return any(matches(item, task) for item in expr.items)
    return not matches(expr.item, task)


_CHECKS: dict[str, Callable[[object, object], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _compare(c: Compare, task: pb.Task) -> bool:
    if c.op == "!=":
        return not _compare(Compare(c.field, "=", c.value, c.key), task)
    if c.field == "labels":
        return bool(task.labels) if c.value is None else str(c.value) in task.labels
    if c.field == "metadata":
        if c.value is None:
            return (c.key in task.metadata) if c.key else bool(task.metadata)
        if c.key not in task.metadata:
            return False
        actual = task.metadata[c.key]
        return str(c.value) in actual if c.op == "has" else actual == c.value
    if c.field in STRING_FIELDS:
        text: str = getattr(task, c.field)
        if c.value is None:
            return text != ""
        return str(c.value) in text if c.op == "has" else text == c.value
    number = _number(c.field, task)
    if c.value is None:
        return number != (NO_DUE_DATE if c.field == "due_date" else 0)
    if c.field == "due_date" and number == NO_DUE_DATE:
        return False
    return _CHECKS[c.op](number, c.value)


def _number(field: str, task: pb.Task) -> int:
    if field == "due_date":
        return due_key(task)
    if field in TIME_FIELDS:
        return us_from_timestamp(getattr(task, field))
    return int(getattr(task, field))


# -- full-text queries --------------------------------------------------------------------------

QUERY_MAX_CHARS = 500
QUERY_MAX_TERMS = 20
_QUERY_TERM = re.compile(r'"([^"]*)"?|(\S+)')
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class SearchTerm:
    """Words that must appear together, in order (one word, or a quoted phrase); `prefix`: the last
    word may be the start of a longer one (`rele*`)."""

    words: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A full-text query: every term must match title or description (case-insensitively)."""

    text: str
    terms: tuple[SearchTerm, ...]


def parse_query(text: str) -> SearchQuery | None:
    """Words, `prefix*` and "quoted phrases"; punctuation separates words, as the stores' tokenizers
    do (so `foo-bar` is the phrase "foo bar"). None when the text holds no word."""
    if len(text) > QUERY_MAX_CHARS:
        raise InvalidArgument.field("query", f"is {len(text)} characters long; at most {QUERY_MAX_CHARS}")
    terms: list[SearchTerm] = []
    for found in _QUERY_TERM.finditer(text):
        phrase, word = found.groups()
        raw = phrase if phrase is not None else word
        words = tuple(w.lower() for w in _WORD.findall(raw))
        if words:
            terms.append(SearchTerm(words, prefix=phrase is None and raw.endswith("*")))
    if len(terms) > QUERY_MAX_TERMS:
        raise InvalidArgument.field("query", f"has {len(terms)} terms; at most {QUERY_MAX_TERMS}")
    return SearchQuery(text, tuple(terms)) if terms else None
