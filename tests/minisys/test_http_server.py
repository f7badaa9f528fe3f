"""The HTTP server over real sockets: framing errors, keep-alive, pipelining, timeouts, drain."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minisys.http.head import Limits
from minisys.http.message import Request, Response
from minisys.http.server import HttpSettings, http_server
from minisys.http.testkit import VECTORS, ServerThread, probe, read_responses
from minisys.server import ServerConfig
from minisys.testing import wait_until

release = threading.Event()


async def handler(request: Request) -> Response:
    path = request.path
    if path == "/slow":
        # Finishes after /fast would have, to prove pipelined answers stay in order.
        await asyncio.sleep(0.05)
    elif path == "/wait":
        while not release.is_set():
            await asyncio.sleep(0.005)
    elif path == "/hang":
        await asyncio.sleep(3600)
    elif path == "/crash":
        raise RuntimeError("boom")
    elif path == "/bad-body":
        return Response(200, [], "a str is not bytes")
    elif path == "/bad-header":
        return Response(200, [("X-A", "a\r\nSet-Cookie: evil=1")], b"")
    elif path == "/not-a-response":
        return {"oops": True}
    elif path == "/dict-headers":
        return Response(200, {"X-A": "1"}, b"ok")
    elif path == "/empty":
        return Response(204, [("X-A", "1")], b"ignored")
    elif path == "/not-modified":
        return Response(304, [("ETag", '"x"')])
    elif path == "/slow-stream":

        async def slow_pieces():
            for i in range(4):
                await asyncio.sleep(0.1)
                yield b"%d" % i

        return Response(200, [], slow_pieces())
    elif path == "/stream":

        async def pieces():
            for i in range(3):
                yield b"piece%d;" % i

        return Response(200, [("Content-Type", "text/plain")], pieces())
    body = json.dumps(
        {"method": request.method, "path": path, "body": request.body.decode("latin-1")}
    )
    return Response(200, [("Content-Type", "application/json")], body.encode())


def start(settings: HttpSettings | None = None, **config) -> ServerThread:
    cfg = ServerConfig(**{"idle_timeout": 0, **config})
    return ServerThread(lambda c: http_server("t", c, handler, settings=settings), cfg)


@pytest.fixture(scope="module")
def srv():
    with start(HttpSettings(limits=Limits(max_body=1000))) as s:
        yield s


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


GET = b"GET /%b HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(("name", "data", "status", "_nginx"), VECTORS, ids=[v[0] for v in VECTORS])
def test_bad_request_answered_and_closed(srv, name, data, status, _nginx):
    statuses, closed = probe(srv.port, data)
    assert statuses == [status]
    assert closed, "the connection must be closed after a framing error"


def test_error_body_is_short_problem_json_with_connection_close(srv):
    with connect(srv.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX : y\r\n\r\n")
        _, closed, raw = read_responses(s)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"application/problem+json" in head
    assert json.loads(body)["status"] == 400 and len(body) < 200 and closed


def test_keep_alive_serves_many_requests_on_one_connection(srv):
    with connect(srv.port) as s:
        for i in range(3):
            s.sendall(GET % b"n%d" % i)
            (resp,), closed, _ = read_responses(s, 1)
            assert resp[0] == 200 and json.loads(resp[1])["path"] == f"/n{i}" and not closed


def test_http10_closes_unless_keep_alive_asked(srv):
    statuses, closed = probe(srv.port, b"GET / HTTP/1.0\r\n\r\n")
    assert statuses == [200] and closed
    with connect(srv.port) as s:
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        _, closed, raw = read_responses(s, 1)
        assert b"Connection: keep-alive" in raw and not closed
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        (resp,), closed, _ = read_responses(s, 1)
        assert resp[0] == 200


def test_connection_close_request_gets_close_and_later_bytes_are_ignored(srv):
    data = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET % b"b"
    statuses, closed = probe(srv.port, data)
    assert statuses == [200] and closed


def test_pipelined_requests_answered_in_order(srv):
    data = (
        GET % b"slow"
        + GET % b"fast"
        + b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    )
    with connect(srv.port) as s:
        s.sendall(data)
        responses, closed, _ = read_responses(s, 3)
    paths = [json.loads(body)["path"] for _, body in responses]
    assert paths == ["/slow", "/fast", "/p"] and not closed
    assert json.loads(responses[2][1])["body"] == "hi"


def test_pipelined_error_answered_after_earlier_responses(srv):
    data = GET % b"slow" + b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n" + GET % b"x"
    statuses, closed = probe(srv.port, data)
    assert statuses == [200, 400] and closed


def test_many_pipelined_requests_beyond_the_queue_cap(srv):
    with connect(srv.port) as s:
        s.sendall((GET % b"x") * 100)
        responses, closed, _ = read_responses(s, 100)
    assert len(responses) == 100 and not closed


def test_expect_100_continue(srv):
    with connect(srv.port) as s:
        s.sendall(
            b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        )
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"abc")
        (resp,), _, _ = read_responses(s, 1)
    assert resp[0] == 200 and json.loads(resp[1])["body"] == "abc"


def test_expect_100_continue_too_large_is_refused_at_once(srv):
    data = b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
    statuses, closed = probe(srv.port, data)
    assert statuses == [413] and closed


def test_head_has_length_but_no_body(srv):
    with connect(srv.port) as s:
        s.sendall(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n" + GET % b"after")
        responses, _, raw = read_responses(s, 2, method="HEAD")
    # The second response starts right after the first head: no body bytes in between.
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: " in first and rest.startswith(b"HTTP/1.1 200 OK")
    assert responses[0] == (200, b"")


def test_204_and_304_have_no_body(srv):
    with connect(srv.port) as s:
        s.sendall(GET % b"empty" + GET % b"not-modified" + GET % b"x")
        responses, _, raw = read_responses(s, 3)
    assert [r[0] for r in responses] == [204, 304, 200]
    assert b"ignored" not in raw
    first_two = raw.split(b"HTTP/1.1 200")[0]
    assert b"Content-Length" not in first_two


def test_streamed_body_is_chunked_on_11_and_close_delimited_on_10(srv):
    with connect(srv.port) as s:
        s.sendall(GET % b"stream")
        (resp,), closed, raw = read_responses(s, 1)
    assert resp == (200, b"piece0;piece1;piece2;") and b"Transfer-Encoding: chunked" in raw
    with connect(srv.port) as s:
        s.sendall(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        _, closed, raw = read_responses(s)
    assert raw.endswith(b"\r\n\r\npiece0;piece1;piece2;") and closed


def test_chunked_upload(srv):
    head = b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = head + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    with connect(srv.port) as s:
        s.sendall(data)
        (resp,), _, _ = read_responses(s, 1)
    assert json.loads(resp[1])["body"] == "abcde"


def test_handler_crash_is_500_problem_and_connection_survives(srv):
    with connect(srv.port) as s:
        s.sendall(GET % b"crash")
        (resp,), closed, _ = read_responses(s, 1)
        assert resp[0] == 500 and json.loads(resp[1])["status"] == 500 and not closed
        s.sendall(GET % b"x")
        (resp,), _, _ = read_responses(s, 1)
        assert resp[0] == 200


def test_slowloris_is_cut_off_while_others_are_served():
    with start(HttpSettings(header_timeout=0.3)) as srv, connect(srv.port) as slow:
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 1000
        sent = 0
        slow.settimeout(0.02)
        got = b""

        def drip() -> bool:
            # One byte per poll; stop as soon as the server answers or hangs up.
            nonlocal sent, got
            try:
                chunk = slow.recv(1000)
                got += chunk
                return True
            except TimeoutError:
                pass
            except ConnectionError:
                return True
            if sent < len(head):
                slow.sendall(head[sent : sent + 1])
                sent += 1
            return False

        # Meanwhile a normal client is served.
        assert probe(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == [
            200
        ]
        wait_until(drip, timeout=10, interval=0.05)
        assert got.startswith(b"HTTP/1.1 408 ")
        assert sent < len(head)


def test_keep_alive_idle_timeout_closes_quietly():
    with start(idle_timeout=0.2) as srv, connect(srv.port) as s:
        s.sendall(GET % b"x")
        responses, closed, _ = read_responses(s, None, timeout=5)
    assert [r[0] for r in responses] == [200] and closed


def test_handler_timeout_is_503():
    with start(HttpSettings(handler_timeout=0.2)) as srv:
        statuses, closed = probe(
            srv.port, b"GET /hang HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert statuses == [503] and closed


def test_connection_keeps_working_after_a_handler_timeout():
    with start(HttpSettings(handler_timeout=0.2)) as srv, connect(srv.port) as s:
        s.sendall(GET % b"hang" + GET % b"x")
        responses, closed, _ = read_responses(s, 2)
    assert [r[0] for r in responses] == [503, 200] and not closed


def test_handler_timeout_does_not_cut_a_slow_streamed_body():
    with start(HttpSettings(handler_timeout=0.15)) as srv, connect(srv.port) as s:
        s.sendall(GET % b"slow-stream" + GET % b"x")
        responses, closed, _ = read_responses(s, 2)
    assert responses[0] == (200, b"0123") and responses[1][0] == 200 and not closed


def test_max_requests_per_connection():
    with start(HttpSettings(max_requests_per_connection=2)) as srv:
        statuses, closed = probe(srv.port, (GET % b"x") * 3)
    assert statuses == [200, 200] and closed


def test_connection_limit_refuses_with_503():
    with start(max_connections=1) as srv, connect(srv.port) as first:
        first.sendall(GET % b"x")
        read_responses(first, 1)
        statuses, closed = probe(srv.port, GET % b"x")
        assert statuses == [503] and closed


def test_graceful_drain_finishes_in_flight_request_with_connection_close():
    release.clear()
    srv = start().__enter__()
    try:
        with connect(srv.port) as s:
            s.sendall(GET % b"wait")
            wait_until(lambda: any(c.busy for c in srv.server.connections))
            server = srv.server
            done = asyncio.run_coroutine_threadsafe(server.drain_and_close(), srv.loop)
            wait_until(lambda: server.draining)
            with pytest.raises(OSError):
                probe(srv.port, GET % b"x", timeout=1)
            release.set()
            (resp,), _, raw = read_responses(s, 1)
            assert resp[0] == 200 and b"Connection: close" in raw
            done.result(10)
            srv.server = None
    finally:
        srv.stop()


def test_handler_mistakes_become_500_and_the_connection_survives(srv):
    with connect(srv.port) as s:
        s.sendall(GET % b"bad-body" + GET % b"bad-header" + GET % b"not-a-response" + GET % b"x")
        responses, closed, raw = read_responses(s, 4)
    assert [r[0] for r in responses] == [500, 500, 500, 200] and not closed
    assert b"evil" not in raw


def test_dict_headers_are_accepted(srv):
    with connect(srv.port) as s:
        s.sendall(GET % b"dict-headers")
        (resp,), _, raw = read_responses(s, 1)
    assert resp == (200, b"ok") and b"X-A: 1\r\n" in raw


def test_body_timeout_is_408_and_close():
    with start(HttpSettings(body_timeout=0.2)) as srv, connect(srv.port) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        responses, closed, _ = read_responses(s, None, timeout=5)
    assert [r[0] for r in responses] == [408] and closed


def test_100_continue_waits_for_its_turn_in_a_pipeline(srv):
    expect = b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    with connect(srv.port) as s:
        s.sendall(GET % b"slow" + expect)
        (first,), _, raw = read_responses(s, 1)
        # The interim 100 comes after the earlier response, never inside it.
        assert json.loads(first[1])["path"] == "/slow"
        rest = raw.split(b"\r\n\r\n", 1)[1][len(first[1]) :]
        if not rest:
            rest = s.recv(100)
        assert rest.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"ok")
        (second,), _, _ = read_responses(s, 1)
    assert json.loads(second[1])["body"] == "ok"


def test_half_closed_client_still_gets_its_answers(srv):
    with connect(srv.port) as s:
        s.sendall(GET % b"slow" + GET % b"x")
        s.shutdown(socket.SHUT_WR)
        responses, closed, _ = read_responses(s, None)
    assert [r[0] for r in responses] == [200, 200] and closed


def test_absolute_form_and_asterisk_targets(srv):
    data = b"GET http://x/abs?q=1 HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(srv.port) as s:
        s.sendall(data)
        responses, _, _ = read_responses(s, 2)
    assert [json.loads(b)["path"] for _, b in responses] == ["/abs", "*"]


@st.composite
def pipelines(draw):
    requests, expected = [], []
    for i in range(draw(st.integers(1, 6))):
        body = draw(st.binary(max_size=200))
        path = f"/p{i}"
        if body and draw(st.booleans()):
            pieces = [body[j : j + 13] for j in range(0, len(body), 13)]
            head = (
                b"POST %b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" % path.encode()
            )
            wire = head + b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        else:
            wire = b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (
                path.encode(),
                len(body),
                body,
            )
        requests.append(wire)
        expected.append((path, body.decode("latin-1")))
    stream = b"".join(requests)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=5))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return chunks, expected


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pipelines())
def test_pipelined_requests_in_any_split_are_answered_in_order(srv, case):
    chunks, expected = case
    with connect(srv.port) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            s.sendall(chunk)
        responses, closed, _ = read_responses(s, len(expected))
    got = [(json.loads(b)["path"], json.loads(b)["body"]) for _, b in responses]
    assert got == expected and not closed
