//! Proctor's MySQL and MariaDB front-end: clients such as `mariadb`, `mysql` and their drivers connect
//! here instead of to the database.
//!
//! This crate owns the MySQL client/server protocol on both sides: the listener (greeting, TLS,
//! authentication with the identity's token), the login to the target with the credentials Proctor
//! holds, `KILL` routing, and the relay. What every protocol shares (the session's records,
//! guardrails and holds, result samples and client masking) is `proctor-core`'s.
//!
//! The decoders of untrusted bytes are public ([`codec`] for packets both ways, [`values`] for
//! binary-protocol values, [`auth`] for the password exchanges), so that they can be exercised on
//! their own, as the fuzz targets in `fuzz/` do.

pub mod auth;
pub mod codec;
mod errors;
mod exchange;
mod kills;
mod relay;
mod server;
mod upstream;
pub mod values;

pub use server::MysqlGateway;
