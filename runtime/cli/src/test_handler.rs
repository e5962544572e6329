//! The built-in test handler: a stand-in for guest call logic until the wasm host exists, so the SIP layer
//! can be driven end to end. It chooses its behaviour from the Request-URI user:
//!
//! | user      | behaviour |
//! |-----------|-----------|
//! | `busy`    | 486 Busy Here |
//! | `slow`    | 180 Ringing, answers after 5 s (time for the caller to CANCEL) |
//! | `hangup`  | answers, then sends BYE 1 s after the ACK |
//! | anything else | 180 Ringing, then 200 OK with SDP; waits for the caller's BYE |
//!
//! In-dialog INFO and MESSAGE get 200; REFER gets 501 (no transfer logic here).

use std::collections::HashMap;
use std::time::Duration;

use callwright_driver::SipHandle;
use callwright_sip::message::Method;
use callwright_sip::{CallHandle, EndReason, Event, Extras, Flow};
use tokio::sync::mpsc;
use tracing::{info, warn};

const SLOW_ANSWER: Duration = Duration::from_secs(5);
const HANGUP_AFTER_ACK: Duration = Duration::from_secs(1);

/// A minimal SDP answer: we carry no media yet, so it names a port nothing listens on.
fn sdp_answer(flow: &Flow) -> Extras {
    let ip = flow.local.ip();
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let sdp = format!(
        "v=0\r\no=callwright 1 1 IN {family} {ip}\r\ns=callwright\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio 9 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    );
    Extras::body("application/sdp", sdp)
}

pub(crate) async fn run(sip: SipHandle, mut events: mpsc::Receiver<Event>) -> anyhow::Result<()> {
    let mut hangup_on_confirm: HashMap<CallHandle, ()> = HashMap::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::IncomingCall {
                call,
                request,
                flow,
            } => {
                let user = request.uri.user().unwrap_or_default().to_string();
                info!(%call, %user, from = %request.headers.get("From").unwrap_or_default(), "incoming call");
                let sip = sip.clone();
                match user.as_str() {
                    "busy" => {
                        spawn_logged(
                            async move { sip.reject(call, 486, None, Extras::default()).await },
                        )
                    }
                    "slow" => spawn_logged(async move {
                        sip.ring(call, 180, Extras::default()).await?;
                        tokio::time::sleep(SLOW_ANSWER).await;
                        sip.answer(call, sdp_answer(&flow)).await
                    }),
                    other => {
                        if other == "hangup" {
                            hangup_on_confirm.insert(call, ());
                        }
                        spawn_logged(async move {
                            sip.ring(call, 180, Extras::default()).await?;
                            sip.answer(call, sdp_answer(&flow)).await
                        })
                    }
                }
            }
            Event::CallConfirmed { call } => {
                if hangup_on_confirm.remove(&call).is_some() {
                    let sip = sip.clone();
                    spawn_logged(async move {
                        tokio::time::sleep(HANGUP_AFTER_ACK).await;
                        sip.hangup(call).await
                    });
                }
            }
            Event::Request {
                handle, request, ..
            } => {
                let status = if request.method == Method::Refer {
                    501
                } else {
                    200
                };
                let sip = sip.clone();
                spawn_logged(async move { sip.respond(handle, status, Extras::default()).await });
            }
            Event::CallEnded { call, reason } => {
                hangup_on_confirm.remove(&call);
                match reason {
                    EndReason::AckTimeout => warn!(%call, "no ACK for our 200: sent BYE"),
                    reason => info!(%call, ?reason, "call ended"),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn spawn_logged<E: std::fmt::Display>(task: impl Future<Output = Result<(), E>> + Send + 'static) {
    tokio::spawn(async move {
        if let Err(error) = task.await {
            // A call that ended meanwhile (e.g. CANCEL during the slow answer) refuses the command.
            info!(%error, "call command not carried out");
        }
    });
}
