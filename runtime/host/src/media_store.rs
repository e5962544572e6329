//! The audio calls play, ready to stream (and, in [`MediaStore::recordings`], what they record): files uploaded to the server (`PUT /v1/media/{name}`, kept in
//! the data directory's `media/`), WAV files at http(s) URLs (fetched through the app's hook allow list),
//! and speech from the built-in provider, flite, run as a process of its own (it is not linked in) and
//! cached on disk under `cache/speech/` by a hash of voice and text.
//!
//! Everything is decoded once to samples at the session's rate and kept in a bounded in-memory cache
//! shared by every call, so a prompt a thousand calls play is decoded and held once.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use callwright_driver::conference::Conference;
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use crate::apps::HookSettings;
use crate::names::StoreName;
use crate::recordings::RecordingStore;

/// The largest file a URL may give or an upload may be (about 10 minutes of 16-bit mono at 44.1 kHz).
pub const MAX_MEDIA_FILE: usize = 50 * 1024 * 1024;
/// The decoded audio the cache holds, in samples (64 MiB of 16-bit samples).
const CACHE_SAMPLES: usize = 32 * 1024 * 1024;
/// The longest text one `say` may speak.
pub const MAX_SPEECH_TEXT: usize = 20_000;
/// How long the speech process may take.
const SPEECH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long fetching a URL may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest conference name.
const MAX_CONFERENCE_NAME: usize = 128;
/// flite's voices (built into Debian's flite binary).
const FLITE_VOICES: [&str; 5] = ["kal", "slt", "rms", "awb", "kal16"];

/// Audio decoded and ready to play, shared by every call that plays it.
pub type Audio = Arc<[i16]>;

/// What went wrong getting audio; the guest sees the text.
#[derive(Debug)]
pub struct MediaSourceError(pub String);

impl std::fmt::Display for MediaSourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MediaSourceError {}

fn source_error(why: impl Into<String>) -> MediaSourceError {
    MediaSourceError(why.into())
}

/// Text to speak, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechRequest {
    /// "flite" (the default, and the only built-in provider).
    pub provider: Option<String>,
    /// The voice (flite: kal, slt, rms, awb).
    pub voice: Option<String>,
    /// A language tag; flite speaks English only.
    pub language: Option<String>,
    /// The text.
    pub text: String,
}

/// A file uploaded to the server, as `GET /v1/media` lists it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MediaFileInfo {
    /// Its name.
    pub name: String,
    /// Its size in bytes, as uploaded.
    pub bytes: u64,
    /// How long it plays, in ms.
    pub duration_ms: u64,
}

/// The uploaded files, the speech provider and the cache of decoded audio.
pub struct MediaStore {
    /// The calls' recordings.
    pub recordings: RecordingStore,
    /// The conferences running, by app and name.
    conferences: Mutex<HashMap<(String, String), Conference>>,
    files: PathBuf,
    speech: PathBuf,
    flite: Option<PathBuf>,
    cache: Mutex<DecodedCache>,
    /// Where the admin API serves recordings (`http://<address>/v1/recordings`), once it listens.
    recordings_url: std::sync::OnceLock<String>,
}

impl MediaStore {
    /// The store under `data_dir` (`media/`, `cache/speech/`), created when missing.
    pub fn open(data_dir: &Path) -> anyhow::Result<MediaStore> {
        let files = data_dir.join("media");
        let speech = data_dir.join("cache").join("speech");
        for dir in [&files, &speech] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let flite = find_program("flite");
        match &flite {
            Some(path) => info!(flite = %path.display(), "speech: flite"),
            None => info!("speech: flite not found on PATH; say will fail until it is installed"),
        }
        let recordings = RecordingStore::open(data_dir)?;
        Ok(MediaStore {
            recordings,
            conferences: Mutex::new(HashMap::new()),
            files,
            speech,
            flite,
            cache: Mutex::new(DecodedCache::default()),
            recordings_url: std::sync::OnceLock::new(),
        })
    }

