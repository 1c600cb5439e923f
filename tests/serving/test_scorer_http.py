"""The hop to the scorer, against a real HTTP server (aiohttp's) on loopback."""

import asyncio
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from serving.scorer_http import ScorerConnectionError, ScorerHttp
from serving.scorer_process import free_port


async def _server(port: int, *, keep_alive: bool = True):
    seen = []

    async def echo(request: web.Request):
        body = await request.read()
        seen.append((request.method, request.path, request.headers.get("Content-Type"), body,
                     request.transport.get_extra_info("peername")))
        if request.path == "/slow":
            await asyncio.sleep(2)
        if request.path == "/chunked":
            response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b"one ", b"two ", b"three"):
                await response.write(part)
            await response.write_eof()
            return response
        headers = {} if keep_alive else {"Connection": "close"}
        return web.Response(body=b"got " + body, status=201, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, keepalive_timeout=0.3)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, seen


@asynccontextmanager
async def peer(**server_options):
    """(a ScorerHttp to a fresh server, what that server saw)."""
    port = free_port()
    runner, seen = await _server(port, **server_options)
    http = ScorerHttp("127.0.0.1", port, timeout_s=5)
    try:
        yield http, seen
    finally:
        http.close()
        await runner.cleanup()


def run(coroutine):
    return asyncio.run(coroutine)


def test_requests_answers_and_kept_connections():
    async def scenario():
        async with peer() as (http, seen):
            first = await http.request("POST", "/invocations", b'{"a": 1}', "application/json")
            second = await http.request("GET", "/ping")
            chunked = await http.request("GET", "/chunked")
            many = await asyncio.gather(*(http.request("POST", "/x", str(i).encode()) for i in range(20)))
        return first, second, chunked, many, seen

    first, second, chunked, many, seen = run(scenario())
    assert first == (201, b'got {"a": 1}', "application/json")
    assert seen[0][:4] == ("POST", "/invocations", "application/json", b'{"a": 1}')
    assert second[:2] == (201, b"got ")
    assert seen[1][:4] == ("GET", "/ping", None, b"")
    assert seen[0][4] == seen[1][4]  # the same connection, kept alive
    assert chunked == (200, b"one two three", "text/plain")
    assert [body for _, body, _ in many] == [b"got %d" % i for i in range(20)]  # each its own answer


def test_a_connection_the_server_closed_while_idle_is_replaced():
    async def scenario():
        async with peer() as (http, seen):
            await http.request("GET", "/a")
            await asyncio.sleep(1.0)  # past the server's keep-alive timeout: it closes the connection
            answer = await http.request("GET", "/b")
        return answer, seen

    answer, seen = run(scenario())
    assert answer[0] == 201
    assert [s[1] for s in seen] == ["/a", "/b"] and seen[0][4] != seen[1][4]


def test_connection_close_answers_are_not_reused():
    async def scenario():
        async with peer(keep_alive=False) as (http, seen):
            answers = [await http.request("GET", f"/{i}") for i in range(3)]
        return answers, seen

    answers, seen = run(scenario())
    assert [a[0] for a in answers] == [201, 201, 201]
    assert len({s[4] for s in seen}) == 3


def test_refused_and_timed_out():
    async def scenario():
        refused = ScorerHttp("127.0.0.1", free_port(), timeout_s=5)
        with pytest.raises(ScorerConnectionError):
            await refused.request("GET", "/ping")
        async with peer() as (http, _):
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(asyncio.TimeoutError):
                await http.request("GET", "/slow", timeout_s=0.2)
            waited = loop.time() - started
            after = await http.request("GET", "/fine")  # the timed-out connection is not reused
        return waited, after

    waited, after = run(scenario())
    assert 0.2 <= waited < 1.5
    assert after[:2] == (201, b"got ")
