-- Stored filters (POST /user/{userId}/filter). The ID is derived from the
-- filter's content, so uploading the same filter twice gives the same ID.
CREATE TABLE filters (
    user_id    TEXT NOT NULL,
    filter_id  TEXT NOT NULL,
    json       TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