    /// Tells the store where the admin API serves recordings (`http://<address>/v1/recordings`); set once.
    pub fn set_recordings_url(&self, base: String) {
        let _ = self.recordings_url.set(base);
    }

    /// The URL of recording `id` on the admin API, if it listens.
    pub fn recording_url(&self, id: &str) -> Option<String> {
        self.recordings_url.get().map(|base| format!("{base}/{id}"))
    }

    /// Stores an uploaded file under `name`, after checking it plays (a WAV we can decode). Replaces any
    /// file of that name.
    pub fn put(&self, name: &StoreName, bytes: &[u8], rate: u32) -> Result<MediaFileInfo, MediaSourceError> {
        if bytes.len() > MAX_MEDIA_FILE {
            return Err(source_error(format!(
                "{} bytes is more than the {MAX_MEDIA_FILE} a media file may be",
                bytes.len()
            )));
        }
        let decoded = callwright_media::decode_audio_file(bytes, rate)
            .map_err(|error| source_error(format!("cannot play it: {error}")))?;
        let path = self.file_path(name);
        let staging = path.with_extension(format!("wav.{}.tmp", std::process::id()));
        std::fs::write(&staging, bytes)
            .and_then(|()| std::fs::rename(&staging, &path))
            .map_err(|error| source_error(format!("storing it failed: {error}")))?;
        self.lock().forget(&file_key(name.as_str(), rate));
        let info = MediaFileInfo {
            name: name.to_string(),
            bytes: bytes.len() as u64,
            duration_ms: decoded.samples.len() as u64 * 1000 / u64::from(rate),
        };
        // Described beside it, so listing reads no audio.
        let description = serde_json::to_vec(&info).map_err(|error| source_error(error.to_string()))?;
        std::fs::write(self.files.join(format!("{name}.json")), description)
            .map_err(|error| source_error(format!("storing it failed: {error}")))?;
        Ok(info)
    }

