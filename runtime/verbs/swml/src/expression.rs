//! The SWML expression language: what `${…}` and `%{…}` in SWML strings contain, a documented subset of
//! JavaScript expressions evaluated over JSON values.
//!
//! - Literals: numbers (`1`, `2.5`, `.5`; no exponents or hex), strings in `'…'` or `"…"` (escapes
//!   `\\ \' \" \n \t \r`; any other escaped character stands for itself), `true`, `false`, `null`, `undefined`.
//! - Paths: a root identifier (from a [`Scope`]), then `.name` and `[expr]` (arrays and strings by integer
//!   index, objects by key); `.length` of a string (in chars) or an array. Anything missing is `null`.
//! - Operators, with JavaScript precedence: unary `! - +`; `* / %`; `+ -`; `< <= > >=`; `== != === !==`;
//!   `&&`; `||`; `c ? a : b`; parentheses. `&&`/`||` short-circuit and return an operand.
//! - No function calls, no assignment, no other operators; at most 4096 bytes and 64 levels of nesting.
//!
//! Deviations from JavaScript: `undefined` is `null`, and `null` counts as `0` in arithmetic; NaN and
//! ±Infinity results (also division or modulo by zero) are `null`; objects and arrays are equal (`==`,
//! `===`) when their JSON is equal, print as compact JSON, and never convert to numbers (`[] + 1` is
//! `null`); string lengths and indexes count chars, not UTF-16 units.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use callwright_sdk::serde_json::{Map, Number, Value};

/// The longest expression source, in bytes.
const MAX_LEN: usize = 4096;
/// How deep parentheses, brackets, unary chains and ternaries may nest.
const MAX_DEPTH: usize = 64;
/// Binary operators by precedence level, lowest first.
const LEVELS: [&str; 6] = ["||", "&&", "== != === !==", "< <= > >=", "+ -", "* / %"];
/// Operator tokens, longest first.
const OPS: &str = "=== !== == != <= >= && || < > + - * / % ! ? : ( ) [ ] .";

/// Where root names come from: `call`, `params`, `vars`, `envs`, or a bare variable name.
pub trait Scope {
    /// The value of a root identifier; `None` when unknown (it then evaluates to null).
    fn lookup(&self, name: &str) -> Option<Value>;
}

/// Why an expression could not be evaluated (a syntax error, with the character offset, or a limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpressionError {
    /// The expression's text (between `${` and `}`), shortened when over the length limit.
    pub expression: String,
    /// What is wrong, and where.
    pub message: String,
}

impl fmt::Display for ExpressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in ${{{}}}: {}", self.expression, self.message)
    }
}

impl std::error::Error for ExpressionError {}

fn error(expression: &str, message: String) -> ExpressionError {
    let short = || expression.chars().take(64).collect::<String>() + "…";
    let expression = if expression.len() > MAX_LEN { short() } else { expression.to_string() };
    ExpressionError { expression, message }
}

/// Evaluates one expression (the text between `${` and `}`).
pub fn evaluate(source: &str, scope: &dyn Scope) -> Result<Value, ExpressionError> {
    if source.len() > MAX_LEN {
        return Err(error(source, format!("expression is longer than {MAX_LEN} bytes")));
    }
    let expr = parse(source).map_err(|message| error(source, message))?;
    Ok(eval(&expr, scope))
}

