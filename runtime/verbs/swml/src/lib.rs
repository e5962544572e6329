//! The SWML interpreter: a call flow (world `call-flow`) that runs SignalWire SWML documents unchanged.
//!
//! Its config is what the app's flow gives: `{"swml": <document>}` (an object, or JSON or YAML text) or
//! `{"swml_url": "<url>"}` (fetched with a POST of `{call, vars, params, envs}`), either with an optional
//! `"envs"` object (the `envs` scope).
//!
//! Steps run in order from section `main`. Control methods run here: `execute` (a section, a URL or an
//! inline document, with `params` and `on_return`), `transfer` (the same without coming back), `return`,
//! `goto`/`label` (with `when` and `max`, default 100), `cond`, `switch`, `set`, `unset`, `sleep` and
//! `request`. Every other method is a verb run through verb dispatch with its (substituted) arguments:
//! `answer`, `hangup`, `sip_refer` and any custom verb; `connect` runs the `dial` verb. Methods that need
//! media (`play`, `prompt`, …) stop the document with a clear error. Strings in arguments are substituted
//! first (`${…}`, `%{…}`, see [`expression`]); bare names and `vars.x` are the call's variables (which
//! verbs set too, e.g. `sip_refer_result`), `call` is the call, `params` the current `execute` params.

#![forbid(unsafe_code)]

pub mod document;
pub mod expression;

use std::collections::HashMap;

use callwright_sdk::hooks::{self, Hook};
use callwright_sdk::serde_json::{Map, Value, json};
use callwright_sdk::{Call, CallInfo, Config, Direction, Flow, Level, dispatch, documents, log, variables};

use crate::document::{Document, parse_text};
use crate::expression::{Scope, substitute, substitute_all};

/// Steps one call may run in total (loops end here).
pub const MAX_STEPS: usize = 10_000;
/// How deep `execute` may nest.
pub const MAX_EXECUTE_DEPTH: usize = 32;
/// How often a `goto` jumps when its `max` is not given (SWML's default).
pub const DEFAULT_GOTO_MAX: u64 = 100;

/// Methods that act on an answered call: the interpreter answers first, as SignalWire does.
const NEEDS_ANSWERED_CALL: [&str; 4] = ["sip_refer", "play", "gather", "conference"];

/// SWML methods that need a media path, which callwright does not have yet.
pub const MEDIA_METHODS: [&str; 13] = [
    "detect_machine",
    "ai",
    "amazon_bedrock",
    "tap",
    "stop_tap",
    "denoise",
    "stop_denoise",
    "receive_fax",
    "send_fax",
    "enter_queue",
    "join_room",
    "live_transcribe",
    "live_translate",
];

/// The interpreter.
pub struct SwmlRunner;

impl Flow for SwmlRunner {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        let config = config.0;
        let envs = config.get("envs").cloned().unwrap_or_else(|| json!({}));
        let mut machine = Machine::new(&call, envs);
        let (document, base_url) = load(&machine, &config)?;
        let outcome = machine.run_section(
            Frame { document: &document, params: &json!({}), depth: 0, base_url: base_url.as_deref() },
            "main",
        );
        match outcome {
            Ok(_) => Ok(()),
            Err(error) => {
                log(Level::Error, &format!("SWML: {error}"));
                Err(error)
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod export {
    callwright_sdk::flow!(super::SwmlRunner);
}

/// The app's document: inline, or fetched from `swml_url`.
fn load(machine: &Machine<'_>, config: &Value) -> Result<(Document, Option<String>), String> {
    match (config.get("swml"), config.get("swml_url")) {
        (Some(Value::String(text)), _) => Ok((Document::parse(text)?, None)),
        (Some(document), _) => Ok((Document::from_value(document)?, None)),
        (None, Some(Value::String(url))) => Ok((machine.fetch(url, &json!({}))?, Some(url.clone()))),
        _ => Err(r#"the app gives neither "swml" nor "swml_url""#.into()),
    }
}

/// How a list of steps ended.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    /// Ran to its end.
    Done,
    /// `return` with this value.
    Return(Value),
    /// A `goto` to a label not in this list: the enclosing list looks for it.
    Goto(String),
    /// The call is over (hung up, transferred away, ended by the far end): stop everything.
    Stop,
}

/// Where steps run: their document, the current `execute` params, how deep `execute` nests, and the URL
/// the document came from (for relative URLs).
#[derive(Clone, Copy)]
struct Frame<'d> {
    document: &'d Document,
    params: &'d Value,
    depth: usize,
    base_url: Option<&'d str>,
}

impl<'d> Frame<'d> {
    /// The frame of an `execute` from this one.
    fn enter<'e>(&self, document: &'e Document, params: &'e Value, base_url: Option<&'e str>) -> Frame<'e> {
        Frame { document, params, depth: self.depth + 1, base_url }
    }
}

