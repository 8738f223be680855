//! Proctor's PostgreSQL front-end: clients such as psql and drivers connect here instead of to the
//! database.
//!
//! This crate owns the PostgreSQL v3 wire protocol on both sides: the client-facing listener (TLS,
//! startup, SCRAM), the connection to the target with the credentials Proctor holds, cancel routing, and
//! the relay that records every statement through the Gate. It knows nothing about how events are
//! stored or which identities exist beyond what `proctor-core` tells it.
//!
//! The decoders of untrusted bytes are public ([`codec`] for messages both ways and the startup
//! packet, [`scram`] for the SASL exchange, [`values`] for parameter and result values), so that they
//! can be exercised on their own, as the fuzz targets in `fuzz/` do.

mod cancel;
pub mod codec;
mod interruptions;
mod machine;
mod peer;
mod relay;
pub mod scram;
mod server;
mod upstream;
pub mod values;

pub use proctor_net::tls::TlsError;
pub use server::PgGateway;
