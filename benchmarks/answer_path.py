"""Where a 10,000-user /batch_predict's CPU goes, stage by stage, in one process.

    .venv/bin/python -m benchmarks.answer_path [--users 10000] [--repeats 7]

Each stage of the service's answer and log path is run on its own, on the same generated users
as benchmarks/sustained.py sends, with the code the service runs (the proxy's parse, validation,
the body to the scorer, MLflow's scoring server's ``invocations`` with this project's pyfunc, the
answer, the log rows and the COPY data the writer sends PostgreSQL). Medians of ``--repeats``,
printed in CPU ms per 1,000 users (CPU time, so that other tenants' load
weighs less than on wall time). PostgreSQL's own part is benchmarks/log_write.py's. Not counted:
aiohttp's and uvicorn's HTTP work and the sockets (the sustained benchmark's CPU figures hold them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import mlflow
import orjson
from mlflow.pyfunc import scoring_server

from pipelines.datasets import split_users
from pipelines.model_logging import log_revenue_model
from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users
from serving import app as service_app
from serving import scorer_app
from serving import core
from serving.db import log_rows as db_log_rows
from serving.db.log_copy import copy_data
from serving.model_identity import ModelIdentity
from serving.scorer import to_scorer_body


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=7)
    return p.parse_args(argv)


def load_model(work: Path):
    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    data = generate_users(60_000, seed=0)
    train, dev, _ = split_users(data, seed=0)
    example = data.drop(columns=["revenue", "install_date"]).head(3)
    experiment = mlflow.create_experiment("answer_path", artifact_location=str(work / "artifacts"))
    with mlflow.start_run(experiment_id=experiment):
        logged = log_revenue_model(fit_predictor(train, dev), example)
    return scoring_server.load_model_with_mlflow_config(logged.model_uri)


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median CPU seconds of ``fn()`` (all of this process's threads: LightGBM's too), and its result."""
    times, out = [], None
    for _ in range(repeats):
        started = time.process_time()
        out = fn()
        times.append(time.process_time() - started)
    return statistics.median(times), out


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="revenue-answer-path-"))
    model = load_model(work)
    scorer_app.install_one_shot_json()  # as the scorer process does
    users = json.loads(generate_users(args.users, seed=1).drop(columns=["revenue", "install_date"])
                       .to_json(orient="records"))
    body = json.dumps({"users": users}).encode()
    identity = ModelIdentity("revenue_model", "1", "run", "models:/revenue_model/1")
    stages: dict[str, float] = {}
    r = args.repeats

    stages["proxy: parse the body (orjson)"], payload = timed(lambda: core.parse_json(body), r)
    record = core.RequestRecord("id", "/batch_predict")
    service = core.PredictionService.__new__(core.PredictionService)
    service.max_users = args.users
    stages["proxy: validate (revenue_model.validation)"], columns = timed(
        lambda: service.validate(record, core.batch_users(payload)), r)
    stages["proxy: body to the scorer"], (scorer_body, content_type) = timed(lambda: to_scorer_body(columns), r)
    stages["scorer: MLflow's parse of the body"], parsed = timed(
        lambda: _parse(scorer_body, content_type, model), r)
    stages["scorer: the pyfunc's predict"], raw = timed(lambda: model.predict(parsed), r)
    stages["scorer: MLflow's JSON of the answer"], answer = timed(
        lambda: _answer_json(raw), r)
    stages["scorer: whole invocations (the three above)"], _ = timed(
        lambda: scoring_server.invocations(scorer_body, content_type, model, None), r)
    stages["proxy: parse the scorer's answer"], outputs = timed(lambda: orjson.loads(answer)["predictions"], r)
    record.outputs, record.inference_ms = outputs, 1.0
    stages["proxy: the client's answer (JSON)"], _ = timed(lambda: _client_answer(outputs, users, record), r)
    stages["log: stored inputs + rows (core.log_rows)"], rows = timed(
        lambda: core.log_rows(record, 200, 1.0, identity, core.stored_inputs(record)[0]), r)
    stages["log: the COPY data to PostgreSQL (a batch's first write)"], _ = timed(
        lambda: copy_data(rows, db_log_rows._KINDS), r)
    per_1000 = 1000 / args.users
    out = {name: seconds * 1000 * per_1000 for name, seconds in stages.items()}
    print(f"\n| stage ({args.users:,} users, median of {r}, load average {os.getloadavg()[0]:.1f}) "
          f"| ms per 1,000 users |\n|---|--:|")
    for name, ms in out.items():
        print(f"| {name} | {ms:.1f} |")
    counted = sum(ms for name, ms in out.items() if "whole" not in name)
    print(f"| total (without the 'whole' line) | {counted:.1f} |")
    return out


def _parse(body, content_type, model):
    if content_type.startswith("application/json"):
        return scoring_server._parse_json_data(body, model.metadata, None).data
    import io
    return scoring_server.parse_parquet_input(io.BytesIO(body))


def _answer_json(raw):
    import io
    buffer = io.StringIO()
    scoring_server.predictions_to_json(raw, buffer)
    return buffer.getvalue()


def _client_answer(outputs, users, record):
    predictions = [service_app._prediction(o, u) for o, u in zip(outputs, users)]
    return orjson.dumps({"predictions": predictions, "count": len(predictions),
                         "total_predicted_revenue": sum(p["predicted_revenue"] for p in predictions)})


if __name__ == "__main__":
    main()