struct Machine<'a> {
    call: &'a Call,
    /// The `call` scope.
    call_object: Value,
    envs: Value,
    /// The call's variables with the JSON types `set` gave them (verbs set strings).
    vars: Map<String, Value>,
    steps_run: usize,
    /// Recordings `record_call` started, by control id, until `stop_record_call` or the call's end.
    recordings: Vec<(String, callwright_sdk::media::Recording)>,
}

/// The scope of one evaluation.
struct StepScope<'m> {
    machine: &'m Machine<'m>,
    params: &'m Value,
}

impl Scope for StepScope<'_> {
    fn lookup(&self, name: &str) -> Option<Value> {
        match name {
            "call" => Some(self.machine.call_object.clone()),
            "params" => Some(self.params.clone()),
            "vars" => Some(Value::Object(self.machine.vars.clone())),
            "envs" => Some(self.machine.envs.clone()),
            other => self.machine.vars.get(other).cloned(),
        }
    }
}

/// A variable's text as the call's variables keep it: strings as they are, anything else as JSON.
fn variable_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Splits a step into its method and arguments: `"hangup"` or `{"sip_refer": {…}}`.
pub fn split_step(step: &Value) -> Result<(String, Value), String> {
    match step {
        Value::String(method) => Ok((method.clone(), Value::Null)),
        Value::Object(fields) if fields.len() == 1 => {
            let (method, args) = fields.iter().next().expect("one field");
            Ok((method.clone(), args.clone()))
        }
        other => Err(format!("a step is a method name or an object with one method, not {}", documents::kind(other))),
    }
}

