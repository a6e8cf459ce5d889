-- To-device messages waiting for their device: delivered in every sync of
-- that device until it acknowledges them with a later token, then deleted.
CREATE TABLE to_device_messages (
    user_id          TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    sender           TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    content          TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_ordering)
);
-- PUT /sendToDevice idempotency per sending device and transaction ID.
CREATE TABLE to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
