-- /stats at scale: the log's champion rows summed per UTC hour and per grouping /stats reports
-- (serving/db/stats.py), kept current from the log by id like prediction_outcomes (serving/db/feed.py),
-- so a window is a few thousand cells plus the rows of its first partial hour and of the log's tail.
--
-- dim: 'r' route (a) and status code (b), every measure; for answered rows only (status 200):
-- 'c' upper(country), 'p' platform class, 'v' model name (a) and version (b), 's' source as sent,
-- 'e' predicted revenue bucket and 'q' payer probability bucket (numbers of width_bucket over
-- serving/db/dashboard.py's edges, when both values are present); 'l' latency bin (a request's row at
-- user index 0 with a latency: round(ln(ms) * 200), 0.25 % either side of the bin's value).
CREATE TABLE stats_cells (
    hour      TIMESTAMPTZ NOT NULL,
    dim       "char" NOT NULL,
    a         TEXT,
    b         TEXT,
    n         BIGINT NOT NULL,          -- rows
    n_first   BIGINT NOT NULL,          -- rows at user index 0: requests
    pred_n    BIGINT NOT NULL,          -- rows with a predicted revenue, and their sum, min, max
    pred_sum  DOUBLE PRECISION NOT NULL,
    pred_min  DOUBLE PRECISION,
    pred_max  DOUBLE PRECISION,
    prob_n    BIGINT NOT NULL,          -- rows with a payer probability, and their sum
    prob_sum  DOUBLE PRECISION NOT NULL,
    inf_n     BIGINT NOT NULL,          -- rows with an inference time, and their sum
    inf_sum   DOUBLE PRECISION NOT NULL,
    lat_sum   DOUBLE PRECISION NOT NULL,  -- 'l' cells: summed latency of their n requests
    first_ts  TIMESTAMPTZ,
    last_ts   TIMESTAMPTZ,
    CONSTRAINT stats_cells_key UNIQUE NULLS NOT DISTINCT (hour, dim, a, b)
);

-- How far the refresher has read: log ids up to this are in stats_cells.
CREATE TABLE stats_feed (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_log_id BIGINT NOT NULL
);
INSERT INTO stats_feed VALUES (1, 0);
