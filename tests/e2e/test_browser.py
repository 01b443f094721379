"""The demo page in Debian's chromium (playwright): two pages chat through the proxy, the form's
checks, the page's polish, and the client module reconnecting the page after the stack restarts;
a page of its own on another loopback port using the client module and development tokens, and
the same page on another site getting neither."""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import ARTIFACTS, ROOT, StackProcess, gateway_only, new_booking, post_json, quiet_ports

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
OTHER_SITE = "other-site.test"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A site that is not loopback, for pages that must be refused (served from 127.0.0.1 all the same).
    f"--host-resolver-rules=MAP {OTHER_SITE} 127.0.0.1",
]
TIMEOUT_MS = 10_000
#: The flags that put a restarted stack on the ports of the first, and the endpoints that tell them.


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(
                f"{CHROMIUM} is missing: CI must install Debian's chromium (apt-get install chromium)"
            )
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium) — the browser test needs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def join(page: Any, stack: StackProcess, user: str, booking: str) -> None:
    """The page's "one booking" way: a chat and a booking socket for ``booking``."""
    page.goto(f"{stack.gateway}/")
    page.select_option("#mode", "booking")
    page.fill("#user", user)
    page.fill("#booking", booking)
    page.click("#connect")
    page.wait_for_selector("#state.open", timeout=TIMEOUT_MS)
    # The history (the host's welcome) has arrived.
    page.wait_for_selector("#messages .message", timeout=TIMEOUT_MS)


def test_two_pages_of_the_demo_chat_through_the_proxy(local_stack: StackProcess, browser: Any) -> None:
    booking = new_booking()
    context = browser.new_context(viewport={"width": 900, "height": 640})
    try:
        alice, bob = context.new_page(), context.new_page()
        errors: list[str] = []
        for page in (alice, bob):
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        join(alice, local_stack, "alice", booking)
        join(bob, local_stack, "bob", booking)

        alice.fill("#message", "Hello from Alice's tab")
        alice.click("#send")
        bob_sees = bob.locator("#messages .message", has_text="Hello from Alice's tab")
        bob_sees.wait_for(timeout=TIMEOUT_MS)
        assert bob_sees.locator(".author").inner_text() == "alice"

        bob.fill("#message", "Hi Alice, see you at 3")
        bob.press("#message", "Enter")
        alice.locator("#messages .message", has_text="see you at 3").wait_for(timeout=TIMEOUT_MS)

        # A reaction in Alice's tab shows in Bob's.
        alice.locator("#messages .message", has_text="see you at 3").locator("button", has_text="❤️").click()
        bob.locator("#messages .message", has_text="see you at 3").locator("button", has_text="❤️ 1").wait_for(
            timeout=TIMEOUT_MS
        )

        # The backend's status change reaches both pages' booking sockets.
        status, answer = post_json(
            f"{local_stack.backend}/dev/bookings/{booking}/status", {"status": "confirmed"}
        )
        assert status == 200, answer
        for page in (alice, bob):
            page.wait_for_function(
                "document.getElementById('booking-status').textContent === 'Confirmed'", timeout=TIMEOUT_MS
            )
        assert alice.locator("#error").is_hidden()
        assert bob.locator("#error").is_hidden()
        assert not errors

    finally:
        context.close()


