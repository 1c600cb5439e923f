"""The service's settings: read once, from the environment, with defaults that work.

``Settings.from_env()`` is called by the entry point (never at import), and
the settings object is passed to everything that needs it.
"""

from __future__ import annotations

import os
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
    max_batch_users: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    max_in_flight: int = 256                # requests beyond this get 503 at once
    log_queue_rows: int = 200_000           # rows held in memory before spilling to disk
    api_key: str = field(default="", repr=False)
    performance_refresh_s: float = 300.0    # realised-performance rollup and gauges; 0: only on GET /performance

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
            max_batch_users=int(get("MAX_BATCH_USERS", cls.max_batch_users)),
            max_body_bytes=int(get("MAX_BODY_BYTES", cls.max_body_bytes)),
            max_in_flight=int(get("MAX_IN_FLIGHT", cls.max_in_flight)),
            log_queue_rows=int(get("LOG_QUEUE_ROWS", cls.log_queue_rows)),
            api_key=get("API_KEY", ""),
            performance_refresh_s=float(get("PERFORMANCE_REFRESH_S", cls.performance_refresh_s)),
        )
