//! Proctor's PostgreSQL front-end: clients such as psql and drivers connect here instead of to the
//! database.
//!
//! This crate owns the PostgreSQL v3 wire protocol on both sides: the client-facing listener (TLS,
//! startup, SCRAM), the connection to the target with the credentials Proctor holds, cancel routing, and
//! the relay that records every statement through the Gate. It knows nothing about how events are
//! stored or which identities exist beyond what `proctor-core` tells it.

mod cancel;
mod codec;
mod guard;
mod interruptions;
mod peer;
mod relay;
mod scram;
mod server;
mod tls;
mod upstream;
mod values;

pub use server::PgGateway;
pub use tls::TlsError;
