from tests.harness import Stack, chat_backend


def test_connect_message_disconnect_round_trip(stack: Stack) -> None:
    chat_backend(stack.backend)
    r = stack.connect("A1=", {"type": "chat", "booking_id": "1", "token": "tok"})
    assert r["statusCode"] == 200
    stack.run_deliveries()
    assert [f["type"] for f in stack.mgmt.frames("A1=")] == ["history", "receipt"]
    stack.send("A1=", {"body": "Hello"})
    assert stack.mgmt.frames("A1=")[-1]["message"] == {"body": "Hello"}
    stack.disconnect("A1=")
    assert stack.items() == []
