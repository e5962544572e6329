//! Apps: which module handles which calls. Stored as `apps/<name>.json` under the data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use callwright_media::Codec;
use serde::{Deserialize, Serialize};

use crate::modules::{StoreError, write_atomically};
use crate::names::{BadName, StoreName};

/// Which calls an app takes. An app with no route takes every call no other app's route matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The user part of the To URI (e.g. "1000").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_user: Option<String>,
}

/// The call flow of an app: a module and its configuration.
///
/// Besides `{"module": …, "config": …}`, an app may give a document for a built-in runner, which becomes
/// that runner's module and config: `{"verbs": [ … ]}` (a jambonz verb array) and `{"webhook": …}` (a
/// jambonz app: the call hook that returns the verbs, a URL or `{"url", "method", "username", "password"}`),
/// each with an optional `"status_hook"` (jambonz's call status hook), run with [`JAMBONZ_RUNNER`]; and
/// `{"swml": <document>}` or `{"swml_url": "<url>"}` with optional `"envs"`, run with [`SWML_RUNNER`]; and
/// `{"twiml_url": "<url>"}` with an optional `"twiml_method"` (GET or POST), run with [`TWIML_RUNNER`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub struct FlowSpec {
    /// The module to run (a call-flow module).
    pub module: String,
    /// JSON handed to the module's `handle` as `config`.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// The built-in module that runs jambonz verb arrays and webhook apps.
pub const JAMBONZ_RUNNER: &str = "builtin-jambonz";

/// The built-in module that runs SWML documents.
pub const SWML_RUNNER: &str = "builtin-swml";

/// The built-in module that runs TwiML.
pub const TWIML_RUNNER: &str = "builtin-twiml";

/// The document forms of a flow: the key, the runner, and the other key allowed beside it.
const DOCUMENT_FORMS: [(&str, &str, &str); 5] = [
    ("verbs", JAMBONZ_RUNNER, "status_hook"),
    ("webhook", JAMBONZ_RUNNER, "status_hook"),
    ("swml", SWML_RUNNER, "envs"),
    ("swml_url", SWML_RUNNER, "envs"),
    ("twiml_url", TWIML_RUNNER, "twiml_method"),
];

impl TryFrom<serde_json::Map<String, serde_json::Value>> for FlowSpec {
    type Error = String;

