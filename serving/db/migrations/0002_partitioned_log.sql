-- The log partitioned by UTC day, keyed by the server, with a role per row.
--
-- row_key is '<attempt id>:<user index>', the attempt id made by the server for each HTTP
-- request, so every attempt of a request a client retries with one X-Request-Id is its own row;
-- request_id keeps what the client sent. role is 'champion' (the answer the client got) or
-- 'shadow' (a challenger scored on the same user afterwards, same row_key). id is insertion
-- order, for rollups that read the log incrementally. Day partitions are created ahead of time
-- and on demand by ensure_prediction_partitions; old days can be dropped whole (retention).
-- Release 1's rows are moved over: their row_key ('<request id>:<user index>') was unique too.

ALTER TABLE predictions RENAME TO predictions_release1;
ALTER INDEX predictions_pkey RENAME TO predictions_release1_pkey;
ALTER INDEX predictions_row_key_key RENAME TO predictions_release1_row_key_key;
ALTER INDEX predictions_timestamp RENAME TO predictions_release1_timestamp;
ALTER INDEX predictions_request_id RENAME TO predictions_release1_request_id;

CREATE SEQUENCE prediction_log_id_seq AS bigint;

CREATE TABLE predictions (
    id                BIGINT NOT NULL DEFAULT nextval('prediction_log_id_seq'),
    row_key           TEXT NOT NULL,
    timestamp         TIMESTAMPTZ NOT NULL,
    request_id        TEXT NOT NULL,
    user_index        INTEGER NOT NULL,
    role              TEXT NOT NULL DEFAULT 'champion' CHECK (role IN ('champion', 'shadow')),
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
    input_data        JSONB,
    CONSTRAINT prediction_log_key PRIMARY KEY (row_key, role, timestamp)
) PARTITION BY RANGE (timestamp);
ALTER SEQUENCE prediction_log_id_seq OWNED BY predictions.id;

-- Rows arrive in time order, so a block range index finds a window for a fraction of a btree's cost.
CREATE INDEX prediction_log_timestamp ON predictions USING brin (timestamp);

-- One partition per UTC day in `days`, unless it exists; returns how many were created.
CREATE FUNCTION ensure_prediction_partitions(days date[]) RETURNS integer
LANGUAGE plpgsql
-- Creating a partition locks the parent table: never queue for long behind a slow reader.
SET lock_timeout = '5s'
AS $$
DECLARE
    day date;
    partition text;
    created integer := 0;
BEGIN
    -- Two writers creating the same partition at once: the second waits, then finds it.
    PERFORM pg_advisory_xact_lock(hashtext('ensure_prediction_partitions'));
    FOREACH day IN ARRAY days LOOP
        partition := 'predictions_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(quote_ident(partition)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF predictions FOR VALUES FROM (%L) TO (%L)',
                           partition, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$$;

SELECT ensure_prediction_partitions(ARRAY(
    SELECT DISTINCT (timestamp AT TIME ZONE 'UTC')::date FROM predictions_release1
    UNION SELECT (now() AT TIME ZONE 'UTC')::date + k FROM generate_series(0, 2) AS k));

INSERT INTO predictions (id, row_key, timestamp, request_id, user_index, role, user_id, route, status_code,
                         error, model_name, model_version, country, country_region, source, platform,
                         device_family, os_version, event_1, event_2, event_3, predicted_revenue,
                         payer_probability, revenue_p10, revenue_p90, inference_time_ms, latency_ms, input_data)
SELECT nextval('prediction_log_id_seq'), row_key, timestamp, request_id, user_index, 'champion', user_id, route,
       status_code, error, model_name, model_version, country, country_region, source, platform,
       device_family, os_version, event_1, event_2, event_3, predicted_revenue, payer_probability,
       revenue_p10, revenue_p90, inference_time_ms, latency_ms, input_data
FROM (SELECT * FROM predictions_release1 ORDER BY id) AS release1;

DROP TABLE predictions_release1;
