-- EDUs waiting to be sent to another server, in order (`seq`, never reused:
-- it names the transactions that carry them); a row is
-- deleted once the destination accepted the transaction carrying it.
CREATE TABLE outbound_edus (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination  TEXT NOT NULL,
    edu_json     TEXT NOT NULL
);
CREATE INDEX outbound_edus_destination ON outbound_edus (destination, seq);
-- Transactions received from other servers, with the answer given, so that
-- a transaction sent again is answered the same and applied once.
CREATE TABLE inbound_transactions (
    origin         TEXT NOT NULL,
    txn_id         TEXT NOT NULL,
    response_json  TEXT NOT NULL,
    received_ts    BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
