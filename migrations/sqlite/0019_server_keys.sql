-- Other servers' signing keys, fetched from them (or a notary) and
-- verified: each key with the time until which it may verify signatures
-- (`valid_until_ts` of a current key, capped at a week after fetching;
-- `expired_ts` of an old one).
CREATE TABLE server_signing_keys (
    server_name     TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    valid_until_ts  BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
-- Each server's last key response as it signed it, served again when this
-- server answers as a notary (`/_matrix/key/v2/query`).
CREATE TABLE server_key_responses (
    server_name     TEXT NOT NULL PRIMARY KEY,
    response_json   TEXT NOT NULL,
    valid_until_ts  BIGINT NOT NULL,
    fetched_ts      BIGINT NOT NULL
);
