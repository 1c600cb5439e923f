"""Run the service: `python -m serving`.

Starts (or connects to) PostgreSQL while it resolves and downloads the model
from the registry, starts MLflow's scoring server on those files on a
loopback port, waits until it answers,
then serves on HOST:PORT (127.0.0.1:5001). On SIGTERM or Ctrl-C it stops
listening, answers the requests in flight, writes every pending log row
(or leaves it in the spill file for the next start), and stops the scorer.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp
import mlflow
import uvloop
from aiohttp import web

from serving import database
from serving.app import build_app
from serving.config import Settings
from serving.core import PredictionService
from serving.log_writer import LogWriter
from serving.model_identity import resolve_model
from serving.scorer import ScorerClient, ScorerProcess, ScorerSupervisor

log = logging.getLogger("serving")


async def serve(settings: Settings) -> None:
    if settings.tracking_uri:
        mlflow.set_tracking_uri(settings.tracking_uri)
    model_dir = Path(tempfile.mkdtemp(prefix="revenue-model-"))
    url = settings.database_url
    # The embedded database and the registry are independent: start and read them together.
    embedded = asyncio.to_thread(database.start_embedded, settings.pgdata_dir) if not url else None
    identity, started = await asyncio.gather(asyncio.to_thread(resolve_model, settings.model_uri, model_dir),
                                             embedded or asyncio.sleep(0))
    if embedded is not None:
        _server, url = started  # the server stops when this process exits
        log.info("embedded PostgreSQL in %s", settings.pgdata_dir)
    log.info("model %s version %s (%s)", identity.name or identity.uri, identity.version, settings.model_uri)
    writer = LogWriter(url, settings.spill_dir, max_rows=settings.log_queue_rows).start()

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=60))
    supervisor = ScorerSupervisor(ScorerProcess(
        identity.local_path, port=settings.scorer_port, workers=settings.scorer_workers,
        timeout_s=settings.scorer_timeout_s, threads=settings.scorer_threads), session)
    runner = None
    try:
        await supervisor.start()
        client = ScorerClient(supervisor, session, timeout_s=settings.scorer_timeout_s,
                              lanes=settings.scorer_workers)
        service = PredictionService(identity, client, writer, max_in_flight=settings.max_in_flight,
                                    max_users=settings.max_batch_users)
        runner = web.AppRunner(build_app(settings, service, supervisor, url), handle_signals=False,
                               shutdown_timeout=30, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port, reuse_address=True).start()
        print(f"serving {identity.name} version {identity.version} on http://{settings.host}:{settings.port}"
              f" (docs: /docs)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: finishing requests in flight")
    finally:
        if runner is not None:
            await runner.cleanup()  # stops listening, then waits for handlers in flight
        await supervisor.stop()
        await session.close()
        await asyncio.to_thread(writer.stop)
        shutil.rmtree(model_dir, ignore_errors=True)
        log.info("stopped: %d rows written, %d spilled", writer.rows_written, writer.rows_spilled)


def main() -> None:
    # The log writer is a thread: a request must not queue behind it for the default 5 ms
    # switch interval every time the event loop gives up the GIL for a socket call.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(serve(Settings.from_env()))


if __name__ == "__main__":
    main()
