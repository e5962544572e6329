//! The jitter buffer between what arrives and what a session hears: packets are put back in timestamp
//! order, held for a fixed delay, and taken out one frame per tick. A missing frame is concealed by
//! repeating the last one, fading, for a few frames, then silence; a packet that comes after its frame was
//! played is dropped and counted. When the far end's clock runs fast or its timeline jumps (a new talk
//! spurt after silence suppression, a new SSRC), the buffer resynchronises instead of growing.

use std::collections::BTreeMap;

/// Frames concealed by repetition before the buffer plays silence.
const CONCEALED_FRAMES: u32 = 3;

/// What a frame taken from the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Audio that arrived in time.
    Received,
    /// A repetition of earlier audio standing in for a lost packet.
    Concealed,
    /// Nothing: no audio yet, or too much lost.
    Silence,
}

/// Counts of what the buffer saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets that arrived after their frame was played.
    pub late: u64,
    /// Frames concealed.
    pub concealed: u64,
    /// Times the timeline was reset.
    pub resyncs: u64,
}

/// A fixed-delay jitter buffer of decoded samples.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    delay: i64,
    max_backlog: i64,
    /// The timestamp of the next sample to play, extended to 64 bits.
    cursor: Option<i64>,
    /// Decoded packets by extended timestamp.
    packets: BTreeMap<i64, Vec<i16>>,
    last_frame: Vec<i16>,
    concealed_in_a_row: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer that holds audio `delay_samples` before playing it, and resynchronises when more than
    /// `max_backlog_samples` wait.
    pub fn new(delay_samples: u32, max_backlog_samples: u32) -> JitterBuffer {
        JitterBuffer {
            delay: i64::from(delay_samples),
            max_backlog: i64::from(max_backlog_samples.max(delay_samples * 2)),
            cursor: None,
            packets: BTreeMap::new(),
            last_frame: Vec::new(),
            concealed_in_a_row: 0,
            stats: JitterStats::default(),
        }
    }

    /// What the buffer has counted.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Forgets everything (a new source).
    pub fn reset(&mut self) {
        self.cursor = None;
        self.packets.clear();
        self.concealed_in_a_row = CONCEALED_FRAMES;
    }

    /// Adds a decoded packet whose first sample has RTP `timestamp`.
    pub fn push(&mut self, timestamp: u32, samples: Vec<i16>) {
        let Some(cursor) = self.cursor else {
            self.cursor = Some(i64::from(timestamp) - self.delay);
            self.packets.insert(i64::from(timestamp), samples);
            return;
        };
        let position = cursor + crate::rtp::timestamp_distance(cursor as u32, timestamp);
        if position + samples.len() as i64 <= cursor {
            self.stats.late += 1;
            return;
        }
        if position - cursor > self.max_backlog {
            // Far ahead of what we play: the timeline jumped, or the sender's clock outran ours.
            self.stats.resyncs += 1;
            self.packets.clear();
            self.cursor = Some(position - self.delay);
        }
        self.packets.insert(position, samples);
    }

    /// Takes the next `frame.len()` samples into `frame`.
    pub fn pop(&mut self, frame: &mut [i16]) -> FrameKind {
        let Some(cursor) = self.cursor else {
            frame.fill(0);
            return FrameKind::Silence;
        };
        let end = cursor + frame.len() as i64;
        frame.fill(0);
        let mut filled = 0usize;
        for (&start, samples) in self.packets.range(..end) {
            let packet_end = start + samples.len() as i64;
            if packet_end > cursor {
                let from = (cursor.max(start) - start) as usize;
                let to = (end.min(packet_end) - start) as usize;
                let at = (cursor.max(start) - cursor) as usize;
                frame[at..at + (to - from)].copy_from_slice(&samples[from..to]);
                filled += to - from;
            }
        }
        // Packets that end within this frame are spent; one that runs past it stays for the next.
        while let Some(first) = self.packets.first_entry() {
            if *first.key() + first.get().len() as i64 > end {
                break;
            }
            first.remove();
        }
        self.cursor = Some(end);
        if filled > 0 {
            self.concealed_in_a_row = 0;
            self.last_frame.clear();
            self.last_frame.extend_from_slice(frame);
            return FrameKind::Received;
        }
        if self.concealed_in_a_row >= CONCEALED_FRAMES || self.last_frame.len() != frame.len() {
            return FrameKind::Silence;
        }
        self.concealed_in_a_row += 1;
        self.stats.concealed += 1;
        let shift = self.concealed_in_a_row;
        for (out, last) in frame.iter_mut().zip(&self.last_frame) {
            *out = last >> shift;
        }
        FrameKind::Concealed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(value: i16) -> Vec<i16> {
        vec![value; 160]
    }

    #[test]
    fn reordered_packets_play_in_order_after_the_delay() {
        let mut buffer = JitterBuffer::new(320, 8000);
        buffer.push(1000, frame_of(1));
        buffer.push(1320, frame_of(3));
        buffer.push(1160, frame_of(2));
        let mut frame = [0; 160];
        let mut heard = Vec::new();
        for _ in 0..5 {
            let kind = buffer.pop(&mut frame);
            heard.push((kind, frame[0]));
        }
        assert_eq!(
            heard,
            [
                (FrameKind::Silence, 0),
                (FrameKind::Silence, 0),
                (FrameKind::Received, 1),
                (FrameKind::Received, 2),
                (FrameKind::Received, 3)
            ]
        );
    }

    #[test]
    fn a_lost_packet_is_concealed_and_a_late_one_dropped() {
        let mut buffer = JitterBuffer::new(0, 8000);
        let mut frame = [0; 160];
        buffer.push(0, frame_of(800));
        assert_eq!(buffer.pop(&mut frame), FrameKind::Received);
        assert_eq!((buffer.pop(&mut frame), frame[0]), (FrameKind::Concealed, 400));
        buffer.push(160, frame_of(5));
        assert_eq!(buffer.stats().late, 1);
        for _ in 0..2 {
            assert_eq!(buffer.pop(&mut frame), FrameKind::Concealed);
        }
        assert_eq!(buffer.pop(&mut frame), FrameKind::Silence);
        assert_eq!(buffer.stats().concealed, 3);
    }

    #[test]
    fn packets_of_another_size_fill_our_frames() {
        let mut buffer = JitterBuffer::new(0, 8000);
        buffer.push(0, vec![7; 240]);
        buffer.push(240, vec![9; 240]);
        let mut frame = [0; 160];
        buffer.pop(&mut frame);
        assert!(frame.iter().all(|s| *s == 7));
        buffer.pop(&mut frame);
        assert!(frame[..80].iter().all(|s| *s == 7) && frame[80..].iter().all(|s| *s == 9));
    }

    #[test]
    fn a_timeline_jump_resynchronises() {
        let mut buffer = JitterBuffer::new(160, 1600);
        let mut frame = [0; 160];
        buffer.push(0, frame_of(1));
        buffer.pop(&mut frame);
        buffer.push(1_000_000, frame_of(2));
        assert_eq!(buffer.stats().resyncs, 1);
        assert_eq!(buffer.pop(&mut frame), FrameKind::Silence);
        assert_eq!((buffer.pop(&mut frame), frame[0]), (FrameKind::Received, 2));
    }
}
