//! The admin HTTP API: modules, apps, media files, recordings and live calls, behind a bearer token. Errors are JSON
//! `{"error": "..."}` with the status that fits.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use callwright_host::apps::{AppDefinition, AppError};
use callwright_host::media_store::MAX_MEDIA_FILE;
use callwright_host::modules::{BUILTIN_PREFIX, ModuleWorld, StoreError, UploadError};
use callwright_host::names::StoreName;
use callwright_host::runtime::Runtime;
use serde_json::json;
use tracing::info;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) token: Arc<String>,
}

/// An error answer: status and message.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no {what} named {name:?}"))
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// A name from the URL, checked as the stores check it: 400 naming the rule, before anything is read.
fn checked_name(kind: &'static str, name: &str) -> Result<StoreName, ApiError> {
    StoreName::parse(kind, name).map_err(|bad| ApiError(StatusCode::BAD_REQUEST, bad.to_string()))
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::BadName(bad) => ApiError(StatusCode::BAD_REQUEST, bad.to_string()),
        other => internal(other),
    }
}

/// The request bodies the API reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// The largest body any route reads: a module at the module limit, with room for the JSON of apps.
    pub(crate) any: usize,
    /// The module limit: a module upload announcing more is refused from its Content-Length, unread.
    pub(crate) upload: usize,
}

pub(crate) fn body_limits(state: &AdminState) -> BodyLimits {
    let upload = state.runtime.engine.limits().max_module_size;
    BodyLimits { any: upload.max(MAX_MEDIA_FILE) + (1 << 20), upload }
}

pub(crate) fn router(state: AdminState) -> Router {
    let body_limit = body_limits(&state).any;
    let api = Router::new()
        .route("/v1/modules", get(list_modules))
        .route("/v1/modules/{name}", get(get_module).put(put_module).delete(delete_module))
        .route("/v1/apps", get(list_apps))
        .route("/v1/apps/{name}", get(get_app).put(put_app).delete(delete_app))
        .route("/v1/media", get(list_media))
        .route("/v1/media/{name}", get(get_media).put(put_media).delete(delete_media))
        .route("/v1/recordings", get(list_recordings))
        .route("/v1/recordings/{id}", get(get_recording).delete(delete_recording))
        .route("/v1/verbs", get(list_verbs))
        .route("/v1/calls", get(list_calls))
        .route("/v1/stats", get(stats))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(body_limit));
    Router::new().route("/healthz", get(|| async { "ok" })).merge(api).with_state(state)
}

/// Compares in time independent of where the strings differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 7235 §2.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    match given {
        Some(token) if same_secret(token.as_bytes(), state.token.as_bytes()) => next.run(request).await,
        given => {
            let message = if given.is_some() {
                "wrong admin token"
            } else {
                "missing admin token (Authorization: Bearer <token>)"
            };
            let mut response = ApiError(StatusCode::UNAUTHORIZED, message.into()).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

async fn list_modules(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.runtime.modules.list())
}

async fn get_module(State(state): State<AdminState>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    checked_name("module", &name)?;
    let module = state.runtime.modules.get(&name).ok_or_else(|| not_found("module", &name))?;
    Ok(Json(module.meta.clone()))
}

async fn put_module(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    checked_name("module", &name)?;
    // Refused from its Content-Length when it announces too much: nothing of it is read.
    let limit = state.runtime.engine.limits().max_module_size;
    let too_large =
        |size: &str| ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("module is {size}; the limit is {limit}"));
    let announced = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = announced.filter(|length| *length > limit as u64) {
        return Err(too_large(&format!("{length} bytes")));
    }
    let body = axum::body::to_bytes(request.into_body(), limit + 1)
        .await
        .map_err(|_| too_large("larger, or the upload was cut off"))?;
    let modules = state.runtime.modules.clone();
    let module_name = name.clone();
    // Compiling takes milliseconds to seconds: keep it off the threads that run calls.
    let stored = tokio::task::spawn_blocking(move || modules.put(&module_name, &body)).await.map_err(internal)?;
    match stored {
        Ok(meta) => {
            info!(module = %name, world = ?meta.world, "module uploaded");
            Ok((StatusCode::CREATED, Json(meta)))
        }
        Err(error @ UploadError::TooLarge { .. }) => Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())),
        Err(error @ UploadError::Storage(_)) => Err(internal(error)),
        Err(error) => Err(ApiError(StatusCode::BAD_REQUEST, error.to_string())),
    }
}

async fn delete_module(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    checked_name("module", &name)?;
    if name.starts_with(BUILTIN_PREFIX) && state.runtime.modules.get(&name).is_some() {
        return Err(ApiError(StatusCode::FORBIDDEN, format!("module {name:?} is built in and cannot be deleted")));
    }
    if let Some((app, _)) = state.runtime.apps.list().into_iter().find(|(_, a)| a.flow.module == name) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("module {name:?} is used by app {app:?}; delete or change the app first"),
        ));
    }
    match state.runtime.modules.delete(&name).map_err(store_error)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(not_found("module", &name)),
    }
}

async fn list_media(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.runtime.media.list())
}

/// An uploaded media file, as uploaded (`audio/wav` or `audio/mpeg`).
async fn get_media(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let checked = checked_name("media file", &name)?;
    let bytes = state.runtime.media.get(&checked).ok_or_else(|| not_found("media file", &name))?;
    Ok(([(header::CONTENT_TYPE, callwright_media::audio_file_type(&bytes))], bytes).into_response())
}

