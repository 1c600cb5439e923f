-- The prediction log as release 1 created it. A database that already holds this table is
-- recorded at version 1 without running this file; every later layout is a migration from here.
CREATE TABLE IF NOT EXISTS predictions (
    id                BIGSERIAL PRIMARY KEY,
    row_key           TEXT NOT NULL UNIQUE,
    timestamp         TIMESTAMPTZ NOT NULL DEFAULT now(),
    request_id        TEXT NOT NULL,
    user_index        INTEGER NOT NULL,
    user_id           TEXT,
    route             TEXT NOT NULL,
    status_code       INTEGER NOT NULL,
    error             TEXT,
    model_name        TEXT,
    model_version     TEXT,
    country           TEXT,
    country_region    TEXT,
    source            TEXT,
    platform          TEXT,
    device_family     TEXT,
    os_version        TEXT,
    event_1           DOUBLE PRECISION,
    event_2           DOUBLE PRECISION,
    event_3           DOUBLE PRECISION,
    predicted_revenue DOUBLE PRECISION,
    payer_probability DOUBLE PRECISION,
    revenue_p10       DOUBLE PRECISION,
    revenue_p90       DOUBLE PRECISION,
    inference_time_ms DOUBLE PRECISION,
    latency_ms        DOUBLE PRECISION,
    input_data        JSONB
);
CREATE INDEX IF NOT EXISTS predictions_timestamp ON predictions (timestamp);
CREATE INDEX IF NOT EXISTS predictions_request_id ON predictions (request_id);
