"""Prometheus gauges of the served version's drift, recomputed in the background.

Every ``DRIFT_REFRESH_S`` the drift of the last ``DRIFT_WINDOW`` of the served version is
measured (the same computation as GET /drift) and the gauges are set; a scrape only reads them,
so scraping often costs PostgreSQL nothing. When the served version changes, the old version's
series are dropped: an alert names the version that is serving.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Awaitable, Callable

from prometheus_client import CollectorRegistry, Gauge

from revenue_model.drift import SEVERITY

log = logging.getLogger("serving.drift")


class DriftGauges:
    def __init__(self, registry: CollectorRegistry):
        self.psi = Gauge("revenue_drift_psi", "PSI of the column over the last DRIFT_WINDOW against the served "
                         "version's reference (NaN: fewer than min_rows rows)", ["model_version", "column"],
                         registry=registry)
        self.status = Gauge("revenue_drift_status", "Drift status of the column: 0 ok, 1 insufficient_data, "
                            "2 warn, 3 drift", ["model_version", "column"], registry=registry)
        self.unseen = Gauge("revenue_drift_unseen_share", "Share of the window in categories the training data "
                            "never had", ["model_version", "column"], registry=registry)
        self.rows = Gauge("revenue_drift_window_rows", "Users answered in the last DRIFT_WINDOW",
                          ["model_version"], registry=registry)
        self.refreshed = Gauge("revenue_drift_last_refresh_timestamp_seconds", "When the drift gauges were "
                               "last recomputed (Unix time; 0: never)", registry=registry)
        self.failures = Gauge("revenue_drift_refresh_failures", "Drift refreshes that failed since start",
                              registry=registry)
        self._version: str | None = None

    def show(self, version: str, report: dict) -> None:
        """Set every gauge from a /drift answer for ``version``."""
        if version != self._version:
            for gauge in (self.psi, self.status, self.unseen, self.rows):
                gauge.clear()
            self._version = version
        for column, entry in report["columns"].items():
            self.psi.labels(version, column).set(math.nan if entry["psi"] is None else entry["psi"])
            self.status.labels(version, column).set(SEVERITY[entry["status"]])
            if "unseen_share" in entry:
                self.unseen.labels(version, column).set(entry["unseen_share"] or 0.0)
        self.rows.labels(version).set(report["n"])
        self.refreshed.set(time.time())


async def refresh_forever(measure: Callable[[], Awaitable[tuple[str, dict]]], gauges: DriftGauges,
                          interval_s: float) -> None:
    """Call ``measure`` (-> (version, report)) every ``interval_s`` and show its answer; a failure is
    logged and counted, and the gauges keep their last values (their timestamp tells how old)."""
    while True:
        try:
            version, report = await measure()
            gauges.show(version, report)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the database or the registry away: try again next time
            gauges.failures.inc()
            log.warning("drift gauges not refreshed: %s", error)
        await asyncio.sleep(interval_s)
