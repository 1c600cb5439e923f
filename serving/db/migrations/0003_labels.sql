-- Labels: what each user really spent in their first 7 days (USD), one row per user_id.
--
-- A later label replaces an earlier one (an upsert). seq is taken afresh on every write,
-- insertion or replacement, so the performance rollup reads the labels that changed since it
-- last looked (serving/db/outcomes.py), as it reads the log by predictions.id. source says
-- where a label came from: 'api:<request id>' or 'file:<file name>'.
CREATE SEQUENCE label_seq AS bigint;

CREATE TABLE labels (
    user_id     TEXT PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 200),
    -- NaN sorts above Infinity in PostgreSQL: this refuses both.
    revenue     DOUBLE PRECISION NOT NULL CHECK (revenue >= 0 AND revenue < 'Infinity'),
    observed_at TIMESTAMPTZ NOT NULL,
    source      TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    seq         BIGINT NOT NULL DEFAULT nextval('label_seq')
);
ALTER SEQUENCE label_seq OWNED BY labels.seq;
CREATE INDEX labels_seq ON labels (seq);
