"""Our signatures verify with the reference Standard Webhooks library, and retries back off."""

from __future__ import annotations

import time

from standardwebhooks.webhooks import Webhook as Verifier

from taskservice.integrations.webhooks import signing
from taskservice.integrations.webhooks.retry import RetryPolicy, parse_retry_after


def test_signature_verifies_with_the_reference_library() -> None:
    secret = signing.new_secret()
    body = b'{"eventType":"EVENT_TYPE_CREATED","sequence":"7"}'
    headers = signing.headers([secret], "7", int(time.time()), body)
    assert Verifier(secret).verify(body, headers) == {"eventType": "EVENT_TYPE_CREATED", "sequence": "7"}


def test_a_tampered_body_does_not_verify() -> None:
    secret = signing.new_secret()
    headers = signing.headers([secret], "7", int(time.time()), b'{"a":1}')
    try:
        Verifier(secret).verify(b'{"a":2}', headers)
    except Exception:
        return
    raise AssertionError("a tampered body verified")


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(first_delay=1.0, max_delay=60.0)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0)):
        delay = policy.delay(attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert policy.delay(3, retry_after=7.0) == 7.0
    assert policy.delay(3, retry_after=10_000.0) == 60.0
    assert parse_retry_after("120", 0.0) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert parse_retry_after("soon", 0.0) is None
