//! Integration tests: the real server on an ephemeral port, over SQLite and
//! PostgreSQL, driven over HTTP the way a Matrix client drives it. Modules
//! mirror the API areas they cover.

// matrix-sdk's encryption futures are deeply nested (its docs ask for this).
#![recursion_limit = "256"]

mod harness;

mod account;
mod account_data;
mod admin_cli;
mod concurrency;
mod connections;
mod cross_signing;
mod database_outage;
mod delivery;
mod devices;
mod directory;
mod discovery;
mod errors;
mod federation;
mod federation_edges;
mod federation_membership;
mod federation_reads;
mod federation_rooms;
mod hierarchy;
mod input_limits;
mod join_rules;
mod key_backup;
mod keys;
mod lifecycle;
mod login;
mod media;
mod notifications;
mod presence;
mod profile;
mod push_rules;
mod rate_limits;
mod receipts;
mod registration;
mod relations;
mod room_reads;
mod room_v12;
mod rooms;
mod sdk_client;
mod sdk_e2ee;
mod sdk_media;
mod shared_secret;
mod state_storage;
mod sweep;
mod sync;
mod sync_ws;
mod threepid;
mod to_device;
mod typing;
mod upgrade;
