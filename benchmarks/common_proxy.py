"""The common approach's proxy: FastAPI, a pooled requests.Session, one INSERT per request.

    SCORER_URL=http://127.0.0.1:PORT DATABASE_URL=postgresql://... uvicorn benchmarks.common_proxy:app

Without DATABASE_URL it logs nothing: the pass-through that benchmarks/sustained.py compares with.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Optional

import psycopg2
import requests
from fastapi import FastAPI
from pydantic import BaseModel

SCORER = os.environ.get("SCORER_URL", "http://127.0.0.1:5002")
session = requests.Session()
_db = threading.local()


class User(BaseModel):
    country: str
    country_region: Optional[str] = None
    source: str
    platform: str
    device_family: Optional[str] = None
    os_version: Optional[str] = None
    event_1: float
    event_2: float
    event_3: Optional[float] = None
    user_id: Optional[str] = None


class Batch(BaseModel):
    users: list[User]


app = FastAPI()


def _connection():
    if getattr(_db, "connection", None) is None:
        _db.connection = psycopg2.connect(os.environ["DATABASE_URL"])
        _db.connection.autocommit = True
        with _db.connection.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS common_predictions (id SERIAL PRIMARY KEY, "
                           "request_id TEXT, input_data JSONB, predicted_revenue FLOAT, latency_ms FLOAT)")
    return _db.connection


def _score(users: list[User]) -> tuple[list[dict], str]:
    request_id = uuid.uuid4().hex
    started = time.perf_counter()
    records = [u.model_dump(exclude={"user_id"}) for u in users]
    answer = session.post(f"{SCORER}/invocations", json={"dataframe_records": records}, timeout=30)
    answer.raise_for_status()
    predictions = answer.json()["predictions"]
    latency = (time.perf_counter() - started) * 1000
    if not os.environ.get("DATABASE_URL"):
        return predictions, request_id
    with _connection().cursor() as cursor:
        cursor.executemany("INSERT INTO common_predictions (request_id, input_data, predicted_revenue, latency_ms) "
                           "VALUES (%s, %s, %s, %s)",
                           [(request_id, json.dumps(r), p["predicted_revenue"], latency)
                            for r, p in zip(records, predictions)])
    return predictions, request_id


@app.post("/predict")
def predict(user: User):
    predictions, request_id = _score([user])
    return {**predictions[0], "request_id": request_id}


@app.post("/batch_predict")
def batch_predict(batch: Batch):
    predictions, request_id = _score(batch.users)
    return {"predictions": predictions, "request_id": request_id}
