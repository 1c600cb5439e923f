"""The service around a started scorer: ``run(settings, scorer)``, called by ``python -m serving``.

Starts (or connects to) PostgreSQL while it resolves and downloads the model
from the registry into the directory the scorer waits on, waits until the
scorer answers as ours with a real prediction, then serves on HOST:PORT
(127.0.0.1:5001). From then on it follows MODEL_URI's alias (and SHADOW_URI's,
with a shadow scorer) every MODEL_POLL_S (model_follower.py). On SIGTERM or
Ctrl-C it stops listening, answers the requests in flight, scores what the
shadow has queued (a few seconds at most), writes every pending log row (or
leaves it in the spill file for the next start), and stops the scorers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
import time

import mlflow
import psycopg2
import uvloop
from aiohttp import web

from serving.db.connection import connect, start_embedded
from serving.db.schema import SchemaMismatch, migrate
from serving.app import DRAINING, build_app
from serving.config import Settings
from serving.core import PredictionService
from serving.log_writer import LogWriter
from serving.model_follower import ModelFollower, Models
from serving.model_identity import resolve_model
from serving.scorer_process import ScorerProcess
from serving.shutdown import drain
from serving.scorer_supervisor import ScorerStats
from serving.served_model import ServedModel
from serving.shadow import ShadowScorer

log = logging.getLogger("serving")
# Stopping: requests in flight get LOG_WAIT_S + SCORER_TIMEOUT_S + DRAIN_MARGIN_S to be answered (serving/shutdown.py),
# then runner.cleanup waits CLEANUP_TIMEOUT_S more for whatever is left before cancelling it.
DRAIN_MARGIN_S = 5.0
CLEANUP_TIMEOUT_S = 2.0


def run(settings: Settings, scorer: ScorerProcess, stop_requested: threading.Event, *,
        started_at: float | None = None) -> None:
    """``stop_requested``: set by a SIGTERM or SIGINT that came before the event loop ran;
    ``started_at``: ``time.monotonic()`` when the process started, for the start-up times logged."""
    uvloop.run(serve(settings, scorer, stop_requested, started_at or time.monotonic()))


def prepare_database(url: str) -> None:
    """Bring the database to this release's layout before serving.

    A database that is down is not fatal (rows wait in the spill file; the writer migrates once it
    is back); one that refuses the layout (another table named predictions, no right to create it,
    a newer release's layout) is: the service stops with the reason instead of losing rows.
    """
    try:
        connection = connect(url, timeout_s=2)
    except psycopg2.OperationalError as error:
        log.warning("PostgreSQL is not reachable yet (%s); rows wait in the spill file until it is",
                    str(error).strip())
        return
    try:
        applied = migrate(connection)
    except psycopg2.OperationalError as error:
        log.warning("PostgreSQL went away while checking its layout (%s); rows wait in the spill file",
                    str(error).strip())
        return
    except (SchemaMismatch, psycopg2.Error) as error:
        raise SystemExit(f"the database at DATABASE_URL cannot hold the prediction log: {error}".strip()) from None
    finally:
        connection.close()
    if applied:
        log.info("database layout migrated to version %d (applied %s)", applied[-1], applied)


async def _timed(function, *args) -> tuple[object, float]:
    """``function(*args)`` in a thread, and the seconds it took."""
    began = time.monotonic()
    result = await asyncio.to_thread(function, *args)
    return result, time.monotonic() - began


async def serve(settings: Settings, scorer: ScorerProcess, stop_requested: threading.Event,
                started_at: float) -> None:
    # From here on a signal sets `stop`; one during start-up lets the start finish, then stops in order.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if stop_requested.is_set():
        stop.set()
    if settings.tracking_uri:
        mlflow.set_tracking_uri(settings.tracking_uri)
    url = settings.database_url
    # The embedded database and the registry are independent: start and read them together.
    embedded = _timed(start_embedded, settings.pgdata_dir) if not url else None
    (identity, model_s), started = await asyncio.gather(_timed(resolve_model, settings.model_uri, scorer.model_dir),
                                                        embedded or asyncio.sleep(0))
    if embedded is not None:
        (_server, url), database_s = started  # the server stops when this process exits
        log.info("database: embedded PostgreSQL in %s, started in %.1f s", settings.pgdata_dir, database_s)
    else:
        log.info("database: PostgreSQL at DATABASE_URL")
    log.info("model: %s version %s (%s), downloaded in %.1f s", identity.name or identity.uri, identity.version,
             settings.model_uri, model_s)
    await asyncio.to_thread(prepare_database, url)
    writer = LogWriter(url, settings.spill_dir, max_rows=settings.log_queue_rows,
                       max_bytes=settings.log_queue_bytes).start()

    stats = ScorerStats()
    champion = ServedModel(identity, scorer, settings, stats=stats)
    downloads = scorer.model_dir.parent  # removed by the entry point on the way out
    models = Models(ModelFollower(settings.model_uri, "champion", settings, downloads, stats=stats,
                                  current=champion), stats)
    if settings.shadow_uri:
        models.shadow_scorer = ShadowScorer(writer, share=settings.shadow_share,
                                            max_queue_users=settings.shadow_queue_users)
        models.shadow = ModelFollower(settings.shadow_uri, "shadow", settings, downloads, stats=stats,
                                      nice=settings.shadow_nice, on_switch=models.shadow_scorer.use)
    runner = None
    try:
        await champion.start()  # its failures (RuntimeErrors naming the scorer) get a hint in __main__
        log.info("scorer: MLflow's scoring server answers, %.1f s after start", time.monotonic() - started_at)
        service = PredictionService(champion, writer, max_in_flight=settings.max_in_flight,
                                    max_users=settings.max_batch_users, shadow=models.shadow_scorer,
                                    max_input_bytes=settings.log_input_max_bytes, log_wait_s=settings.log_wait_s,
                                    max_in_flight_bytes=settings.max_in_flight_bytes)
        models.champion.on_switch = lambda served: setattr(service, "champion", served)
        app = build_app(settings, service, models, url)
        # shutdown_timeout: what runner.cleanup still waits after drain() (below) gave up on a request.
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=CLEANUP_TIMEOUT_S, access_log=None,
                               auto_decompress=False)  # bounded inflation in app._read_body (serving/inflate.py)
        await runner.setup()
        # Everything loaded so far lives as long as the process: out of every garbage collection
        # (a full collection over MLflow's and aiohttp's objects took 90 ms, stalling requests).
        gc.freeze()
        await web.TCPSite(runner, settings.host, settings.port, reuse_address=True).start()
        base = f"http://{settings.host}:{settings.port}"
        print(f"ready in {time.monotonic() - started_at:.1f} s: {identity.name} version {identity.version} on "
              f"{base} (dashboard: {base}/dashboard, API docs: {base}/docs)", flush=True)
        models.champion.start()
        if models.shadow is not None:
            models.shadow_scorer.start()
            models.shadow.start(check_now=True)  # the shadow loads after the champion serves
        await stop.wait()
        log.info("stopping: finishing requests in flight")
    finally:
        if runner is not None:
            # Stops listening, answers the requests in flight (the scorer's timeout bounds each), closes the rest.
            await drain(runner, app[DRAINING], settings.log_wait_s + settings.scorer_timeout_s + DRAIN_MARGIN_S)
        if models.shadow_scorer is not None:
            await models.shadow_scorer.stop()
        for follower in models.followers():
            await follower.stop()
        await champion.stop()  # when the start failed before the follower knew it
        await asyncio.to_thread(writer.stop)
        log.info("stopped: %d rows written, %d spilled", writer.rows_written, writer.rows_spilled)
