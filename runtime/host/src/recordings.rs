//! Recordings: WAV files a call's media writes while it records, in the data directory's `recordings/`,
//! each with a JSON description beside it; listed, fetched and deleted through the admin API
//! (`/v1/recordings`).
//!
//! A recording is written as it goes, from the call's media task: the samples are appended to
//! `<id>.wav.part` through a buffer, and when the recording ends the WAV header gets its sizes, the
//! description is written and the file takes its name. A recording that is cut off (the server stopped)
//! stays a `.part` file and is not listed.
//!
//! An app with a `media.recording_hook` gets each kept recording posted there: the WAV file as the body
//! (`audio/wav`), its description in the query, signed as hooks are (`Jambonz-Signature` over the body)
//! when the app has a hook secret, and retried on a transport failure or a 5xx.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use callwright_driver::media::RecordingSink;
use callwright_media::RecordingEnd;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::names::StoreName;

/// The bytes of a WAV header as we write it (RIFF, `fmt ` of 16 bytes, `data`).
const WAV_HEADER: u64 = 44;
/// How much a recording buffers before it writes (about 4 s of 8 kHz mono).
const WRITE_BUFFER: usize = 64 * 1024;
/// Attempts at posting a recording to its hook, and the pause before each retry.
const POST_ATTEMPTS: u32 = 3;
const POST_RETRY_PAUSE: Duration = Duration::from_secs(2);
/// How long one post may take (a recording may be up to an hour: 57 MB of 8 kHz stereo).
const POST_TIMEOUT: Duration = Duration::from_secs(120);

/// A recording as `GET /v1/recordings` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordingInfo {
    /// Its id (`GET /v1/recordings/{id}` gives the WAV file).
    pub id: String,
    /// The call it was made on.
    pub call: String,
    /// When it started (seconds since the UNIX epoch).
    pub started_at: u64,
    /// Its length in ms.
    pub duration_ms: u64,
    /// Samples per second.
    pub sample_rate: u32,
    /// 1 (mono) or 2 (stereo: what the far end sent left, what we sent right).
    pub channels: u16,
    /// Why it ended: `max-length`, `silence`, `no-input`, `key`, `stopped`.
    pub ended_by: String,
    /// The key that ended it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The WAV file's size.
    pub bytes: u64,
}

/// The recordings of a server.
pub struct RecordingStore {
    dir: PathBuf,
}

impl RecordingStore {
    /// The store in `<data_dir>/recordings`, created when missing.
    pub fn open(data_dir: &Path) -> anyhow::Result<RecordingStore> {
        let dir = data_dir.join("recordings");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(RecordingStore { dir })
    }

    /// A new recording of call `call` at `sample_rate` with `channels`, its file open and its header written.
    pub fn create(&self, call: &str, sample_rate: u32, channels: u16) -> std::io::Result<RecordingWriter> {
        let id = new_id();
        let part = self.dir.join(format!("{id}.wav.part"));
        let mut file = BufWriter::with_capacity(WRITE_BUFFER, File::create(&part)?);
        file.write_all(&wav_header(sample_rate, channels, 0))?;
        let started_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let info = RecordingInfo {
            id,
            call: call.to_string(),
            started_at,
            duration_ms: 0,
            sample_rate,
            channels,
            ended_by: String::new(),
            key: None,
            bytes: WAV_HEADER,
        };
        Ok(RecordingWriter { file: Some(file), part, dir: self.dir.clone(), info, failed: None, upload: None })
    }

    /// Every finished recording, oldest first.
    pub fn list(&self) -> Vec<RecordingInfo> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut list: Vec<RecordingInfo> = entries
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "json"))
            .filter_map(|entry| serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok())
            .collect();
        list.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        list
    }

    /// A recording's description.
    pub fn info(&self, id: &StoreName) -> Option<RecordingInfo> {
        serde_json::from_slice(&std::fs::read(self.dir.join(format!("{id}.json"))).ok()?).ok()
    }

    /// A recording's WAV file.
    pub fn wav(&self, id: &StoreName) -> Option<Vec<u8>> {
        self.info(id)?;
        std::fs::read(self.dir.join(format!("{id}.wav"))).ok()
    }

    /// Deletes a recording; false when there was none.
    pub fn delete(&self, id: &StoreName) -> bool {
        let described = std::fs::remove_file(self.dir.join(format!("{id}.json"))).is_ok();
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.wav")));
        described
    }
}