    /// The uploaded files, by name.
    pub fn list(&self) -> Vec<MediaFileInfo> {
        let Ok(entries) = std::fs::read_dir(&self.files) else { return Vec::new() };
        let mut files: Vec<MediaFileInfo> = entries
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "json"))
            .filter_map(|entry| serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok())
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        files
    }

    /// An uploaded file as it was uploaded.
    pub fn get(&self, name: &StoreName) -> Option<Vec<u8>> {
        std::fs::read(self.file_path(name)).ok()
    }

    /// Deletes an uploaded file; false when there was none.
    pub fn delete(&self, name: &StoreName) -> bool {
        let _ = std::fs::remove_file(self.files.join(format!("{name}.json")));
        let removed = std::fs::remove_file(self.file_path(name)).is_ok();
        if removed {
            self.lock().forget_prefix(&format!("file:{name}@"));
        }
        removed
    }

    /// An uploaded file, decoded at `rate`.
    pub fn file(&self, name: &str, rate: u32) -> Result<Audio, MediaSourceError> {
        let name = StoreName::parse("media file", name).map_err(|error| source_error(error.to_string()))?;
        let key = file_key(name.as_str(), rate);
        if let Some(audio) = self.lock().get(&key) {
            return Ok(audio);
        }
        let bytes = std::fs::read(self.file_path(&name))
            .map_err(|_| source_error(format!("no media file `{name}` (upload it with PUT /v1/media/{name})")))?;
        let audio = decode(&bytes, rate, &format!("media file `{name}`"))?;
        self.lock().insert(key, audio.clone());
        Ok(audio)
    }

    /// The WAV file at `url`, fetched with `client` if `hooks` allows its host, decoded at `rate`.
    pub async fn url(
        &self,
        client: &reqwest::Client,
        hooks: &HookSettings,
        url: &str,
        rate: u32,
    ) -> Result<Audio, MediaSourceError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|error| source_error(format!("`{url}` is not a URL: {error}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(source_error(format!("`{url}`: only http and https URLs can be played")));
        }
        if !hooks.allows(&parsed) {
            return Err(source_error(format!(
                "`{url}`: its host is not in the app's allow list (hooks.allow), so it cannot be fetched"
            )));
        }
        let key = format!("url:{url}@{rate}");
        if let Some(audio) = self.lock().get(&key) {
            return Ok(audio);
        }
        let bytes = fetch(client, parsed).await.map_err(|why| source_error(format!("`{url}`: {why}")))?;
        let audio = decode(&bytes, rate, &format!("`{url}`"))?;
        self.lock().insert(key, audio.clone());
        Ok(audio)
    }

    /// `request` spoken, at `rate`: from the cache, or synthesised (and cached on disk).
    pub async fn speech(&self, request: &SpeechRequest, rate: u32) -> Result<Audio, MediaSourceError> {
        if let Some(provider) = request.provider.as_deref().filter(|p| !p.eq_ignore_ascii_case("flite")) {
            return Err(source_error(format!("speech provider `{provider}` is not available (built in: flite)")));
        }
        if let Some(language) = request.language.as_deref().filter(|l| !l.to_ascii_lowercase().starts_with("en")) {
            return Err(source_error(format!("flite speaks English only, not `{language}`")));
        }
        let voice = request.voice.as_deref().unwrap_or("kal");
        if !FLITE_VOICES.contains(&voice) {
            return Err(source_error(format!("flite has no voice `{voice}` (it has {})", FLITE_VOICES.join(", "))));
        }
        let text = request.text.trim();
        if text.is_empty() {
            return Err(source_error("there is no text to speak"));
        }
        if text.len() > MAX_SPEECH_TEXT {
            return Err(source_error(format!("{} bytes of text is more than {MAX_SPEECH_TEXT}", text.len())));
        }
        let hash = speech_hash("flite", voice, text);
        let key = format!("say:{hash}@{rate}");
        if let Some(audio) = self.lock().get(&key) {
            return Ok(audio);
        }
        let path = self.speech.join(format!("{hash}.wav"));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(_) => self.synthesise(voice, text, &path).await?,
        };
        let audio = decode(&bytes, rate, "speech")?;
        self.lock().insert(key, audio.clone());
        Ok(audio)
    }

    /// Runs flite for `text` and keeps its WAV at `path`.
    async fn synthesise(&self, voice: &str, text: &str, path: &Path) -> Result<Vec<u8>, MediaSourceError> {
        let flite = self.flite.as_ref().ok_or_else(|| source_error("speech needs flite, which is not installed"))?;
        let staging = path.with_extension(format!("{}.{:x}.tmp", std::process::id(), rand_suffix()));
        let mut command = tokio::process::Command::new(flite);
        // No shell: the text is one argument. flite reads nothing else of ours.
        command.arg("-voice").arg(voice).arg("-t").arg(text).arg("-o").arg(&staging);
        command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        command.stderr(std::process::Stdio::piped()).kill_on_drop(true);
        let started = std::time::Instant::now();
        let output = tokio::time::timeout(SPEECH_TIMEOUT, command.output())
            .await
            .map_err(|_| source_error(format!("speech took longer than {} s", SPEECH_TIMEOUT.as_secs())))?
            .map_err(|error| source_error(format!("cannot run flite: {error}")))?;
        if !output.status.success() {
            let _ = std::fs::remove_file(&staging);
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(source_error(format!("flite failed ({}): {}", output.status, stderr.trim())));
        }
        let bytes = std::fs::read(&staging).map_err(|error| source_error(format!("flite wrote nothing: {error}")))?;
        if let Err(error) = std::fs::rename(&staging, path) {
            debug!(%error, "speech not cached");
        }
        debug!(voice, chars = text.len(), elapsed_ms = started.elapsed().as_millis() as u64, "speech synthesised");
        Ok(bytes)
    }

    /// The conference called `name` among app `app`'s, started if none runs by that name (ended ones are
    /// forgotten here). Apps do not share conferences: a name means the same conference only within one.
    pub fn conference(&self, app: &str, name: &str) -> Result<Conference, MediaSourceError> {
        if name.is_empty() || name.len() > MAX_CONFERENCE_NAME || name.chars().any(char::is_control) {
            return Err(source_error(format!(
                "a conference name is 1-{MAX_CONFERENCE_NAME} bytes without control characters"
            )));
        }
        let mut conferences = self.conferences.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        conferences.retain(|_, conference| conference.is_running());
        let key = (app.to_string(), name.to_string());
        Ok(conferences.entry(key).or_insert_with(|| Conference::start(&format!("{app}/{name}"))).clone())
    }

    /// Where an uploaded file's bytes are kept, as uploaded (WAV or MP3: the name keeps the `.wav` that
    /// data directories have always used).
    fn file_path(&self, name: &StoreName) -> PathBuf {
        self.files.join(format!("{name}.wav"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DecodedCache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn file_key(name: &str, rate: u32) -> String {
    format!("file:{name}@{rate}")
}

/// The cache name of a spoken text: SHA-256 of provider, voice and text.
fn speech_hash(provider: &str, voice: &str, text: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [provider, voice, text] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn decode(bytes: &[u8], rate: u32, what: &str) -> Result<Audio, MediaSourceError> {
    let decoded =
        callwright_media::decode_audio_file(bytes, rate).map_err(|error| source_error(format!("{what}: {error}")))?;
    Ok(Arc::from(decoded.samples))
}

/// GETs `url`, refusing an answer other than 200 or a body over [`MAX_MEDIA_FILE`].
async fn fetch(client: &reqwest::Client, url: reqwest::Url) -> Result<Vec<u8>, String> {
    let mut response =
        client.get(url).timeout(FETCH_TIMEOUT).send().await.map_err(|error| format!("fetching failed: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| format!("reading failed: {error}"))? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_MEDIA_FILE {
            return Err(format!("more than the {MAX_MEDIA_FILE} bytes a media file may be"));
        }
    }
    Ok(bytes)
}

/// The first `name` on PATH that is a file.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// Decoded audio by key, the oldest dropped first past [`CACHE_SAMPLES`].
#[derive(Default)]
struct DecodedCache {
    entries: HashMap<String, Audio>,
    order: VecDeque<String>,
    samples: usize,
}

impl DecodedCache {
    fn get(&self, key: &str) -> Option<Audio> {
        self.entries.get(key).cloned()
    }

    fn insert(&mut self, key: String, audio: Audio) {
        if audio.len() > CACHE_SAMPLES {
            return;
        }
        self.forget(&key);
        self.samples += audio.len();
        self.entries.insert(key.clone(), audio);
        self.order.push_back(key);
        while self.samples > CACHE_SAMPLES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(audio) = self.entries.remove(&oldest) {
                self.samples -= audio.len();
            }
        }
    }

    fn forget(&mut self, key: &str) {
        if let Some(audio) = self.entries.remove(key) {
            self.samples -= audio.len();
            self.order.retain(|k| k != key);
        }
    }

    fn forget_prefix(&mut self, prefix: &str) {
        let keys: Vec<String> = self.entries.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
        for key in keys {
            self.forget(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_drops_the_oldest_audio_past_its_size() {
        let mut cache = DecodedCache::default();
        let half: Audio = Arc::from(vec![0i16; CACHE_SAMPLES / 2]);
        cache.insert("a".into(), half.clone());
        cache.insert("b".into(), half.clone());
        cache.insert("c".into(), half);
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        assert_eq!(cache.samples, CACHE_SAMPLES);
        cache.forget_prefix("c");
        assert_eq!(cache.samples, CACHE_SAMPLES / 2);
    }

    #[test]
    fn speech_hashes_differ_by_voice_and_cannot_be_made_to_collide_by_moving_text() {
        assert_ne!(speech_hash("flite", "kal", "hello"), speech_hash("flite", "slt", "hello"));
        assert_ne!(speech_hash("flite", "ka", "lhello"), speech_hash("flite", "kal", "hello"));
    }
}
