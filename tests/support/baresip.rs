//! Runs **baresip** (Debian package `baresip`, 1.0.0), a real SIP user agent, headless: it places one call
//! and exits by itself.
//!
//! ```ignore
//! let baresip = Baresip::dial(&format!("sip:x@127.0.0.1:{port}"), Duration::from_secs(5));
//! assert!(baresip.wait_for_log("Call established", Duration::from_secs(5)), "{}", baresip.log());
//! let log = baresip.wait(Duration::from_secs(10));
//! ```
//!
//! Command line: `baresip -f <dir> -s -e "/dial <uri>" -t <seconds>`, stdin from /dev/null, stdout and stderr
//! into one log file. `-f` is the configuration directory written here, `-s` puts every SIP message sent and
//! received into the log (after a `UDP <from> -> <to>` line), `-e` runs the dial command once baresip is
//! ready, `-t` makes it quit after that many seconds: it hangs up its established calls (BYE) and waits for
//! its SIP transactions to end, so an INVITE that is never answered keeps it running for up to 32 s more
//! (Timer B); [`Baresip::wait`] kills it after its own timeout.
//!
//! The configuration (`config` in that directory), each line and why:
//! - `sip_listen 127.0.0.1:<port>`: its own port, free when picked. baresip listens there for UDP and TCP and
//!   on port + 1 for TLS, and does not start if any of them is taken; [`Baresip::dial`] picks another port
//!   and starts it again in that case.
//! - `net_interface 127.0.0.1`: the only address it uses, in SDP too. An IP address, not `lo`.
//! - `audio_source aufile,<dir>/tone.wav`: a WAV file written here, 16-bit at the codec's rate (8 kHz mono;
//!   16 kHz for G.722, 48 kHz stereo for Opus), a 440 Hz tone at about -20 dBFS, as long as the run plus a
//!   margin. baresip has no sound card here; the `ausine` source
//!   is 48 kHz only and kills a PCMU call, and when the WAV file ends, the call ends ("aufile: end of file").
//! - `audio_player aufile,/dev/null` and `audio_alert aufile,/dev/null`: what it receives (and any ring
//!   tone) is written to a WAV file nobody keeps.
//! - `module sndfile.so` and `snd_path <dir>/heard`: what it hears is also written, decoded, to
//!   `heard/dump-<time>-dec.wav` (and what it sends to `-enc.wav`); [`Baresip::heard`] reads it.
//! - `module ctrl_tcp.so` and `ctrl_tcp_listen 127.0.0.1:<port + 2>`: commands while it runs
//!   ([`Baresip::command`]: `hold`, `resume`).
//! - `statmode_default off`: no call status line (`[0:00:01] audio=...`, several a second) in the log.
//! - `module_path /usr/lib/baresip/modules` (Debian's place) and the fewest modules that still place calls
//!   and follow a REFER: `g711` (PCMU, PCMA; or only `g722` or `opus`, [`Baresip::dial_with`]), `aufile` (the source and player above), `account` (reads the
//!   `accounts` file; `module_tmp`: unloaded once done) and `menu` (the `/dial` command behind `-e`, and
//!   the transfer: on a REFER it calls the Refer-To URI, "menu: transferring call ..."). Left out from
//!   baresip's default list: `stdio` (needs a terminal on stdin: with /dev/null it fails with "Operation
//!   not permitted"), `alsa` (no sound card), `stun`, `turn`, `ice` (NAT traversal), `uuid` (a
//!   `+sip.instance` for registrations), `contact`, `auloop`, `vidloop`, `debug_cmd`.
//!
//! The account (`accounts` file): `<sip:baresip@127.0.0.1>;regint=0;answermode=auto`: From
//! `sip:baresip@127.0.0.1`, no registration (nothing is sent before the INVITE), and incoming calls to
//! [`Baresip::port`] answered at once. Call transfer is on by default (`call_transfer`).
//!
//! What baresip 1.0.0 does with a REFER in an established call (`tests/sipp/uas-answer-then-refer.xml`):
//! 202 Accepted (`Expires: 60`), a NOTIFY with `Event: refer;id=<the REFER's CSeq>`,
//! `Subscription-State: active;expires=60`, `Content-Type: message/sipfrag` and body `SIP/2.0 100 Trying`;
//! then an INVITE to the Refer-To URI (new Call-ID, same From, no Referred-By); once that is answered, a
//! NOTIFY with `Subscription-State: terminated;reason=noresource` and body `SIP/2.0 200 OK`. It does not
//! hang up the original call itself. No NOTIFY for the target's 180; a target that rejects the INVITE gives
//! the final NOTIFY its status line (e.g. `SIP/2.0 486 Busy Here`), and the original call stays up.
//!
//! The directory (under [`std::env::temp_dir`], `callwright-baresip-<pid>-<n>`) holds the configuration, the
//! WAV file and the log (`baresip.log`). It is removed when the [`Baresip`] is dropped, unless the thread is
//! panicking: then it is kept and the end of the log is printed.
//!
//! The `baresip` binary is taken from `PATH`, or from the `BARESIP` environment variable when it is set.