/// A recording being written (see the module documentation); the call's media task feeds it.
pub struct RecordingWriter {
    file: Option<BufWriter<File>>,
    part: PathBuf,
    dir: PathBuf,
    info: RecordingInfo,
    /// The first write error: what came after it is dropped, and the recording is not kept.
    failed: Option<std::io::Error>,
    /// Where to post it once kept.
    upload: Option<RecordingUpload>,
}

/// Where an app's finished recordings are posted, and the secret that signs them.
#[derive(Clone)]
pub(crate) struct RecordingUpload {
    pub(crate) client: reqwest::Client,
    pub(crate) url: reqwest::Url,
    pub(crate) secret: Option<String>,
}

impl RecordingWriter {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// Posts the recording to `upload` once it is kept.
    pub(crate) fn post_when_kept(&mut self, upload: RecordingUpload) {
        self.upload = Some(upload);
    }

    fn finish_file(&mut self, end: RecordingEnd, duration: Duration) -> std::io::Result<()> {
        let Some(file) = self.file.take() else { return Ok(()) };
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        let mut file = file.into_inner().map_err(|error| error.into_error())?;
        let data = self.info.bytes - WAV_HEADER;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&wav_header(self.info.sample_rate, self.info.channels, data as u32))?;
        file.sync_data()?;
        let (ended_by, key) = match end {
            RecordingEnd::MaxLength => ("max-length", None),
            RecordingEnd::Silence => ("silence", None),
            RecordingEnd::NoInput => ("no-input", None),
            RecordingEnd::Key(key) => ("key", Some(key.to_string())),
            RecordingEnd::Stopped => ("stopped", None),
        };
        self.info.ended_by = ended_by.to_string();
        self.info.key = key;
        self.info.duration_ms = duration.as_millis() as u64;
        std::fs::rename(&self.part, self.dir.join(format!("{}.wav", self.info.id)))?;
        let description = serde_json::to_vec_pretty(&self.info).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.join(format!("{}.json", self.info.id)), description)
    }
}

impl RecordingSink for RecordingWriter {
    fn write(&mut self, samples: &[i16]) {
        let Some(file) = self.file.as_mut().filter(|_| self.failed.is_none()) else { return };
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for sample in samples {
            bytes.extend_from_slice(&sample.to_le_bytes());
        }
        match file.write_all(&bytes) {
            Ok(()) => self.info.bytes += bytes.len() as u64,
            Err(error) => self.failed = Some(error),
        }
    }

    fn finish(&mut self, end: RecordingEnd, duration: Duration) {
        match self.finish_file(end, duration) {
            Ok(()) => {
                info!(recording = %self.info.id, call = %self.info.call, duration_ms = self.info.duration_ms, ended_by = %self.info.ended_by, "recording kept");
                // The media task runs on the runtime; a writer finished outside one (a unit test) posts nothing.
                if let (Some(upload), Ok(runtime)) = (self.upload.take(), tokio::runtime::Handle::try_current()) {
                    let path = self.dir.join(format!("{}.wav", self.info.id));
                    runtime.spawn(post_recording(upload, path, self.info.clone()));
                }
            }
            Err(error) => {
                warn!(recording = %self.info.id, call = %self.info.call, %error, "recording lost");
                let _ = std::fs::remove_file(&self.part);
            }
        }
    }
}

