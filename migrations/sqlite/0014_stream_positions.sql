-- The stream-position allocator's high-water mark (service::streams): it
-- hands out positions only up to `bound`, raising it here before it goes
-- past, and a start resumes above it. A position handed out but never
-- stored (a repeated transaction ID, a failed append) may already be
-- covered by a client's sync token, so it must not be handed out again.
CREATE TABLE stream_positions (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    bound  BIGINT NOT NULL
);
-- Earlier versions resumed from the streams' maximum, and a token they
-- issued may be ahead of it by every position they dropped: a database
-- with a history resumes a million positions above it (gaps cost
-- nothing). A new database starts at 0.
INSERT INTO stream_positions (id, bound)
SELECT 1, CASE WHEN p = 0 THEN 0 ELSE p + 1000000 END FROM (
    SELECT MAX(p) AS p FROM (
        SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM events
        UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM account_data
        UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM receipts
        UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM to_device_messages
        UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM presence
        UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM deliveries
    ) AS streams
) AS highest;
