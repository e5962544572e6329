//! Conferences: one mixing task per conference, which the media tasks of its calls join as they join a
//! bridge ([`crate::media::MediaLeg::bridge`]): each member's task hands the conference every frame it
//! receives, and sends what the conference gives it back, the mix of every other member.
//!
//! The task ticks every 20 ms. Each tick it takes one frame from each member (silence from a member whose
//! frame has not come), sums the frames of the members not muted, and sends each member the sum less its
//! own frame, clipped to 16 bits: nobody hears themselves. A member whose task has gone (its call ended)
//! is dropped; the task ends once its last member has left.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tracing::debug;

use crate::media::{BRIDGE_FRAMES_IN_FLIGHT, BridgeLink, MediaLeg};

/// How often the conference mixes: one G.711 frame.
const MIX_INTERVAL: Duration = Duration::from_millis(20);
/// The samples of one frame at 8 kHz, sent for a member whose frame length is not known yet.
const FRAME_SAMPLES: usize = 160;
/// The frames a member may be ahead before the oldest is dropped.
const MEMBER_QUEUE_FRAMES: usize = 3;

/// A member of a conference, as [`Conference::join`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberId(u64);

enum Command {
    Join { id: MemberId, to_member: mpsc::Sender<Vec<i16>>, from_member: mpsc::Receiver<Vec<i16>>, muted: bool },
    Leave(MemberId),
    Mute(MemberId, bool),
}

/// A conference: the handle of its mixing task. Cloned handles drive the same conference.
#[derive(Debug, Clone)]
pub struct Conference {
    commands: mpsc::UnboundedSender<Command>,
    name: std::sync::Arc<str>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConferenceCommand")
    }
}

impl Conference {
    /// Starts the mixing task of a new conference called `name` (for logs).
    pub fn start(name: &str) -> Conference {
        let (commands, receiver) = mpsc::unbounded_channel();
        let name: std::sync::Arc<str> = name.into();
        tokio::spawn(mix(receiver, name.clone()));
        Conference { commands, name }
    }

    /// Whether its task still runs (it ends with its last member).
    pub fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Joins `leg` (leaving any bridge or conference it was in); `None` if the conference has ended.
    pub fn join(&self, leg: &MediaLeg, muted: bool) -> Option<MemberId> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = MemberId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let (to_member, from_conference) = mpsc::channel(BRIDGE_FRAMES_IN_FLIGHT);
        let (to_conference, from_member) = mpsc::channel(BRIDGE_FRAMES_IN_FLIGHT);
        self.commands.send(Command::Join { id, to_member, from_member, muted }).ok()?;
        leg.link(BridgeLink::new(to_conference, from_conference));
        Some(id)
    }

    /// Mutes or unmutes a member: a muted member hears the others, and no one hears it.
    pub fn mute(&self, member: MemberId, muted: bool) {
        let _ = self.commands.send(Command::Mute(member, muted));
    }

    /// Takes a member out (its media task also leaves when its link closes).
    pub fn leave(&self, member: MemberId) {
        let _ = self.commands.send(Command::Leave(member));
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

struct Member {
    to_member: mpsc::Sender<Vec<i16>>,
    from_member: mpsc::Receiver<Vec<i16>>,
    muted: bool,
    queue: VecDeque<Vec<i16>>,
    frame_samples: usize,
    gone: bool,
}

/// The mixing task.
async fn mix(mut commands: mpsc::UnboundedReceiver<Command>, name: std::sync::Arc<str>) {
    let mut members: HashMap<MemberId, Member> = HashMap::new();
    let mut joined_once = false;
    let mut ticker = tokio::time::interval(MIX_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sum: Vec<i32> = Vec::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Join { id, to_member, from_member, muted }) => {
                    joined_once = true;
                    let member = Member { to_member, from_member, muted, queue: VecDeque::new(), frame_samples: FRAME_SAMPLES, gone: false };
                    members.insert(id, member);
                    debug!(conference = %name, members = members.len(), "member joined");
                }
                Some(Command::Leave(id)) => {
                    members.remove(&id);
                }
                Some(Command::Mute(id, muted)) => {
                    if let Some(member) = members.get_mut(&id) {
                        member.muted = muted;
                    }
                }
                None => return,
            },
            _ = ticker.tick() => {
                mix_once(&mut members, &mut sum);
                members.retain(|_, member| !member.gone);
                if joined_once && members.is_empty() {
                    debug!(conference = %name, "last member left: conference ended");
                    return;
                }
            }
        }
    }
}

