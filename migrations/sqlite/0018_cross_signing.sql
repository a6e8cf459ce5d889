-- Cross-signing keys (`POST /keys/device_signing/upload`): one per user
-- and usage (`master`, `self_signing`, `user_signing`), canonical JSON as
-- uploaded; `key_id` is `ed25519:<public key>`.
CREATE TABLE cross_signing_keys (
    user_id          TEXT NOT NULL,
    usage            TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    key_json         TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (user_id, usage)
);
-- Signatures uploaded with `POST /keys/signatures/upload`, merged into the
-- signed key when it is queried. The target is a device (its ID) or a
-- cross-signing key (`ed25519:<public key>`).
CREATE TABLE key_signatures (
    target_user_id  TEXT NOT NULL,
    target_key      TEXT NOT NULL,
    signer_user_id  TEXT NOT NULL,
    signer_key_id   TEXT NOT NULL,
    signature       TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key, signer_user_id, signer_key_id)
);
-- A signature of another user's master key by a user-signing key is shown
-- only to the signer (the spec keeps it private): their other devices
-- learn the target changed from this stream, in `device_lists.changed`.
CREATE TABLE user_signature_changes (
    signer_user_id   TEXT NOT NULL,
    target_user_id   TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (signer_user_id, stream_ordering, target_user_id)
);