impl<'a> Machine<'a> {
    fn new(call: &'a Call, envs: Value) -> Machine<'a> {
        Machine {
            call,
            call_object: call_object(&call.info()),
            envs,
            vars: Map::new(),
            steps_run: 0,
            recordings: Vec::new(),
        }
    }

    /// Takes the call's variables (verbs may have set some), keeping the types of those `set` gave.
    fn refresh_vars(&mut self) {
        let mut vars = Map::new();
        for (name, text) in variables::entries() {
            let value = match self.vars.get(&name) {
                Some(typed) if variable_text(typed) == text => typed.clone(),
                _ => Value::String(text),
            };
            vars.insert(name, value);
        }
        self.vars = vars;
    }

    fn set_var(&mut self, name: &str, value: Value) {
        variables::set(name, &variable_text(&value));
        self.vars.insert(name.to_string(), value);
    }

    fn substitute(&self, value: &Value, params: &Value) -> Result<Value, String> {
        substitute_all(value, &StepScope { machine: self, params }).map_err(|e| e.to_string())
    }

    fn condition(&self, expression: &Value, params: &Value) -> Result<bool, String> {
        let value = match expression {
            // `when` is an expression, with or without `${…}` around it.
            Value::String(text) if !text.contains("${") && !text.contains("%{") => {
                expression::evaluate(text, &StepScope { machine: self, params }).map_err(|e| e.to_string())?
            }
            Value::String(text) => substitute(text, &StepScope { machine: self, params }).map_err(|e| e.to_string())?,
            other => other.clone(),
        };
        Ok(truthy(&value))
    }

    fn run_section(&mut self, frame: Frame<'_>, section: &str) -> Result<Ending, String> {
        let steps = frame.document.section(section).ok_or_else(|| format!("no section {section:?}"))?;
        let ending = self.run_steps(frame, steps)?;
        match ending {
            Ending::Goto(label) => Err(format!("goto: no label {label:?} in section {section:?}")),
            other => Ok(other),
        }
    }

    fn run_steps(&mut self, frame: Frame<'_>, steps: &[Value]) -> Result<Ending, String> {
        let mut gotos: HashMap<String, u64> = HashMap::new();
        let mut index = 0;
        while let Some(step) = steps.get(index) {
            index += 1;
            self.steps_run += 1;
            if self.steps_run > MAX_STEPS {
                return Err(format!("the document ran more than {MAX_STEPS} steps (a loop?)"));
            }
            self.refresh_vars();
            let ending = self.run_step(frame, step, &mut gotos)?;
            match ending {
                Ending::Done => {}
                Ending::Goto(label) => match steps.iter().position(|s| is_label(s, &label)) {
                    Some(position) => index = position + 1,
                    None => return Ok(Ending::Goto(label)),
                },
                other => return Ok(other),
            }
        }
        Ok(Ending::Done)
    }

    fn run_step(&mut self, frame: Frame<'_>, step: &Value, gotos: &mut HashMap<String, u64>) -> Result<Ending, String> {
        let params = frame.params;
        let (method, raw_args) = split_step(step)?;
        let context = |error: String| format!("{method}: {error}");
        match method.as_str() {
            "label" => Ok(Ending::Done),
            "goto" => self.goto(&raw_args, params, gotos).map_err(context),
            "cond" => self.cond(frame, &raw_args).map_err(context),
            "switch" => self.switch(frame, &raw_args).map_err(context),
            "set" => {
                let Value::Object(assignments) = self.substitute(&raw_args, params)? else {
                    return Err(context("give an object of variable names to values".into()));
                };
                for (name, value) in assignments {
                    self.set_var(&name, value);
                }
                Ok(Ending::Done)
            }
            "unset" => {
                let names = match &raw_args {
                    Value::String(name) => vec![name.clone()],
                    Value::Array(names) => names.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                    other => {
                        return Err(context(format!("give a name or a list of names, not {}", documents::kind(other))));
                    }
                };
                for name in names {
                    variables::remove(&name);
                    self.vars.remove(&name);
                }
                Ok(Ending::Done)
            }
            "return" => Ok(Ending::Return(self.substitute(&raw_args, params)?)),
            "execute" | "transfer" => {
                let args = self.substitute_except(&raw_args, params, &["on_return"])?;
                let ending = self.execute(frame, &args).map_err(context)?;
                if method == "transfer" || ending == Ending::Stop {
                    return Ok(Ending::Stop);
                }
                let value = match ending {
                    Ending::Return(value) => value,
                    _ => Value::Null,
                };
                self.set_var("return_value", value);
                match raw_args.get("on_return").and_then(Value::as_array) {
                    Some(steps) => match self.run_steps(frame, steps)? {
                        Ending::Done => Ok(Ending::Done),
                        other => Ok(other),
                    },
                    None => Ok(Ending::Done),
                }
            }
            "sleep" => {
                let args = self.substitute(&raw_args, params)?;
                let ms = args.as_f64().or_else(|| args.get("duration").and_then(Value::as_f64)).ok_or_else(|| {
                    context("give the time in milliseconds, e.g. `sleep: 1000` or `{duration: 1000}`".into())
                })?;
                Ok(if self.call.wait_for_end(ms.max(0.0) as u64) { Ending::Stop } else { Ending::Done })
            }
            "request" => {
                let args = self.substitute(&raw_args, params)?;
                self.request(&args).map_err(context)?;
                Ok(Ending::Done)
            }
            "connect" => {
                let args = self.substitute(&raw_args, params)?;
                self.connect(&args).map_err(context)
            }
            "play" => {
                // `play: <url>` is short for `play: {url: <url>}`; the say_ variables fill what it leaves out.
                let mut args = match self.substitute(&raw_args, params)? {
                    Value::String(url) => json!({"url": url}),
                    other => other,
                };
                for name in ["say_voice", "say_language", "say_gender"] {
                    if args.get(name).is_none()
                        && let Some(value) = self.vars.get(name).cloned()
                    {
                        args[name] = value;
                    }
                }
                self.run_verb("play", &args)
            }
            "send_digits" => {
                // `send_digits: "123"` or `{digits: "123"}`; sets `send_digits_result`.
                let digits = match self.substitute(&raw_args, params)? {
                    Value::String(digits) => digits,
                    other => other.get("digits").and_then(Value::as_str).unwrap_or_default().to_string(),
                };
                self.call.answer_if_needed().map_err(|e| format!("answering the call failed: {e:?}"))?;
                let sent = dispatch::run_verb(self.call, "dtmf", &json!({"dtmf": digits, "duration": 100}));
                if let Err(error) = &sent {
                    log(Level::Warn, &format!("send_digits: {}", error.message()));
                }
                self.set_var("send_digits_result", json!(if sent.is_ok() { "success" } else { "failed" }));
                Ok(if sent.is_ok_and(|result| result["call_ended"] == true) { Ending::Stop } else { Ending::Done })
            }
            "join_conference" => {
                // `join_conference: <name>` or `{name, muted, beep, start_on_enter, end_on_exit, …}`.
                let args = match self.substitute(&raw_args, params)? {
                    Value::String(name) => json!({"name": name}),
                    other => other,
                };
                let mut conference = json!({"name": args.get("name").cloned().unwrap_or(Value::Null)});
                for (swml, jambonz) in [
                    ("muted", "joinMuted"),
                    ("start_on_enter", "startConferenceOnEnter"),
                    ("end_on_exit", "endConferenceOnExit"),
                    ("max_participants", "maxParticipants"),
                ] {
                    if let Some(value) = args.get(swml) {
                        conference[jambonz] = value.clone();
                    }
                }
                let beep = args
                    .get("beep")
                    .and_then(|b| b.as_str().map(str::to_string).or(b.as_bool().map(|b| b.to_string())));
                conference["beep"] = json!(matches!(beep.as_deref(), Some("true" | "onEnter")));
                self.run_verb("conference", &conference)
            }
            "record_call" => {
                let args = self.substitute(&raw_args, params)?;
                self.record_call(&args).map_err(context)?;
                Ok(Ending::Done)
            }
            "stop_record_call" => {
                let args = self.substitute(&raw_args, params)?;
                let wanted = args.get("control_id").and_then(Value::as_str).map(str::to_string);
                // The one named, or the last one started.
                let index = match &wanted {
                    Some(id) => self.recordings.iter().position(|(control, _)| control == id),
                    None => self.recordings.len().checked_sub(1),
                };
                if let Some(index) = index {
                    self.recordings.remove(index).1.stop();
                }
                Ok(Ending::Done)
            }
            "record" => {
                let args = self.substitute(&raw_args, params)?;
                self.record(&args).map_err(context)
            }
            "prompt" => {
                let args = self.substitute(&raw_args, params)?;
                self.prompt(&args).map_err(context)
            }
            media if MEDIA_METHODS.contains(&media) => {
                Err(format!("{media} needs media, which callwright does not carry yet"))
            }
            verb => {
                let args = match self.substitute(&raw_args, params)? {
                    Value::Null => json!({}),
                    other => other,
                };
                self.run_verb(verb, &args)
            }
        }
    }

    /// `record` through the `record` verb: `beep` (default true), `max_length`, `terminators` (default
    /// `#`), `end_silence_timeout`, `direction` (`speak`: the caller, the default; `listen`: what it
    /// hears; `both`), `stereo`. Sets `record_url` (the admin API's) and `record_result`.
    fn record(&mut self, args: &Value) -> Result<Ending, String> {
        let direction = match args.get("direction").and_then(Value::as_str) {
            Some("listen") => "sent",
            Some("both") => "both",
            _ => "received",
        };
        let mut record = json!({
            "finishOnKey": args.get("terminators").and_then(Value::as_str).unwrap_or("#"),
            "playBeep": args.get("beep").is_none_or(truthy),
            "direction": direction,
            "stereo": args.get("stereo").is_some_and(truthy),
        });
        if let Some(seconds) = args.get("max_length").and_then(Value::as_f64) {
            record["maxLength"] = json!(seconds);
        }
        if let Some(seconds) = args.get("end_silence_timeout").and_then(Value::as_f64) {
            record["timeout"] = json!(seconds);
        }
        self.call.answer_if_needed().map_err(|e| format!("answering the call failed: {e:?}"))?;
        let result = dispatch::run_verb(self.call, "record", &record);
        let recorded = result.as_ref().ok().filter(|r| r["ended_by"] != "no-input");
        self.set_var("record_result", json!(if recorded.is_some() { "success" } else { "failed" }));
        self.set_var("record_url", recorded.map_or(json!(""), |r| r["recording_url"].clone()));
        if let Err(error) = &result {
            log(Level::Warn, &format!("record: {}", error.message()));
        }
        Ok(if self.call.has_ended() { Ending::Stop } else { Ending::Done })
    }

    /// `record_call`: records in the background while the document goes on (`direction` speak, listen or
    /// both, the default; `stereo`; `beep`; `terminators`), until `stop_record_call` or the call's end. Sets
    /// `record_call_result`, `record_call_url` (the admin API's URL) and `record_control_id`.
    fn record_call(&mut self, args: &Value) -> Result<(), String> {
        use callwright_sdk::media::{self, RecordDirection, RecordOptions};
        let direction = match args.get("direction").and_then(Value::as_str) {
            Some("speak") => RecordDirection::Received,
            Some("listen") => RecordDirection::Sent,
            _ => RecordDirection::Both,
        };
        let options = RecordOptions {
            direction: Some(direction),
            stereo: args.get("stereo").is_some_and(truthy),
            max_ms: None,
            end_on_silence_ms: None,
            no_input_ms: None,
            finish_on_keys: args.get("terminators").and_then(Value::as_str).map(str::to_string),
            beep: args.get("beep").is_some_and(truthy),
        };
        self.call.answer_if_needed().map_err(|e| format!("answering the call failed: {e:?}"))?;
        match media::record(self.call, &options) {
            Ok(recording) => {
                let control =
                    args.get("control_id").and_then(Value::as_str).map_or_else(|| recording.id(), str::to_string);
                self.set_var("record_call_result", json!("success"));
                self.set_var("record_call_url", json!(recording.url().unwrap_or_default()));
                self.set_var("record_control_id", json!(control));
                self.recordings.push((control, recording));
            }
            Err(error) => {
                log(Level::Warn, &format!("record_call: {}", error.message()));
                self.set_var("record_call_result", json!("failed"));
            }
        }
        Ok(())
    }

    /// `prompt` for digits, through the `gather` verb: `play` (a URL or a list, as `play`'s), `max_digits`
    /// (default 1), `terminators`, `initial_timeout` and `digit_timeout` (seconds, default 5). Sets
    /// `prompt_result` (`match_digits`, `no_input`, or `failed` for a prompt asking for speech alone, which
    /// is not recognised yet), `prompt_value` and `prompt_digit_terminator`.
    fn prompt(&mut self, args: &Value) -> Result<Ending, String> {
        let urls = match args.get("play") {
            Some(Value::String(url)) => vec![json!(url)],
            Some(Value::Array(urls)) => urls.clone(),
            _ => return Err("give what to play as `play` (a URL or a list)".into()),
        };
        let seconds = |name: &str| args.get(name).and_then(Value::as_f64).unwrap_or(5.0);
        let speech = args.as_object().is_some_and(|fields| fields.keys().any(|key| key.starts_with("speech_")));
        let digits = args.get("max_digits").is_some() || args.get("terminators").is_some() || !speech;
        let input: Vec<&str> = [digits.then_some("digits"), speech.then_some("speech")].into_iter().flatten().collect();
        let gather = json!({
            "input": input,
            "maxDigits": args.get("max_digits").and_then(Value::as_u64).unwrap_or(1).max(1),
            "finishOnKey": args.get("terminators").and_then(Value::as_str).unwrap_or(""),
            "timeout": seconds("initial_timeout"),
            "interDigitTimeout": seconds("digit_timeout"),
            "play": {"url": urls},
        });
        self.call.answer_if_needed().map_err(|e| format!("answering the call failed: {e:?}"))?;
        let result =
            dispatch::run_verb(self.call, "gather", &gather).map_err(|e| format!("gather: {}", e.message()))?;
        if result["call_ended"] == true {
            return Ok(Ending::Stop);
        }
        let prompt_result = match result["reason"].as_str() {
            Some("dtmfDetected") => "match_digits",
            Some("timeout") => "no_input",
            _ => "failed",
        };
        self.set_var("prompt_result", json!(prompt_result));
        self.set_var("prompt_value", result.get("digits").cloned().unwrap_or(json!("")));
        self.set_var("prompt_digit_terminator", result.get("finish_key").cloned().unwrap_or(json!("")));
        Ok(Ending::Done)
    }

    /// Substitutes every field of `args` except those named (steps that run later, with later values).
    fn substitute_except(&self, args: &Value, params: &Value, keep: &[&str]) -> Result<Value, String> {
        match args {
            Value::Object(fields) => {
                let mut result = Map::new();
                for (name, value) in fields {
                    let value =
                        if keep.contains(&name.as_str()) { value.clone() } else { self.substitute(value, params)? };
                    result.insert(name.clone(), value);
                }
                Ok(Value::Object(result))
            }
            other => self.substitute(other, params),
        }
    }

    /// A verb by dispatch; `hangup` ends the document. The verb's result becomes `return_value` (its own
    /// `return_value` field when it has one, as `sip_refer`'s result does).
    fn run_verb(&mut self, verb: &str, args: &Value) -> Result<Ending, String> {
        if NEEDS_ANSWERED_CALL.contains(&verb) {
            // Checked before the answer, so a bad step does not answer the call for nothing.
            dispatch::check_verb(verb, args).map_err(|e| format!("{verb}: {}", e.message()))?;
            self.call.answer_if_needed().map_err(|e| format!("answering the call failed: {e:?}"))?;
        }
        let mut result = dispatch::run_verb(self.call, verb, args).map_err(|e| format!("{verb}: {}", e.message()))?;
        if verb == "hangup" {
            return Ok(Ending::Stop);
        }
        let value = match result.get_mut("return_value") {
            Some(value) => value.take(),
            None => result,
        };
        if !value.is_null() {
            self.set_var("return_value", value);
        }
        Ok(Ending::Done)
    }

    fn goto(&mut self, args: &Value, params: &Value, gotos: &mut HashMap<String, u64>) -> Result<Ending, String> {
        let (label, when, max) = match args {
            Value::String(label) => (label.clone(), None, DEFAULT_GOTO_MAX),
            Value::Object(fields) => (
                fields.get("label").and_then(Value::as_str).ok_or("give the label to go to")?.to_string(),
                fields.get("when"),
                fields.get("max").and_then(Value::as_u64).unwrap_or(DEFAULT_GOTO_MAX),
            ),
            other => return Err(format!("give a label or {{label, when, max}}, not {}", documents::kind(other))),
        };
        if let Some(condition) = when
            && !self.condition(condition, params)?
        {
            return Ok(Ending::Done);
        }
        let count = gotos.entry(label.clone()).or_default();
        if *count >= max {
            return Ok(Ending::Done);
        }
        *count += 1;
        Ok(Ending::Goto(label))
    }

    fn cond(&mut self, frame: Frame<'_>, args: &Value) -> Result<Ending, String> {
        let params = frame.params;
        let Value::Array(branches) = args else {
            return Err(format!("give a list of {{when, then}} and {{else}}, not {}", documents::kind(args)));
        };
        for branch in branches {
            let steps = if let Some(when) = branch.get("when") {
                if !self.condition(when, params)? {
                    continue;
                }
                branch.get("then")
            } else if let Some(otherwise) = branch.get("else") {
                Some(otherwise)
            } else {
                return Err("each branch has `when` (with `then`) or `else`".into());
            };
            return self.run_branch(frame, steps);
        }
        Ok(Ending::Done)
    }

    fn switch(&mut self, frame: Frame<'_>, args: &Value) -> Result<Ending, String> {
        let params = frame.params;
        let variable = args.get("variable").and_then(Value::as_str).ok_or("give the `variable` to switch on")?;
        let value = expression::evaluate(variable, &StepScope { machine: self, params }).map_err(|e| e.to_string())?;
        let key = variable_text(&value);
        let steps = args.get("case").and_then(|cases| cases.get(&key)).or_else(|| args.get("default"));
        self.run_branch(frame, steps)
    }

    /// Runs a `then`/`else`/`case` branch: a list of steps, or one step.
    fn run_branch(&mut self, frame: Frame<'_>, steps: Option<&Value>) -> Result<Ending, String> {
        match steps {
            None | Some(Value::Null) => Ok(Ending::Done),
            Some(Value::Array(steps)) => self.run_steps(frame, steps),
            Some(step) => self.run_steps(frame, std::slice::from_ref(step)),
        }
    }

    /// Runs `dest` (a section, a URL returning a document, or an inline document) with `params`.
    fn execute(&mut self, frame: Frame<'_>, args: &Value) -> Result<Ending, String> {
        if frame.depth >= MAX_EXECUTE_DEPTH {
            return Err(format!("execute nests deeper than {MAX_EXECUTE_DEPTH}"));
        }
        let (dest, params) = match args {
            Value::String(dest) => (Value::String(dest.clone()), json!({})),
            Value::Object(fields) => (
                fields.get("dest").cloned().ok_or("give `dest`: a section, a URL or a document")?,
                fields.get("params").cloned().unwrap_or_else(|| json!({})),
            ),
            other => return Err(format!("give a section, a URL or {{dest, params}}, not {}", documents::kind(other))),
        };
        match dest {
            Value::String(dest) if frame.document.sections.contains_key(&dest) => {
                self.run_section(frame.enter(frame.document, &params, frame.base_url), &dest)
            }
            Value::String(dest)
                if dest.starts_with("http://") || dest.starts_with("https://") || dest.starts_with('/') =>
            {
                let url = documents::resolve_url(&dest, frame.base_url);
                let fetched = self.fetch(&url, &params)?;
                self.run_section(frame.enter(&fetched, &params, Some(&url)), "main")
            }
            Value::String(text) if text.trim_start().starts_with('{') || text.contains("sections") => {
                let inline = Document::parse(&text)?;
                self.run_section(frame.enter(&inline, &params, frame.base_url), "main")
            }
            Value::String(dest) => Err(format!("{dest:?} is neither a section of this document nor a URL")),
            Value::Array(steps) => {
                Ok(match self.run_steps(frame.enter(frame.document, &params, frame.base_url), &steps)? {
                    Ending::Goto(label) => return Err(format!("goto: no label {label:?}")),
                    other => other,
                })
            }
            inline @ Value::Object(_) => {
                let inline = Document::from_value(&inline)?;
                self.run_section(frame.enter(&inline, &params, frame.base_url), "main")
            }
            other => Err(format!("`dest` must be a section, a URL or a document, not {}", documents::kind(&other))),
        }
    }

    /// Fetches a document: POST `{call, vars, params, envs}`, answered with JSON or YAML.
    fn fetch(&self, url: &str, params: &Value) -> Result<Document, String> {
        let payload = json!({"call": self.call_object, "vars": self.vars, "params": params, "envs": self.envs});
        let response = hooks::send_json(&Hook::post(url), &payload).map_err(|e| format!("fetching {url}: {e:?}"))?;
        if !(200..300).contains(&response.status) {
            return Err(format!("fetching {url}: the server answered {}", response.status));
        }
        Document::from_value(&parse_text(&response.body).map_err(|e| format!("{url}: {e}"))?)
            .map_err(|e| format!("{url}: {e}"))
    }

    /// `request`: an HTTP request whose outcome goes into variables (`request_result`,
    /// `request_response_code`, `request_response_body`, and with `save_variables` the answer's JSON as
    /// `request_response`).
    fn request(&mut self, args: &Value) -> Result<(), String> {
        let url = args.get("url").and_then(Value::as_str).ok_or("give the `url`")?;
        let method = args.get("method").and_then(Value::as_str).unwrap_or("POST").to_ascii_uppercase();
        if method != "POST" && method != "GET" {
            return Err(format!("method {method} is not supported (GET or POST)"));
        }
        let body = match args.get("body") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(text)) => parse_text(text).unwrap_or_else(|_| json!({"body": text})),
            Some(other) => other.clone(),
        };
        let mut hook = Hook::post(url);
        hook.method = Some(method);
        self.set_var("request_url", json!(url));
        match hooks::send_json(&hook, &body) {
            Ok(response) => {
                let ok = (200..300).contains(&response.status);
                self.set_var("request_result", json!(if ok { "success" } else { "failed" }));
                self.set_var("return_value", json!(if ok { "success" } else { "failed" }));
                self.set_var("request_response_code", json!(response.status.to_string()));
                self.set_var("request_response_body", json!(response.body));
                if args.get("save_variables").and_then(Value::as_bool) == Some(true)
                    && let Ok(answer) = parse_text(&response.body)
                {
                    self.set_var("request_response", answer);
                }
            }
            Err(error) => {
                log(Level::Warn, &format!("request to {url} failed: {error:?}"));
                self.set_var("request_result", json!("failed"));
                self.set_var("return_value", json!("failed"));
            }
        }
        Ok(())
    }

    /// `connect`: calls `to` (a SIP URI) with the `dial` verb and bridges it; sets `connect_result`.
    fn connect(&mut self, args: &Value) -> Result<Ending, String> {
        let to = args
            .get("to")
            .and_then(Value::as_str)
            .ok_or("give `to` (a SIP URI); parallel and serial dialing are not supported")?;
        if !to.starts_with("sip:") && !to.starts_with("sips:") {
            return Err(format!("{to:?}: only SIP URIs can be dialled (no phone numbers without a carrier)"));
        }
        let mut dial = json!({"target": [{"type": "sip", "sipUri": to}]});
        if let Some(from) = args.get("from") {
            dial["callerId"] = from.clone();
        }
        if let Some(timeout) = args.get("timeout") {
            dial["timeout"] = timeout.clone();
        }
        // As SignalWire: the caller is answered first unless `answer_on_bridge`; `ringback` plays meanwhile.
        dial["answerOnBridge"] = json!(args.get("answer_on_bridge").is_some_and(truthy));
        if let Some(ringback) = args.get("ringback") {
            dial["dialMusic"] = ringback.clone();
        }
        let result = dispatch::run_verb(self.call, "dial", &dial).map_err(|e| format!("dial: {}", e.message()))?;
        let connected = result["dial_call_status"] == "completed";
        self.set_var("connect_result", json!(if connected { "connected" } else { "failed" }));
        self.set_var("return_value", json!(if connected { "connected" } else { "failed" }));
        Ok(if self.call.has_ended() { Ending::Stop } else { Ending::Done })
    }
}

