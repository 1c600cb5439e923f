"""The service's settings: read once, from the environment, with defaults that work.

``Settings.from_env()`` is called by the entry point (never at import), and
the settings object is passed to everything that needs it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5001
    model_uri: str = "models:/revenue_model@champion"
    tracking_uri: str = ""                  # empty: MLflow's default, ./mlflow.db
    database_url: str = ""                  # empty: an embedded PostgreSQL in pgdata_dir
    pgdata_dir: Path = Path(".pgdata")
    spill_dir: Path = Path(".spill")
    scorer_port: int = 0                    # 0: a free loopback port
    scorer_workers: int = 1
    scorer_threads: int = 2                 # LightGBM threads in the scorer, for batches of 5,000+ rows
    scorer_timeout_s: float = 30.0
    scorer_ping_s: float = 1.0              # how often a scorer is asked whether it still answers
    scorer_ping_timeout_s: float = 5.0      # a scorer silent this long is hung: killed and restarted
    model_poll_s: float = 30.0              # how often MODEL_URI's alias is checked; 0: never (follow off)
    shadow_uri: str = ""                    # a second model scored after each answer; empty: none
    shadow_share: float = 1.0               # share of users shadow-scored (by user_id, else request id)
    shadow_queue_users: int = 20_000        # users waiting for the shadow; beyond, shadow work is dropped
    shadow_nice: int = 10                   # the shadow scorer's CPU priority offset: the champion goes first
    shadow_sample_users: int = 100_000      # GET /shadow ranks at most this many (the newest) users
    max_batch_users: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    max_in_flight: int = 256                # requests beyond this get 503 at once
    max_in_flight_bytes: int = 96 * 2**20   # estimated memory of requests in flight, likewise (core.py)
    log_queue_rows: int = 40_000            # rows held in memory before spilling to disk (docs/log.md)
    log_queue_bytes: int = 256 * 2**20      # their estimated memory, likewise
    log_wait_s: float = 5.0                 # a prediction waits at most this long while the queue is over half full
    log_input_max_bytes: int = 16 * 1024    # JSON of one user's stored input (serving/stored_input.py)
    unauthorised_rows_per_s: float = 1.0    # log rows of 401 answers (burst of 10); the rest only counted
    read_queries_max: int = 4               # read routes' queries at once (serving/read_queries.py)
    read_statement_timeout_s: float = 10.0  # one read query, at most (then 503 query_timeout)
    log_level: str = ""                     # empty: quiet (serving/logging_setup.py); DEBUG, INFO ...: all loggers
    spark_master: str = ""                  # batch_score engine=spark; empty: local[*] or spark-submit's
    api_key: str = field(default="", repr=False)
    drift_window_s: float = 24 * 3600.0     # GET /drift's default window and the gauges' sliding one
    drift_refresh_s: float = 60.0           # how often the drift gauges are recomputed; 0: never
    drift_query_timeout_s: float = 10.0     # one /drift count over the log, at most
    drift_reference_timeout_s: float = 300.0  # computing an older model's reference profile, at most
    performance_refresh_s: float = 300.0    # realised-performance rollup and gauges; 0: only on GET /performance
    stats_refresh_s: float = 10.0           # the /stats rollup reads new log rows this often; 0: never (slow /stats)
    log_retention_days: int = 0             # drop the log's day partitions older than this; 0: keep everything

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        get = lambda name, default: env.get(name) or default  # noqa: E731
        return cls(
            host=get("HOST", cls.host),
            port=int(get("PORT", cls.port)),
            model_uri=get("MODEL_URI", cls.model_uri),
            tracking_uri=get("MLFLOW_TRACKING_URI", ""),
            database_url=get("DATABASE_URL", ""),
            pgdata_dir=Path(get("PGDATA_DIR", cls.pgdata_dir)),
            spill_dir=Path(get("SPILL_DIR", cls.spill_dir)),
            scorer_port=int(get("SCORER_PORT", cls.scorer_port)),
            scorer_workers=int(get("SCORER_WORKERS", cls.scorer_workers)),
            scorer_threads=int(get("SCORER_THREADS", cls.scorer_threads)),
            scorer_timeout_s=float(get("SCORER_TIMEOUT_S", cls.scorer_timeout_s)),
            scorer_ping_s=float(get("SCORER_PING_S", cls.scorer_ping_s)),
            scorer_ping_timeout_s=float(get("SCORER_PING_TIMEOUT_S", cls.scorer_ping_timeout_s)),
            model_poll_s=float(get("MODEL_POLL_S", cls.model_poll_s)),
            shadow_uri=get("SHADOW_URI", ""),
            shadow_share=_share(get("SHADOW_SHARE", cls.shadow_share)),
            shadow_queue_users=int(get("SHADOW_QUEUE_USERS", cls.shadow_queue_users)),
            shadow_nice=int(get("SHADOW_NICE", cls.shadow_nice)),
            shadow_sample_users=int(get("SHADOW_SAMPLE_USERS", cls.shadow_sample_users)),
            max_batch_users=int(get("MAX_BATCH_USERS", cls.max_batch_users)),
            max_body_bytes=int(get("MAX_BODY_BYTES", cls.max_body_bytes)),
            max_in_flight=int(get("MAX_IN_FLIGHT", cls.max_in_flight)),
            max_in_flight_bytes=int(get("MAX_IN_FLIGHT_BYTES", cls.max_in_flight_bytes)),
            log_queue_rows=int(get("LOG_QUEUE_ROWS", cls.log_queue_rows)),
            log_queue_bytes=int(get("LOG_QUEUE_BYTES", cls.log_queue_bytes)),
            log_wait_s=float(get("LOG_WAIT_S", cls.log_wait_s)),
            log_input_max_bytes=int(get("LOG_INPUT_MAX_BYTES", cls.log_input_max_bytes)),
            unauthorised_rows_per_s=float(get("UNAUTHORISED_ROWS_PER_S", cls.unauthorised_rows_per_s)),
            read_queries_max=int(get("READ_QUERIES_MAX", cls.read_queries_max)),
            read_statement_timeout_s=float(get("READ_STATEMENT_TIMEOUT_S", cls.read_statement_timeout_s)),
            log_level=get("LOG_LEVEL", ""),
            spark_master=get("SPARK_MASTER", cls.spark_master),
            api_key=get("API_KEY", ""),
            drift_window_s=duration_s(get("DRIFT_WINDOW", "24h"), "DRIFT_WINDOW"),
            drift_refresh_s=float(get("DRIFT_REFRESH_S", cls.drift_refresh_s)),
            drift_query_timeout_s=float(get("DRIFT_QUERY_TIMEOUT_S", cls.drift_query_timeout_s)),
            drift_reference_timeout_s=float(get("DRIFT_REFERENCE_TIMEOUT_S", cls.drift_reference_timeout_s)),
            performance_refresh_s=float(get("PERFORMANCE_REFRESH_S", cls.performance_refresh_s)),
            stats_refresh_s=float(get("STATS_REFRESH_S", cls.stats_refresh_s)),
            log_retention_days=int(get("LOG_RETENTION_DAYS", cls.log_retention_days)),
        )


def _share(text) -> float:
    share = float(text)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"SHADOW_SHARE must be between 0 and 1, not {text!r}")
    return share


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str, name: str) -> float:
    """'24h', '90m', '7d', '30s' or plain seconds, in seconds (> 0)."""
    match = _DURATION.match(text)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"{name}={text!r} is not a duration such as 24h, 90m, 7d or 3600 (seconds)")
    return float(match[1]) * _SECONDS[match[2]]
