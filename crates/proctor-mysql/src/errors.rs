//! The errors Proctor itself answers MySQL clients with: MySQL's own error codes and SQLSTATEs, so
//! that drivers react as they would to the server, and messages that say what to do.

use proctor_core::guard::{Refusal, RefusalKind};

use crate::codec;

/// An ERR packet's content.
#[derive(Clone, Debug)]
pub struct MysqlError {
    pub code: u16,
    pub sqlstate: &'static str,
    pub message: String,
}

impl MysqlError {
    fn new(code: u16, sqlstate: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            sqlstate,
            message: message.into(),
        }
    }

    /// The ERR packet's payload.
    pub fn packet(&self) -> Vec<u8> {
        codec::err_packet(self.code, self.sqlstate, &self.message)
    }
}

/// ER_HANDSHAKE_ERROR: the login exchange went wrong.
pub fn handshake(why: String) -> MysqlError {
    MysqlError::new(1043, "08S01", format!("Bad handshake: {why}"))
}

/// ER_ACCESS_DENIED_ERROR.
pub fn access_denied(message: &str) -> MysqlError {
    MysqlError::new(1045, "28000", message)
}

/// ER_BAD_DB_ERROR: the database named no Proctor connection.
pub fn unknown_connection(name: &str) -> MysqlError {
    MysqlError::new(
        1049,
        "42000",
        format!("Unknown connection '{name}' in Proctor: set the database to the name of a Proctor connection you may use"),
    )
}

/// ER_DBACCESS_DENIED_ERROR: the identity may not use the connection.
pub fn not_allowed(identity: &str, connection: &str) -> MysqlError {
    MysqlError::new(
        1044,
        "42000",
        format!("Identity '{identity}' may not use connection '{connection}': ask the Proctor operators to add you (or one of your groups) to its allow list"),
    )
}

/// ER_BAD_DB_ERROR: the connection is served by another protocol's listener.
pub fn other_protocol(connection: &str, kind: &str) -> MysqlError {
    MysqlError::new(
        1049,
        "42000",
        format!("Connection '{connection}' is a {kind} connection, not a MySQL one: connect to Proctor's {kind} port with a {kind} client"),
    )
}

/// ER_UNKNOWN_ERROR: the target cannot be reached or refuses Proctor.
pub fn unavailable(connection: &str, why: &str) -> MysqlError {
    MysqlError::new(
        1105,
        "HY000",
        format!(
            "Proctor could not open connection '{connection}': {why}. Tell the Proctor operators."
        ),
    )
}

/// ER_UNKNOWN_ERROR: the journal failed, so nothing is forwarded.
pub fn journal_failed() -> MysqlError {
    MysqlError::new(
        1105,
        "HY000",
        "Proctor cannot record this session right now, so nothing was sent to the database. Tell the Proctor operators: the journal is failing.",
    )
}

/// ER_NOT_SUPPORTED_YET: something Proctor does not pass through.
pub fn not_supported(message: &str) -> MysqlError {
    MysqlError::new(1235, "42000", message)
}

/// ER_NET_PACKET_TOO_LARGE.
pub fn packet_too_large(max: usize) -> MysqlError {
    MysqlError::new(
        1153,
        "08S01",
        format!(
            "Got a packet bigger than Proctor's limit of {max} bytes ([mysql] max_packet_bytes)"
        ),
    )
}

/// ER_MALFORMED_PACKET: bytes that are not the protocol.
pub fn malformed(why: &str) -> MysqlError {
    MysqlError::new(
        1835,
        "HY000",
        format!("Malformed communication packet: {why}"),
    )
}

/// ER_UNKNOWN_COM_ERROR.
pub fn unknown_command(command: u8) -> MysqlError {
    MysqlError::new(
        1047,
        "08S01",
        format!("Unknown command 0x{command:02x}: Proctor does not pass it through"),
    )
}

/// ER_UNKNOWN_STMT_HANDLER: a prepared statement id the session does not hold.
pub fn unknown_statement(id: u32) -> MysqlError {
    MysqlError::new(
        1243,
        "HY000",
        format!("Unknown prepared statement handler ({id}) given to Proctor"),
    )
}

/// ER_TOO_MANY_USER_CONNECTIONS-like limit on prepared statements.
pub fn too_many_statements(max: usize) -> MysqlError {
    MysqlError::new(
        1461,
        "42000",
        format!("Can't create more than {max} prepared statements in one Proctor session ([mysql] max_prepared_statements)"),
    )
}

/// ER_DBACCESS_DENIED_ERROR: `USE` of a database the connection does not name.
pub fn other_database(wanted: &str, allowed: &str) -> MysqlError {
    MysqlError::new(
        1044,
        "42000",
        format!("This Proctor connection reaches database '{allowed}' only, not '{wanted}': connect through the connection for that database"),
    )
}

/// ER_NO_SUCH_THREAD: a `KILL` of an id that is not one of the identity's sessions.
pub fn no_such_session(id: u32) -> MysqlError {
    MysqlError::new(
        1094,
        "HY000",
        format!(
            "Unknown thread id: {id} (Proctor kills only your own sessions on the same connection)"
        ),
    )
}

/// ER_SERVER_SHUTDOWN.
pub fn shutting_down() -> MysqlError {
    MysqlError::new(
        1053,
        "08S01",
        "Proctor is shutting down; reconnect in a moment",
    )
}

/// A statement the guardrails refused: ER_SPECIFIC_ACCESS_DENIED_ERROR for a denial,
/// ER_QUERY_INTERRUPTED for a withdrawn hold.
pub fn refused(refusal: Refusal) -> MysqlError {
    let message = match refusal.hint {
        Some(hint) => format!("{}. {hint}", refusal.message),
        None => refusal.message,
    };
    match refusal.kind {
        RefusalKind::Denied => MysqlError::new(1227, "42000", message),
        RefusalKind::Withdrawn => MysqlError::new(1317, "70100", message),
    }
}
