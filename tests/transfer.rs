//! Transfers end to end: the `blind-transfer` example refers real callers (baresip, SIPp transferees that
//! accept, refuse, challenge, stay silent or hang up) and reports to a real HTTP server, whose recorded
//! hook payloads are checked field by field; and callwright as the transferee of a SIPp referrer.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::baresip::Baresip;
use support::hooks::HookServer;
use support::sipp::Sipp;
use support::transfer::{
    HOOK_WAIT, assert_call_fields, assert_signed, event_statuses, put_transfer_app, transferee_call,
};
use support::{BLIND_TRANSFER, Server, TempDir};

/// The user the transfer apps answer.
const USER: &str = "transfer";

/// A server running `blind-transfer` for calls to [`USER`], with `config` merged into its config and
/// hooks going to `hooks`.
fn transfer_server(data: &TempDir, hooks: &HookServer, config: Value) -> Server {
    let server = Server::start_in(&data.0, &[]);
    server.deploy("blind-transfer", BLIND_TRANSFER).assert_status(201);
    put_transfer_app(&server, hooks, "blind-transfer", USER, config);
    server
}

/// Runs one SIPp transferee scenario against a blind-transfer server; returns the action hooks' payloads
/// and the event hooks' statuses.
fn refer_scenario(scenario: &str, config: Value, sipp_args: &[&str]) -> (Vec<Value>, Vec<String>) {
    refer_scenario_with(scenario, config, sipp_args, 1)
}

/// [`refer_scenario`] waiting for `actions` action hooks.
fn refer_scenario_with(scenario: &str, config: Value, sipp_args: &[&str], actions: usize) -> (Vec<Value>, Vec<String>) {
    let data = TempDir::new("transfer");
    let hooks = HookServer::start();
    let server = transfer_server(&data, &hooks, config);
    transferee_call(&server, &hooks, USER, scenario, sipp_args, actions)
}

#[test]
fn baresip_follows_the_refer_to_a_sipp_target_and_the_hooks_see_it() {
    let target = Sipp::server("uas-answer.xml", 0).calls(1).timeout(Duration::from_secs(30)).spawn();
    let data = TempDir::new("transfer-baresip");
    let hooks = HookServer::start();
    let config = json!({ "target": format!("sip:target@127.0.0.1:{}", target.port()) });
    let server = transfer_server(&data, &hooks, config);

    let baresip = Baresip::dial(&format!("sip:{USER}@{}", server.sip), Duration::from_secs(8));
    let action = hooks.wait_for(&format!("/{USER}/action"), 1, HOOK_WAIT)[0].json();
    assert_eq!(action["refer_status"], 202, "{action}");
    assert_eq!(action["final_referred_call_status"], 200, "{action}");
    assert_eq!(action["transfer_outcome"], "success", "{action}");
    assert_call_fields(&action, "baresip", USER);
    assert_eq!(event_statuses(&hooks, USER), ["100", "200"]);
    for request in hooks.requests() {
        assert_signed(&request);
    }
    let log = baresip.wait(Duration::from_secs(15));
    // The target got baresip's INVITE, answered, and saw the BYE when baresip's time was up.
    target.wait().assert_all_succeeded(1);
    assert!(log.contains("REFER"), "baresip saw no REFER:\n{log}");
}

#[test]
fn an_accepted_transfer_reports_each_notify_then_success() {
    let (actions, events) = refer_scenario("uac-refer-accept.xml", json!({}), &[]);
    assert_call_fields(&actions[0], "sipp", USER);
    assert_eq!(actions[0]["refer_status"], 202);
    assert_eq!(actions[0]["final_referred_call_status"], 200);
    assert_eq!(actions[0]["transfer_outcome"], "success");
    assert_eq!(events, ["100", "200"]);
}

#[test]
fn a_refused_refer_reports_its_status_for_403_and_405() {
    for status in ["403", "405"] {
        let (actions, events) = refer_scenario("uac-refer-reject.xml", json!({}), &["-key", "refer_status", status]);
        assert_eq!(actions[0]["refer_status"], status.parse::<u16>().unwrap(), "{}", actions[0]);
        assert_eq!(actions[0]["transfer_outcome"], "rejected");
        assert!(actions[0].get("final_referred_call_status").is_none(), "{}", actions[0]);
        assert!(events.is_empty(), "{events:?}");
    }
}

#[test]
fn a_challenged_refer_is_resent_with_credentials() {
    let config = json!({ "username": "alice", "password": "secret" });
    // The scenario checks the Authorization against alice/secret itself (SIPp's verifyauth).
    let (actions, _) = refer_scenario("uac-refer-challenge.xml", config, &[]);
    assert_eq!(actions[0]["refer_status"], 202, "{}", actions[0]);
    assert_eq!(actions[0]["transfer_outcome"], "success");
}

#[test]
fn a_challenged_refer_without_credentials_is_an_auth_failure() {
    let (actions, _) = refer_scenario("uac-refer-challenge-only.xml", json!({}), &[]);
    assert_eq!(actions[0]["refer_status"], 401, "{}", actions[0]);
    assert_eq!(actions[0]["transfer_outcome"], "auth-failed");
}

#[test]
fn no_notify_after_the_202_times_out() {
    let (actions, _) = refer_scenario("uac-refer-no-notify.xml", json!({ "timeout_ms": 1500 }), &[]);
    assert_eq!(actions[0]["refer_status"], 202, "{}", actions[0]);
    assert_eq!(actions[0]["transfer_outcome"], "timeout");
    assert!(actions[0].get("final_referred_call_status").is_none(), "{}", actions[0]);
}