use std::f64::consts::PI;
use std::fs::File;
use std::io::Write as _;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The only address baresip uses.
const LOCAL_IP: &str = "127.0.0.1";
/// Where Debian installs baresip's modules.
const MODULE_PATH: &str = "/usr/lib/baresip/modules";
/// The account baresip calls from; see the module documentation for its parameters.
const ACCOUNT: &str = "<sip:baresip@127.0.0.1>;regint=0;answermode=auto";
/// What baresip prints once it has started (before it runs the `-e` commands).
const READY: &str = "baresip is ready.";
/// What baresip prints when its SIP port (or the TLS port after it) is taken.
const PORT_TAKEN: &str = "Address already in use";
/// Where `ctrl_tcp` listens (see [`Baresip::command`]): the SIP port plus this (TLS takes plus one).
const CONTROL_PORT_OFFSET: u16 = 2;
/// How many ports [`Baresip::dial`] tries when the one it picked is taken by the time baresip binds it.
const START_ATTEMPTS: u32 = 3;
/// How long baresip may take to start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the log and the process are polled.
const POLL: Duration = Duration::from_millis(20);
/// At most this much of the log (its end) is printed when a test panics.
const LOG_EXCERPT: usize = 16 * 1024;

/// Where the `sndfile` module writes what baresip hears (and sends), under its directory.
const HEARD_DIR: &str = "heard";
/// The codec baresip offers (only that one, with telephone-event): its module, and the rate and channels
/// of its audio, which the WAV source must have (baresip 1.0.0 does not convert: "aufile: input file must
/// have channels = 2").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// PCMU and PCMA (`g711.so`), 8 kHz mono.
    G711,
    /// G.722 (`g722.so`), 16 kHz mono.
    G722,
    /// Opus (`opus.so`, offered as `opus/48000/2` with `telephone-event/8000`), 48 kHz stereo.
    Opus,
}

impl Codec {
    fn module(self) -> &'static str {
        match self {
            Codec::G711 => "g711.so",
            Codec::G722 => "g722.so",
            Codec::Opus => "opus.so",
        }
    }

    fn rate(self) -> u32 {
        match self {
            Codec::G711 => 8000,
            Codec::G722 => 16000,
            Codec::Opus => 48000,
        }
    }

    fn channels(self) -> u16 {
        if self == Codec::Opus { 2 } else { 1 }
    }
}
/// The tone in the WAV file.
const TONE_HZ: f64 = 440.0;
/// Its amplitude (of 32767): about -20 dBFS.
const TONE_AMPLITUDE: f64 = 3277.0;
/// The rate [`Baresip::heard`] gives, whatever the codec.
const HEARD_RATE: u32 = 8000;
/// How much longer than the run the WAV file lasts: a call ends when the file does.
const WAV_MARGIN: Duration = Duration::from_secs(5);

