"""BackendClient against a backend stand-in: what each answer becomes (docs/backend.md,
"What the client sees")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.backend import BackendClient
from chalicelib.deadline import Deadline
from chalicelib.errors import BackendError, BackendUnavailable, Forbidden, ProxyError, Unauthorized
from chalicelib.transport import Transport
from tests.standins import BackendStandIn, Reply

PATH = "/api/chat/ws/1/message"


@pytest.fixture
def backend() -> Iterator[BackendStandIn]:
    server = BackendStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def client(backend: BackendStandIn) -> Iterator[BackendClient]:
    transport = Transport(1)
    yield BackendClient(backend.url, 2.0, transport)
    transport.close()


def refusal(client: BackendClient, backend: BackendStandIn, status: int, body: Any) -> ProxyError:
    backend.routes[PATH] = Reply(status, body)
    with pytest.raises(ProxyError) as info:
        client.post(PATH, {"message": {"body": "hi"}})
    return info.value


#: Error bodies with no usable ``detail``: not JSON, JSON but not an object, FastAPI's
#: validation errors (a list), a number, a string past 200 characters.
UNUSABLE = {
    "html": b"<html><body>Bad Request</body></html>",
    "cut-json": b'{"detail": "no',
    "json-list": [{"detail": "not an object"}],
    "validation-list": {"detail": [{"loc": ["body", "message"], "msg": "field required"}]},
    "number": {"detail": 42},
    "too-long": {"detail": "x" * 201},
}


@pytest.mark.parametrize("body", UNUSABLE.values(), ids=UNUSABLE.keys())
@pytest.mark.parametrize(
    ("status", "kind", "sentence"),
    [
        (400, BackendError, "the chat service refused the request (400)"),
        (422, BackendError, "the chat service refused the request (422)"),
        (401, Unauthorized, "the token was not accepted"),
        (403, Forbidden, "not allowed"),
    ],
)
def test_an_error_answer_without_a_usable_detail_is_told_in_a_generic_sentence(
    client: BackendClient, backend: BackendStandIn, body: Any, status: int, kind: type, sentence: str
) -> None:
    error = refusal(client, backend, status, body)
    assert type(error) is kind
    assert error.message == sentence
    if kind is BackendError:
        assert (error.code, error.status) == ("backend_error", status)


def test_a_short_string_detail_is_the_message(client: BackendClient, backend: BackendStandIn) -> None:
    """The counterpart of the generic sentence: a detail of 200 characters is shown as it is."""
    error = refusal(client, backend, 400, {"detail": "y" * 200})
    assert error.message == "y" * 200


@pytest.mark.parametrize(
    ("status", "body"),
    [(201, {"type": "message"}), (204, b""), (302, b""), (299, {"type": "message"})],
)
def test_a_success_or_redirect_other_than_200_is_an_unexpected_status(
    client: BackendClient, backend: BackendStandIn, status: int, body: Any
) -> None:
    """Only 200 carries an answer the proxy uses; a redirect is not followed."""
    error = refusal(client, backend, status, body)
    assert type(error) is BackendError
    assert (error.code, error.status) == ("backend_error", 502)
    assert error.message == f"the chat service answered an unexpected status {status}"
    assert backend.paths() == [PATH]  # asked once, never followed elsewhere


def test_a_call_with_no_time_left_is_not_sent(client: BackendClient, backend: BackendStandIn) -> None:
    """The backend must not get a message nobody waits for the answer to."""
    backend.routes[PATH] = Reply(200, {"type": "message"})
    assert client.post(PATH, {"message": {"body": "first"}}) == {"type": "message"}
    with pytest.raises(BackendUnavailable) as info:
        client.post(PATH, {"message": {"body": "late"}}, deadline=Deadline.after(-1))
    assert (info.value.code, info.value.status, info.value.retryable) == ("backend_unavailable", 504, True)
    assert [body["message"]["body"] for _, body in backend.requests] == ["first"]
