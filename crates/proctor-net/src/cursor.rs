//! A bounded cursor over untrusted bytes, which every protocol's decoder reads with: each read
//! checks what is left before it takes anything, and says `None` rather than reading past the end.
//! The protocols turn a `None` into their own error.

/// A cursor over one message or packet.
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// What is left, without taking it.
    pub fn ahead(&self) -> &'a [u8] {
        self.buf
    }

    /// The next byte, without taking it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(first)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (taken, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(taken)
    }

    /// The next `N` bytes, as an array (for fixed-size integers in either byte order).
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// The bytes up to the next NUL, which is taken too but not returned.
    pub fn until_nul(&mut self) -> Option<&'a [u8]> {
        let end = self.buf.iter().position(|&b| b == 0)?;
        let (text, rest) = self.buf.split_at(end);
        self.buf = &rest[1..];
        Some(text)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_never_pass_the_end() {
        let mut cursor = Cursor::new(b"ab\0cdef");
        assert_eq!(cursor.until_nul(), Some(&b"ab"[..]));
        assert_eq!(cursor.array::<2>(), Some(*b"cd"));
        assert_eq!(
            cursor.bytes(3),
            None,
            "nothing is taken when too little is left"
        );
        assert_eq!(cursor.peek(), Some(b'e'));
        assert_eq!(cursor.until_nul(), None);
        assert_eq!(cursor.rest(), b"ef");
        assert_eq!(cursor.u8(), None);
        assert!(cursor.is_empty());
    }
}