/// One tick: every member's next frame in, every member's mix out.
fn mix_once(members: &mut HashMap<MemberId, Member>, sum: &mut Vec<i32>) {
    let mut frames: Vec<(MemberId, Option<Vec<i16>>)> = Vec::with_capacity(members.len());
    for (id, member) in members.iter_mut() {
        loop {
            match member.from_member.try_recv() {
                Ok(frame) => {
                    member.frame_samples = frame.len().max(1);
                    member.queue.push_back(frame);
                    if member.queue.len() > MEMBER_QUEUE_FRAMES {
                        member.queue.pop_front();
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    member.gone = true;
                    break;
                }
            }
        }
        let frame = if member.muted || member.gone { None } else { member.queue.pop_front() };
        frames.push((*id, frame));
    }
    let length = members.values().map(|m| m.frame_samples).max().unwrap_or(FRAME_SAMPLES);
    sum.clear();
    sum.resize(length, 0);
    for frame in frames.iter().filter_map(|(_, frame)| frame.as_ref()) {
        for (total, sample) in sum.iter_mut().zip(frame) {
            *total += i32::from(*sample);
        }
    }
    for (id, own) in &frames {
        let Some(member) = members.get(id).filter(|m| !m.gone) else { continue };
        let mut out: Vec<i16> = sum[..member.frame_samples.min(length)]
            .iter()
            .map(|total| (*total).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
            .collect();
        if let Some(own) = own {
            for ((sample, total), mine) in out.iter_mut().zip(sum.iter()).zip(own) {
                *sample = (total - i32::from(*mine)).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
        }
        // A member that is behind loses this frame, as a bridge would.
        let _ = member.to_member.try_send(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(frames: &[Vec<i16>], muted: bool) -> (Member, mpsc::Receiver<Vec<i16>>, mpsc::Sender<Vec<i16>>) {
        let (to_member, heard) = mpsc::channel(8);
        let (speak, from_member) = mpsc::channel(8);
        for frame in frames {
            speak.try_send(frame.clone()).unwrap();
        }
        let member =
            Member { to_member, from_member, muted, queue: VecDeque::new(), frame_samples: FRAME_SAMPLES, gone: false };
        (member, heard, speak)
    }

    #[test]
    fn each_member_hears_the_others_and_not_itself_and_the_muted_are_heard_by_no_one() {
        let (a, mut a_hears, _a) = member(&[vec![100; 160]], false);
        let (b, mut b_hears, _b) = member(&[vec![20; 160]], false);
        let (c, mut c_hears, _c) = member(&[vec![3; 160]], true);
        let mut members = HashMap::from([(MemberId(1), a), (MemberId(2), b), (MemberId(3), c)]);
        mix_once(&mut members, &mut Vec::new());
        assert_eq!(a_hears.try_recv().unwrap(), vec![20; 160]);
        assert_eq!(b_hears.try_recv().unwrap(), vec![100; 160]);
        assert_eq!(c_hears.try_recv().unwrap(), vec![120; 160], "the muted member hears everyone");
    }

    #[test]
    fn the_mix_is_clipped_and_a_member_whose_task_ended_is_dropped() {
        let (a, mut a_hears, _a) = member(&[vec![30_000; 160]], false);
        let (b, _b_hears, _b) = member(&[vec![30_000; 160]], false);
        let (c, _c_hears, c_speaks) = member(&[vec![30_000; 160]], false);
        let mut members = HashMap::from([(MemberId(1), a), (MemberId(2), b), (MemberId(3), c)]);
        mix_once(&mut members, &mut Vec::new());
        assert_eq!(a_hears.try_recv().unwrap(), vec![i16::MAX; 160]);
        drop(c_speaks);
        mix_once(&mut members, &mut Vec::new());
        members.retain(|_, m| !m.gone);
        assert_eq!(members.len(), 2, "c's task is gone");
    }
}
