-- GET /performance's bins as arrays: per span, grouping, value, version and kind ('p', 'q', 'a'), one
-- row holding every bin (ascending) and its labelled users, predicted and actual revenue and payers,
-- instead of a row per bin. A grouping of a month read from 2 to 5 spans was up to ~100,000 bin rows
-- summed in SQL and again in Python (3.2 s by country at a million rows); it is now a few hundred
-- rows whose arrays NumPy adds (serving/performance.py). outcome_cells keeps the totals (kind 'c').
CREATE TABLE outcome_bins (
    start         DATE NOT NULL,
    days          INTEGER NOT NULL,
    dim           TEXT NOT NULL,
    model_version TEXT NOT NULL,
    value         TEXT,
    kind          "char" NOT NULL,
    bins          INTEGER[] NOT NULL,
    n_labelled    DOUBLE PRECISION[] NOT NULL,  -- counts, exact as doubles up to 2^53
    predicted     DOUBLE PRECISION[] NOT NULL,
    actual        DOUBLE PRECISION[] NOT NULL,
    payers        DOUBLE PRECISION[] NOT NULL
);
CREATE INDEX outcome_bins_span ON outcome_bins (dim, start, days);

-- Built cells move over as they are (no span is rebuilt), in one statement: a bin row another
-- process commits meanwhile is moved or left, never deleted unmoved. A NULL bin (a user without a
-- payer probability) was never read: it is left out.
WITH moved AS (DELETE FROM outcome_cells WHERE kind <> 'c' RETURNING *)
INSERT INTO outcome_bins (start, days, dim, model_version, value, kind, bins, n_labelled, predicted, actual, payers)
SELECT start, days, dim, model_version, value, kind, array_agg(bin ORDER BY bin),
       array_agg(n_labelled::double precision ORDER BY bin), array_agg(coalesce(predicted, 0) ORDER BY bin),
       array_agg(coalesce(actual, 0) ORDER BY bin), array_agg(coalesce(payers, 0)::double precision ORDER BY bin)
FROM moved WHERE bin IS NOT NULL
GROUP BY start, days, dim, model_version, value, kind;
-- outcome_cells holds totals only from now on: a process of the previous release still building
-- spans (a rolling upgrade) fails loudly instead of writing bins no reader would see.
ALTER TABLE outcome_cells ADD CONSTRAINT outcome_cells_totals_only CHECK (kind = 'c');
