"""How each served model version did on real traffic: realised metrics and charts as MLflow runs.

    mlflow run . -e evaluate_live --env-manager local [-P model_version=3] [-P since=30d]

Reads the same rollup GET /performance reads (serving/db: refreshed first, so it is current) and
computes the same metrics (revenue_model.metrics). One run per model version with at least
``min_labelled`` labelled users, tagged ``model_name`` and ``model_version`` and linked to the
version (its tag ``live_evaluation_run_id``; the metrics also go to the version's logged model,
so the registry's model page shows them). Each run has:

- ``realised_*`` metrics over the window (norm_gini, total_ratio, mae, rmse, payer_auc, brier,
  p90_coverage, p10_below, decile_mape) and ``n_predicted``/``n_labelled``;
- ``daily_*`` metrics, one point per UTC day of prediction with enough labels, stamped with that
  day (step 0, 1, ... in day order), so the run's charts show the version over time;
- charts/deciles.png, charts/gain.png, charts/cohort_bias.png (total predicted over realised revenue
  by country and by source) and tables by_country.json, by_source.json, deciles.json.
"""

from __future__ import annotations

import argparse
from datetime import datetime, time, timezone

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines import reports
from pipelines.log_database import log_database, parse_time
from revenue_model import metrics as M
from serving.db import outcomes
from serving.db.performance import performance_rows
from serving.performance import MIN_LABELLED, group_outcomes, performance_groups

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SCALARS = ("norm_gini", "total_ratio", "mae", "rmse", "payer_auc", "brier", "p90_coverage", "p10_below",
           "decile_mape")
DAILY = ("norm_gini", "total_ratio", "mae", "payer_auc", "decile_mape")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-name", default="revenue_model")
    p.add_argument("--model-version", default="", help="empty: every version with labelled predictions")
    p.add_argument("--since", default="", help="ISO 8601 time or 30m, 6h, 7d back from now; empty: all")
    p.add_argument("--until", default="", help="the same; empty: now")
    p.add_argument("--min-labelled", type=int, default=MIN_LABELLED)
    return p.parse_args(argv)


def read_performance(since: datetime, until: datetime | None, min_labelled: int) -> dict:
    """Rollup refreshed, then the statistics per version, per day, by country and by source."""
    today = datetime.now(timezone.utc).date()
    with log_database() as connection:
        outcomes.catch_up(connection)
        outcomes.build_spans(connection, today=today, max_spans=100_000)
        return {by: performance_rows(connection, since=since, until=until, by=by, today=today, min_labelled=min_labelled)
                for by in (None, "day", "country", "source")}


def main(argv=None) -> dict[str, str]:
    args = parse_args(argv)
    now = datetime.now(timezone.utc)
    since = parse_time(args.since, "since", now) or EPOCH
    until = parse_time(args.until, "until", now)
    rows = read_performance(since, until, args.min_labelled)
    versions = group_outcomes(rows[None], None)
    runs = {}
    for (version, _), (n_predicted, totals) in sorted(versions.items()):
        if args.model_version and version != args.model_version:
            continue
        if totals.n < args.min_labelled:
            print(f"version {version}: {int(totals.n)} labelled users, fewer than min_labelled="
                  f"{args.min_labelled}: not evaluated")
            continue
        runs[version] = log_version(args, version, n_predicted, totals, rows, since, until or now)
    if not runs:
        print("nothing to evaluate: no model version has enough labelled predictions in the window")
    return runs