fn is_label(step: &Value, label: &str) -> bool {
    step.get("label").and_then(Value::as_str) == Some(label)
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The `call` scope, with SignalWire's field names.
pub fn call_object(info: &CallInfo) -> Value {
    let direction = match info.direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    let headers: Vec<Value> = info.headers.iter().map(|h| json!({"name": h.name, "value": h.value})).collect();
    json!({
        "call_id": info.id,
        "sip_call_id": info.sip_call_id,
        "type": "sip",
        "direction": direction,
        "from": info.from,
        "to": info.to,
        "from_number": info.from_user,
        "to_number": info.to_user,
        "headers": headers,
        "project_id": "",
        "space_id": "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_names_or_one_method_objects() {
        assert_eq!(split_step(&json!("hangup")).unwrap(), ("hangup".into(), Value::Null));
        assert_eq!(split_step(&json!({"sleep": 500})).unwrap(), ("sleep".into(), json!(500)));
        assert!(split_step(&json!({"a": 1, "b": 2})).unwrap_err().contains("one method"));
        assert!(split_step(&json!(3)).unwrap_err().contains("not a number"));
    }

    #[test]
    fn truthiness_is_javascripts() {
        for falsy in [json!(null), json!(false), json!(0), json!(""), json!(0.0)] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for true_ in [json!("0"), json!([]), json!({}), json!(1), json!("false")] {
            assert!(truthy(&true_), "{true_}");
        }
    }
}
