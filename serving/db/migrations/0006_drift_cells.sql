-- GET /drift at scale: the rows GET /drift counts (champion, status 200, with a predicted revenue)
-- counted per UTC hour, model version, column and key, kept current from the log by id like
-- stats_cells (serving/db/drift_cells.py), so a 24-hour window is a few thousand cells plus the rows
-- of its partial hours at both ends and of the log's tail.
--
-- Keys: a categorical column's raw value as logged (folded in Python at read time, as before); a
-- numeric column's width_bucket over the version's reference edges, as text; NULL: missing.
-- A numeric key needs the version's edges, which come from the service's reference lookup
-- (drift_versions below). Rows of a version the refresher had no edges for are counted only in
-- one cell of column '(unbucketed)': /drift reads such an hour of that version from the rows until the
-- refresher, once the version's edges are stored, recounts the hour.
CREATE TABLE drift_cells (
    hour          TIMESTAMPTZ NOT NULL,
    model_version TEXT,
    column_name   TEXT NOT NULL,
    key           TEXT,
    n             BIGINT NOT NULL,
    CONSTRAINT drift_cells_key UNIQUE NULLS NOT DISTINCT (hour, model_version, column_name, key)
);

-- The unbucketed cells, found without reading the others (the refresher's recount, the reader).
CREATE INDEX drift_cells_unbucketed ON drift_cells (hour) WHERE column_name = '(unbucketed)';

-- The reference edges of each version's numeric columns, written by the service the first time it
-- measures the version's drift (a model version's reference never changes: first one wins). The
-- refresher buckets a version's rows only once its edges are here.
CREATE TABLE drift_versions (
    model_version     TEXT PRIMARY KEY,
    event_1           DOUBLE PRECISION[] NOT NULL,
    event_2           DOUBLE PRECISION[] NOT NULL,
    event_3           DOUBLE PRECISION[] NOT NULL,
    predicted_revenue DOUBLE PRECISION[] NOT NULL,
    payer_probability DOUBLE PRECISION[] NOT NULL,
    registered_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- How far the refresher has read: log ids up to this are in drift_cells.
CREATE TABLE drift_feed (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_log_id BIGINT NOT NULL
);
INSERT INTO drift_feed VALUES (1, 0);
