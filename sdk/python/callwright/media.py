"""Media: prompts, speech and tones the caller hears, the keys the caller presses, digits we send,
recordings and bridges. Failures raise `MediaError`.

    from callwright import media

    media.say(call, "Press a key.", barge_in=True)
    got = media.wait([call], 5000)
    if got and isinstance(got[1], media.DigitPressed):
        key = got[1].value.key
"""

from typing import Any, List, Optional, Sequence, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import media as _media

from ._util import variant_text

__all__ = [
    "MediaError", "play", "say", "stop_playback", "send_digits", "record", "bridge", "unbridge", "wait",
    "audio_source", "DigitPressed", "PlaybackEnded", "DigitsSent", "RecordingEnded", "CallUpdate",
    "digit_source_name",
]

#: What `wait` returns as the second item (dataclasses; `.value` holds the payload).
DigitPressed = _media.MediaUpdate_Digit
PlaybackEnded = _media.MediaUpdate_PlaybackEnded
DigitsSent = _media.MediaUpdate_DigitsSent
RecordingEnded = _media.MediaUpdate_RecordingEnded
CallUpdate = _media.MediaUpdate_Call

_KINDS = {
    _media.MediaError_NoMedia: "no-media",
    _media.MediaError_CallEnded: "call-ended",
    _media.MediaError_BadSource: "bad-source",
    _media.MediaError_InvalidArgument: "invalid-argument",
}


class MediaError(Exception):
    """A media operation failed. `kind`: `no-media`, `call-ended`, `bad-source` or `invalid-argument`;
    `message`: the host's words (naming the source for `bad-source`); `variant`: the WIT value."""

    def __init__(self, variant: Any):
        self.variant = variant
        self.kind = _KINDS[type(variant)]
        self.message = getattr(variant, "value", None) or self.kind
        super().__init__(variant_text(variant))


def _raw(call: Any) -> Any:
    return getattr(call, "raw", call)


def audio_source(source: Union[str, dict]) -> Any:
    """A WIT `audio-source` from `{"say": text, "voice": ...}`, `{"url": ...}`, `{"file": name}`,
    `{"silence": ms}`, `{"tones": "123"}`, `{"ring": "us", "ms": ...}` or `{"stream": "tone_stream://..."}`;
    a string is text to speak."""
    if isinstance(source, str):
        source = {"say": source}
    if "say" in source:
        voice = _media.Voice(source.get("provider"), source.get("voice"), source.get("language"))
        return _media.AudioSource_Say(_media.Speech(str(source["say"]), voice))
    if "url" in source:
        return _media.AudioSource_Url(str(source["url"]))
    if "file" in source:
        return _media.AudioSource_File(str(source["file"]))
    if "silence" in source:
        return _media.AudioSource_Silence(int(source["silence"]))
    if "tones" in source:
        return _media.AudioSource_DtmfTones(str(source["tones"]))
    if "ring" in source:
        return _media.AudioSource_Ringback(_media.Ringback(str(source["ring"]), source.get("ms")))
    if "stream" in source:
        return _media.AudioSource_Stream(str(source["stream"]))
    raise ValueError(f"not an audio source: {source!r}")


def play(call: Any, sources: Union[str, dict, Sequence[Union[str, dict]]], loops: Optional[int] = None,
         volume_db: Optional[float] = None, barge_in: bool = False) -> Any:
    """Plays `sources` behind what the call plays already; returns the host's `playback` (`.id()`,
    `.stop()`). `loops`: None once, 0 until stopped."""
    items = [sources] if isinstance(sources, (str, dict)) else list(sources)
    options = _media.PlayOptions(loops, volume_db, barge_in)
    try:
        return _media.play(_raw(call), [audio_source(s) for s in items], options)
    except Err as error:
        raise MediaError(error.value) from None


def say(call: Any, text: str, voice: Optional[str] = None, barge_in: bool = False) -> Any:
    """Speaks `text` (the built-in voice unless `voice` names another)."""
    return play(call, {"say": text, "voice": voice}, barge_in=barge_in)


def stop_playback(call: Any) -> None:
    """Stops everything the call plays."""
    _media.stop_playback(_raw(call))


def send_digits(call: Any, digits: str, duration_ms: Optional[int] = None) -> None:
    """Sends `digits` as RFC 4733 events, or SIP INFO to a far end that offered no telephone-event."""
    try:
        _media.send_digits(_raw(call), digits, duration_ms)
    except Err as error:
        raise MediaError(error.value) from None


def record(call: Any, max_ms: Optional[int] = None, direction: Optional[str] = None, stereo: bool = False,
           end_on_silence_ms: Optional[int] = None, no_input_ms: Optional[int] = None,
           finish_on_keys: Optional[str] = None, beep: bool = False) -> Any:
    """Records the call; returns the host's `recording` (`.id()`, `.stop()`, `.url()`: where the admin API serves it). `direction`: "received"
    (default), "sent" or "both"."""
    directions = {None: None, "received": _media.RecordDirection.RECEIVED, "sent": _media.RecordDirection.SENT,
                  "both": _media.RecordDirection.BOTH}
    options = _media.RecordOptions(directions[direction], stereo, max_ms, end_on_silence_ms, no_input_ms,
                                   finish_on_keys, beep)
    try:
        return _media.record(_raw(call), options)
    except Err as error:
        raise MediaError(error.value) from None


def bridge(a: Any, b: Any) -> None:
    """Bridges the media of two calls: each hears the other."""
    try:
        _media.bridge(_raw(a), _raw(b))
    except Err as error:
        raise MediaError(error.value) from None


def unbridge(call: Any) -> None:
    """Ends the call's bridge."""
    _media.unbridge(_raw(call))


def wait(calls: List[Any], timeout_ms: Optional[int] = None) -> Optional[Tuple[int, Any]]:
    """Waits up to `timeout_ms` (None: no limit) for any of `calls`: `(index, update)` or None. `update` is a
    `DigitPressed`, `PlaybackEnded`, `DigitsSent`, `RecordingEnded` or `CallUpdate` (whose `.value` is what
    `call.wait` gives)."""
    return _media.wait([_raw(c) for c in calls], timeout_ms)


def digit_source_name(source: Any) -> str:
    """The WIT name of a digit's source: `rtp-event`, `sip-info`, `in-band`."""
    return {_media.DigitSource.RTP_EVENT: "rtp-event", _media.DigitSource.SIP_INFO: "sip-info",
            _media.DigitSource.IN_BAND: "in-band"}[source]
