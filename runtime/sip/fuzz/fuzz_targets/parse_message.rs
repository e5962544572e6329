//! `Message::parse` on arbitrary bytes must not panic, and whatever parses must survive a round trip:
//! `parse(to_bytes(m))` succeeds and gives back `m`.
//!
//! One normalisation is allowed, because `to_bytes` does it by design: Content-Length is not copied from
//! the header list but written last from the body's length. So the two messages are compared without
//! their Content-Length fields, and the re-parsed one must carry exactly `Content-Length: <body length>`.
//! Serialising the re-parsed message must then give the very same bytes (a fixed point).
#![no_main]

use callwright_sip::message::Message;
use libfuzzer_sys::fuzz_target;

/// The message with every Content-Length field removed (the one field `to_bytes` rewrites).
fn without_content_length(message: &Message) -> Message {
    let mut message = message.clone();
    match &mut message {
        Message::Request(request) => request.headers.remove("Content-Length"),
        Message::Response(response) => response.headers.remove("Content-Length"),
    }
    message
}

/// The body of a message.
fn body(message: &Message) -> &[u8] {
    match message {
        Message::Request(request) => &request.body,
        Message::Response(response) => &response.body,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Message::parse(data) else {
        return;
    };
    let bytes = first.to_bytes();
    let second = match Message::parse(&bytes) {
        Ok(second) => second,
        Err(error) => panic!(
            "serialised message does not parse again: {error}\nserialised: {:?}\nfirst parse: {first:#?}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    let length = body(&second).len().to_string();
    assert_eq!(
        second.headers().get_all("Content-Length").collect::<Vec<_>>(),
        [length.as_str()],
        "re-parsed Content-Length must be the body length"
    );
    assert_eq!(
        without_content_length(&first),
        without_content_length(&second),
        "round trip changed the message; serialised: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(second.to_bytes(), bytes, "serialisation is not a fixed point");
});
