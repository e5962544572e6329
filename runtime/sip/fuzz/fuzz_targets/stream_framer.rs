//! `StreamFramer` fed a byte stream in fuzzer-chosen chunks must not panic, must never hand out more bytes
//! than were pushed, and must cut the same frames (up to the first error) however the stream is chunked.
//! Every frame is given to `Message::parse`, which may fail but must not panic.
//!
//! Input layout: byte 0 gives `n = byte0 % 8`; the next `n` bytes are chunk sizes (`size + 1`, used in
//! turn, cycling); the rest is the stream. With `n == 0` the stream is pushed one byte at a time.
#![no_main]

use callwright_sip::message::{Frame, Message, StreamFramer};
use libfuzzer_sys::fuzz_target;

/// What framing a whole stream produced: the frames, and whether it stopped on an error.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Frame>,
    failed: bool,
}

/// Pushes `stream` in chunks of the given sizes, draining frames after each push, stopping at an error.
fn frame(stream: &[u8], sizes: &[usize]) -> Outcome {
    let mut framer = StreamFramer::new();
    let mut outcome = Outcome { frames: Vec::new(), failed: false };
    let (mut pushed, mut framed, mut at) = (0usize, 0usize, 0usize);
    let mut size = sizes.iter().copied().cycle();
    while at < stream.len() {
        let end = (at + size.next().unwrap_or(1)).min(stream.len());
        framer.push(&stream[at..end]);
        pushed += end - at;
        at = end;
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    framed += match &frame {
                        Frame::Message(bytes) => {
                            let _ = Message::parse(bytes);
                            bytes.len()
                        }
                        Frame::KeepAlive => 4,
                    };
                    outcome.frames.push(frame);
                }
                Ok(None) => break,
                Err(_) => {
                    outcome.failed = true;
                    return outcome;
                }
            }
            assert!(
                framed + framer.buffered() <= pushed,
                "framed {framed} + buffered {} > pushed {pushed}",
                framer.buffered()
            );
        }
    }
    assert!(framed <= stream.len(), "framed {framed} > input {}", stream.len());
    outcome
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(first % 8).min(rest.len());
    let (size_bytes, stream) = rest.split_at(count);
    let mut sizes: Vec<usize> = size_bytes.iter().map(|b| usize::from(*b) + 1).collect();
    if sizes.is_empty() {
        sizes.push(1);
    }
    let chunked = frame(stream, &sizes);
    let whole = frame(stream, &[stream.len().max(1)]);
    assert_eq!(chunked, whole, "framing depends on how the stream is chunked");
});
