"""Request and response schemas (pydantic), and the OpenAPI document built from them.

The user schema is built from the same constants the validator enforces
(revenue_model.contract), so /docs cannot drift from what /predict accepts;
tests check examples generated from it against the validator.
"""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from revenue_model.contract import (
    EVENT_COLUMNS, INPUT_COLUMNS, MAX_STRING_LENGTH, OUTPUT_COLUMNS, REQUIRED_COLUMNS,
)

# No NUL anywhere. Blank is missing: Python's strip() (the validator's) also takes \x1c-\x1f
# for blanks, Unicode's \s does not.
_String = Annotated[str, Field(max_length=MAX_STRING_LENGTH, pattern=r"^[^\x00]*$")]
_RequiredString = Annotated[str, Field(max_length=MAX_STRING_LENGTH,
                                       pattern=r"^[^\x00]*[^\s\x1c-\x1f\x00][^\x00]*$")]
_Event = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_NUMBER_OK = {"os_version", "user_id"}


def _field(name: str):
    kind = _Event if name in EVENT_COLUMNS else (_String | float if name in _NUMBER_OK else _String)
    if name in REQUIRED_COLUMNS:
        return (_Event if name in EVENT_COLUMNS else _RequiredString, ...)
    return (Optional[kind], None)


User = create_model("User", __config__=ConfigDict(extra="allow",
                    json_schema_extra={"example": {
                        "country": "es", "country_region": "Madrid", "source": "Organic", "platform": "iOS",
                        "device_family": "Apple iPhone", "os_version": "14.4", "event_1": 100,
                        "event_2": 50, "event_3": 10.0}}),
                    **{name: _field(name) for name in INPUT_COLUMNS})


class BatchRequest(BaseModel):
    users: list[User] = Field(min_length=1, description="at most MAX_BATCH_USERS (10,000 by default)")


_Outputs = create_model("Outputs", **{c: (float, ...) for c in OUTPUT_COLUMNS})


class Prediction(_Outputs):
    user_id: Optional[str] = None


class PredictResponse(Prediction):
    inference_time_ms: float = Field(description="time the scoring call took")
    timestamp: str
    request_id: str
    model_name: str
    model_version: str


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    count: int
    total_predicted_revenue: float = Field(description="the cohort's expected D7 revenue, USD")
    inference_time_ms: float
    timestamp: str
    request_id: str
    model_name: str
    model_version: str


class Problem(BaseModel):
    row: Optional[int] = Field(description="position of the user in the request (0 for /predict)")
    field: str
    reason: str


class ErrorResponse(BaseModel):
    error: str
    message: str
    problems: Optional[list[Problem]] = None
    request_id: str


class Health(BaseModel):
    status: str
    model_name: str
    model_version: str
    alias: str
    run_id: str
    log_writer: str = Field(description="running or stopped (then the status is 503)")
    log_database: str = Field(description="up, down (rows wait in the spill file) or alarm (PostgreSQL "
                              "refuses the log: rows wait in the spill file)")
    timestamp: str


_ERRORS = {"400": "invalid input: every bad field is listed", "401": "missing or wrong API key",
           "413": "too many users or too large a body", "415": "not JSON",
           "503": "overloaded or the model is restarting", "504": "the model took too long"}


def openapi_document() -> dict:
    models = [User, BatchRequest, Prediction, PredictResponse, BatchResponse, Problem, ErrorResponse, Health]
    schemas: dict = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    json_body = lambda name: {"content": {"application/json": {"schema": ref(name)}}}  # noqa: E731
    errors = {code: {"description": text, **json_body("ErrorResponse")} for code, text in _ERRORS.items()}
    free = {"content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "D7 revenue prediction", "version": "1",
                 "description": "Predicted first-7-day revenue per installed user."},
        "paths": {
            "/health": {"get": {"summary": "Whether the model answers",
                                "responses": {"200": {"description": "ready", **json_body("Health")},
                                              "503": {"description": "not ready", **json_body("Health")}}}},
            "/predict": {"post": {"summary": "One user to one prediction", "requestBody": json_body("User"),
                                  "responses": {"200": {"description": "ok", **json_body("PredictResponse")},
                                                **errors}}},
            "/batch_predict": {"post": {"summary": "Users to predictions, in order, with the cohort total",
                                        "requestBody": json_body("BatchRequest"),
                                        "responses": {"200": {"description": "ok", **json_body("BatchResponse")},
                                                      **errors}}},
            "/invocations": {"post": {"summary": "MLflow's scoring protocol, passed through",
                                      "requestBody": free, "responses": {"200": {"description": "MLflow's answer", **free},
                                                                         **errors}}},
            "/model/info": {"get": {"summary": "The served model: name, version, alias, features, metrics, run",
                                    "responses": {"200": {"description": "ok", **free}}}},
            "/stats": {"get": {"summary": "Aggregates of predictions made",
                               "parameters": [{"name": "since", "in": "query", "required": False,
                                               "schema": {"type": "string"},
                                               "description": "ISO 8601 time, or a duration back from now: 30m, 6h, 7d"}],
                               "responses": {"200": {"description": "ok", **free}, **errors}}},
            "/drift": {"get": {"summary": "Drift of logged traffic against the model's training reference (PSI)",
                               "parameters": [
                                   {"name": name, "in": "query", "required": False, "schema": {"type": kind},
                                    "description": text} for name, kind, text in (
                                       ("since", "string", "ISO 8601 time or duration back from now; default: "
                                                           "until minus DRIFT_WINDOW (24h)"),
                                       ("until", "string", "ISO 8601 time or duration back from now; default: now"),
                                       ("model_version", "string", "default: the version serving now"),
                                       ("min_rows", "integer", "fewer rows: insufficient_data (default 500)"))],
                               "responses": {"200": {"description": "ok", **free},
                                             "404": {"description": "no reference for that version",
                                                     **json_body("ErrorResponse")}, **errors}}},
            "/stats/timeseries": {"get": {
                "summary": "Prediction requests, users scored, failures and latency percentiles per interval",
                "parameters": [{"name": name, "in": "query", "required": False, "schema": {"type": "string"},
                                "description": text} for name, text in (
                    ("since", "start: ISO 8601 time or a duration back from now (default 24h)"),
                    ("until", "end: as since (default now)"),
                    ("step", "interval: 30s, 5m, 1h ... (default: at most 300 intervals; at most 2000)"))],
                "responses": {"200": {"description": "ok", **free}, **errors}}},
            "/dashboard": {"get": {"summary": "The dashboard: one page drawn from the routes above",
                                   "responses": {"200": {"description": "HTML",
                                                         "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/shadow": {"get": {"summary": "The champion against the shadow on the users both scored",
                                "parameters": [{"name": "since", "in": "query", "required": False,
                                                "schema": {"type": "string"},
                                                "description": "ISO 8601 time, or a duration: 30m, 6h, 7d"},
                                               *({"name": f"{role}_version", "in": "query", "required": False,
                                                  "schema": {"type": "string"},
                                                  "description": f"the {role}'s version (default: the one serving)"}
                                                 for role in ("champion", "shadow"))],
                                "responses": {"200": {"description": "ok", **free}, **errors}}},
            "/admin/model/check": {"post": {"summary": "Check the followed aliases now; what happened to each",
                                            "responses": {"200": {"description": "ok", **free}, **errors,
                                                          "403": {"description": "no API_KEY is configured",
                                                                  **json_body("ErrorResponse")}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": schemas,
                       "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
    }
