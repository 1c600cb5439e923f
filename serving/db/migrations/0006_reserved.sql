-- Reserved: version 6 is the drift cells' migration (branch drift-cells). This placeholder only keeps
-- the versions 1..n without a gap on branch perf-groups; delete it when that migration is merged.
SELECT 1;
