//! Proctor's MySQL and MariaDB front-end: clients such as `mariadb`, `mysql` and their drivers connect
//! here instead of to the database.
//!
//! The decoders of untrusted bytes are public ([`codec`] for packets both ways, [`values`] for
//! binary-protocol values, [`auth`] for the password exchanges), so that they can be exercised on
//! their own, as the fuzz targets in `fuzz/` do.

pub mod auth;
pub mod codec;
pub mod values;