    fn try_from(mut fields: serde_json::Map<String, serde_json::Value>) -> Result<FlowSpec, String> {
        const FORMS: &str = r#"a flow is {"module": "<call-flow module>", "config": …}; or a jambonz app, {"verbs": [ … ]} or {"webhook": "<url>" or {"url": …, "method": …}}, with an optional "status_hook"; or an SWML document, {"swml": <document>} or {"swml_url": "<url>"}, with optional "envs"; or TwiML, {"twiml_url": "<url>"} with an optional "twiml_method""#;
        if fields.contains_key("module") {
            let module = match fields.remove("module") {
                Some(serde_json::Value::String(module)) => module,
                _ => return Err(r#""module" must be a string"#.into()),
            };
            let config = fields.remove("config").unwrap_or(serde_json::Value::Null);
            if let Some(other) = fields.keys().next() {
                return Err(format!("unknown field {other:?} beside \"module\": {FORMS}"));
            }
            return Ok(FlowSpec { module, config });
        }
        let given: Vec<_> = DOCUMENT_FORMS.iter().filter(|(key, _, _)| fields.contains_key(*key)).collect();
        match given.as_slice() {
            [(key, runner, extra)] => {
                if let Some(other) = fields.keys().find(|field| field != key && field != extra) {
                    return Err(format!("unknown field {other:?} beside {key:?}: {FORMS}"));
                }
                if *key == "verbs" && !fields["verbs"].is_array() {
                    return Err(r#""verbs" must be an array of verbs"#.into());
                }
                Ok(FlowSpec { module: runner.to_string(), config: serde_json::Value::Object(fields) })
            }
            [] => Err(FORMS.into()),
            several => {
                let keys: Vec<&str> = several.iter().map(|(key, _, _)| *key).collect();
                Err(format!("give one of {keys:?}, not several: {FORMS}"))
            }
        }
    }
}

/// What an app's hooks may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSettings {
    /// Hosts hooks may reach: `"host"` (any port) or `"host:port"`; `"*"` allows every host. Empty (the
    /// default): hooks are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// When set, every hook is signed with it (`Jambonz-Signature`). Never logged; the admin API shows it
    /// as `"********"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl HookSettings {
    /// True when `url`'s host (and port) is in the allow list.
    pub fn allows(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = url.port_or_known_default();
        self.allow.iter().any(|entry| {
            let entry = entry.trim().to_ascii_lowercase();
            if entry == "*" {
                return true;
            }
            // "host:port", "[v6]:port", or a bare host (an IPv6 address has colons of its own).
            let (entry_host, entry_port) = match entry.rsplit_once(':') {
                Some((h, p))
                    if !h.is_empty() && p.parse::<u16>().is_ok() && (h.starts_with('[') || !h.contains(':')) =>
                {
                    (h.trim_start_matches('[').trim_end_matches(']').to_string(), p.parse::<u16>().ok())
                }
                _ => (entry.trim_start_matches('[').trim_end_matches(']').to_string(), None),
            };
            entry_host == host && entry_port.is_none_or(|p| Some(p) == port)
        })
    }

    /// A copy safe to show: the secret replaced by a mask.
    pub fn redacted(&self) -> HookSettings {
        HookSettings { allow: self.allow.clone(), secret: self.secret.as_ref().map(|_| "********".into()) }
    }
}

/// An app as `PUT /v1/apps/{name}` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDefinition {
    /// Which calls; omitted = catch-all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
    /// What runs them.
    pub flow: FlowSpec,
    /// Where its hooks may go and how they are signed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub hooks: HookSettings,
    /// Verbs this app runs with a module of its choice (verb name → module), before the default choice
    /// (a user's module before a built-in one, the newest first).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verbs: BTreeMap<String, String>,
    /// How its calls carry audio.
    #[serde(default, skip_serializing_if = "is_default")]
    pub media: MediaSettings,
}

/// How an app's calls carry audio.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    /// Codecs in order of preference, by name (`PCMU`, `PCMA`, `G722`, `opus`, or as in an rtpmap,
    /// `opus/48000/2`): the answer to a caller's offer takes the first of these it offers, and our offers
    /// list only these. Empty (the default): PCMU, PCMA, G722, opus.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "codec_names")]
    pub codecs: Vec<Codec>,
    /// Where each finished recording of the app's calls is posted (an http(s) URL whose host is in
    /// `hooks.allow`): a POST of the WAV file, its description in the query (see the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_hook: Option<String>,
}

impl MediaSettings {
    /// The codecs to offer and accept, in order.
    pub fn codecs(&self) -> Vec<Codec> {
        if self.codecs.is_empty() { Codec::ALL.to_vec() } else { self.codecs.clone() }
    }
}

