-- Realised performance: each user's latest successful prediction per model version, with the
-- user's label, kept up to date from the log (by predictions.id) and the labels (by labels.seq);
-- and, for spans of UTC days before today, cells of grouped statistics that /performance sums
-- instead of reading every row (serving/db/outcomes.py, serving/db/performance.py).

-- The refresher reads new log rows by id. Rows arrive in id order, so a block range index finds
-- them for almost nothing per insert (a btree on id would cost every insert a page write).
CREATE INDEX prediction_log_id ON predictions USING brin (id);

-- Scores are grouped in bins of 2% (asinh is log-like above 0.01 and linear through 0, so zero,
-- tiny and negative values keep their order); see revenue_model/metrics.py for what that costs.
CREATE FUNCTION outcome_bin(x double precision) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN round(asinh(least(greatest(x, -1e300), 1e300) * 1000) * 50)::integer;

CREATE TABLE prediction_outcomes (
    user_id           TEXT NOT NULL,
    model_version     TEXT NOT NULL,
    log_id            BIGINT NOT NULL,
    timestamp         TIMESTAMPTZ NOT NULL,
    route             TEXT,
    country           TEXT,
    platform          TEXT,
    source            TEXT,
    predicted_revenue DOUBLE PRECISION NOT NULL,
    payer_probability DOUBLE PRECISION,
    revenue_p10       DOUBLE PRECISION,
    revenue_p90       DOUBLE PRECISION,
    prediction_bin    INTEGER NOT NULL,
    probability_bin   INTEGER,
    revenue           DOUBLE PRECISION,  -- the user's label; NULL until there is one
    revenue_bin       INTEGER,
    PRIMARY KEY (user_id, model_version)
) WITH (fillfactor = 80);  -- room on each page, so a label's update stays beside its row
CREATE INDEX prediction_outcomes_timestamp ON prediction_outcomes (timestamp);

-- How far the refresher has read: log ids and label seqs up to these are in prediction_outcomes.
CREATE TABLE outcome_feed (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    last_log_id    BIGINT NOT NULL,
    last_label_seq BIGINT NOT NULL
);
INSERT INTO outcome_feed VALUES (1, 0, 0);

-- Spans of UTC days whose cells are built and current: a day (days = 1), or 2, 4, ... 512 days
-- starting at a multiple of their length (counted from 1970-01-01), so any run of whole days is a
-- few spans. The refresher deletes every span holding a day whose rows it changed.
CREATE TABLE outcome_spans (
    start    DATE NOT NULL,
    days     INTEGER NOT NULL,
    built_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (start, days)
);

-- Per span, per grouping (dim: none, route, country, platform, source; the value as logged, its
-- ASCII letters lowercased and spaces trimmed), per model version: totals (kind 'c': every sum and
-- count, n counting unlabelled users too), and labelled users per bin of predicted revenue ('p'),
-- of payer probability ('q') and of actual revenue ('a').
CREATE TABLE outcome_cells (
    start           DATE NOT NULL,
    days            INTEGER NOT NULL,
    dim             TEXT NOT NULL,
    model_version   TEXT NOT NULL,
    value           TEXT,
    kind            "char" NOT NULL,
    bin             INTEGER,
    n               BIGINT NOT NULL,
    n_labelled      BIGINT NOT NULL,
    predicted       DOUBLE PRECISION,
    actual          DOUBLE PRECISION,
    abs_error       DOUBLE PRECISION,
    squared_error   DOUBLE PRECISION,
    brier           DOUBLE PRECISION,
    at_or_below_p90 BIGINT,
    below_p10       BIGINT,
    payers          BIGINT
);
CREATE INDEX outcome_cells_span ON outcome_cells (dim, start, days);
