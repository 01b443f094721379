"""The reference backend through the local stack: development tokens (lifetimes, expiry) and the
status changes it allows."""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
import pytest

from tests.e2e.support import StackProcess, new_booking, open_socket, post_json, run, token

pytestmark = pytest.mark.e2e


def claims(value: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(value, options={"verify_signature": False, "verify_exp": False})
    return decoded


def test_a_token_lives_twelve_hours_unless_asked_otherwise(local_stack: StackProcess) -> None:
    default = claims(token(local_stack, "alice"))
    short = claims(token(local_stack, "alice", ttl_seconds=5))
    assert default["sub"] == short["sub"] == "alice"
    assert default["exp"] - default["iat"] == 12 * 3600
    assert short["exp"] - short["iat"] == 5


def test_the_answer_tells_when_the_token_expires(local_stack: StackProcess) -> None:
    status, answer = post_json(f"{local_stack.backend}/dev/token", {"user_id": "bob", "ttl_seconds": 30})
    assert status == 200
    assert answer["expires_at"] == claims(answer["token"])["exp"]


@pytest.mark.parametrize("ttl", [-1, 12 * 3600 + 1, "soon", 1.5, None])
def test_a_lifetime_outside_zero_to_twelve_hours_is_refused(local_stack: StackProcess, ttl: object) -> None:
    status, answer = post_json(f"{local_stack.backend}/dev/token", {"user_id": "bob", "ttl_seconds": ttl})
    assert status == 422, answer
    assert "token" not in answer


def test_an_expired_token_is_refused_at_connect_and_a_live_one_accepted(local_stack: StackProcess) -> None:
    booking = new_booking()
    expired = token(local_stack, "carol", ttl_seconds=0)
    live = token(local_stack, "carol", ttl_seconds=60)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(local_stack.ws_url(type="chat", booking_id=booking, token=expired))
            assert refused.value.status == 401
            sock = await open_socket(session, local_stack.ws_url(type="chat", booking_id=booking, token=live))
            assert (await sock.recv())["type"] == "history"
            assert (await sock.recv())["user_id"] == "carol"
            await sock.close()

    run(scenario)


def change(stack: StackProcess, booking: str, status: str) -> tuple[int, dict[str, Any]]:
    return post_json(f"{stack.backend}/dev/bookings/{booking}/status", {"status": status})


def test_a_booking_changes_status_only_along_its_rules(local_stack: StackProcess) -> None:
    booking = new_booking()
    refused = {
        "checked_in": f"booking {booking} is pending and cannot become checked_in; "
        "it can become cancelled or confirmed",
        "pending": f"booking {booking} is already pending",
    }
    for status, reason in refused.items():
        assert change(local_stack, booking, status) == (409, {"detail": reason})
    for status in ("confirmed", "checked_in", "completed"):
        code, answer = change(local_stack, booking, status)
        assert code == 200, answer
        assert answer["booking"]["status"] == status
    code, answer = change(local_stack, booking, "cancelled")
    assert code == 409
    assert answer["detail"] == f"booking {booking} is completed, which is final: it cannot become cancelled"


def test_a_cancelled_booking_is_never_confirmed_again(local_stack: StackProcess) -> None:
    booking = new_booking()
    assert change(local_stack, booking, "cancelled")[0] == 200
    code, answer = change(local_stack, booking, "confirmed")
    assert code == 409
    assert answer["detail"] == f"booking {booking} is cancelled, which is final: it cannot become confirmed"
    assert change(local_stack, booking, "bogus")[0] == 422
