"""The benchmark's own method: the interleaving its hop and p99 figures rest on, and its report's ratios."""

import asyncio
import json
import socket

from aiohttp import web

from benchmarks.run import interleaved, report


async def _record_arrivals(names, run):
    """Serve one tiny app per name on a free port; ``run(urls)``; the (name, body) of every request."""
    arrivals, runners, urls = [], [], {}
    for name in names:
        async def answer(request, name=name):
            arrivals.append((name, json.loads(await request.read())["i"]))
            return web.json_response({})
        app = web.Application()
        app.router.add_post("/", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        runners.append(runner)
        urls[name] = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    try:
        result = await run(urls)
    finally:
        for runner in runners:
            await runner.cleanup()
    return arrivals, result


def test_targets_take_turns_in_blocks_each_led_by_one_uncounted_request():
    bodies = [{"i": i} for i in range(7)]

    async def run(urls):
        return await interleaved({name: (url, bodies) for name, url in urls.items()}, block=3)

    arrivals, latencies = asyncio.run(_record_arrivals(["a", "b"], run))
    # Blocks start at 0, 3, 6; each sends the request before the block first (body 0 for the first).
    expected = []
    for start, bodies_in_block in ((0, [0, 0, 1, 2]), (3, [2, 3, 4, 5]), (6, [5, 6])):
        expected += [("a", i) for i in bodies_in_block] + [("b", i) for i in bodies_in_block]
    assert arrivals == expected
    assert {name: len(values) for name, values in latencies.items()} == {"a": 7, "b": 7}
    assert all(value > 0 for values in latencies.values() for value in values)


def _single(p50, p99):
    return {"p50_ms": p50, "p90_ms": p50, "p99_ms": p99, "n": 900}


def test_report_states_each_ratio_against_the_common_approach():
    batch = {f"{who}_{kind}_{n}": users for n in (1000, 10_000)
             for who, users in (("ours", 30_000.0), ("common", 2_000.0)) for kind in ("proxy", "direct")}
    result = {
        "served": {
            "single_user": {"ours_direct": _single(2.0, 4.0), "ours_proxy": _single(2.5, 5.0),
                            "common_direct": _single(8.0, 20.0), "common_proxy": _single(12.5, 30.0)},
            "concurrent_8": {"ours_proxy": {"requests_per_s": 600.0, "requests": 6000, "errors": 0},
                             "common_proxy": {"requests_per_s": 60.0, "requests": 600, "errors": 0}},
            "batch_users_per_s": batch,
        },
        "cold_start_s": {"ours": 3.0, "common": 6.0},
        "logged": {"requests_in_postgres": 6000, "load_test_requests": 6000},
        "in_process": {"1": {k: {"ms": 1.0} for k in ("floor_boosters", "ours_predictor", "ours_pyfunc",
                                                        "common_pyfunc")}},
        "training_s": {"100000": 3.0},
    }
    report(result)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in result["table"].splitlines() if line.startswith("| ")}
    assert "| 2.50 / 2.50 / 5.00 | 12.50 / 12.50 / 30.00 | 0.20x p50 |" in rows["single user, /predict through the proxy: p50 / p90 / p99 ms"]
    assert "| +0.50 | +4.50 |" in rows["proxy hop over direct /invocations, p50 ms"]
    assert "| 600 (0) | 60 (0) | 10.0x |" in rows["8 concurrent clients on /predict, requests/s (errors)"]
    assert "| 30,000 | 2,000 | 15.0x |" in rows["batch of 10,000, /batch_predict, users/s"]
    assert "| 0.50x |" in rows["cold start, command to first /predict answer, s"]
