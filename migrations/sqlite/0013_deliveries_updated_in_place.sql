-- Each recorder flush rewrites a (room, user) row of `deliveries`; the one
-- reader, deliveries_between, reaches the rows through the room, so the
-- index on stream_ordering only cost every flush a second index write.
DROP INDEX deliveries_stream;
