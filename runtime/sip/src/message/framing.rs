//! Framing a byte stream (TCP) into messages by Content-Length (RFC 3261 §18.3), with RFC 5626 keep-alives.

use std::fmt;

use super::parse::{MAX_MESSAGE_SIZE, find_end_of_headers};

/// What [`StreamFramer::next_frame`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message, to give to [`super::Message::parse`].
    Message(Vec<u8>),
    /// A double-CRLF keep-alive ping; RFC 5626 §4.4.1 asks for a single CRLF back.
    KeepAlive,
}

/// The stream cannot be framed any further; the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramingError {
    /// An unterminated header section grew past the size limit.
    TooLarge(usize),
    /// A header section arrived whole, but its Content-Length takes the message past the size limit. The
    /// header section is kept so a request can still be answered 513 before the connection closes.
    BodyTooLarge {
        /// The message's size by its Content-Length.
        size: usize,
        /// The header section, up to and including the blank line.
        head: Vec<u8>,
    },
    /// Content-Length missing a number, so the next message's start is unknown.
    BadContentLength(String),
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::TooLarge(n) => {
                write!(f, "stream message of {n}+ bytes exceeds {MAX_MESSAGE_SIZE}")
            }
            FramingError::BodyTooLarge { size, .. } => {
                write!(f, "stream message of {size} bytes (by its Content-Length) exceeds {MAX_MESSAGE_SIZE}")
            }
            FramingError::BadContentLength(v) => {
                write!(f, "unframeable stream: bad Content-Length {v:?}")
            }
        }
    }
}

impl std::error::Error for FramingError {}

/// Accumulates stream bytes and cuts complete messages out of them.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no end of headers, so a slow sender is not rescanned from
    /// the start on every read (that made a byte-at-a-time sender cost quadratic time).
    scanned: usize,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a complete message.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        loop {
            if self.buffer.starts_with(b"\r\n\r\n") {
                self.buffer.drain(..4);
                self.scanned = 0;
                return Ok(Some(Frame::KeepAlive));
            }
            if self.buffer.starts_with(b"\r\n") && self.buffer.len() >= 3 && self.buffer[2] != b'\r' {
                self.buffer.drain(..2);
                self.scanned = 0;
                continue;
            }
            if self.buffer.first() == Some(&b'\n') {
                self.buffer.drain(..1);
                self.scanned = 0;
                continue;
            }
            break;
        }
        if self.buffer.starts_with(b"\r") && self.buffer.len() < 4 {
            return Ok(None);
        }
        // The blank line may straddle the previous scan's end: look back 3 bytes.
        let from = self.scanned.saturating_sub(3);
        let Some((body_start, section_len)) =
            find_end_of_headers(&self.buffer[from..]).map(|(body, section)| (body + from, section + from))
        else {
            if self.buffer.len() > MAX_MESSAGE_SIZE {
                return Err(FramingError::TooLarge(self.buffer.len()));
            }
            self.scanned = self.buffer.len();
            return Ok(None);
        };
        self.scanned = section_len;
        let content_length = content_length(&self.buffer[..section_len])?;
        // A Content-Length near usize::MAX must be refused, not wrap.
        let total = body_start.saturating_add(content_length);
        if total > MAX_MESSAGE_SIZE {
            return Err(FramingError::BodyTooLarge { size: total, head: self.buffer[..body_start].to_vec() });
        }
        if self.buffer.len() < total {
            return Ok(None);
        }
        let rest = self.buffer.split_off(total);
        self.scanned = 0;
        Ok(Some(Frame::Message(std::mem::replace(&mut self.buffer, rest))))
    }
}

/// Reads Content-Length (or `l`) from a raw header section; absent means 0 on a stream.
fn content_length(section: &[u8]) -> Result<usize, FramingError> {
    let text = String::from_utf8_lossy(section);
    for line in text.split('\n').skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let value = value.trim();
            return value
                .parse()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| FramingError::BadContentLength(value.to_string()));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nl: 5\r\n\r\nhello";

    #[test]
    fn a_content_length_of_usize_max_is_too_large_not_an_overflow() {
        let mut framer = StreamFramer::new();
        framer.push(format!("MESSAGE sip:a@b SIP/2.0\r\nContent-Length: {}\r\n\r\n", usize::MAX).as_bytes());
        assert!(matches!(framer.next_frame(), Err(FramingError::BodyTooLarge { size: usize::MAX, .. })));
    }

    #[test]
    fn frames_split_and_joined_messages() {
        let mut framer = StreamFramer::new();
        let mut stream = MESSAGE.to_vec();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MESSAGE);
        let mut frames = Vec::new();
        for byte in &stream {
            framer.push(std::slice::from_ref(byte));
            while let Some(frame) = framer.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, [Frame::Message(MESSAGE.to_vec()), Frame::KeepAlive, Frame::Message(MESSAGE.to_vec())]);
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn a_byte_at_a_time_sender_is_scanned_once() {
        let mut framer = StreamFramer::new();
        let mut header = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
        header.resize(60_000, b'a');
        for byte in &header {
            framer.push(std::slice::from_ref(byte));
            assert_eq!(framer.next_frame(), Ok(None));
            // Everything pushed so far is known to hold no blank line: the next read scans 4 bytes, not all.
            assert_eq!(framer.scanned, framer.buffer.len());
        }
        framer.push(b"\r\n\r\n");
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Message(_)))));
    }

    #[test]
    fn refuses_oversized_and_unframeable() {
        let mut framer = StreamFramer::new();
        framer.push(&vec![b'a'; MAX_MESSAGE_SIZE + 1]);
        assert!(matches!(framer.next_frame(), Err(FramingError::TooLarge(_))));
        // A whole header section announcing too large a body is handed back, to be answered 513.
        let mut framer = StreamFramer::new();
        let head = b"INVITE sip:a@b SIP/2.0\r\nl: 70000\r\n\r\n";
        framer.push(head);
        let expected = FramingError::BodyTooLarge { size: head.len() + 70_000, head: head.to_vec() };
        assert_eq!(framer.next_frame(), Err(expected));
        let mut framer = StreamFramer::new();
        framer.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(framer.next_frame(), Err(FramingError::BadContentLength(_))));
    }
}
