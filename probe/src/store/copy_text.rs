//! Encoder for PostgreSQL's `COPY ... FROM STDIN` text format (pure, unit-tested).
//!
//! Columns are tab-separated, rows newline-terminated; backslash, tab, newline and carriage return
//! inside values are backslash-escaped. `bytea` is written as `\\x<hex>` and `text[]` as an array
//! literal with every element quoted.

/// Accumulates COPY rows into one buffer.
#[derive(Debug, Default)]
pub struct CopyWriter {
    buf: Vec<u8>,
    at_row_start: bool,
}

impl CopyWriter {
    pub fn with_capacity(bytes: usize) -> Self {
        CopyWriter {
            buf: Vec::with_capacity(bytes),
            at_row_start: true,
        }
    }

    fn sep(&mut self) {
        if !self.at_row_start {
            self.buf.push(b'\t');
        }
        self.at_row_start = false;
    }

    fn escaped(&mut self, s: &str) {
        for &b in s.as_bytes() {
            match b {
                b'\\' => self.buf.extend_from_slice(b"\\\\"),
                b'\t' => self.buf.extend_from_slice(b"\\t"),
                b'\n' => self.buf.extend_from_slice(b"\\n"),
                b'\r' => self.buf.extend_from_slice(b"\\r"),
                _ => self.buf.push(b),
            }
        }
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        self.sep();
        self.buf.extend_from_slice(v.to_string().as_bytes());
        self
    }

    /// A `text` or `jsonb` value.
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.sep();
        self.escaped(s);
        self
    }

    pub fn bytea(&mut self, bytes: &[u8]) -> &mut Self {
        self.sep();
        // `\x` bytea input, with its backslash escaped for COPY.
        self.buf.extend_from_slice(b"\\\\x");
        let start = self.buf.len();
        self.buf.resize(start + bytes.len() * 2, 0);
        // The slice is exactly twice the input length, so encoding cannot fail.
        let _ = hex::encode_to_slice(bytes, &mut self.buf[start..]);
        self
    }

    /// A `text[]` value: every element double-quoted, `"` and `\` backslash-escaped inside the
    /// literal, then the literal escaped for COPY.
    pub fn text_array<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.sep();
        self.buf.push(b'{');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.push(b'"');
            for ch in item.as_ref().chars() {
                match ch {
                    // Array-literal escape (`\"`, `\\`), whose backslash COPY escapes again.
                    '"' => self.buf.extend_from_slice(b"\\\\\""),
                    '\\' => self.buf.extend_from_slice(b"\\\\\\\\"),
                    _ => {
                        let mut tmp = [0u8; 4];
                        self.escaped(ch.encode_utf8(&mut tmp));
                    }
                }
            }
            self.buf.push(b'"');
        }
        self.buf.push(b'}');
        self
    }

    pub fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.at_row_start = true;
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.at_row_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(f: impl FnOnce(&mut CopyWriter)) -> String {
        let mut w = CopyWriter::with_capacity(64);
        f(&mut w);
        w.end_row();
        String::from_utf8(w.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn separates_columns_with_tabs_and_ends_rows() {
        assert_eq!(
            row(|w| {
                w.int(-5).text("a").int(7);
            }),
            "-5\ta\t7\n"
        );
    }

    #[test]
    fn escapes_specials_in_text() {
        assert_eq!(
            row(|w| {
                w.text("a\tb\nc\rd\\e");
            }),
            "a\\tb\\nc\\rd\\\\e\n"
        );
    }

    #[test]
    fn writes_bytea_as_escaped_hex() {
        assert_eq!(
            row(|w| {
                w.bytea(&[0x00, 0xff, 0x10]);
            }),
            "\\\\x00ff10\n"
        );
    }

    #[test]
    fn writes_quoted_array_literals() {
        assert_eq!(
            row(|w| {
                w.text_array::<&str>(&[]);
            }),
            "{}\n"
        );
        assert_eq!(
            row(|w| {
                w.text_array(&["e:x", "t:a,b"]);
            }),
            "{\"e:x\",\"t:a,b\"}\n"
        );
        // `"` → `\"` in the literal → `\\"` on the wire; `\` → `\\` → `\\\\`.
        assert_eq!(
            row(|w| {
                w.text_array(&["q\"\\"]);
            }),
            "{\"q\\\\\"\\\\\\\\\"}\n"
        );
        assert_eq!(
            row(|w| {
                w.text_array(&["a\nb"]);
            }),
            "{\"a\\nb\"}\n"
        );
    }
}
