-- Each recorder flush rewrites a (room, user) row of `deliveries`. With no
-- index on stream_ordering (the one reader, deliveries_between, reaches
-- the rows through the room) and room left on every page, PostgreSQL
-- updates those rows in place (HOT) instead of adding index entries for
-- every flush.
DROP INDEX deliveries_stream;
ALTER TABLE deliveries SET (fillfactor = 50);