/// Stores a WAV or MP3 file that calls play as `file` sources: 201 with its length, 400 when it cannot be
/// played (naming why), 413 past the size limit.
async fn put_media(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let checked = checked_name("media file", &name)?;
    if body.len() > MAX_MEDIA_FILE {
        let why = format!("media file is {} bytes; the limit is {MAX_MEDIA_FILE}", body.len());
        return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, why));
    }
    let media = state.runtime.media.clone();
    // Decoding a long file takes a while: keep it off the threads that run calls.
    let stored =
        tokio::task::spawn_blocking(move || media.put(&checked, &body, PROMPT_RATE)).await.map_err(internal)?;
    match stored {
        Ok(info) => {
            info!(media = %name, bytes = info.bytes, duration_ms = info.duration_ms, "media file uploaded");
            Ok((StatusCode::CREATED, Json(info)))
        }
        Err(error) => Err(ApiError(StatusCode::BAD_REQUEST, format!("media file {name:?}: {error}"))),
    }
}

async fn delete_media(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let checked = checked_name("media file", &name)?;
    match state.runtime.media.delete(&checked) {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(not_found("media file", &name)),
    }
}

async fn list_recordings(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.runtime.media.recordings.list())
}

/// A finished recording's WAV file (`audio/wav`).
async fn get_recording(State(state): State<AdminState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let checked = checked_name("recording", &id)?;
    let bytes = state.runtime.media.recordings.wav(&checked).ok_or_else(|| not_found("recording", &id))?;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], bytes).into_response())
}

async fn delete_recording(State(state): State<AdminState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let checked = checked_name("recording", &id)?;
    match state.runtime.media.recordings.delete(&checked) {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(not_found("recording", &id)),
    }
}

/// The rate an upload is checked (decoded) at: the G.711 calls play it at.
const PROMPT_RATE: u32 = 8000;

async fn list_apps(State(state): State<AdminState>) -> impl IntoResponse {
    let apps: serde_json::Map<String, serde_json::Value> = state
        .runtime
        .apps
        .list()
        .into_iter()
        .map(|(name, app)| (name, serde_json::to_value(app.redacted()).unwrap_or_default()))
        .collect();
    Json(apps)
}

async fn get_app(State(state): State<AdminState>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    checked_name("app", &name)?;
    Ok(Json(state.runtime.apps.get(&name).ok_or_else(|| not_found("app", &name))?.redacted()))
}

async fn put_app(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    checked_name("app", &name)?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the app as application/json".into()));
    }
    let app: AppDefinition = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid app definition: {e}")))?;
    let module = state.runtime.modules.get(&app.flow.module).ok_or_else(|| {
        ApiError(StatusCode::BAD_REQUEST, format!("flow.module {:?} does not exist; upload it first", app.flow.module))
    })?;
    if module.meta.world != ModuleWorld::CallFlow {
        let why = format!("module {:?} is a {:?} module, not a call flow", app.flow.module, module.meta.world);
        return Err(ApiError(StatusCode::BAD_REQUEST, why));
    }
    for (verb, module_name) in &app.verbs {
        let module = state.runtime.modules.get(module_name);
        if !module.is_some_and(|m| m.verbs.iter().any(|v| &v.name == verb)) {
            let why =
                format!("verbs.{verb}: module {module_name:?} does not exist or does not implement verb {verb:?}");
            return Err(ApiError(StatusCode::BAD_REQUEST, why));
        }
    }
    let existed = state.runtime.apps.get(&name).is_some();
    match state.runtime.apps.put(&name, app.clone()) {
        Ok(()) => Ok((if existed { StatusCode::OK } else { StatusCode::CREATED }, Json(app.redacted()))),
        Err(error @ AppError::RouteTaken { .. }) => Err(ApiError(StatusCode::CONFLICT, error.to_string())),
        Err(error @ (AppError::BadName(_) | AppError::Invalid(_))) => {
            Err(ApiError(StatusCode::BAD_REQUEST, error.to_string()))
        }
        Err(error) => Err(internal(error)),
    }
}

async fn delete_app(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    checked_name("app", &name)?;
    match state.runtime.apps.delete(&name).map_err(store_error)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(not_found("app", &name)),
    }
}

/// Every verb some module provides: the module that runs it by default and every module that has it.
async fn list_verbs(State(state): State<AdminState>) -> impl IntoResponse {
    let modules = state.runtime.modules.snapshot();
    let verbs: serde_json::Map<String, serde_json::Value> = modules
        .verb_names()
        .into_iter()
        .filter_map(|name| {
            let (default, verb) = modules.verb_provider(&name)?;
            let providers: Vec<String> = state
                .runtime
                .modules
                .list()
                .into_iter()
                .filter(|meta| meta.verbs.contains(&name))
                .map(|meta| meta.name)
                .collect();
            let entry = json!({"module": default.meta.name, "builtin": default.meta.builtin, "modules": providers,
                               "schema": verb.schema});
            Some((name, entry))
        })
        .collect();
    Json(verbs)
}

async fn list_calls(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.runtime.live_calls())
}

async fn stats(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.runtime.stats().await)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k "] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
        for value in ["Basic t0k", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