def test_the_demo_tour_in_two_tabs(browser: Any) -> None:
    """docs/demo.png (``UPDATE_DEMO_SCREENSHOT=1``): a missed message, labels, a refused change.

    docs/demo-before.png shows the same steps on the page before it counted only missed
    messages, showed labels and the backend refused impossible changes.
    """
    stack = StackProcess("browser-tour")
    context = browser.new_context(viewport={"width": 900, "height": 640})
    try:
        alice, bob = context.new_page(), context.new_page()

        def say(page: Any, text: str, other: Any) -> None:
            page.fill("#message", text)
            page.click("#send")
            other.locator("#messages .message", has_text=text).wait_for(timeout=TIMEOUT_MS)

        def status_is(page: Any, label: str) -> None:
            page.wait_for_function(
                f"document.getElementById('booking-status').textContent === '{label}'", timeout=TIMEOUT_MS
            )

        join(alice, stack, "alice", "42")
        join(bob, stack, "bob", "42")
        say(bob, "Hi! Is early check-in possible?", alice)
        say(alice, "Yes, from 1 pm.", bob)
        read = alice.locator("#messages .message", has_text="early check-in").get_attribute("data-id")
        alice.wait_for_function(f"demo.lastRead === {read}", timeout=TIMEOUT_MS)
        alice.click("#disconnect")
        say(bob, "Great, I will leave the key in the lockbox.", bob)
        join(alice, stack, "alice", "42")
        alice.wait_for_function(
            "document.getElementById('unread').textContent === '· 1 new'", timeout=TIMEOUT_MS
        )
        for page in (alice, bob):
            status_is(page, "Pending")  # its booking socket is open: it sees the pushes from here on
        for button, label in (("Confirm", "Confirmed"), ("Check in", "Checked in")):
            alice.click(f".actions button:has-text('{button}')")
            status_is(alice, label)
            status_is(bob, label)
        bob.click(".actions button:has-text('Confirm')")
        bob.locator("#error").wait_for(state="visible", timeout=TIMEOUT_MS)
        assert "cannot become confirmed" in bob.inner_text("#error")
        assert bob.inner_text("#booking-status") == "Checked in"

        ARTIFACTS.mkdir(exist_ok=True)
        shots = [ARTIFACTS / "demo-alice.png", ARTIFACTS / "demo-bob.png"]
        alice.screenshot(path=str(shots[0]))
        bob.screenshot(path=str(shots[1]))
        side_by_side(shots, ARTIFACTS / "demo.png")
        if os.environ.get("UPDATE_DEMO_SCREENSHOT"):
            shutil.copyfile(ARTIFACTS / "demo.png", ROOT / "docs" / "demo.png")
    finally:
        context.close()
        assert stack.stop() == 0