def log_version(args, version: str, n_predicted: int, totals: M.Outcomes, rows: dict, since: datetime,
                until: datetime) -> str:
    client = MlflowClient()
    model_id = _logged_model_of(client, args.model_name, version)
    realised = M.realised_metrics(totals)
    title = f"{args.model_name} v{version}, live"
    with mlflow.start_run(run_name=f"live {args.model_name} v{version}") as run:
        mlflow.set_tags({"model_name": args.model_name, "model_version": version, "evaluation": "live",
                         "window_since": since.isoformat(), "window_until": until.isoformat()})
        mlflow.log_params({"window_since": since.isoformat(), "window_until": until.isoformat(), "min_labelled": args.min_labelled})
        scalars = {f"realised_{k}": realised[k] for k in SCALARS}
        scalars.update({"n_predicted": n_predicted, "n_labelled": totals.n})
        mlflow.log_metrics(scalars)
        if model_id:
            mlflow.log_metrics(scalars, model_id=model_id)
        for step, (day, metrics) in enumerate(_daily(rows["day"], version, args.min_labelled)):
            stamp = int(datetime.combine(day, time(), tzinfo=timezone.utc).timestamp() * 1000)
            mlflow.log_metrics({f"daily_{k}": metrics[k] for k in DAILY}, step=step, timestamp=stamp)
        cohorts = {by: [g for g in performance_groups(rows[by], by, args.min_labelled) if g["model_version"] == version]
                   for by in ("country", "source")}
        for by, groups in cohorts.items():
            mlflow.log_table({"value": [g["value"] for g in groups],
                              "n_predicted": [g["n_predicted"] for g in groups],
                              "n_labelled": [g["n_labelled"] for g in groups],
                              **{k: [g["metrics"][k] if g["metrics"] else None for g in groups]
                                 for k in SCALARS}}, f"by_{by}.json")
        mlflow.log_dict({"deciles": realised["deciles"]}, "deciles.json")
        table = {k: [d[k] for d in realised["deciles"]] for k in ("decile", "n", "mean_predicted", "mean_actual")}
        mlflow.log_figure(reports.decile_table_chart(table, title), "charts/deciles.png")
        mlflow.log_figure(reports.gain_points_chart({
            "perfect": M.gain_points(totals.by_actual[:, 0], totals.by_actual[:, 1]),
            f"v{version} (normalized Gini {realised['norm_gini']:.3f})":
                M.gain_points(totals.by_prediction[:, 0], totals.by_prediction[:, 2])}, title), "charts/gain.png")
        mlflow.log_figure(reports.cohort_bias_chart(
            {by: [(g["value"], g["metrics"]["total_ratio"]) for g in groups if g["metrics"]]
             for by, groups in cohorts.items()}, title), "charts/cohort_bias.png")
    _link(client, args.model_name, version, run.info.run_id, realised)
    print(f"version {version}: {int(totals.n)} labelled of {n_predicted} predicted users, normalized Gini "
          f"{realised['norm_gini']:.4f}, total ratio {realised['total_ratio']:.3f}; run {run.info.run_id}")
    return run.info.run_id


def _daily(rows: list[tuple], version: str, min_labelled: int):
    for (v, day), (_, totals) in sorted(group_outcomes(rows, "day").items(), key=lambda item: str(item[0][1])):
        if v == version and day is not None and totals.n >= min_labelled:
            yield datetime.fromisoformat(day).date(), M.realised_metrics(totals)


def _logged_model_of(client: MlflowClient, name: str, version: str) -> str | None:
    """The version's logged model id (MLflow 3 registers a logged model: source models:/m-...)."""
    try:
        source = client.get_model_version(name, version).source or ""
    except MlflowException:
        return None
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def _link(client: MlflowClient, name: str, version: str, run_id: str, realised: dict) -> None:
    try:
        client.set_model_version_tag(name, version, "live_evaluation_run_id", run_id)
        client.set_model_version_tag(name, version, "live_norm_gini", f"{realised['norm_gini']:.6g}")
        client.set_model_version_tag(name, version, "live_total_ratio", f"{realised['total_ratio']:.6g}")
    except MlflowException as error:  # a version this registry does not have (another registry's log)
        print(f"version {version} is not in this registry ({error.message[:200]}): run not linked")


if __name__ == "__main__":
    main()
