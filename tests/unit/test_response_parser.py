"""The strict HTTP/1.1 response parser, fed malformed and unusual answers directly.

Each case is a server's bytes and what the parser must make of them: a response
(status, body, whether the connection may be reused) or the error that fails it.
Most cases come from what h11's and llhttp's own test suites cover.
"""

from __future__ import annotations

import pytest

from chalicelib.response_parser import HttpError, Response, ResponseParser, ResponseTooLarge

CAP = 1000
OK = Response(200, b"", True)


def parse(raw: bytes, *, piecewise: bool = False) -> Response:
    parser = ResponseParser(CAP)
    pieces = [raw[i : i + 1] for i in range(len(raw))] if piecewise else [raw]
    for piece in pieces:
        response = parser.feed(piece)
        if response is not None:
            return response
    return parser.eof()


SOUND = [
    ("empty body", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", OK),
    ("a body", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", Response(200, b"hello", True)),
    ("no reason phrase", b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", OK),
    ("empty reason phrase", b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", OK),
    (
        "reason with spaces",
        b"HTTP/1.1 410 Gone Away Now\r\nContent-Length: 0\r\n\r\n",
        Response(410, b"", True),
    ),
    ("header name case", b"HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 2\r\n\r\n{}", Response(200, b"{}", True)),
    ("no space after colon", b"HTTP/1.1 200 OK\r\nContent-Length:2\r\n\r\n{}", Response(200, b"{}", True)),
    (
        "tabs around a value",
        b"HTTP/1.1 200 OK\r\nContent-Length:\t2 \t\r\n\r\n{}",
        Response(200, b"{}", True),
    ),
    (
        "same length twice",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        Response(200, b"{}", True),
    ),
    ("leading zeros", b"HTTP/1.1 200 OK\r\nContent-Length: 002\r\n\r\n{}", Response(200, b"{}", True)),
    ("empty header value", b"HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n", OK),
    (
        "chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        Response(200, b"abcde", True),
    ),
    (
        "chunk extension",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n",
        Response(200, b"abc", True),
    ),
    (
        "upper-case hex",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
        Response(200, b"0123456789", True),
    ),
    (
        "trailers",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\na\r\n0\r\nT: 1\r\nU: 2\r\n\r\n",
        Response(200, b"a", True),
    ),
    (
        "interim answers first",
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n"
            b"HTTP/1.1 410 Gone\r\nContent-Length: 2\r\n\r\n{}"
        ),
        Response(410, b"{}", True),
    ),
    ("204 has no body", b"HTTP/1.1 204 No Content\r\n\r\n", Response(204, b"", True)),
    ("304 has no body", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", Response(304, b"", True)),
    ("body until close", b"HTTP/1.1 200 OK\r\n\r\n{}", Response(200, b"{}", False)),
    (
        "Connection: close",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        Response(200, b"", False),
    ),
    (
        "close among tokens",
        b"HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n",
        Response(200, b"", False),
    ),
    (
        "close is a token, not a substring",
        b"HTTP/1.1 200 OK\r\nConnection: xclose, closed\r\nContent-Length: 0\r\n\r\n",
        OK,
    ),
    ("HTTP/1.0 closes", b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Response(200, b"", False)),
    ("HTTP/1.0 kept alive", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", OK),
    ("obs-text in a value", b"HTTP/1.1 200 OK\r\nX: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", OK),
    (
        "a body of exactly the cap",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000,
        Response(200, b"x" * 1000, True),
    ),
]

MALFORMED = [
    ("not HTTP", b"garbage\r\n\r\n", HttpError),
    ("HTTP/2 status line", b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", HttpError),
    ("lower-case version", b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", HttpError),
    ("four-digit status", b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", HttpError),
    ("two-digit status", b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", HttpError),
    ("status below 100", b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", HttpError),
    ("two spaces before the status", b"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", HttpError),
    (
        "a protocol switch not asked for",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        HttpError,
    ),
    ("space before the colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n{}", HttpError),
    ("no colon", b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", HttpError),
    ("empty header name", b"HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 0\r\n\r\n", HttpError),
    ("folded header line", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", HttpError),
    ("bare LF inside the head", b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 0\r\n\r\n", HttpError),
    ("NUL in a value", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n", HttpError),
    ("negative length", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", HttpError),
    ("signed length", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n{}", HttpError),
    ("hex length", b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\n{}", HttpError),
    ("length list", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n{}", HttpError),
    (
        "two different lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
        HttpError,
    ),
    (
        "length and chunked",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        HttpError,
    ),
    (
        "chunked and length",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        HttpError,
    ),
    (
        "a coding we do not read",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        HttpError,
    ),
    (
        "chunked twice",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        HttpError,
    ),
    ("identity coding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n{}", HttpError),
    ("chunk size not hex", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", HttpError),
    ("negative chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", HttpError),
    ("empty chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", HttpError),
    (
        "chunk size with 0x",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
        HttpError,
    ),
    (
        "no CRLF after chunk data",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
        HttpError,
    ),
    (
        "chunk longer than its size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        HttpError,
    ),
    (
        "malformed trailer",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnot a trailer\r\n\r\n",
        HttpError,
    ),
    ("closed inside the body", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", HttpError),
    ("closed inside the head", b"HTTP/1.1 200 OK\r\nContent-Le", HttpError),
    (
        "closed before the last chunk",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
        HttpError,
    ),
    ("head too large", b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, HttpError),
    (
        "chunk line too long",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"x" * 2000,
        HttpError,
    ),
    ("length over the cap", b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n", ResponseTooLarge),
    (
        "chunks over the cap",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1F4\r\n" + b"x" * 500 + b"\r\n" + b"1F5\r\n",
        ResponseTooLarge,
    ),
    ("body until close over the cap", b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1001, ResponseTooLarge),
]


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in SOUND], ids=[case[0] for case in SOUND])
def test_sound_answers_are_read_whole_or_piecewise(raw: bytes, expected: Response) -> None:
    assert parse(raw) == expected
    assert parse(raw, piecewise=True) == expected


@pytest.mark.parametrize(
    ("raw", "error"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_answers_fail_whole_or_piecewise(raw: bytes, error: type[HttpError]) -> None:
    with pytest.raises(error):
        parse(raw)
    with pytest.raises(error):
        parse(raw, piecewise=True)


def test_there_are_at_least_thirty_unusual_cases() -> None:
    assert len(SOUND) + len(MALFORMED) >= 30


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\nstray",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
    ],
    ids=["after Content-Length", "after a 204", "after the last chunk"],
)
def test_bytes_after_an_answer_keep_it_but_not_the_connection(raw: bytes) -> None:
    response = parse(raw)
    assert response.status in (200, 204)
    assert response.keep_alive is False


def test_a_parser_fed_after_its_answer_refuses() -> None:
    parser = ResponseParser(CAP)
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == OK
    with pytest.raises(HttpError):
        parser.feed(b"more")
