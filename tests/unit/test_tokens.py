"""JWT verification (access/auth.py) and page tokens (domain/paging.py), without a server."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from taskservice.access.auth import JwtAuthenticator, KeySet, VerificationKey
from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.domain.errors import InvalidArgument, Unauthenticated
from taskservice.domain.paging import PageQuery, PageTokens, SortKey, TaskFilter
from taskservice.domain.visibility import Sight

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def token(claims: dict[str, Any], secret: bytes = SECRET, **header: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=header or None)


def authenticator(clock: list[float] | None = None, **options: Any) -> JwtAuthenticator:
    at = clock if clock is not None else [NOW]
    keys = KeySet({None: VerificationKey(SECRET, "HS256")})
    return JwtAuthenticator(keys, clock=lambda: at[0], **options)


def refused(auth: JwtAuthenticator, metadata: dict[str, str]) -> str:
    with pytest.raises(Unauthenticated) as raised:
        auth.authenticate(metadata)
    return raised.value.reason


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


# -- JWTs ------------------------------------------------------------------------------------------


def test_a_valid_token_names_the_caller_and_its_role() -> None:
    auth = authenticator(leeway=0)
    exp = int(NOW) + 60
    assert auth.authenticate(bearer(token({"sub": "alice", "exp": exp}))) == Caller("alice")
    admin = auth.authenticate(bearer(token({"sub": "root", "exp": exp, "roles": ["admin"]})))
    assert admin == Caller("root", is_admin=True)


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({}, "missing"),
        ({"authorization": "Basic abc"}, "malformed"),
        ({"authorization": "Bearer "}, "malformed"),
        (bearer("not.a.jwt"), "malformed"),
        (bearer(token({"sub": "a"})), "missing_claim"),  # no exp
        (bearer(token({"sub": "a", "exp": 1})), "expired"),
        (bearer(token({"sub": "a", "exp": 2**40, "nbf": 2**39})), "not_yet_valid"),
        (bearer(token({"sub": "", "exp": 2**40})), "bad_subject"),
        (bearer(token({"sub": "a", "exp": 2**40}, secret=b"x" * 32)), "bad_signature"),
        (bearer(jwt.encode({"sub": "a", "exp": 2**40}, "", algorithm="none")), "bad_algorithm"),
    ],
)
def test_each_bad_credential_has_its_reason(metadata: dict[str, str], reason: str) -> None:
    assert refused(authenticator(), metadata) == reason


def test_issuer_and_audience_are_checked_when_configured() -> None:
    auth = authenticator(issuer="idp", audience="tasks")
    good = {"sub": "a", "exp": 2**40, "iss": "idp", "aud": "tasks"}
    assert auth.authenticate(bearer(token(good))).user_id == "a"
    assert refused(auth, bearer(token({**good, "iss": "other"}))) == "wrong_issuer"
    assert refused(auth, bearer(token({**good, "aud": "other"}))) == "wrong_audience"


def test_with_several_keys_an_unknown_kid_is_refused() -> None:
    keys = KeySet({"one": VerificationKey(SECRET, "HS256"), "two": VerificationKey(b"t" * 32, "HS256")})
    auth = JwtAuthenticator(keys)
    assert auth.authenticate(bearer(token({"sub": "a", "exp": 2**40}, kid="one"))).user_id == "a"
    assert refused(auth, bearer(token({"sub": "a", "exp": 2**40}, kid="three"))) == "unknown_key"


# -- page tokens -----------------------------------------------------------------------------------

ALICE = Caller("alice")
QUERY = PageQuery(TaskFilter(labels=("x",), visible_to=Sight("alice")), (SortKey("created_at"),), 51)
LAST = pb.Task(id="t-1", title="t")
LAST.created_at.FromMicroseconds(1_234_567)


def page_token_error(tokens: PageTokens, caller: Caller, query: PageQuery, value: str) -> str:
    with pytest.raises(InvalidArgument) as raised:
        tokens.decode(caller, query, value)
    (violation,) = raised.value.violations
    assert violation.field == "page_token"
    return violation.description


def test_a_page_token_carries_the_last_sort_key_and_id() -> None:
    tokens = PageTokens(b"k" * 32)
    assert tokens.decode(ALICE, QUERY, tokens.encode(ALICE, QUERY, LAST)).after == ((1_234_567,), "t-1")


def test_a_page_token_carries_every_key_of_a_multi_key_order() -> None:
    tokens = PageTokens(b"k" * 32)
    query = PageQuery(
        QUERY.filter, (SortKey("due_date", True), SortKey("priority"), SortKey("created_at")), 51
    )
    last = pb.Task(id="t-2", priority=pb.PRIORITY_HIGH)
    last.due_date.FromMicroseconds(9_000_000)
    last.created_at.FromMicroseconds(7)
    assert tokens.decode(ALICE, query, tokens.encode(ALICE, query, last)).after == ((9_000_000, 3, 7), "t-2")
    reversed_order = PageQuery(
        QUERY.filter, (SortKey("due_date"), SortKey("priority"), SortKey("created_at")), 51
    )
    assert "different query" in page_token_error(
        tokens, ALICE, reversed_order, tokens.encode(ALICE, query, last)
    )


def test_a_page_token_is_bound_to_its_key_query_and_caller() -> None:
    tokens = PageTokens(b"k" * 32)
    value = tokens.encode(ALICE, QUERY, LAST)
    assert "signature" in page_token_error(PageTokens(b"other" * 7), ALICE, QUERY, value)
    other_order = PageQuery(QUERY.filter, (SortKey("priority"),), 51)
    assert "different query" in page_token_error(tokens, ALICE, other_order, value)
    assert "different query" in page_token_error(tokens, Caller("bob"), QUERY, value)


@pytest.mark.parametrize("value", ["", "AAAA", "not a token!", "x" * 200])
def test_garbage_is_not_a_page_token(value: str) -> None:
    assert "not a page token" in page_token_error(PageTokens(b"k" * 32), ALICE, QUERY, value)


def test_a_tampered_page_token_fails_its_signature() -> None:
    tokens = PageTokens(b"k" * 32)
    value = tokens.encode(ALICE, QUERY, LAST)
    flipped = value[:-1] + ("A" if value[-1] != "A" else "B")
    assert "not a page token" in page_token_error(tokens, ALICE, QUERY, flipped)
