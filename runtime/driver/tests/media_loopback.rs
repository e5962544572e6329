//! Two calls' media tasks over loopback sockets: ports come from the configured range in even/odd pairs,
//! RFC 4733 digits sent by one are heard once by the other, and dropping a leg frees its ports even while an
//! updater of it is held.

use std::time::Duration;

use callwright_driver::media::{MediaConfig, MediaLeg, MediaPorts};
use callwright_media::MediaEvent;
use callwright_media::dtmf::parse_digit_string;
use callwright_media::sdp::{self, LocalMedia, Origin, SessionDescription};

#[tokio::test]
async fn digits_cross_loopback_between_two_media_tasks() {
    let ports = MediaPorts::new(MediaConfig { ports: 31_000..=31_099, ..MediaConfig::default() });
    let ip = "127.0.0.1".parse().unwrap();
    let (a_sockets, b_sockets) = (ports.open(ip).await.unwrap(), ports.open(ip).await.unwrap());
    assert!(a_sockets.port() % 2 == 0 && (31_000..31_100).contains(&a_sockets.port()));
    assert_ne!(a_sockets.port(), b_sockets.port());
    let a_local = LocalMedia::new(ip, a_sockets.port());
    let offer = sdp::offer(&a_local, &mut Origin::new(1));
    let (answer, b_stream) = sdp::answer(
        &SessionDescription::parse(&offer).unwrap(),
        &LocalMedia::new(ip, b_sockets.port()),
        &mut Origin::new(2),
    )
    .unwrap();
    let a_stream = sdp::accept_answer(&SessionDescription::parse(&answer).unwrap(), &a_local).unwrap();
    let (a_port, a_negotiated) = (a_sockets.port(), a_stream.clone());
    let a = MediaLeg::spawn(a_sockets, ports.session_config(a_stream), Box::new(()));
    // Held elsewhere (by the SIP core's re-INVITE answerer), an updater must not keep the task alive.
    let a_updater = a.updater();
    let mut b = MediaLeg::spawn(b_sockets, ports.session_config(b_stream), Box::new(()));
    a.send_digits(parse_digit_string("42#").unwrap(), Duration::from_millis(80)).await.unwrap().unwrap();
    let mut heard = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while heard.len() < 3 {
        match tokio::time::timeout_at(deadline, b.events.recv()).await {
            Ok(Some(MediaEvent::Digit(digit))) => heard.push(digit.key),
            Ok(Some(_)) => {}
            other => panic!("heard {heard:?}, then {other:?}"),
        }
    }
    assert_eq!(heard, "42#");
    let stats = b.stats().await.unwrap();
    assert!(stats.packets_received > 10 && stats.malformed == 0, "{stats:?}");
    drop(a);
    drop(b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let freed = std::net::UdpSocket::bind((ip, a_port));
    assert!(freed.is_ok(), "port {a_port} still bound after its leg was dropped: {freed:?}");
    a_updater.update(a_negotiated); // the session is gone: a no-op
    let again = ports.open(ip).await.unwrap();
    assert!((31_000..31_100).contains(&again.port()));
}