/// Substitutes the `${…}` and `%{…}` in `text`. A text that is exactly one `${…}` (or `%{…}`) gives the
/// expression's value with its JSON type; otherwise a string in which each expression is replaced by its
/// string form (null → empty string, strings as-is, numbers/bools as JS prints them, objects/arrays as
/// compact JSON). A text without markers is returned as a string unchanged. `$${` is NOT special; a `}`
/// inside a quoted string literal within the expression does not end it.
pub fn substitute(text: &str, scope: &dyn Scope) -> Result<Value, ExpressionError> {
    let bytes = text.as_bytes();
    let (mut out, mut last, mut i) = (String::new(), 0, 0);
    while i + 1 < bytes.len() {
        if !matches!(bytes[i], b'$' | b'%') || bytes[i + 1] != b'{' {
            i += 1;
            continue;
        }
        let end = closing_brace(text, i + 2)?;
        let value = evaluate(&text[i + 2..end], scope)?;
        if i == 0 && end == text.len() - 1 {
            return Ok(value);
        }
        out.push_str(&text[last..i]);
        if !value.is_null() {
            out.push_str(&js_string(&value));
        }
        i = end + 1;
        last = i;
    }
    out.push_str(&text[last..]);
    Ok(Value::String(out))
}

/// Applies `substitute` to every string inside `value` (object values and array items, recursively; not
/// object keys), returning the new value.
pub fn substitute_all(value: &Value, scope: &dyn Scope) -> Result<Value, ExpressionError> {
    let all = |item: &Value| substitute_all(item, scope);
    Ok(match value {
        Value::String(text) => substitute(text, scope)?,
        Value::Array(items) => Value::Array(items.iter().map(all).collect::<Result<_, _>>()?),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| Ok((k.clone(), all(v)?))).collect::<Result<Map<String, Value>, _>>()?)
        }
        other => other.clone(),
    })
}

/// The byte index of the `}` closing an expression that starts at `start` (skipping quoted literals).
fn closing_brace(text: &str, start: usize) -> Result<usize, ExpressionError> {
    let bytes = text.as_bytes();
    let (mut quote, mut j) = (None, start);
    while j < bytes.len() {
        match (quote, bytes[j]) {
            (Some(_), b'\\') => j += 1,
            (Some(q), b) if b == q => quote = None,
            (None, b'\'' | b'"') => quote = Some(bytes[j]),
            (None, b'}') => return Ok(j),
            _ => {}
        }
        j += 1;
    }
    let message = if quote.is_some() { "unterminated string literal" } else { "missing closing `}`" };
    Err(error(&text[start..], message.to_string()))
}

enum Tok {
    Num(Value),
    Str(String),
    Ident(String),
    Op(&'static str),
    End,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: &char) -> bool {
    is_ident_start(*c) || c.is_ascii_digit()
}

/// Splits `source` into tokens, each with its character offset; the last one is `End`.
fn lex(source: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = source.chars().collect();
    let digit_at = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    let skip = |mut i: usize, test: fn(&char) -> bool| {
        while chars.get(i).is_some_and(test) {
            i += 1;
        }
        i
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = if c.is_ascii_digit() || (c == '.' && digit_at(i + 1)) {
            i = skip(i, char::is_ascii_digit);
            if chars.get(i) == Some(&'.') && digit_at(i + 1) {
                i = skip(i + 1, char::is_ascii_digit);
            }
            if let Some(c) = chars.get(i).filter(|c| is_ident_char(c)) {
                return Err(format!("unexpected character '{c}' after a number at offset {i}"));
            }
            let text: String = chars[start..i].iter().collect();
            Tok::Num(text.parse::<i64>().map_or_else(|_| num(text.parse().unwrap_or(f64::NAN)), Value::from))
        } else if is_ident_start(c) {
            i = skip(i, is_ident_char);
            Tok::Ident(chars[start..i].iter().collect())
        } else if c == '\'' || c == '"' {
            let unterminated = || format!("unterminated string literal starting at offset {start}");
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(unterminated()),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        i += 1;
                        text.push(match *chars.get(i).ok_or_else(unterminated)? {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                    }
                    Some(&other) => text.push(other),
                }
                i += 1;
            }
            i += 1;
            Tok::Str(text)
        } else if let Some(op) =
            OPS.split(' ').find(|op| op.chars().enumerate().all(|(k, o)| chars.get(i + k) == Some(&o)))
        {
            i += op.len();
            Tok::Op(op)
        } else if c == '=' {
            return Err(format!("assignment is not supported (`=` at offset {i}); compare with `==` or `===`"));
        } else {
            return Err(format!("unexpected character '{c}' at offset {i}"));
        };
        tokens.push((token, start));
    }
    tokens.push((Tok::End, chars.len()));
    Ok(tokens)
}

