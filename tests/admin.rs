//! The admin API's own defences: names that could leave the data directory are refused on every route,
//! and the listener bounds what clients can hold.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::serde_like::app;
use support::sipp::{Sipp, Transport};
use support::{ANSWER_HANGUP, IVR, Server, TOKEN, TempDir, http};

/// The admin listener's header-read timeout (`runtime/cli/src/admin_listener.rs`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Names that would climb out of the data directory, or into another part of it, written as a client
/// puts them in a URL (axum decodes the escapes before the handler sees the name).
const HOSTILE_NAMES: [&str; 9] = [
    "..",
    "..%2F..%2Foutside",
    "..%2Fapps",
    "..%2Fmodules",
    "%2Ftmp%2Fcallwright-absolute",
    "a%00b",
    "..%5C..%5Coutside",
    "a%5Cb",
    "%2E%2E",
];

#[test]
fn names_that_leave_the_data_directory_get_400_on_every_route_and_nothing_is_touched() {
    let root = TempDir::new("admin-names");
    let data = root.0.join("data");
    let outside = root.0.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), "must survive").unwrap();
    let server = Server::start_in(&data, &[]);
    server.deploy("answer-hangup", ANSWER_HANGUP).assert_status(201);
    server.put_app("demo", &app("answer-hangup", Some("1000"), "null")).assert_status(201);
    let app_json = app("answer-hangup", Some("2000"), "null");

    for name in HOSTILE_NAMES {
        for (method, collection, body) in [
            ("GET", "modules", &b""[..]),
            ("PUT", "modules", std::fs::read(ANSWER_HANGUP).unwrap().leak()),
            ("DELETE", "modules", b""),
            ("GET", "apps", b""),
            ("PUT", "apps", app_json.as_bytes()),
            ("DELETE", "apps", b""),
        ] {
            let answer = http(server.http, method, &format!("/v1/{collection}/{name}"), Some(TOKEN), body);
            let kind = &collection[..collection.len() - 1];
            assert_eq!(answer.status, 400, "{method} /v1/{collection}/{name}: {}", answer.body);
            assert!(answer.body.contains(&format!("{kind} name")), "{method} {name}: {}", answer.body);
            assert!(answer.body.contains("must be 1-63 characters"), "{method} {name}: {}", answer.body);
        }
    }
    assert_eq!(std::fs::read_to_string(outside.join("keep.txt")).unwrap(), "must survive");
    assert!(data.join("apps/demo.json").exists(), "the data dir's apps were touched");
    assert!(data.join("modules/answer-hangup/meta.json").exists(), "the data dir's modules were touched");
    assert!(!std::path::Path::new("/tmp/callwright-absolute").exists());
    server.api("GET", "/v1/apps/demo", b"").assert_status(200);
    server.api("GET", "/v1/modules/answer-hangup", b"").assert_status(200);
}

#[test]
fn half_sent_requests_cannot_hold_the_admin_api_or_starve_sip_over_tcp() {
    let data = TempDir::new("admin-slowloris");
    // The common default limit, under which 1,100 half-sent requests once took every descriptor.
    let server = Server::start_with_file_limit(&data.0, &[], 1024);
    server.deploy("answer-hangup", ANSWER_HANGUP).assert_status(201);
    server.put_app("demo", &app("answer-hangup", Some("1000"), "{\"hangup_after_ms\": 200}")).assert_status(201);

    let opened = Instant::now();
    let half_sent: Vec<TcpStream> = (0..1100)
        .map(|_| {
            let mut stream = TcpStream::connect_timeout(&server.http, Duration::from_secs(2)).expect("connect");
            stream.write_all(b"GET /v1/stats HTTP/1.1\r\nHost: callwright\r\n").expect("half a request");
            stream
        })
        .collect();
    // SIP over TCP still accepts and serves calls.
    Sipp::client("uac-callee-hangs-up.xml", server.sip)
        .transport(Transport::Tcp)
        .service("1000")
        .calls(3)
        .run()
        .assert_all_succeeded(3);
    // Past the cap, a client is told at once instead of waiting in the backlog (once the flood's own
    // refusals, which linger up to 1 s to deliver their 503, are done; past 64 of those, a flood is reset).
    std::thread::sleep(Duration::from_millis(1500));
    let refused = http(server.http, "GET", "/v1/stats", Some(TOKEN), b"");
    assert_eq!(refused.status, 503, "{}", refused.body);

    // Every half-sent request is let go once its header section is late.
    let deadline = opened + HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let held = half_sent.iter().filter(|stream| !is_closed_by(stream, deadline)).count();
    assert_eq!(held, 0, "half-sent requests still held {:?} after they were opened", opened.elapsed());
    server.api("GET", "/v1/stats", b"").assert_status(200);
    assert_eq!(server.log().matches("admin API at its connection limit").count(), 1, "one warning, rate-limited");
}

/// Whether the server closes `stream` (after any answer) before `deadline`.
fn is_closed_by(mut stream: &TcpStream, deadline: Instant) -> bool {
    let mut buffer = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn concurrent_uploads_to_one_name_all_get_201_and_the_module_is_one_of_them() {
    let data = TempDir::new("admin-concurrent");
    let server = Server::start_in(&data.0, &[]);
    let components = [std::fs::read(ANSWER_HANGUP).unwrap(), std::fs::read(IVR).unwrap()];
    let statuses: Vec<(u16, String)> = std::thread::scope(|scope| {
        let uploads: Vec<_> = (0..100)
            .map(|i| {
                let bytes = &components[i % 2];
                let addr = server.http;
                scope.spawn(move || {
                    let answer = http(addr, "PUT", "/v1/modules/contested", Some(TOKEN), bytes);
                    (answer.status, answer.body)
                })
            })
            .collect();
        uploads.into_iter().map(|upload| upload.join().expect("upload thread")).collect()
    });
    let refused: Vec<&(u16, String)> = statuses.iter().filter(|(status, _)| *status != 201).collect();
    assert!(refused.is_empty(), "{} of 100 uploads were not stored: {:?}", refused.len(), refused.first());
    let stored = server.api("GET", "/v1/modules/contested", b"");
    stored.assert_status(200);
    let on_disk = std::fs::read(data.0.join("modules/contested/component.wasm")).expect("the stored component");
    assert!(components.contains(&on_disk), "the stored component is one of the uploads");
    assert_ne!(components[0].len(), components[1].len(), "the two uploads differ in size");
    let size = format!("\"size\":{}", on_disk.len());
    assert!(stored.body.contains(&size), "the served record matches the disk ({size}): {}", stored.body);
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let data = TempDir::new("admin-bearer");
    let server = Server::start_in(&data.0, &[]);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let mut stream = TcpStream::connect(server.http).expect("connect");
        let request = format!(
            "GET /v1/stats HTTP/1.1\r\nHost: callwright\r\nauthorization: {scheme} {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{scheme}: {answer}");
    }
}