def test_the_demo_page_shows_errors_plainly(local_stack: StackProcess, browser: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{local_stack.gateway}/?mode=booking")
        page.fill("#user", "alice")
        page.fill("#booking", new_booking())
        page.click("#connect")
        page.wait_for_selector("#state.open", timeout=TIMEOUT_MS)
        # The backend refuses a reaction to a message that does not exist: the page says so.
        page.evaluate("demo.send({type: 'reaction', emoji: '👍', message_id: 999999999})")
        error = page.locator("#error")
        error.wait_for(state="visible", timeout=TIMEOUT_MS)
        assert "backend_error" in error.inner_text()
        assert "999999999" in error.inner_text()
        # Disconnect clears the banner and the booking panel.
        page.click("#disconnect")
        page.wait_for_selector("#state.closed", timeout=TIMEOUT_MS)
        assert error.is_hidden()
        assert page.inner_text("#booking-id") == "\u2013"  # the page's placeholder, an en dash
    finally:
        context.close()


def test_the_form_catches_a_bad_booking_id_and_the_pattern_is_valid(
    local_stack: StackProcess, browser: Any
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{local_stack.gateway}/")
        page.fill("#user", "alice")
        page.fill("#booking", "no spaces!")
        page.click("#connect")
        assert page.evaluate("document.getElementById('booking').validity.patternMismatch") is True
        assert page.locator("#booking:invalid").count() == 1
        assert page.inner_text("#state") == "disconnected"
        assert not [url for url in requests if "/demo/api/" in url], "the form stopped the connect"
        # The pattern compiles under the v flag: ids with '-' and '_' pass, and nothing is logged.
        page.fill("#booking", "a-b_C9")
        assert page.evaluate("document.getElementById('booking').validity.valid") is True
        page.fill("#booking", "x" * 65)
        assert page.evaluate("document.getElementById('booking').validity.valid") is False
        assert not [text for text in console if "pattern" in text.lower()], console
    finally:
        context.close()


def test_n_new_is_shown_once_and_clears(local_stack: StackProcess, browser: Any) -> None:
    booking = new_booking()
    context = browser.new_context()
    try:
        alice, bob = context.new_page(), context.new_page()
        join(alice, local_stack, "alice", booking)
        alice.click("#disconnect")
        join(bob, local_stack, "bob", booking)
        for text in ("one", "two"):
            bob.fill("#message", text)
            bob.click("#send")
            bob.locator("#messages .message", has_text=text).wait_for(timeout=TIMEOUT_MS)
        join(alice, local_stack, "alice", booking)
        alice.wait_for_function(
            "document.getElementById('unread').textContent === '· 2 new'", timeout=TIMEOUT_MS
        )
        assert "new" not in alice.inner_text("#thread-title")
        alice.fill("#message", "read them")
        assert alice.locator("#unread").is_hidden()
    finally:
        context.close()


def test_n_new_counts_only_what_the_page_did_not_show(local_stack: StackProcess, browser: Any) -> None:
    booking = new_booking()
    context = browser.new_context()
    try:
        alice, bob = context.new_page(), context.new_page()
        join(alice, local_stack, "alice", booking)
        join(bob, local_stack, "bob", booking)
        bob.fill("#message", "seen live")
        bob.click("#send")
        seen = alice.locator("#messages .message", has_text="seen live")
        seen.wait_for(timeout=TIMEOUT_MS)
        # The backend has recorded it as read before Alice leaves.
        alice.wait_for_function(f"demo.lastRead === {seen.get_attribute('data-id')}", timeout=TIMEOUT_MS)
        alice.click("#disconnect")
        bob.fill("#message", "missed")
        bob.click("#send")
        bob.locator("#messages .message", has_text="missed").wait_for(timeout=TIMEOUT_MS)
        join(alice, local_stack, "alice", booking)
        alice.wait_for_function("document.getElementById('unread').textContent !== ''", timeout=TIMEOUT_MS)
        assert alice.inner_text("#unread") == "· 1 new"
    finally:
        context.close()


def test_status_shows_labels_and_an_impossible_change_is_refused_with_its_reason(
    local_stack: StackProcess, browser: Any
) -> None:
    booking = new_booking()
    context = browser.new_context()
    try:
        page = context.new_page()
        join(page, local_stack, "alice", booking)
        status = page.locator("#booking-status")
        page.wait_for_function(
            "document.getElementById('booking-status').textContent === 'Pending'", timeout=TIMEOUT_MS
        )
        for button, label in (("Confirm", "Confirmed"), ("Check in", "Checked in")):
            page.click(f".actions button:has-text('{button}')")
            page.wait_for_function(
                f"document.getElementById('booking-status').textContent === '{label}'", timeout=TIMEOUT_MS
            )
        assert status.get_attribute("data-status") == "checked_in"
        assert page.locator("#error").is_hidden()
        page.click(".actions button:has-text('Confirm')")
        error = page.locator("#error")
        error.wait_for(state="visible", timeout=TIMEOUT_MS)
        assert error.inner_text() == (
            f"Not changed to Confirmed: booking {booking} is checked_in and cannot become confirmed; "
            "it can become completed."
        )
        assert status.inner_text() == "Checked in"
        page.click(".actions button:has-text('Complete')")
        page.wait_for_function(
            "document.getElementById('booking-status').textContent === 'Completed'", timeout=TIMEOUT_MS
        )
        assert error.is_hidden()
    finally:
        context.close()


def test_the_favicon_is_served(local_stack: StackProcess) -> None:
    with urllib.request.urlopen(f"{local_stack.gateway}/favicon.ico", timeout=10) as response:
        assert response.status == 200
        data = response.read()
    assert data[:4] == b"\x00\x00\x01\x00", "an ICO file"


def test_the_page_reconnects_by_itself_after_the_stack_restarts(browser: Any) -> None:
    ports = quiet_ports()  # the restart below finds them free
    stack = StackProcess("browser-restart", *ports)
    booking = new_booking()
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        join(page, stack, "alice", booking)
        page.fill("#message", "before the restart")
        page.click("#send")
        page.locator("#messages .message", has_text="before the restart").wait_for(timeout=TIMEOUT_MS)

        assert stack.stop() == 0
        page.wait_for_selector("#state.reconnecting", timeout=TIMEOUT_MS)
        page.wait_for_function(
            "/^reconnecting (in \\d+ s…|…)$/.test(document.getElementById('state').textContent)",
            timeout=TIMEOUT_MS,
        )
        # Typed during the outage: the module queues it.
        page.fill("#message", "typed during the outage")
        page.click("#send")
        assert page.evaluate("demo.chat.queued") == 1
        assert page.locator("#error").is_hidden(), page.inner_text("#error")

        stack = StackProcess("browser-restart-2", *ports)
        page.wait_for_selector("#state.open", timeout=30_000)
        assert page.inner_text("#state") == "connected as alice"
        outage = page.locator("#messages .message", has_text="typed during the outage")
        outage.wait_for(timeout=TIMEOUT_MS)
        # The restart wiped the backend: the view is what it sent on resume, a new welcome and no
        # message from before the restart beside it.
        assert page.locator("#messages .message", has_text="before the restart").count() == 0
        assert page.locator("#messages .message", has_text="Welcome to booking").count() == 1
        # The chat goes on, and the outage message is shown once.
        page.fill("#message", "after the restart")
        page.click("#send")
        page.locator("#messages .message", has_text="after the restart").wait_for(timeout=TIMEOUT_MS)
        assert outage.count() == 1
        assert page.evaluate("demo.chat.queued") == 0
        assert not errors
    finally:
        context.close()
        stack.stop()


# -- all my bookings on one socket --------------------------------------------------------------


def inbox_join(page: Any, stack: StackProcess, user: str, booking: str = "") -> None:
    """The page's "all my bookings" way: the user's one socket, ``booking`` opened and shown."""
    page.goto(f"{stack.gateway}/?mode=user")
    page.fill("#user", user)
    page.fill("#booking", booking)
    page.click("#connect")
    page.wait_for_selector("#state.open", timeout=TIMEOUT_MS)


def open_booking(page: Any, booking: str) -> None:
    page.fill("#open-booking", booking)
    page.press("#open-booking", "Enter")


def inbox(page: Any) -> dict[str, Any]:
    """The page's conversations by booking id (``demo.inbox.summary()``)."""
    summary: dict[str, Any] = page.evaluate("demo.inbox.summary()")
    return {conv["id"]: conv for conv in summary["conversations"]}


def wait_conversation(page: Any, booking: str, condition: str, timeout: int = TIMEOUT_MS) -> None:
    """Wait until the conversation of ``booking`` (``c`` in the JavaScript ``condition``) meets it;
    else fail with what the page has."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            f"""(() => {{
                const all = demo.inbox ? demo.inbox.summary().conversations : [];
                const c = all.find((x) => x.id === {json.dumps(booking)});
                return Boolean(c) && ({condition});
            }})()""",
            timeout=timeout,
        )
    except PlaywrightTimeout:
        have = page.evaluate("demo.inbox && demo.inbox.summary()")
        banner = page.inner_text("#error")
        raise AssertionError(f"booking {booking}: not {condition}: {have}; banner: {banner!r}") from None


def wait_subscribed(page: Any, bookings: list[str], histories: int = 1, timeout: int = TIMEOUT_MS) -> None:
    """Both subscriptions of every booking live, each with ``histories`` histories received."""
    for booking in bookings:
        wait_conversation(
            page,
            booking,
            f"c.chat === 'subscribed' && c.watch === 'subscribed' && c.histories >= {histories} && !c.failed",
            timeout,
        )


def select(page: Any, booking: str) -> None:
    page.click(f".conversation[data-booking='{booking}']")
    page.wait_for_selector(f".conversation.selected[data-booking='{booking}']", timeout=TIMEOUT_MS)


def say_in(page: Any, booking: str, text: str) -> None:
    """Select ``booking`` and send ``text`` into it; it shows in the thread (the sender's copy)."""
    select(page, booking)
    page.fill("#message", text)
    page.click("#send")
    page.locator("#messages .message", has_text=text).wait_for(timeout=TIMEOUT_MS)


def thread(page: Any) -> list[str]:
    """The bodies of the thread shown."""
    bodies: list[str] = page.locator("#messages .message .body").all_inner_texts()
    return bodies


def badge(page: Any, booking: str) -> str:
    """The unread count the list shows for ``booking`` ("" when hidden)."""
    count = page.locator(f".conversation[data-booking='{booking}'] .count")
    return "" if count.is_hidden() else str(count.inner_text())


def test_one_socket_carries_three_bookings_and_survives_a_restart(
    browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESENCE_EVENTS", "true")  # read by the proxy in the stack's process
    ports = quiet_ports()  # the restart below finds them free
    stack = StackProcess("browser-inbox", *ports)
    a, b, c = new_booking(), new_booking(), new_booking()
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    try:
        alice, bob = context.new_page(), context.new_page()
        errors: list[str] = []
        for page in (alice, bob):
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        sockets: dict[str, list[str]] = {"alice": [], "bob": []}
        for page, user in ((alice, "alice"), (bob, "bob")):
            page.on("websocket", lambda ws, user=user: sockets[user].append(ws.url))

        for page, user in ((bob, "bob"), (alice, "alice")):
            inbox_join(page, stack, user, a)
            wait_subscribed(page, [a])
            for booking in (b, c):
                open_booking(page, booking)  # and shown: its welcome is read
                wait_subscribed(page, [booking])
        # One WebSocket per page, the user's, for three bookings.
        assert [len(urls) for urls in sockets.values()] == [1, 1], sockets
        assert all("booking_id" not in url for urls in sockets.values() for url in urls), sockets
        # Bob is there in every booking: the presence answers to Alice's subscribes say so; and
        # Bob's page, which asked before she came, hears her arrive (presence_changed).
        for booking in (a, b, c):
            wait_conversation(alice, booking, "c.online.includes('bob')")
            wait_conversation(bob, booking, "c.online.includes('alice')")
        assert alice.locator(".conversation .dot.online").count() == 3
        assert bob.locator(".conversation .dot.online").count() == 3

        # Each booking's traffic in its place, once; unread counts only what was not shown.
        select(alice, a)
        say_in(bob, b, "b one")
        say_in(bob, b, "b two")
        say_in(bob, c, "c one")
        say_in(bob, a, "a one")
        alice.locator("#messages .message", has_text="a one").wait_for(timeout=TIMEOUT_MS)
        wait_conversation(alice, b, "Object.keys(c.received).length === 2")
        wait_conversation(alice, c, "Object.keys(c.received).length === 1")
        convs = inbox(alice)
        assert convs[a]["messages"][1:] == ["a one"]
        assert convs[b]["messages"][1:] == ["b one", "b two"]
        assert convs[c]["messages"][1:] == ["c one"]
        assert all(n == 1 for conv in convs.values() for n in conv["received"].values()), convs
        assert [convs[x]["unread"] for x in (a, b, c)] == [0, 2, 1]
        assert [badge(alice, x) for x in (a, b, c)] == ["", "2", "1"]
        assert "b one" not in thread(alice)
        assert "c one" not in thread(alice)
        ARTIFACTS.mkdir(exist_ok=True)
        alice.screenshot(path=str(ARTIFACTS / "demo-inbox.png"))

        select(alice, b)
        assert thread(alice)[1:] == ["b one", "b two"]
        assert badge(alice, b) == ""
        assert badge(alice, c) == "1"
        # What the page showed is read at the backend too.
        read_id = alice.locator("#messages .message", has_text="b two").get_attribute("data-id")
        wait_conversation(alice, b, f"c.lastRead === {read_id}")
        assert alice.inner_text("#presence") == "· bob online"
        say_in(alice, b, "reply in b")
        wait_conversation(bob, b, "c.messages.includes('reply in b')")
        assert inbox(bob)[b]["unread"] == 1  # Bob shows booking a

        # Status changes reach both pages' booking subscriptions.
        alice.click(".actions button:has-text('Confirm')")
        for page in (alice, bob):
            wait_conversation(page, b, "c.status === 'confirmed'")
        assert alice.inner_text("#booking-status") == "Confirmed"
        assert alice.inner_text(f".conversation[data-booking='{b}'] .status") == "Confirmed"

        # A full stop and start of the stack: every subscription comes back by itself.
        assert stack.stop() == 0
        for page in (alice, bob):
            page.wait_for_selector("#state.reconnecting", timeout=TIMEOUT_MS)
        alice.fill("#message", "typed during the outage")
        alice.click("#send")
        assert alice.evaluate("demo.inbox.socket.queued") >= 1
        stack = StackProcess("browser-inbox-2", *ports)
        for page in (alice, bob):
            page.wait_for_selector("#state.open", timeout=30_000)
            wait_subscribed(page, [a, b, c], histories=2, timeout=30_000)
        alice.locator("#messages .message", has_text="typed during the outage").wait_for(timeout=TIMEOUT_MS)
        wait_conversation(bob, b, "c.messages.includes('typed during the outage')")
        # The restart wiped the backend: each thread is what it has now, not the old beside it.
        assert "b one" not in thread(alice)
        assert thread(alice).count("typed during the outage") == 1
        # Booking b is pending again at the new backend: its status subscription said so.
        wait_conversation(alice, b, "c.status === 'pending'")

        for booking, text in ((a, "after a"), (c, "after c"), (b, "after b")):
            say_in(bob, booking, text)
        alice.locator("#messages .message", has_text="after b").wait_for(timeout=TIMEOUT_MS)
        wait_conversation(alice, a, "c.messages.includes('after a')")
        wait_conversation(alice, c, "c.messages.includes('after c')")
        convs = inbox(alice)
        for booking, text in ((a, "after a"), (b, "after b"), (c, "after c")):
            assert convs[booking]["messages"].count(text) == 1, convs[booking]
            others = {x for x in (a, b, c) if x != booking}
            assert all(text not in convs[x]["messages"] for x in others), convs
        for page in (alice, bob):
            received = [n for conv in inbox(page).values() for n in conv["received"].values()]
            assert received, inbox(page)
            assert all(n == 1 for n in received), inbox(page)
        # Not shown: the new backend's welcome and one message, in a and in c.
        assert [convs[x]["unread"] for x in (a, b, c)] == [2, 0, 2], convs
        assert [badge(alice, x) for x in (a, b, c)] == ["2", "", "2"]
        # Bob is there again in every booking (the page asks who is when one is shown).
        for booking in (a, c, b):
            select(alice, booking)
            wait_conversation(alice, booking, "c.online.includes('bob')")
        status, answer = post_json(f"{stack.backend}/dev/bookings/{c}/status", {"status": "cancelled"})
        assert status == 200, answer
        wait_conversation(alice, c, "c.status === 'cancelled'")
        assert alice.inner_text(f".conversation[data-booking='{c}'] .status") == "Cancelled"
        # Bob leaves: his dots go out on Alice's page (asked again when a conversation is shown).
        bob.click("#disconnect")
        bob.wait_for_selector("#state.closed", timeout=TIMEOUT_MS)
        for booking in (a, c, b):
            select(alice, booking)
            wait_conversation(alice, booking, "c.online.length === 0")
        assert alice.locator(".conversation .dot.online").count() == 0
        assert alice.inner_text("#presence") == ""
        for page in (alice, bob):
            assert page.locator("#error").is_hidden(), page.inner_text("#error")
        assert not errors
    finally:
        context.close()
        stack.stop()


def test_the_user_socket_lists_the_users_conversations_with_what_they_missed(
    local_stack: StackProcess, browser: Any
) -> None:
    a, b = new_booking(), new_booking()
    # Users of their own: the session's stack lists every booking a user has had in it.
    user, other = f"alice-{a}", f"bob-{a}"
    context = browser.new_context()
    try:
        alice, bob = context.new_page(), context.new_page()
        inbox_join(alice, local_stack, user, a)
        open_booking(alice, b)
        wait_subscribed(alice, [a, b])
        alice.click("#disconnect")
        alice.wait_for_selector("#state.closed", timeout=TIMEOUT_MS)
        assert alice.locator(".conversation").count() == 0

        join(bob, local_stack, other, b)  # the "one booking" way, beside it
        for text in ("while away 1", "while away 2"):
            bob.fill("#message", text)
            bob.click("#send")
            bob.locator("#messages .message", has_text=text).wait_for(timeout=TIMEOUT_MS)

        # No booking named: the socket's first frame lists Alice's conversations, and the page
        # subscribes to each; the first is shown, the other counts what she missed.
        inbox_join(alice, local_stack, user)
        wait_subscribed(alice, [a, b])
        assert [conv["id"] for conv in inbox(alice).values()] == [a, b]
        alice.wait_for_selector(f".conversation.selected[data-booking='{a}']", timeout=TIMEOUT_MS)
        wait_conversation(alice, b, "c.unread === 2")
        assert badge(alice, b) == "2"
        select(alice, b)
        assert thread(alice)[-2:] == ["while away 1", "while away 2"]
        assert badge(alice, b) == ""

        # Bob's "one booking" sockets count as his presence in it.
        wait_conversation(alice, b, f"c.online.includes('{other}')")
        assert alice.inner_text("#presence") == f"· {other} online"

        # A booking she joins elsewhere (another tab, one booking) is listed once its first
        # message reaches her socket: the backend names the booking's parties as recipients.
        d = new_booking()
        join(context.new_page(), local_stack, user, d)
        join(bob, local_stack, other, d)
        bob.fill("#message", "in d")
        bob.click("#send")
        wait_subscribed(alice, [d])
        wait_conversation(alice, d, "c.messages.includes('in d')")
        assert [conv["id"] for conv in inbox(alice).values()] == [a, b, d]
        assert alice.locator("#error").is_hidden(), alice.inner_text("#error")
    finally:
        context.close()


class InboxBackend:
    """A backend of one's own (``--backend-url``): the user's socket lists booking 7, and every
    booking's connect (a subscribe) is refused with 403."""

    def __init__(self) -> None:
        self.http = LoopbackHttp(self.answer)
        self.url = f"http://127.0.0.1:{self.http.port}"

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        answer: dict[str, Any] = {"detail": "Not Found"}
        status = 404
        if path == "/dev/token":
            status, answer = 200, {"token": "opaque-token-of-another-backend", "expires_at": 0}
        elif path == "/api/chat/ws/connect":
            conversation = {"booking_id": "7", "thread_id": "t7", "title": "Flat 7", "status": "pending"}
            initial = {"type": "conversations", "conversations": [{**conversation, "unread": 3}]}
            status, answer = 200, {"user_id": "alice", "initial": initial}
        elif path.endswith("/connect"):
            status, answer = 403, {"detail": "not a participant of this booking"}
        return status, "application/json", json.dumps(answer).encode()


def test_a_booking_the_backend_refuses_is_named_in_the_banner(
    local_stack: StackProcess, browser: Any
) -> None:
    backend = InboxBackend()
    stack = gateway_only("demo-inbox-refused", local_stack, backend.url)
    context = browser.new_context()
    try:
        page = context.new_page()
        inbox_join(page, stack, "alice")
        # The socket's first frame lists booking 7; its subscribe is refused.
        error = page.locator("#error")
        error.wait_for(state="visible", timeout=TIMEOUT_MS)
        text = error.inner_text()
        assert text.startswith("Booking 7 could not be subscribed: forbidden: "), text
        wait_conversation(page, "7", "Boolean(c.failed) && c.chat === null && c.watch === null")
        item = page.locator(".conversation[data-booking='7']")
        assert item.locator(".title").inner_text() == "Flat 7"
        assert item.locator(".status").inner_text() == "not subscribed"
        # One opened by hand is refused the same way, and named.
        open_booking(page, "8")
        page.wait_for_function(
            "document.getElementById('error').textContent.startsWith('Booking 8 could not be subscribed')",
            timeout=TIMEOUT_MS,
        )
        # Sending into it says why it cannot.
        page.fill("#message", "hello")
        page.click("#send")
        page.wait_for_function(
            "document.getElementById('error').textContent"
            ".startsWith('Booking 8 is not subscribed (forbidden: ')",
            timeout=TIMEOUT_MS,
        )
        assert page.inner_text("#state") == "connected as alice"
    finally:
        context.close()
        assert stack.stop() == 0
        backend.http.close()


def side_by_side(images: list[Path], target: Path) -> None:
    from PIL import Image

    opened = [Image.open(p) for p in images]
    gap = 16
    width = sum(i.width for i in opened) + gap * (len(opened) - 1)
    height = max(i.height for i in opened)
    canvas = Image.new("RGB", (width, height), (200, 204, 212))
    x = 0
    for image in opened:
        canvas.paste(image, (x, 0))
        x += image.width + gap
    canvas.save(target)


# -- pages of their own, and the demo page on another backend ----------------------------------


class LoopbackHttp:
    """A small HTTP server on a free loopback port, answering every request through ``answer``."""

    def __init__(self, answer: Callable[[str, str, bytes], tuple[int, str, bytes]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, content_type, data = answer(self.command, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: A frontend of its own: imports the client module from the stack, gets a development token from
#: the reference backend, opens a chat socket and sends a message; ``window.result`` says how far it got.
OWN_PAGE = """<!doctype html><meta charset="utf-8"><title>a page of its own</title>
<script type="module">
const config = %s;
const result = (window.result = { module: null, token: null, socket: null, frames: [] });
let ChatSocket;
try {
  ({ ChatSocket } = await import(`${config.gateway}/client/index.js`));
  result.module = "loaded";
} catch (err) {
  result.module = `failed: ${err}`;
}
let token;
try {
  const answer = await fetch(`${config.backend}/dev/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: "alice" }),
  });
  token = (await answer.json()).token;
  result.token = token ? "issued" : `refused (${answer.status})`;
} catch (err) {
  result.token = `failed: ${err}`;
}
if (ChatSocket && token) {
  const options = { url: config.websocket, type: "chat", bookingId: config.booking, token, maxAttempts: 1 };
  const chat = new ChatSocket(options);
  chat.on("message", (frame) => {
    result.frames.push(frame.type === "message" ? frame.message.body : frame.type);
    // The initial frames arrive a moment after the socket opens (docs/protocol.md): send after them.
    if (frame.type === "receipt") chat.send({ body: "from a page of its own" });
  });
  try {
    await chat.connect();
    result.socket = "open";
  } catch (err) {
    result.socket = `failed: ${err}`;
  }
}
result.done = true;
</script>
"""


@pytest.fixture(scope="module")
def own_page(local_stack: StackProcess) -> Iterator[tuple[LoopbackHttp, str]]:
    booking = new_booking()
    config = {
        "gateway": local_stack.gateway,
        "backend": local_stack.backend,
        "websocket": local_stack.endpoints["websocket"],
        "booking": booking,
    }
    html = (OWN_PAGE % json.dumps(config)).encode()
    server = LoopbackHttp(lambda method, path, body: (200, "text/html; charset=utf-8", html))
    yield server, booking
    server.close()


def run_own_page(browser: Any, url: str) -> dict[str, Any]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("window.result && window.result.done", timeout=TIMEOUT_MS)
        if page.evaluate("window.result.socket") == "open":
            page.wait_for_function(
                "window.result.frames.includes('from a page of its own')", timeout=TIMEOUT_MS
            )
        result: dict[str, Any] = page.evaluate("window.result")
        return result
    finally:
        context.close()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_a_page_on_another_loopback_port_uses_the_client_module_and_development_tokens(
    browser: Any, own_page: tuple[LoopbackHttp, str], name: str
) -> None:
    server, _ = own_page
    result = run_own_page(browser, f"http://{name}:{server.port}/")
    assert result["module"] == "loaded", result
    assert result["token"] == "issued", result
    assert result["socket"] == "open", result
    assert result["frames"] == ["history", "receipt", "from a page of its own"], result


def test_a_page_of_another_site_gets_neither_the_module_nor_a_token(
    browser: Any, own_page: tuple[LoopbackHttp, str]
) -> None:
    server, _ = own_page
    result = run_own_page(browser, f"http://{OTHER_SITE}:{server.port}/")
    assert result["module"].startswith("failed"), result
    assert result["token"].startswith("failed"), result  # the preflight is refused: no request follows
    assert result["socket"] is None


class AnotherBackend:
    """A backend of one's own (``--backend-url``): no ``/dev/token`` until ``serves_tokens``; it
    refuses every connection (403)."""

    def __init__(self) -> None:
        self.serves_tokens = False
        self.http = LoopbackHttp(self.answer)
        self.url = f"http://127.0.0.1:{self.http.port}"

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        answer: dict[str, Any] = {"detail": "Not Found"}
        status = 404
        if path == "/dev/token" and self.serves_tokens:
            status, answer = 200, {"token": "opaque-token-of-another-backend", "expires_at": 0}
        elif path.endswith("/connect"):
            status, answer = 403, {"detail": "not a participant of this booking"}
        return status, "application/json", json.dumps(answer).encode()


def test_the_demo_page_says_why_it_cannot_connect_before_the_socket_opens(
    local_stack: StackProcess, browser: Any
) -> None:
    backend = AnotherBackend()
    stack = gateway_only("demo-another-backend", local_stack, backend.url)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{stack.gateway}/?mode=booking")
        page.fill("#booking", new_booking())
        page.click("#connect")
        error = page.locator("#error")
        error.wait_for(state="visible", timeout=TIMEOUT_MS)
        text = error.inner_text()
        assert f"could not open: the token provider failed: no development token from {backend.url}" in text
        assert "the backend answered 404 to POST /dev/token" in text, text
        assert page.locator("#state.open").count() == 0

        # Tokens now, but the backend refuses the connection: the page says that instead.
        page.click("#disconnect")
        backend.serves_tokens = True
        page.click("#connect")
        refused = "document.getElementById('error').textContent.includes('handshake was refused')"
        page.wait_for_function(refused, timeout=TIMEOUT_MS)
        text = error.inner_text()
        starts = tuple(f"The {kind} connection could not open" for kind in ("chat", "booking"))
        assert text.startswith(starts), text
        assert "gateway's terminal" in text
        stack.wait_for_log(r"\$connect .* 403")
    finally:
        context.close()
        assert stack.stop() == 0
        backend.http.close()