#[test]
fn a_bye_right_after_the_202_still_gives_an_outcome() {
    let (actions, _) = refer_scenario("uac-refer-bye-after-202.xml", json!({}), &[]);
    assert_eq!(actions[0]["refer_status"], 202, "{}", actions[0]);
    assert_eq!(actions[0]["transfer_outcome"], "call-ended");
}

#[test]
fn a_notify_before_the_202_is_answered_and_reported_in_order() {
    let (actions, events) = refer_scenario("uac-refer-notify-before-202.xml", json!({}), &[]);
    assert_eq!(actions[0]["refer_status"], 202);
    assert_eq!(actions[0]["transfer_outcome"], "success");
    assert_eq!(events, ["100", "200"]);
}

#[test]
fn refer_sub_false_is_asked_for_and_accepted() {
    let (actions, events) = refer_scenario("uac-refer-sub-false.xml", json!({ "no_refer_sub": true }), &[]);
    assert_eq!(actions[0]["refer_status"], 202);
    assert_eq!(actions[0]["transfer_outcome"], "success");
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_failure_sipfrag_is_reported_as_failure() {
    let (actions, events) = refer_scenario("uac-refer-notify-486.xml", json!({}), &[]);
    assert_eq!(actions[0]["refer_status"], 202);
    assert_eq!(actions[0]["final_referred_call_status"], 486);
    assert_eq!(actions[0]["transfer_outcome"], "failed");
    assert_eq!(events, ["100", "486"]);
}

#[test]
fn a_second_refer_in_the_dialog_has_its_own_subscription() {
    let config = json!({ "fallback_targets": ["sip:second@127.0.0.1:9"] });
    let (actions, events) = refer_scenario_with("uac-refer-twice.xml", config, &[], 2);
    assert_eq!(actions[0]["refer_status"], 202, "{}", actions[0]);
    assert_eq!(actions[0]["final_referred_call_status"], 603, "{}", actions[0]);
    assert_eq!(actions[0]["transfer_outcome"], "failed");
    assert_eq!(actions[1]["refer_status"], 202, "{}", actions[1]);
    assert_eq!(actions[1]["final_referred_call_status"], 200, "{}", actions[1]);
    assert_eq!(actions[1]["transfer_outcome"], "success");
    assert_eq!(events, ["603", "100", "200"]);
}

#[test]
fn callwright_follows_a_refer_from_a_sipp_referrer() {
    let target = Sipp::server("uas-answer.xml", 0).calls(1).timeout(Duration::from_secs(30)).spawn();
    let data = TempDir::new("transfer-inbound");
    let server = Server::with_behaviours(&data.0);
    let refer_target = format!("target@127.0.0.1:{}", target.port());
    Sipp::client("uac-refers-us.xml", server.sip)
        .service("transferee")
        .arg("-key")
        .arg("refer_target")
        .arg(&refer_target)
        .timeout(Duration::from_secs(30))
        .run()
        .assert_all_succeeded(1);
    // The transferee guest hangs the new call up a second after the referrer's BYE.
    target.wait().assert_all_succeeded(1);
    assert!(server.log().contains("transfer target answered"), "{}", server.log());
}

#[test]
fn a_guest_that_ignores_a_refer_makes_the_host_decline_it() {
    let data = TempDir::new("transfer-501");
    let server = Server::with_behaviours(&data.0);
    Sipp::client("uac-refers-us-declined.xml", server.sip)
        .service("no-refer")
        .timeout(Duration::from_secs(30))
        .run()
        .assert_all_succeeded(1);
    assert!(server.log().contains("REFER left unanswered by the guest: 501"), "{}", server.log());
}

#[test]
fn attended_transfer_replaces_the_consultation_call() {
    // B: call 1 is callwright's consultation call, call 2 the caller's INVITE with Replaces naming it; B checks
    // the Replaces header against call 1 and then hangs call 1 up, as a target that honours Replaces does.
    let target = Sipp::server("uas-attended-target.xml", 0).calls(2).timeout(Duration::from_secs(40)).spawn();
    let data = TempDir::new("transfer-attended");
    let hooks = HookServer::start();
    let server = Server::start_in(&data.0, &[]);
    server.deploy("attended-transfer", support::ATTENDED_TRANSFER).assert_status(201);
    let app = json!({
        "route": { "to_user": "attended" },
        "flow": {
            "module": "attended-transfer",
            "config": {
                "target": format!("sip:target@127.0.0.1:{}", target.port()),
                "action_hook": hooks.url("/action"),
            },
        },
        "hooks": { "allow": [hooks.addr().to_string()] },
    });
    server.put_app("attended", &app.to_string()).assert_status(201);

    // A: answers the REFER, calls B with the Replaces header built from Refer-To, reports the 200 by NOTIFY.
    Sipp::client("uac-attended-transferee.xml", server.sip)
        .service("attended")
        .timeout(Duration::from_secs(40))
        .run()
        .assert_all_succeeded(1);
    target.wait().assert_all_succeeded(2);

    let action = hooks.wait_for("/action", 1, HOOK_WAIT)[0].json();
    assert_eq!(action["refer_status"], 202, "{action}");
    assert_eq!(action["final_referred_call_status"], 200, "{action}");
    assert_eq!(action["transfer_outcome"], "success", "{action}");
    assert_eq!(action["consult_status"], 200, "{action}");
    // B hung up the consultation call itself: the caller's INVITE really replaced it.
    assert_eq!(action["replaced"], true, "{action}");
    assert_eq!(action["to"], "attended", "{action}");
}
