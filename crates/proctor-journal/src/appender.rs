//! The commit log's append side: the file grows in chunks whose disk blocks are reserved up front,
//! and records are copied into it through a shared memory map.
//!
//! An append is then a copy into the page cache, with no system call: once copied, a record survives a
//! crash of the gateway (`kill -9`) like one passed to `write`. A disk that fills up, or a file size
//! limit, is met when a chunk is reserved, where it is an error the writer reports (the statement is
//! refused), never while copying into the map (where it would be a fatal signal). The bytes past the
//! last record are zeros; readers stop at the first zero byte. `sync = "full"` still calls
//! `fdatasync`, which writes back what was copied through the map.
//!
//! Hand-written on `memmap2` because the reservation (`fallocate`) and the logical end are this log's
//! own; no maintained crate offers an append-only memory-mapped file with reserved growth.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use memmap2::{Advice, MmapMut, MmapOptions};

/// How much the file grows at a time, rounded up to hold the append that needs it.
const CHUNK: u64 = 1024 * 1024;

pub(crate) struct Appender {
    file: File,
    /// Maps the whole reserved file; `None` while nothing is reserved.
    map: Option<MmapMut>,
    /// Where the next record goes: the end of the last one.
    len: u64,
    /// The file's size: everything up to it has its disk blocks reserved.
    reserved: u64,
}

impl Appender {
    /// Appends to `file`, of `len` bytes of complete records (the caller cut any torn tail or
    /// unused reservation). The file must be locked by this process: another process that shortened
    /// it would make the map fault.
    pub(crate) fn new(file: File, len: u64) -> Self {
        Self {
            file,
            map: None,
            len,
            reserved: len,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Copies `bytes` after the last record; with `sync`, returns once they are on disk.
    pub(crate) fn append(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let end = self.len + bytes.len() as u64;
        if end > self.reserved {
            self.reserve(end)?;
        }
        let map = self.map.as_mut().expect("a map covers what is reserved");
        let range = self.len as usize..end as usize;
        map[range.clone()].copy_from_slice(bytes);
        if sync {
            if let Err(e) = self.file.sync_data() {
                // Not committed: readers of the file must not find it.
                map[range].fill(0);
                return Err(e);
            }
        }
        self.len = end;
        Ok(())
    }

    /// Grows the file to hold `end` bytes, reserving the disk blocks, and maps all of it.
    fn reserve(&mut self, end: u64) -> io::Result<()> {
        let size = end.div_ceil(CHUNK) * CHUNK;
        let grown = self
            .file
            .set_len(size)
            .and_then(|()| fallocate(&self.file, size));
        if let Err(e) = grown {
            let _ = self.file.set_len(self.reserved);
            return Err(e);
        }
        self.map = None;
        // SAFETY: the map covers exactly the file's size, and no process shortens the file while
        // this one holds its lock (see `new`); the map is dropped before this appender shortens it.
        let map = unsafe { MmapOptions::new().len(size as usize).map_mut(&self.file) }?;
        // Fault the pages still to be written in now, in one call, rather than once per page while
        // copying. Best effort: before Linux 5.14 they fault in on first write, as they would anyway.
        let unwritten = self.len as usize;
        let _ = map.advise_range(Advice::PopulateWrite, unwritten, size as usize - unwritten);
        self.map = Some(map);
        self.reserved = size;
        Ok(())
    }

    /// Empties the log (the store holds everything in it).
    pub(crate) fn empty(&mut self) -> io::Result<()> {
        self.map = None;
        self.file.set_len(0)?;
        self.len = 0;
        self.reserved = 0;
        Ok(())
    }
}

/// Reserves the disk blocks of the file's first `size` bytes, so that writing them cannot fail
/// for lack of space.
fn fallocate(file: &File, size: u64) -> io::Result<()> {
    let size =
        libc::off_t::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
    // SAFETY: a plain system call on an open descriptor; no memory is passed.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size) } {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_land_in_order_and_the_rest_reads_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"first\n").unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut appender = Appender::new(file, 6);
        appender.append(b"", false).unwrap();
        appender.append(b"second\n", false).unwrap();
        let large = vec![b'x'; 3 * CHUNK as usize / 2];
        appender.append(&large, true).unwrap();
        appender.append(b"\n", false).unwrap();
        assert_eq!(appender.len(), 14 + large.len() as u64);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len() as u64, 2 * CHUNK, "grown in whole chunks");
        assert!(on_disk.starts_with(b"first\nsecond\nxxx"));
        let end = appender.len() as usize;
        assert_eq!(on_disk[end - 1], b'\n');
        assert!(on_disk[end..].iter().all(|&b| b == 0));

        appender.empty().unwrap();
        appender.append(b"again\n", false).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"again\n\0"));
    }

    #[test]
    fn a_file_that_cannot_grow_refuses_the_append_and_keeps_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"kept\n").unwrap();
        let mut appender = Appender::new(File::open(&path).unwrap(), 5);
        assert!(appender.append(b"refused\n", false).is_err());
        assert_eq!(appender.len(), 5);
        assert_eq!(std::fs::read(&path).unwrap(), b"kept\n");
    }
}