/// A running baresip that has been told to dial a URI. Dropping it kills baresip and removes its directory
/// (kept, with the end of the log printed, if the thread is panicking).
#[derive(Debug)]
pub struct Baresip {
    /// The process; `None` once it has been waited for.
    child: Mutex<Option<Child>>,
    /// Its SIP port on 127.0.0.1.
    port: u16,
    /// The configuration directory, also holding the WAV file and the log.
    dir: PathBuf,
    /// stdout and stderr.
    log_path: PathBuf,
}

impl Baresip {
    /// Starts baresip bound to 127.0.0.1 (its own free SIP port) that dials `uri` at once and exits by itself
    /// after `max` (baresip `-t <seconds>`, rounded up to whole seconds, at least 1).
    ///
    /// Returns once baresip has started (it printed "baresip is ready."); panics if it could not start (the
    /// log is printed as the [`Baresip`] is dropped).
    pub fn dial(uri: &str, max: Duration) -> Baresip {
        Baresip::dial_with(uri, max, Codec::G711)
    }

    /// As [`Baresip::dial`], offering only `codec`.
    pub fn dial_with(uri: &str, max: Duration, codec: Codec) -> Baresip {
        let dir = new_dir();
        let wav = dir.join("tone.wav");
        write_wav(&wav, max + WAV_MARGIN, codec).unwrap_or_else(|e| panic!("write {}: {e}", wav.display()));
        write_file(&dir.join("accounts"), &format!("{ACCOUNT}\n"));
        let log_path = dir.join("baresip.log");
        let mut baresip = Baresip { child: Mutex::new(None), port: 0, dir, log_path };
        let seconds = max.as_secs() + u64::from(max.subsec_nanos() > 0);
        for attempt in 1..=START_ATTEMPTS {
            baresip.port = free_sip_port();
            write_file(&baresip.dir.join("config"), &config(baresip.port, &wav, codec));
            baresip.start(uri, seconds.max(1));
            match baresip.wait_until_ready() {
                Ok(()) => return baresip,
                Err(_) if attempt < START_ATTEMPTS && baresip.log().contains(PORT_TAKEN) => {}
                Err(why) => panic!("baresip did not start: {why} (its log follows)"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Everything baresip printed so far (stdout and stderr go to one log file).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// Waits until `needle` appears in the log or `timeout` passes; returns whether it appeared. Returns early
    /// (with the answer of the complete log) if baresip exits.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.has_exited();
            if self.log().contains(needle) {
                return true;
            }
            if exited || Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the process to exit (kills it after `timeout`, noting that at the end of the log) and returns
    /// the log.
    pub fn wait(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !self.has_exited() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if self.kill() {
            self.note(&format!("still running after {timeout:?}: killed"));
        }
        self.log()
    }

    /// Its SIP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs a command of baresip's (`hold`, `resume`, …, as its `/` commands without the slash) through
    /// its `ctrl_tcp` module: a netstring of JSON each way. Returns the reply's `data`, or why it failed.
    pub fn command(&self, command: &str) -> Result<String, String> {
        use std::io::Read as _;
        let mut stream = std::net::TcpStream::connect((LOCAL_IP, self.port + CONTROL_PORT_OFFSET))
            .map_err(|e| format!("connect to ctrl_tcp: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        let request = format!(r#"{{"command":"{command}","token":"test"}}"#);
        stream.write_all(format!("{}:{request},", request.len()).as_bytes()).map_err(|e| e.to_string())?;
        let mut reply = vec![0u8; 4096];
        let len = stream.read(&mut reply).map_err(|e| format!("no reply to {command}: {e}"))?;
        let reply = String::from_utf8_lossy(&reply[..len]).into_owned();
        if reply.contains(r#""ok":true"#) { Ok(reply) } else { Err(format!("{command}: {reply}")) }
    }

    /// What baresip heard on its call so far (the `sndfile` module's `-dec.wav`, at the codec's rate):
    /// 16-bit mono samples at 8 kHz (the first channel, converted), empty when it heard nothing or kept no
    /// file. Complete once baresip has exited.
    pub fn heard(&self) -> Vec<i16> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(HEARD_DIR)) else { return Vec::new() };
        let Some(path) = entries.flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with("-dec.wav")) else {
            return Vec::new();
        };
        let bytes = std::fs::read(path).unwrap_or_default();
        // The fmt chunk (rate at 24, channels at 22 of the file) comes first; the samples follow the `data`
        // chunk's header, whose size is only filled in when the file is closed.
        let Some(data) = bytes.windows(4).position(|w| w == b"data") else { return Vec::new() };
        let (Some(channels), Some(rate)) = (bytes.get(22..24), bytes.get(24..28)) else { return Vec::new() };
        let channels = usize::from(u16::from_le_bytes([channels[0], channels[1]])).max(1);
        let rate = u32::from_le_bytes([rate[0], rate[1], rate[2], rate[3]]);
        let samples = bytes.get(data + 8..).unwrap_or_default();
        let first: Vec<i16> =
            samples.chunks_exact(2 * channels).map(|frame| i16::from_le_bytes([frame[0], frame[1]])).collect();
        callwright_media::resample::convert(&first, rate, HEARD_RATE)
    }

    /// Starts the process with the configuration in place, its output replacing the log.
    fn start(&self, uri: &str, seconds: u64) {
        let log = File::create(&self.log_path).unwrap_or_else(|e| panic!("create {}: {e}", self.log_path.display()));
        let program = std::env::var_os("BARESIP").unwrap_or_else(|| "baresip".into());
        let dial = format!("/dial {uri}");
        let seconds = seconds.to_string();
        let mut command = Command::new(&program);
        command.arg("-f").arg(&self.dir).args(["-s", "-e", &dial, "-t", &seconds]);
        command.stdin(Stdio::null()).stdout(log.try_clone().expect("clone the log file")).stderr(log);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start {command:?}: {e}; install baresip (Debian: baresip) or set BARESIP")
        });
        *self.child.lock().expect("baresip child lock") = Some(child);
    }

    /// Waits until baresip says it is ready; the error says why not (it exited, or [`STARTUP_TIMEOUT`]).
    fn wait_until_ready(&self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let exited = self.exit_status();
            if self.log().contains(READY) {
                return Ok(());
            }
            if let Some(status) = exited {
                return Err(format!("it exited ({status})"));
            }
            if started.elapsed() >= STARTUP_TIMEOUT {
                return Err(format!("not ready after {STARTUP_TIMEOUT:?}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// True once the process has exited (or was never started).
    fn has_exited(&self) -> bool {
        self.exit_status().is_some()
    }

    /// How the process exited ("not started" if it never was); `None` while it runs.
    fn exit_status(&self) -> Option<String> {
        let mut child = self.child.lock().expect("baresip child lock");
        match child.as_mut().map(Child::try_wait) {
            None => Some("not started".to_owned()),
            Some(Ok(None)) => None,
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Err(e)) => Some(format!("cannot wait for it: {e}")),
        }
    }

    /// Kills the process if it still runs and reaps it; returns whether it had to be killed.
    fn kill(&self) -> bool {
        let Some(mut child) = self.child.lock().expect("baresip child lock").take() else { return false };
        let running = matches!(child.try_wait(), Ok(None));
        if running {
            let _ = child.kill();
        }
        let _ = child.wait();
        running
    }

    /// The end of the log: at most [`LOG_EXCERPT`] bytes.
    fn log_tail(&self) -> String {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        let start = bytes.len().saturating_sub(LOG_EXCERPT);
        let text = String::from_utf8_lossy(&bytes[start..]);
        if start > 0 { format!("[... {start} bytes left out ...]\n{text}") } else { text.into_owned() }
    }

    /// Appends a line of ours to the log.
    fn note(&self, text: &str) {
        if let Ok(mut log) = File::options().append(true).open(&self.log_path) {
            let _ = writeln!(log, "[callwright test support: baresip {text}]");
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let killed = self.kill();
        if std::thread::panicking() {
            if killed {
                self.note("killed: the test panicked");
            }
            eprintln!("--- baresip log (kept in {}) ---\n{}", self.dir.display(), self.log_tail());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The `config` file for baresip listening on 127.0.0.1:`port` with `wav` as its audio source; see the module
/// documentation for each line.
fn config(port: u16, wav: &Path, codec: Codec) -> String {
    let heard = wav.with_file_name(HEARD_DIR);
    let _ = std::fs::create_dir_all(&heard);
    let heard = heard.display();
    let wav = wav.display();
    let codec = codec.module();
    let control = port + CONTROL_PORT_OFFSET;
    format!(
        "# Written by callwright's tests (tests/support/baresip.rs).\n\
         sip_listen\t\t{LOCAL_IP}:{port}\n\
         net_interface\t\t{LOCAL_IP}\n\
         audio_source\t\taufile,{wav}\n\
         audio_player\t\taufile,/dev/null\n\
         audio_alert\t\taufile,/dev/null\n\
         statmode_default\toff\n\
         module_path\t\t{MODULE_PATH}\n\
         module\t\t\t{codec}\n\
         module\t\t\taufile.so\n\
         module\t\t\tsndfile.so\n\
         snd_path\t\t{heard}\n\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n\
         module\t\t\tctrl_tcp.so\n\
         ctrl_tcp_listen\t\t{LOCAL_IP}:{control}\n"
    )
}

/// Writes a WAV file of `duration` at `codec`'s rate and channels, 16-bit PCM, a [`TONE_HZ`] sine.
fn write_wav(path: &Path, duration: Duration, codec: Codec) -> std::io::Result<()> {
    const HEADER_LEN: u32 = 44;
    const BYTES_PER_SAMPLE: u16 = 2;
    let (rate, channels) = (codec.rate(), codec.channels());
    let samples = u32::try_from(u128::from(rate) * duration.as_millis() / 1000).expect("WAV too long");
    let frame_len = BYTES_PER_SAMPLE * channels;
    let data_len = samples * u32::from(frame_len);
    let mut wav = Vec::with_capacity((HEADER_LEN + data_len) as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(HEADER_LEN - 8 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVE");
    wav.extend_from_slice(b"fmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // the size of this chunk
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * u32::from(frame_len)).to_le_bytes()); // bytes per second
    wav.extend_from_slice(&frame_len.to_le_bytes()); // bytes per frame
    wav.extend_from_slice(&(BYTES_PER_SAMPLE * 8).to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..samples {
        let t = f64::from(n) / f64::from(rate);
        let sample = (TONE_AMPLITUDE * (2.0 * PI * TONE_HZ * t).sin()).round() as i16;
        for _ in 0..channels {
            wav.extend_from_slice(&sample.to_le_bytes());
        }
    }
    std::fs::write(path, wav)
}

/// Writes `text` to `path`, panicking on failure.
fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A new, empty directory under the system temp dir: `callwright-baresip-<pid>-<n>`.
fn new_dir() -> PathBuf {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("callwright-baresip-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A SIP port for baresip on 127.0.0.1: one the system gives a UDP socket, also free for TCP, with the port
/// after it free for TCP too (baresip's TLS listener).
fn free_sip_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((LOCAL_IP, 0)).expect("bind a UDP socket on 127.0.0.1");
        let port = udp.local_addr().expect("local address").port();
        let Some(control_port) = port.checked_add(CONTROL_PORT_OFFSET) else { continue };
        let free = |port| TcpListener::bind((LOCAL_IP, port)).is_ok();
        if free(port) && free(port + 1) && free(control_port) {
            return port;
        }
    }
    panic!("no port free for baresip on 127.0.0.1 (UDP and TCP, and TCP on the next two ports)")
}
