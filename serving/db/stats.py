"""The /stats aggregates, as SQL over the log's champion rows (a shadow's rows are not answers).

A request is counted by its row at user index 0: every request has exactly one (a request
without users is logged as one row), and all rows of a request share its latency.
"""

from __future__ import annotations

from datetime import datetime

STATS_QUERIES = {
    "totals": """
        SELECT count(*) FILTER (WHERE status_code = 200),
               count(*),
               count(*) FILTER (WHERE user_index = 0),
               avg(predicted_revenue), min(predicted_revenue), max(predicted_revenue),
               sum(predicted_revenue), avg(payer_probability), avg(inference_time_ms),
               min(timestamp) FILTER (WHERE status_code = 200),
               max(timestamp) FILTER (WHERE status_code = 200)
        FROM predictions WHERE timestamp >= %(since)s AND role = 'champion'""",
    "latency": """
        SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms), avg(latency_ms)
        FROM predictions
        WHERE timestamp >= %(since)s AND role = 'champion' AND user_index = 0 AND latency_ms IS NOT NULL""",
    "countries": """
        SELECT upper(country), count(*), avg(predicted_revenue) FROM predictions
        WHERE timestamp >= %(since)s AND role = 'champion' AND status_code = 200
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10""",
    "platforms": """
        SELECT CASE WHEN lower(platform) LIKE '%%ios%%' THEN 'iOS'
                    WHEN lower(platform) LIKE '%%android%%' THEN 'Android' ELSE 'other' END, count(*)
        FROM predictions WHERE timestamp >= %(since)s AND role = 'champion' AND status_code = 200
        GROUP BY 1 ORDER BY 2 DESC""",
    "errors": """
        SELECT status_code, count(*) FILTER (WHERE user_index = 0), count(*) FROM predictions
        WHERE timestamp >= %(since)s AND role = 'champion' AND status_code <> 200 GROUP BY 1 ORDER BY 1""",
    "versions": """
        SELECT model_name, model_version, count(*), avg(predicted_revenue), min(timestamp), max(timestamp)
        FROM predictions WHERE timestamp >= %(since)s AND role = 'champion' AND status_code = 200
        GROUP BY 1, 2 ORDER BY 5""",
    "routes": """
        SELECT route, count(*) FILTER (WHERE user_index = 0), count(*) FROM predictions
        WHERE timestamp >= %(since)s AND role = 'champion' GROUP BY 1 ORDER BY 1""",
}


def prediction_stats(connection, since: datetime) -> dict:
    """Aggregates for /stats over rows logged at or after ``since`` (never raw inputs)."""
    out: dict = {}
    with connection.cursor() as cursor:
        results = {}
        for name, sql in STATS_QUERIES.items():
            cursor.execute(sql, {"since": since})
            results[name] = cursor.fetchall()
    connection.rollback()
    (ok, rows, requests, avg_rev, min_rev, max_rev, sum_rev, avg_p, avg_inf, first, last), = results["totals"]
    (percentiles, avg_latency), = results["latency"]
    p50, p95, p99 = percentiles or (None, None, None)
    out.update({
        "total_predictions": ok, "total_rows": rows, "total_requests": requests,
        "avg_predicted_revenue": avg_rev, "min_predicted_revenue": min_rev,
        "max_predicted_revenue": max_rev, "total_predicted_revenue": sum_rev,
        "avg_payer_probability": avg_p, "avg_inference_time_ms": avg_inf,
        "first_prediction": first.isoformat() if first else None,
        "last_prediction": last.isoformat() if last else None,
        "latency_ms": {"avg": avg_latency, "p50": p50, "p95": p95, "p99": p99},
        "top_countries": [{"country": c, "predictions": n, "avg_predicted_revenue": a}
                          for c, n, a in results["countries"]],
        "platform_distribution": [{"platform": p, "predictions": n} for p, n in results["platforms"]],
        "errors": {str(code): {"requests": r, "rows": n} for code, r, n in results["errors"]},
        "by_model_version": [{"model_name": m, "model_version": v, "predictions": n,
                              "avg_predicted_revenue": a, "first": f.isoformat(), "last": l.isoformat()}
                             for m, v, n, a, f, l in results["versions"]],
        "by_route": {route: {"requests": r, "rows": n} for route, r, n in results["routes"]},
    })
    return out