impl Drop for RecordingWriter {
    fn drop(&mut self) {
        // Never finished (the task ended without a word): keep nothing half-written.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// Posts a kept recording to its hook: the WAV file, its description in the query. Retried on a transport
/// failure or a 5xx; a 4xx is the hook's answer and final.
async fn post_recording(upload: RecordingUpload, path: PathBuf, info: RecordingInfo) {
    let read = tokio::task::spawn_blocking(move || std::fs::read(path)).await;
    let wav = match read.map_err(std::io::Error::other).and_then(|read| read) {
        Ok(wav) => wav,
        Err(error) => return warn!(recording = %info.id, %error, "recording not posted: it cannot be read"),
    };
    let mut url = upload.url.clone();
    url.query_pairs_mut()
        .append_pair("recording_id", &info.id)
        .append_pair("call_id", &info.call)
        .append_pair("started_at", &info.started_at.to_string())
        .append_pair("duration_ms", &info.duration_ms.to_string())
        .append_pair("ended_by", &info.ended_by)
        .append_pair("sample_rate", &info.sample_rate.to_string())
        .append_pair("channels", &info.channels.to_string());
    if let Some(key) = &info.key {
        url.query_pairs_mut().append_pair("key", key);
    }
    for attempt in 1..=POST_ATTEMPTS {
        let mut request = upload
            .client
            .post(url.clone())
            .timeout(POST_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "audio/wav")
            .body(wav.clone());
        if let Some(secret) = &upload.secret {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            request = request.header(crate::hooks::SIGNATURE_HEADER, crate::hooks::signature(secret, now, &wav));
        }
        let outcome = request.send().await;
        let host = url.host_str().unwrap_or_default();
        match outcome {
            Ok(response) if response.status().is_success() => {
                return info!(recording = %info.id, host, status = response.status().as_u16(), "recording posted");
            }
            Ok(response) if response.status().is_client_error() => {
                return warn!(recording = %info.id, host, status = response.status().as_u16(), "recording refused by its hook");
            }
            Ok(response) => {
                warn!(recording = %info.id, host, attempt, status = response.status().as_u16(), "recording hook failed")
            }
            Err(error) => {
                warn!(recording = %info.id, host, attempt, error = %error.without_url(), "recording hook failed")
            }
        }
        if attempt < POST_ATTEMPTS {
            tokio::time::sleep(POST_RETRY_PAUSE).await;
        }
    }
    warn!(recording = %info.id, "recording not posted: its hook kept failing (it stays in the data directory)");
}

/// A recording id: `r` and 16 hex digits from the clock and a counter (a valid [`StoreName`]).
fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("r{:016x}", nanos.wrapping_add(count.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// A PCM WAV header for `data` bytes of 16-bit samples.
fn wav_header(sample_rate: u32, channels: u16, data: u32) -> [u8; WAV_HEADER as usize] {
    let mut header = [0u8; WAV_HEADER as usize];
    let block = channels * 2;
    header[..4].copy_from_slice(b"RIFF");
    header[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    header[8..16].copy_from_slice(b"WAVEfmt ");
    header[16..20].copy_from_slice(&16u32.to_le_bytes());
    header[20..22].copy_from_slice(&1u16.to_le_bytes());
    header[22..24].copy_from_slice(&channels.to_le_bytes());
    header[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    header[28..32].copy_from_slice(&(sample_rate * u32::from(block)).to_le_bytes());
    header[32..34].copy_from_slice(&block.to_le_bytes());
    header[34..36].copy_from_slice(&16u16.to_le_bytes());
    header[36..40].copy_from_slice(b"data");
    header[40..44].copy_from_slice(&data.to_le_bytes());
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_recording_is_a_wav_file_that_decodes_to_what_was_written() {
        let dir = std::env::temp_dir().join(format!("callwright-recordings-{}", std::process::id()));
        let store = RecordingStore::open(&dir).unwrap();
        let mut writer = store.create("call-1", 8000, 1).unwrap();
        let id = writer.id().to_string();
        let samples: Vec<i16> = (0..8000).map(|n| (n % 100) as i16).collect();
        writer.write(&samples[..4000]);
        writer.write(&samples[4000..]);
        writer.finish(RecordingEnd::Key('#'), Duration::from_secs(1));
        drop(writer);
        let name = StoreName::parse("recording", &id).unwrap();
        let info = store.info(&name).unwrap();
        assert_eq!((info.duration_ms, info.ended_by.as_str(), info.key.as_deref()), (1000, "key", Some("#")));
        let decoded = callwright_media::wav::decode(&store.wav(&name).unwrap(), 8000).unwrap();
        assert_eq!(decoded.samples, samples);
        assert_eq!(store.list(), vec![info]);
        assert!(store.delete(&name) && store.list().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_recording_never_finished_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("callwright-recordings-cut-{}", std::process::id()));
        let store = RecordingStore::open(&dir).unwrap();
        let mut writer = store.create("call-1", 8000, 1).unwrap();
        writer.write(&[1, 2, 3]);
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.join("recordings")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
