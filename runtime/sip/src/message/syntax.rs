//! Character classes and small lexing helpers shared by the header parsers (RFC 3261 §25.1).

/// `token` characters: alphanumerics and `-.!%*_+`'~`.
pub(crate) fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte)
}

/// True when every byte of a non-empty `text` is a token character.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_token_char)
}

/// `word` characters (Call-ID): token characters plus `()<>:\"/[]?{}`.
pub(crate) fn is_word_char(byte: u8) -> bool {
    is_token_char(byte) || b"()<>:\\\"/[]?{}".contains(&byte)
}

/// Splits `value` at every `separator` that is outside a quoted string and outside `<…>`; pieces are
/// trimmed of linear whitespace. An unbalanced quote leaves the rest in the last piece.
pub(crate) fn split_unquoted(value: &str, separator: u8) -> Vec<&str> {
    let bytes = value.as_bytes();
    let mut pieces = Vec::new();
    let (mut in_quotes, mut in_angle, mut start, mut i) = (false, false, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b if b == separator && !in_quotes && !in_angle => {
                pieces.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    pieces.push(value[start.min(value.len())..].trim());
    pieces
}

/// Reads a quoted string at the start of `text` (which must begin with `"`); returns it with its quotes and
/// what follows. `None` when the closing quote is missing.
pub(crate) fn take_quoted(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    debug_assert_eq!(bytes.first(), Some(&b'"'));
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&text[..=i], &text[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// Removes the quotes and backslash escapes of a quoted string.
pub(crate) fn unquote(text: &str) -> String {
    let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Quotes `text` as a quoted-string, escaping `"` and `\`.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
