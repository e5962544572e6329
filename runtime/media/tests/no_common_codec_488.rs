//! An offer we cannot carry (only codecs we do not have, only encrypted or non-audio streams) is refused
//! with 488 Not Acceptable Here, naming what we do carry; one with a usable stream among others accepts it
//! and declines the rest in place.

use callwright_media::Error;
use callwright_media::sdp::{self, LocalMedia, Origin, SessionDescription};

fn try_answer(offer: &str) -> Result<String, Error> {
    let offer = SessionDescription::parse(offer.as_bytes())?;
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40000);
    sdp::answer(&offer, &local, &mut Origin::new(1)).map(|(body, _)| String::from_utf8(body).unwrap())
}

const HEADER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";

#[test]
fn offers_without_a_codec_we_carry_are_488() {
    for media in [
        "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
        "m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 iLBC/8000\r\n",
        "m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 opus/16000/2\r\n",
        "m=audio 4000 RTP/SAVP 0\r\n",
        "m=audio 4000 UDP/TLS/RTP/SAVPF 0\r\n",
        "m=video 4000 RTP/AVP 96\r\n",
        "m=audio 0 RTP/AVP 0\r\n",
        "m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n",
        "",
    ] {
        let error = try_answer(&format!("{HEADER}{media}")).unwrap_err();
        assert_eq!(error.sip_status(), 488, "{media}");
        assert!(error.to_string().contains("PCMU"), "{error}");
    }
}

#[test]
fn a_usable_stream_among_others_is_accepted() {
    let offer = format!("{HEADER}m=audio 4000 RTP/SAVP 0\r\nm=audio 4002 RTP/AVP 18 8\r\nm=video 4004 RTP/AVP 96\r\n");
    let answer = try_answer(&offer).unwrap();
    let media: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(media, ["m=audio 0 RTP/SAVP 0", "m=audio 40000 RTP/AVP 8", "m=video 0 RTP/AVP 96"]);
}