/// Codecs as the names apps write them; an unknown one refuses the app, naming it.
mod codec_names {
    use callwright_media::Codec;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(codecs: &[Codec], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(codecs.iter().map(|codec| codec.encoding_name()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Codec>, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        let mut codecs = Vec::with_capacity(names.len());
        for name in names {
            let codec: Codec = name.parse().map_err(D::Error::custom)?;
            if !codecs.contains(&codec) {
                codecs.push(codec);
            }
        }
        Ok(codecs)
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl AppDefinition {
    /// A copy safe to show (the hook secret masked).
    pub fn redacted(&self) -> AppDefinition {
        AppDefinition { hooks: self.hooks.redacted(), ..self.clone() }
    }

    fn route_key(&self) -> Option<String> {
        self.route.as_ref().and_then(|r| r.to_user.clone())
    }
}

/// Why an app was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum AppError {
    /// Bad app name.
    BadName(BadName),
    /// Another app already has this route.
    RouteTaken {
        /// The other app.
        app: String,
        /// The route, described.
        route: String,
    },
    /// A setting that cannot work, and why.
    Invalid(String),
    /// Disk.
    Storage(std::io::Error),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::BadName(bad) => bad.fmt(f),
            AppError::RouteTaken { app, route } => write!(f, "app {app:?} already takes {route}"),
            AppError::Invalid(why) => f.write_str(why),
            AppError::Storage(error) => write!(f, "storing the app failed: {error}"),
        }
    }
}

impl std::error::Error for AppError {}

/// All apps, on disk and in memory.
pub struct AppStore {
    dir: PathBuf,
    apps: RwLock<BTreeMap<String, AppDefinition>>,
}

impl AppStore {
    /// Opens (creating if needed) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<AppStore> {
        let dir = data_dir.join("apps");
        std::fs::create_dir_all(&dir)?;
        let mut apps = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if StoreName::parse("app", name).is_err() {
                continue;
            }
            match serde_json::from_slice::<AppDefinition>(&std::fs::read(&path)?) {
                Ok(app) => {
                    apps.insert(name.to_string(), app);
                }
                Err(error) => tracing::warn!(app = %name, %error, "cannot read stored app; skipping it"),
            }
        }
        Ok(AppStore { dir, apps: RwLock::new(apps) })
    }

    /// Creates or replaces an app.
    pub fn put(&self, name: &str, app: AppDefinition) -> Result<(), AppError> {
        let name = &StoreName::parse("app", name).map_err(AppError::BadName)?;
        if let Some(hook) = &app.media.recording_hook {
            let url = reqwest::Url::parse(hook)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"))
                .ok_or_else(|| AppError::Invalid(format!("media.recording_hook `{hook}` is not an http(s) URL")))?;
            if !app.hooks.allows(&url) {
                return Err(AppError::Invalid(format!(
                    "media.recording_hook `{hook}`: its host is not in hooks.allow"
                )));
            }
        }
        let mut apps = self.apps.write().expect("app lock");
        let key = app.route_key();
        if let Some((other, _)) = apps.iter().find(|(other, a)| other.as_str() != name.as_str() && a.route_key() == key)
        {
            let route = match &key {
                Some(user) => format!("calls to user {user:?}"),
                None => "every call (catch-all)".to_string(),
            };
            return Err(AppError::RouteTaken { app: other.clone(), route });
        }
        let json = serde_json::to_vec_pretty(&app).map_err(|e| AppError::Storage(std::io::Error::other(e)))?;
        write_atomically(&self.app_file(name), &json).map_err(AppError::Storage)?;
        apps.insert(name.to_string(), app);
        Ok(())
    }

    /// One app.
    pub fn get(&self, name: &str) -> Option<AppDefinition> {
        self.apps.read().expect("app lock").get(name).cloned()
    }

    /// Every app, by name.
    pub fn list(&self) -> Vec<(String, AppDefinition)> {
        self.apps.read().expect("app lock").iter().map(|(n, a)| (n.clone(), a.clone())).collect()
    }

    /// The only way from a name to a path: the name was checked, so the path stays in the store.
    fn app_file(&self, name: &StoreName) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Removes an app; false when there was none.
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let name = StoreName::parse("app", name)?;
        let removed = self.apps.write().expect("app lock").remove(name.as_str()).is_some();
        let path = self.app_file(&name);
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        Ok(removed)
    }

    /// The app for a call to `to_user`: an exact route first, else the catch-all.
    pub fn route(&self, to_user: &str) -> Option<(String, AppDefinition)> {
        let apps = self.apps.read().expect("app lock");
        let exact = apps.iter().find(|(_, a)| a.route_key().as_deref() == Some(to_user));
        exact.or_else(|| apps.iter().find(|(_, a)| a.route_key().is_none())).map(|(n, a)| (n.clone(), a.clone()))
    }
}
