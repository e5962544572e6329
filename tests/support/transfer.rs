//! Blind-transfer apps for the end-to-end tests: the `blind-transfer` example (in any language) deployed
//! for calls to one user, with its hooks going to a [`HookServer`] under that user's paths, and the checks
//! every language's example must pass the same way.

use std::time::Duration;

use serde_json::{Value, json};

use super::Server;
use super::hooks::{HookRequest, HookServer};
use super::sipp::Sipp;

/// The webhook secret of the test apps.
pub const SECRET: &str = "test-webhook-secret";
/// How long a test waits for a hook.
pub const HOOK_WAIT: Duration = Duration::from_secs(25);
/// Where transfers go when a test sets no target: the discard port, nobody answers.
pub const NOWHERE: &str = "sip:target@127.0.0.1:9";

/// Puts app `user`, running module `module` for calls to `user`, with `config` merged into the flow
/// config: action hooks go to `/<user>/action`, event hooks to `/<user>/event`, signed with [`SECRET`].
/// The target defaults to [`NOWHERE`].
pub fn put_transfer_app(server: &Server, hooks: &HookServer, module: &str, user: &str, config: Value) {
    let mut flow_config = json!({
        "target": NOWHERE,
        "action_hook": hooks.url(&format!("/{user}/action")),
        "event_hook": { "url": hooks.url(&format!("/{user}/event")), "method": "POST" },
    });
    for (key, value) in config.as_object().expect("config object") {
        flow_config[key] = value.clone();
    }
    let flow = json!({ "module": module, "config": flow_config });
    server.put_app_with_hooks(user, user, flow, hooks, Some(SECRET));
}

/// The `call_status` of every event hook of `user`'s app, in order.
pub fn event_statuses(hooks: &HookServer, user: &str) -> Vec<String> {
    let path = format!("/{user}/event");
    hooks
        .requests()
        .iter()
        .filter(|r| r.route() == path)
        .map(|r| {
            let body = r.json();
            assert_eq!(body["event"], "transfer-status", "{body}");
            body["call_status"].as_str().expect("call_status is a string").to_string()
        })
        .collect()
}

/// Checks the jambonz signature of a hook request against its body.
pub fn assert_signed(request: &HookRequest) {
    let header = request.header("Jambonz-Signature").expect("hooks are signed");
    let t: u64 = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("signature header {header:?}"));
    assert_eq!(
        header,
        callwright_host::hooks::signature(SECRET, t, request.text().as_bytes()),
        "signature of {request:?}"
    );
}

/// Calls `user` with the SIPp transferee `scenario` (and `sipp_args`), waits for `actions` action hooks
/// and returns their payloads and the event hooks' statuses; every hook must be signed.
pub fn transferee_call(
    server: &Server,
    hooks: &HookServer,
    user: &str,
    scenario: &str,
    sipp_args: &[&str],
    actions: usize,
) -> (Vec<Value>, Vec<String>) {
    let mut sipp = Sipp::client(scenario, server.sip).service(user).timeout(Duration::from_secs(40));
    for arg in sipp_args {
        sipp = sipp.arg(arg);
    }
    sipp.run().assert_all_succeeded(1);
    let actions = hooks.wait_for(&format!("/{user}/action"), actions, HOOK_WAIT);
    for request in hooks.requests() {
        assert_signed(&request);
    }
    (actions.iter().map(HookRequest::json).collect(), event_statuses(hooks, user))
}

/// The action payload's call fields, as jambonz sends them, for a call from SIPp to `user`.
pub fn assert_call_fields(action: &Value, from: &str, to: &str) {
    assert_eq!(action["direction"], "inbound", "{action}");
    assert_eq!(action["from"], from, "{action}");
    assert_eq!(action["to"], to, "{action}");
    assert_eq!(action["sip_status"], 200, "{action}");
    assert_eq!(action["call_status"], "in-progress", "{action}");
    assert!(action["call_sid"].as_str().is_some_and(|s| !s.is_empty()), "{action}");
    assert!(action["call_id"].as_str().is_some_and(|s| !s.is_empty()), "{action}");
}
