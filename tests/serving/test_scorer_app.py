import asyncio
import threading

from serving.scorer_app import in_this_thread


def _served(inner):
    """Run ``inner``'s HTTP call as uvicorn would: lifespan first, then a request."""
    app = in_this_thread(inner)

    async def main():
        await app({"type": "lifespan"}, None, None)
        await app({"type": "http"}, None, None)
        return threading.get_ident()

    return asyncio.run(main())


def test_mlflows_worker_thread_call_runs_on_the_loops_thread():
    seen = {}

    async def inner(scope, receive, send):  # what MLflow's /invocations does with the model
        if scope["type"] == "http":
            seen["thread"] = await asyncio.to_thread(threading.get_ident)

    loop_thread = _served(inner)
    assert seen["thread"] == loop_thread


def test_an_error_in_the_call_reaches_the_handler_that_awaited_it():
    caught = []

    def invocations():
        raise ValueError("bad input")

    async def inner(scope, receive, send):
        if scope["type"] == "http":
            try:
                await asyncio.to_thread(invocations)
            except ValueError as error:
                caught.append(str(error))

    _served(inner)
    assert caught == ["bad input"]
