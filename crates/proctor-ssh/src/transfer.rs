//! What the sftp and scp trackers report: one [`FileTransfer`] per file that passed through a
//! channel, one [`FileOperation`] per change to the remote tree that moves no file content, and the
//! event body each becomes.
//!
//! It owns these types and their JSON only: no parsing, no journal, no masking. The trackers
//! ([`crate::sftp`], [`crate::scp`]) fill them in; the relay records their `to_json` bodies.

use serde_json::{json, Map, Value};

/// Every byte of the file passed and the receiving side confirmed it.
pub const COMPLETE: &str = "complete";
/// The receiving side, or the sending side, reported an error for the file.
pub const FAILED: &str = "failed";
/// The channel ended before the file did.
pub const INCOMPLETE: &str = "incomplete";

/// Which way a file's content went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the target.
    Upload,
    /// From the target to the client.
    Download,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// One file whose content passed through the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTransfer {
    /// `"sftp"` or `"scp"`.
    pub protocol: &'static str,
    /// The file's path as the client named it (lossy UTF-8); for scp, see [`crate::scp`].
    pub path: String,
    pub direction: Direction,
    /// The bytes of file content that passed.
    pub size: u64,
    /// SHA-256 of the content in file order, lowercase hex; `None` when it could not be computed,
    /// and then `note` says why.
    pub sha256: Option<String>,
    /// [`COMPLETE`], [`FAILED`] or [`INCOMPLETE`].
    pub outcome: &'static str,
    /// The error a side reported, why the hash is missing, or what else a reader needs to know.
    pub note: Option<String>,
}

impl FileTransfer {
    /// The event body: `{"protocol","path","direction","size","sha256","outcome"[,"note"]}`.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("protocol".into(), json!(self.protocol));
        body.insert("path".into(), json!(self.path));
        body.insert("direction".into(), json!(self.direction.name()));
        body.insert("size".into(), json!(self.size));
        body.insert("sha256".into(), json!(self.sha256));
        body.insert("outcome".into(), json!(self.outcome));
        if let Some(note) = &self.note {
            body.insert("note".into(), json!(note));
        }
        Value::Object(body)
    }
}

/// A change to the remote tree that moves no content, recorded when the client asks for it (its
/// outcome is not waited for): `remove`, `rename`, `mkdir`, `rmdir`, `setstat`, `symlink`,
/// `hardlink`, `copy` (a server-side copy). Only sftp has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOperation {
    pub op: &'static str,
    /// The file acted on; for `symlink` and `hardlink`, the new link.
    pub path: String,
    /// For `rename` and `copy`, the destination; for `symlink`, what the link points to; for
    /// `hardlink`, the existing file it names.
    pub to: Option<String>,
}

impl FileOperation {
    /// The event body: `{"protocol":"sftp","op","path"[,"to"]}`.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("protocol".into(), json!("sftp"));
        body.insert("op".into(), json!(self.op));
        body.insert("path".into(), json!(self.path));
        if let Some(to) = &self.to {
            body.insert("to".into(), json!(to));
        }
        Value::Object(body)
    }
}

/// What a tracker reports, in the order it learned of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRecord {
    Transfer(FileTransfer),
    Operation(FileOperation),
}

impl FileRecord {
    pub fn to_json(&self) -> Value {
        match self {
            FileRecord::Transfer(transfer) => transfer.to_json(),
            FileRecord::Operation(operation) => operation.to_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_body_has_its_fields_and_a_note_only_when_there_is_one() {
        let mut transfer = FileTransfer {
            protocol: "sftp",
            path: "/srv/report.csv".into(),
            direction: Direction::Download,
            size: 3,
            sha256: Some("ab".into()),
            outcome: COMPLETE,
            note: None,
        };
        assert_eq!(
            transfer.to_json(),
            json!({"protocol": "sftp", "path": "/srv/report.csv", "direction": "download",
                   "size": 3, "sha256": "ab", "outcome": "complete"})
        );
        transfer.sha256 = None;
        transfer.outcome = FAILED;
        transfer.note = Some("Permission denied".into());
        let body = FileRecord::Transfer(transfer).to_json();
        assert_eq!(body["sha256"], Value::Null);
        assert_eq!(body["outcome"], "failed");
        assert_eq!(body["note"], "Permission denied");
    }

    #[test]
    fn an_operation_body_names_its_destination_only_when_there_is_one() {
        let rename = FileOperation {
            op: "rename",
            path: "a".into(),
            to: Some("b".into()),
        };
        assert_eq!(
            FileRecord::Operation(rename).to_json(),
            json!({"protocol": "sftp", "op": "rename", "path": "a", "to": "b"})
        );
        let remove = FileOperation {
            op: "remove",
            path: "a".into(),
            to: None,
        };
        assert_eq!(
            remove.to_json(),
            json!({"protocol": "sftp", "op": "remove", "path": "a"})
        );
    }
}
