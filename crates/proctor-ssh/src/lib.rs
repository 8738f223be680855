//! The SSH gateway: an SSH server toward users (`ssh`, `scp`, `sftp`, `rsync`) and an SSH client
//! toward the target, with every channel recorded: shells as terminal streams, exec commands with
//! their exit status, sftp and scp file by file, port forwards with their bytes.

pub mod scp;
pub mod sftp;
pub mod transfer;