/// The precedence level of a binary operator.
fn precedence(op: &str) -> Option<usize> {
    LEVELS.iter().position(|ops| ops.split(' ').any(|o| o == op))
}

/// The syntax tree; operator chains and paths are flat lists, so evaluation recursion follows nesting only.
enum Expr {
    Lit(Value),
    Root(String),
    /// A base and its member keys (`.name` is a string literal key).
    Path(Box<Expr>, Vec<Expr>),
    Unary(&'static str, Box<Expr>),
    Chain(Box<Expr>, Vec<(&'static str, Expr)>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

fn parse(source: &str) -> Result<Expr, String> {
    let mut parser = Parser { tokens: lex(source)?, pos: 0, depth: 0 };
    let expr = parser.ternary()?;
    match parser.peek() {
        Tok::End => Ok(expr),
        _ => Err(parser.expected("an operator or the end of the expression")),
    }
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].0
    }

    fn peek_op(&self) -> Option<&'static str> {
        if let Tok::Op(op) = self.peek() { Some(op) } else { None }
    }

    fn offset(&self) -> usize {
        self.tokens[self.pos].1
    }

    fn bump(&mut self) {
        self.pos = (self.pos + 1).min(self.tokens.len() - 1);
    }

    fn expected(&self, what: &str) -> String {
        let found = match self.peek() {
            Tok::End => "the end of the expression".to_string(),
            Tok::Num(n) => format!("number {n}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Ident(name) => format!("`{name}`"),
            Tok::Op(op) => format!("`{op}`"),
        };
        format!("expected {what} at offset {}, found {found}", self.offset())
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.peek_op() != Some(op) {
            return Err(self.expected(&format!("`{op}`")));
        }
        self.bump();
        Ok(())
    }

    /// Parses with `inner` one nesting level deeper, after the current token (the opening one).
    fn nested(&mut self, inner: impl FnOnce(&mut Self) -> Result<Expr, String>) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("expression nests deeper than {MAX_DEPTH} levels (at offset {})", self.offset()));
        }
        self.bump();
        let expr = inner(self)?;
        self.depth -= 1;
        Ok(expr)
    }

    /// A ternary, then the closing `close`.
    fn closed(&mut self, close: &str) -> Result<Expr, String> {
        let expr = self.ternary()?;
        self.expect(close)?;
        Ok(expr)
    }

    fn ternary(&mut self) -> Result<Expr, String> {
        let condition = self.binary()?;
        if self.peek_op() != Some("?") {
            return Ok(condition);
        }
        self.nested(|p| {
            let then = p.closed(":")?;
            Ok(Expr::Cond(Box::new(condition), Box::new(then), Box::new(p.ternary()?)))
        })
    }

    /// Binary operators, by precedence climbing with an explicit stack (no recursion per level).
    fn binary(&mut self) -> Result<Expr, String> {
        let mut pending: Vec<(Expr, &'static str, usize)> = Vec::new();
        let mut right = self.unary()?;
        loop {
            let next = self.peek_op().and_then(|op| Some((op, precedence(op)?)));
            while let Some((left, op, level)) = pending.pop_if(|(.., top)| next.is_none_or(|(_, level)| *top >= level))
            {
                right = match left {
                    // Same-level operators are left-associative: `a - b - c` is one chain.
                    Expr::Chain(first, mut rest) if precedence(rest[0].0) == Some(level) => {
                        rest.push((op, right));
                        Expr::Chain(first, rest)
                    }
                    left => Expr::Chain(Box::new(left), vec![(op, right)]),
                };
            }
            let Some((op, level)) = next else {
                return Ok(right);
            };
            self.bump();
            pending.push((right, op, level));
            right = self.unary()?;
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        let Some(op @ ("!" | "-" | "+")) = self.peek_op() else {
            return self.postfix();
        };
        self.nested(|p| Ok(Expr::Unary(op, Box::new(p.unary()?))))
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let base = self.primary()?;
        let mut steps = Vec::new();
        loop {
            match self.peek_op() {
                Some(".") => {
                    self.bump();
                    let Tok::Ident(name) = self.peek() else {
                        return Err(self.expected("a property name after `.`"));
                    };
                    steps.push(Expr::Lit(Value::String(name.clone())));
                    self.bump();
                }
                Some("[") => steps.push(self.nested(|p| p.closed("]"))?),
                Some("(") => {
                    return Err(format!("function calls are not supported (`(` at offset {})", self.offset()));
                }
                _ => break,
            }
        }
        Ok(if steps.is_empty() { base } else { Expr::Path(Box::new(base), steps) })
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let expr = match self.peek() {
            Tok::Num(value) => Expr::Lit(value.clone()),
            Tok::Str(text) => Expr::Lit(Value::String(text.clone())),
            Tok::Ident(name) => match name.as_str() {
                "true" => Expr::Lit(Value::Bool(true)),
                "false" => Expr::Lit(Value::Bool(false)),
                "null" | "undefined" => Expr::Lit(Value::Null),
                _ => Expr::Root(name.clone()),
            },
            Tok::Op("(") => return self.nested(|p| p.closed(")")),
            _ => return Err(self.expected("an expression")),
        };
        self.bump();
        Ok(expr)
    }
}

fn eval(expr: &Expr, scope: &dyn Scope) -> Value {
    match expr {
        Expr::Lit(value) => value.clone(),
        Expr::Root(name) => scope.lookup(name).unwrap_or(Value::Null),
        Expr::Path(base, keys) => {
            keys.iter().fold(eval(base, scope), |value, key| member(&value, &js_string(&eval(key, scope))))
        }
        Expr::Unary(op, operand) => {
            let value = eval(operand, scope);
            match *op {
                "!" => Value::Bool(!truthy(&value)),
                "-" => arithmetic("-", &Value::from(0), &value),
                _ => to_number(&value).map_or(Value::Null, num),
            }
        }
        Expr::Chain(first, rest) => rest.iter().fold(eval(first, scope), |left, (op, right)| match *op {
            "&&" if !truthy(&left) => left,
            "||" if truthy(&left) => left,
            "&&" | "||" => eval(right, scope),
            _ => binary(op, &left, &eval(right, scope)),
        }),
        Expr::Cond(condition, then, otherwise) => {
            eval(if truthy(&eval(condition, scope)) { then } else { otherwise }, scope)
        }
    }
}

/// `value.key` / `value[key]`: object keys, array and string indexes, `.length`; otherwise null.
fn member(value: &Value, key: &str) -> Value {
    let index = || key.parse::<usize>().ok().filter(|i| i.to_string() == key);
    match value {
        Value::Object(map) => map.get(key).cloned().unwrap_or(Value::Null),
        Value::Array(items) if key == "length" => items.len().into(),
        Value::Array(items) => index().and_then(|i| items.get(i)).cloned().unwrap_or(Value::Null),
        Value::String(text) if key == "length" => text.chars().count().into(),
        Value::String(text) => index().and_then(|i| text.chars().nth(i)).map_or(Value::Null, |c| c.to_string().into()),
        _ => Value::Null,
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A number as a JSON value: an integer when whole and within i64, null when not finite.
fn num(x: f64) -> Value {
    if x.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x) {
        Value::from(x as i64)
    } else {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

/// JavaScript's `ToNumber`, except that arrays and objects are not numbers and null is 0.
fn to_number(value: &Value) -> Option<f64> {
    match value {
        Value::Null => Some(0.0),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    let numeric = text.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    if text.is_empty() { Some(0.0) } else { numeric.then(|| text.parse().ok()).flatten() }
}

/// JavaScript's `String(value)`, except that arrays and objects are compact JSON.
fn js_string(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Number(n) if n.is_f64() => format_f64(n.as_f64().unwrap_or(0.0)).into(),
        Value::String(s) => s.as_str().into(),
        other => other.to_string().into(),
    }
}

/// A float as JavaScript prints it (`2`, `0.5`, `1e+21`, `1e-7`).
fn format_f64(x: f64) -> String {
    if x == 0.0 {
        "0".to_string()
    } else if x.abs() >= 1e21 || x.abs() < 1e-6 {
        let text = format!("{x:e}");
        if text.contains("e-") { text } else { text.replacen('e', "e+", 1) }
    } else {
        format!("{x}")
    }
}

fn binary(op: &str, a: &Value, b: &Value) -> Value {
    Value::Bool(match op {
        "==" => loose_eq(a, b),
        "!=" => !loose_eq(a, b),
        "===" => strict_eq(a, b),
        "!==" => !strict_eq(a, b),
        "<" => compare(a, b).is_some_and(Ordering::is_lt),
        "<=" => compare(a, b).is_some_and(Ordering::is_le),
        ">" => compare(a, b).is_some_and(Ordering::is_gt),
        ">=" => compare(a, b).is_some_and(Ordering::is_ge),
        "+" if a.is_string() || b.is_string() => return Value::String(format!("{}{}", js_string(a), js_string(b))),
        _ => return arithmetic(op, a, b),
    })
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => to_number(a)?.partial_cmp(&to_number(b)?),
    }
}

fn arithmetic(op: &str, a: &Value, b: &Value) -> Value {
    // Integers stay exact while they can.
    let exact = match (a.as_i64(), b.as_i64(), op) {
        (Some(x), Some(y), "+") => x.checked_add(y),
        (Some(x), Some(y), "-") => x.checked_sub(y),
        (Some(x), Some(y), "*") => x.checked_mul(y),
        (Some(x), Some(y), "%") => x.checked_rem(y),
        _ => None,
    };
    if let Some(n) = exact {
        return n.into();
    }
    let (Some(x), Some(y)) = (to_number(a), to_number(b)) else {
        return Value::Null;
    };
    num(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" | "%" if y == 0.0 => return Value::Null,
        "/" => x / y,
        _ => x % y,
    })
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Bool(x), _) => loose_eq(&Value::from(u8::from(*x)), b),
        (_, Value::Bool(y)) => loose_eq(a, &Value::from(u8::from(*y))),
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => parse_number(s) == n.as_f64(),
        _ => strict_eq(a, b),
    }
}

fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_i64().zip(y.as_i64()).map_or(x.as_f64() == y.as_f64(), |(x, y)| x == y)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use callwright_sdk::serde_json::{self, json};

    use super::*;

    impl Scope for HashMap<String, Value> {
        fn lookup(&self, name: &str) -> Option<Value> {
            self.get(name).cloned()
        }
    }

    fn scope() -> HashMap<String, Value> {
        let values = json!({
            "call": {"call_id": "c-1", "headers": [{"name": "X-Id", "value": "42"}], "from": "+15551234567"},
            "vars": {"x": 7, "name": "Ada", "empty": "", "list": [1, 2, 3], "obj": {"a": 1, "1": "one", "2.5": "x"}},
            "params": {"n": "200", "f": 2.5},
            "n": 200,
            "sip_refer_result": "success",
        });
        values.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn ev(source: &str) -> Value {
        evaluate(source, &scope()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Checks `input => expected JSON` cases, separated by `;`.
    fn check_with(run: impl Fn(&str) -> Value, cases: &str) {
        for case in cases.split(';') {
            let (input, expected) = case.rsplit_once("=>").unwrap_or_else(|| panic!("bad case {case:?}"));
            let expected: Value = serde_json::from_str(expected.trim()).unwrap_or_else(|e| panic!("{case:?}: {e}"));
            assert_eq!(run(input.trim()), expected, "{}", input.trim());
        }
    }

    fn check(cases: &str) {
        check_with(ev, cases);
    }

    fn err(source: &str) -> String {
        evaluate(source, &scope()).unwrap_err().message
    }

    #[test]
    fn literals() {
        check(r#"1 => 1; 2.5 => 2.5; .5 => 0.5; 2.0 => 2; 007 => 7; true => true; false => false; null => null"#);
        check(r#"undefined => null; 'x' => "x"; "y" => "y"; '' => """#);
        assert_eq!(ev(r#" 'it\'s' + " \"q\"\n\t\\" + '\x' "#), json!("it's \"q\"\n\t\\x"));
    }

    #[test]
    fn arithmetic() {
        check("1 - (2 - 3) => 2; (8 - 4) - (2 - 1) => 3; 2 * 3 + 4 * 5 => 26; 1 + 2 * 3 - 4 / 2 % 3 => 5");
        check("1 + 2 * 3 => 7; (1 + 2) * 3 => 9; 10 - 4 - 3 => 3; 12 / 4 / 3 => 1; 2 - 3 * 4 + 10 / 5 => -8");
        check("7 / 2 => 3.5; 7 % 3 => 1; -7 % 3 => -1; 5.5 % 2 => 1.5; 1 + 1 => 2; 0.5 + 0.5 => 1; 1 / 4 => 0.25");
        check("0.1 + 0.2 => 0.30000000000000004; 9223372036854775807 + 1 => 9223372036854775808.0; 2 * 3 => 6");
        check("1 / 0 => null; 1 % 0 => null; 0 / 0 => null; params.f * 2 => 5; 3 - 5 => -2");
        check(r#"'a' + 1 => "a1"; 1 + 'a' => "1a"; 'a' + null => "anull"; 'a' + true + 2.5 => "atrue2.5""#);
        check(r#"1 + 2 + 'x' => "3x"; 'x' + 1 + 2 => "x12"; 'v' + vars.list => "v[1,2,3]"; "2" * "3" => 6"#);
        check(r#"'10' - 4 => 6; '10' / '4' => 2.5; ' 8 ' % '5' => 3; '' * 5 => 0; 'abc' * 2 => null"#);
        check("'1e3' - 0 => 1000; '0x10' * 1 => null");
        check("true + true => 2; null + 1 => 1; vars.list + 1 => null; vars.obj * 1 => null; 'x' - 1 => null");
        check("-5 => -5; - -5 => 5; -'3' => -3; +'3.5' => 3.5; +true => 1; -'x' => null; -2 * 3 => -6; -(1 + 2) => -3");
        check("!true => false; !!'x' => true; !0 => true; !1 == false => true; -vars.x => -7; !vars.missing => true");
    }

    #[test]
    fn comparisons_and_equality() {
        check("1 < 2 => true; 2 <= 2 => true; 3 > 4 => false; 4 >= 4.5 => false; 'b' > 'a' => true");
        check("'10' < '9' => true; '10' < 9 => false; 'abc' < 1 => false; 'abc' >= 1 => false; null < 1 => true");
        check("1 + 1 < 3 == true => true; 2 > 1 > 0 => true; 'B' < 'a' => true");
        check(r#""200" == 200 => true; "200" === 200 => false; 200 !== '200' => true; 200 != '200' => false"#);
        check("1 === 1.0 => true; 'a' == 'a' => true; 'a' == 'b' => false; 'abc' == 0 => false; '' == 0 => true");
        check("true == 1 => true; true == '1' => true; false == '' => true; true === 1 => false; true != 2 => true");
        check("null == undefined => true; null === null => true; null == 0 => false; missing == null => true");
        check("vars.obj == vars.obj => true; vars.list === vars.list => true; vars.list == '1,2,3' => false");
        check("params.n == n => true; params.n === n => false; vars.list != vars.obj => true");
    }

    #[test]
    fn logic_truthiness_and_ternary() {
        check(r#"0 || 'x' => "x"; 'a' || 'b' => "a"; '' && 'b' => ""; 1 && 'b' => "b"; null || vars.name => "Ada""#);
        check("1 || 0 && 0 => 1; (1 || 0) && 0 => 0; false || null || 0 => 0; 0 && missing.x => 0");
        // Falsy: false, 0, -0, "", null/undefined (also missing); everything else is truthy.
        check("!false => true; !0 => true; !-0 => true; !0.0 => true; !'' => true; !null => true; !undefined => true");
        check("!vars.empty => true; !nope.deep => true; !true => false; !1 => false; !-1 => false; !0.5 => false");
        check(
            "!'0' => false; !' ' => false; !'false' => false; !vars.list => false; !vars.obj => false; !call => false",
        );
        check("true ? 1 : 2 => 1; 0 ? 1 : 2 => 2; false ? 1 : true ? 2 : 3 => 2; false ? 1 : false ? 2 : 3 => 3");
        check(r#"true ? false ? 1 : 2 : 3 => 2; 1 > 2 || 3 > 2 ? 'a' + 'b' : 'c' => "ab"; (true ? 1 : 2) + 1 => 2"#);
        check(r#"n == 200 ? 'ok' : 'bad' => "ok"; vars.x ? vars.list[0] ? 'y' : 'n' : 'z' => "y""#);
    }

    #[test]
    fn paths() {
        check(r#"call.headers[0].value => "42"; call['headers'][0]['name'] => "X-Id"; vars.list[1 + 1] => 3"#);
        check(r#"vars.x => 7; sip_refer_result => "success"; vars.list['1'] => 2; vars.list.length => 3"#);
        check(r#"vars.name.length => 3; 'héllo'.length => 5; vars.name[0] => "A"; vars.obj['a'] => 1"#);
        check(r#"call.from.length > 10 => true; (vars).x => 7; vars['list'][0] => 1"#);
        check(r#"vars.obj[1] => "one"; vars.obj[2.5] => "x"; vars.obj[3 - 2] => "one""#);
        check("nope => null; nope.a.b => null; vars.missing => null; vars.list[9] => null; vars.list[-1] => null");
        check("vars.list[0.5] => null; n.x => null; call.headers[0].x[3] => null; vars.obj.length => null");
        check("true.x => null; vars.name[7] => null; null.x => null; vars.list['01'] => null");
    }

    #[test]
    fn substitute_whole_and_mixed() {
        let sub = |text: &str| substitute(text, &scope()).unwrap_or_else(|e| panic!("{e}"));
        check_with(sub, r#"${n} => 200; ${vars.list} => [1,2,3]; ${missing} => null; %{vars.name} => "Ada""#);
        check_with(sub, r#"code ${n}! => "code 200!"; [${missing}] => "[]"; ${n}${n} => "200200""#);
        check_with(
            sub,
            r#"${vars.name} ${vars.x}${params.f} => "Ada 72.5"; o=${vars.obj['a']}${vars.list} => "o=1[1,2,3]""#,
        );
        check_with(sub, r#"hi %{vars.name}, ${1 == 1} => "hi Ada, true""#);
        check_with(sub, r#"${'a}b'} => "a}b"; ${"}" + '\'}'}! => "}'}!"; $${n} => "$200""#);
        check_with(sub, r#"no {markers} $ % $x 100% => "no {markers} $ % $x 100%"; é ${'ü'} ö => "é ü ö""#);
        check_with(sub, r#"x${1000000 * 1000000 * 1000000000} ${1 / 3} => "x1e+21 0.3333333333333333""#);
        assert_eq!(sub(""), json!(""));
    }

    #[test]
    fn substitute_all_nested() {
        let doc = json!({"sections": {"main": [
            {"play": {"url": "say:Hello ${vars.name}"}},
            {"set": {"count": "${vars.x + 1}", "flag": "${vars.x > 5}", "keep": 3, "${vars.name}": null}},
            ["%{call.headers[0].value}", true],
        ]}});
        let expected = json!({"sections": {"main": [
            {"play": {"url": "say:Hello Ada"}},
            {"set": {"count": 8, "flag": true, "keep": 3, "${vars.name}": null}},
            ["42", true],
        ]}});
        assert_eq!(substitute_all(&doc, &scope()).unwrap(), expected);
        assert_eq!(substitute_all(&json!({"a": ["${1 +}"]}), &scope()).unwrap_err().expression, "1 +");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(err("'abc"), "unterminated string literal starting at offset 0");
        assert!(err("1 + \"abc\\").contains("unterminated string"));
        assert_eq!(err("a +"), "expected an expression at offset 3, found the end of the expression");
        assert!(err("foo(1)").starts_with("function calls are not supported (`(` at offset 3)"));
        assert!(err("call.x.y(1)").contains("function calls are not supported (`(` at offset 8)"));
        assert!(err("a = 1").starts_with("assignment is not supported (`=` at offset 2)"));
        assert!(err("a += 1").starts_with("assignment is not supported"));
        assert!(err("1 2").contains("expected an operator or the end of the expression at offset 2, found number 2"));
        assert!(err("(1 + 2").contains("expected `)` at offset 6"));
        assert!(err("a[1").contains("expected `]`"));
        assert!(err("a ? 1").contains("expected `:`"));
        assert!(err("a.").contains("expected a property name after `.` at offset 2"));
        assert!(err("1 & 2").contains("unexpected character '&' at offset 2"));
        assert!(err("1a").contains("unexpected character 'a' after a number"));
        assert!(err("").contains("expected an expression at offset 0"));
        assert!(err("'é' + #").contains("at offset 6"));
        assert!(err("* 2").contains("found `*`"));
        let error = substitute("x ${a +} y", &scope()).unwrap_err();
        assert_eq!(error.expression, "a +");
        assert_eq!(error.to_string(), "in ${a +}: expected an expression at offset 3, found the end of the expression");
        assert_eq!(substitute("x ${'a} y", &scope()).unwrap_err().message, "unterminated string literal");
        assert_eq!(substitute("x ${n", &scope()).unwrap_err().message, "missing closing `}`");
        assert!(substitute("${f(1)}", &scope()).unwrap_err().message.contains("function calls"));
    }

    #[test]
    fn limits() {
        assert_eq!(ev(&format!("{}1{}", "(".repeat(64), ")".repeat(64))), json!(1));
        assert_eq!(ev(&format!("{}1", "-".repeat(64))), json!(1));
        for deep in [format!("{}1{}", "(".repeat(65), ")".repeat(65)), format!("{}1", "-".repeat(65))] {
            assert!(err(&deep).starts_with("expression nests deeper than 64 levels"), "{deep}");
        }
        for deep in [format!("a{}", "[0".repeat(65)), format!("{}1", "1 ? 1 : ".repeat(65))] {
            assert!(err(&deep).starts_with("expression nests deeper than 64 levels"), "{deep}");
        }
        let long = format!("1{}", " + 1".repeat(1023));
        assert_eq!((long.len(), ev(&long)), (4093, json!(1024)));
        let error = evaluate(&format!("1{}", " + 1".repeat(1024)), &scope()).unwrap_err();
        assert_eq!(error.message, "expression is longer than 4096 bytes");
        assert!(error.expression.len() < 100);
        assert_eq!(ev(&format!("vars{}", ".b".repeat(2000))), Value::Null);
    }
}
