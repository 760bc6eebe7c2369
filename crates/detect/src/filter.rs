//! CloudWatch Logs filter patterns, as metric filters use them on flow log lines.
//!
//! Two kinds are understood:
//! - **space-delimited**: `[version, account, eni, source, destination, srcport, destport="22",
//!   protocol="6", packets, bytes, windowstart, windowend, action="REJECT", flowlogstatus]` — one
//!   name per whitespace-separated field, `...` for any number of fields, conditions `=`, `!=`,
//!   `<`, `<=`, `>`, `>=` (numeric when both sides are numbers), `*` wildcards in values, and
//!   `&&` / `||` between conditions of a field;
//! - **terms**: `REJECT` (contains), `ACCEPT 443` (all), `?22 ?3389` (any), `-ACCEPT`
//!   (exclude), `"exact phrase"`, and `""` or `" "` (everything).
//!
//! Matching is case-sensitive, as in CloudWatch.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// A parsed filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Matches every event.
    All,
    /// Term matching.
    Terms {
        /// Terms that must all appear.
        all: Vec<String>,
        /// Terms of which one must appear (when not empty).
        any: Vec<String>,
        /// Terms that must not appear.
        none: Vec<String>,
    },
    /// Space-delimited fields.
    Fields(Vec<FieldPattern>),
}

/// One position of a space-delimited pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldPattern {
    /// `...`: any number of fields.
    Ellipsis,
    /// A named field, with conditions: a list of alternatives (`||`), each a list of
    /// conditions that must all hold (`&&`).
    Named {
        /// The name (`$name` refers to it in metric values).
        name: String,
        /// Alternatives of conjunctions.
        any_of: Vec<Vec<Condition>>,
    },
}

/// A comparison of a field with a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The field compared (usually the field itself).
    pub name: String,
    /// The operator.
    pub op: Op,
    /// The value (may hold `*` wildcards).
    pub value: String,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

fn err(pattern: &str, offset: usize, message: impl Into<String>) -> Error {
    Error::Pattern {
        pattern: pattern.into(),
        offset,
        message: message.into(),
    }
}

impl Pattern {
    /// Parses a filter pattern.
    ///
    /// # Errors
    /// [`Error::Pattern`] with the character offset of the mistake.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        if t.is_empty() || t == "\"\"" || t == "\" \"" {
            return Ok(Self::All);
        }
        if t.starts_with('[') {
            return parse_fields(text);
        }
        if t.starts_with('{') {
            return Err(err(
                text,
                text.find('{').unwrap_or(0),
                "JSON patterns do not apply to flow log lines; use a space-delimited pattern \
                 [version, account, ...]",
            ));
        }
        let (mut all, mut any, mut none) = (Vec::new(), Vec::new(), Vec::new());
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            let (kind, start) = match chars[i] {
                '?' => (1, i + 1),
                '-' => (2, i + 1),
                _ => (0, i),
            };
            let (term, next) = if chars.get(start) == Some(&'"') {
                let close = chars[start + 1..]
                    .iter()
                    .position(|c| *c == '"')
                    .ok_or_else(|| err(text, start, "unclosed quote"))?;
                (
                    chars[start + 1..start + 1 + close]
                        .iter()
                        .collect::<String>(),
                    start + close + 2,
                )
            } else {
                let end = chars[start..]
                    .iter()
                    .position(|c| c.is_whitespace())
                    .map_or(chars.len(), |p| start + p);
                (chars[start..end].iter().collect::<String>(), end)
            };
            if term.is_empty() {
                return Err(err(text, i, "empty term"));
            }
            match kind {
                1 => any.push(term),
                2 => none.push(term),
                _ => all.push(term),
            }
            i = next;
        }
        Ok(Self::Terms { all, any, none })
    }

    /// The names of a space-delimited pattern's fields.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Self::Fields(f) => f
                .iter()
                .filter_map(|p| match p {
                    FieldPattern::Named { name, .. } => Some(name.as_str()),
                    FieldPattern::Ellipsis => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Matches one event; on a match, the named fields' values (space-delimited patterns).
    pub fn matches<'e>(&self, event: &'e str) -> Option<HashMap<&str, &'e str>> {
        match self {
            Self::All => Some(HashMap::new()),
            Self::Terms { all, any, none } => {
                let ok = all.iter().all(|t| event.contains(t.as_str()))
                    && (any.is_empty() || any.iter().any(|t| event.contains(t.as_str())))
                    && !none.iter().any(|t| event.contains(t.as_str()));
                ok.then(HashMap::new)
            }
            Self::Fields(pattern) => {
                let fields: Vec<&str> = event.split_whitespace().collect();
                let mut bound = HashMap::new();
                bind(pattern, &fields, &mut bound).then_some(bound)
            }
        }
    }
}

/// Binds pattern positions to fields (backtracking over `...`), then checks conditions.
fn bind<'p, 'e>(
    pattern: &'p [FieldPattern],
    fields: &[&'e str],
    bound: &mut HashMap<&'p str, &'e str>,
) -> bool {
    match pattern.split_first() {
        None => fields.is_empty(),
        Some((FieldPattern::Ellipsis, rest)) => {
            (0..=fields.len()).any(|skip| bind(rest, &fields[skip..], bound))
        }
        Some((FieldPattern::Named { name, any_of }, rest)) => {
            let Some((first, others)) = fields.split_first() else {
                return false;
            };
            bound.insert(name.as_str(), first);
            let ok = any_of.is_empty()
                || any_of.iter().any(|conj| {
                    conj.iter().all(|c| {
                        let v = if c.name == *name {
                            Some(*first)
                        } else {
                            bound.get(c.name.as_str()).copied()
                        };
                        v.is_some_and(|v| compare(v, c.op, &c.value))
                    })
                });
            if ok && bind(rest, others, bound) {
                return true;
            }
            bound.remove(name.as_str());
            false
        }
    }
}

fn compare(field: &str, op: Op, value: &str) -> bool {
    let numbers = (field.parse::<f64>(), value.parse::<f64>());
    match op {
        Op::Eq | Op::Ne => {
            let equal = if value.contains('*') {
                glob(field, value)
            } else if let (Ok(a), Ok(b)) = numbers {
                a == b
            } else {
                field == value
            };
            equal == (op == Op::Eq)
        }
        _ => match numbers {
            (Ok(a), Ok(b)) => match op {
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                Op::Ge => a >= b,
                _ => false,
            },
            _ => false,
        },
    }
}

/// `*` matches any run of characters.
fn glob(text: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(p) => rest = &rest[p + part.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

fn parse_fields(text: &str) -> Result<Pattern> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let open = chars.iter().position(|(_, c)| *c == '[').unwrap_or(0);
    let close = chars
        .iter()
        .rposition(|(_, c)| *c == ']')
        .ok_or_else(|| err(text, text.len(), "missing `]`"))?;
    if chars[close + 1..].iter().any(|(_, c)| !c.is_whitespace()) {
        return Err(err(text, close + 1, "text after `]`"));
    }
    // Split on commas outside quotes.
    let mut items: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start = open + 1;
    let mut quoted = false;
    for (i, &(_, c)) in chars.iter().enumerate().take(close).skip(open + 1) {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => {
                items.push((start, std::mem::take(&mut current)));
                start = i + 1;
            }
            _ => current.push(c),
        }
    }
    if quoted {
        return Err(err(text, close, "unclosed quote"));
    }
    items.push((start, current));
    let mut fields = Vec::new();
    for (offset, item) in items {
        let item_trim = item.trim();
        if item_trim.is_empty() {
            return Err(err(text, offset, "empty field: two commas in a row?"));
        }
        if item_trim == "..." {
            fields.push(FieldPattern::Ellipsis);
            continue;
        }
        fields.push(parse_field(text, offset, item_trim)?);
    }
    Ok(Pattern::Fields(fields))
}

fn parse_field(text: &str, offset: usize, item: &str) -> Result<FieldPattern> {
    let name_end = item
        .find(|c: char| "=!<>&| ".contains(c))
        .unwrap_or(item.len());
    let name = item[..name_end].trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(err(
            text,
            offset,
            format!("`{item}`: a field needs a name (letters, digits, `_`)"),
        ));
    }
    let mut any_of = Vec::new();
    let rest = item[name_end..].trim();
    if rest.is_empty() {
        return Ok(FieldPattern::Named { name, any_of });
    }
    for alternative in split_outside_quotes(rest, "||") {
        let mut conj = Vec::new();
        for (k, part) in split_outside_quotes(&alternative, "&&")
            .into_iter()
            .enumerate()
        {
            let part = part.trim();
            // The first condition may omit the name (`destport="22"` has it before the `=`).
            let (cname, body) = if k == 0 && any_of.is_empty() && conj.is_empty() {
                (name.clone(), part.to_string())
            } else {
                let e = part
                    .find(|c: char| "=!<>".contains(c))
                    .ok_or_else(|| err(text, offset, format!("`{part}`: expected a comparison")))?;
                (part[..e].trim().to_string(), part[e..].to_string())
            };
            let cname = if cname.is_empty() {
                name.clone()
            } else {
                cname
            };
            let (op, value) = parse_op(&body).ok_or_else(|| {
                err(
                    text,
                    offset,
                    format!("`{part}`: expected =, !=, <, <=, > or >= and a value"),
                )
            })?;
            if value.is_empty() {
                return Err(err(text, offset, format!("`{part}`: missing value")));
            }
            conj.push(Condition {
                name: cname,
                op,
                value,
            });
        }
        any_of.push(conj);
    }
    Ok(FieldPattern::Named { name, any_of })
}

fn parse_op(body: &str) -> Option<(Op, String)> {
    let body = body.trim();
    let (op, rest) = [
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .iter()
    .find_map(|(s, op)| body.strip_prefix(s).map(|r| (*op, r)))?;
    let v = rest.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    Some((op, v.to_string()))
}

fn split_outside_quotes(s: &str, sep: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut current = String::new();
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < s.len() {
        if bytes[i] == b'"' {
            quoted = !quoted;
        }
        if !quoted && s[i..].starts_with(sep) {
            out.push(std::mem::take(&mut current));
            i += sep.len();
            continue;
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        current.push(c);
        i += c.len_utf8();
    }
    out.push(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "2 123456789010 eni-1235b8ca123456789 172.31.9.69 172.31.9.12 49761 3389 6 20 4249 1418530010 1418530070 REJECT OK";

    fn m(p: &str, line: &str) -> bool {
        Pattern::parse(p).unwrap().matches(line).is_some()
    }

    #[test]
    fn aws_flow_log_examples() {
        let all = "[version, accountid, interfaceid, srcaddr, dstaddr, srcport, dstport, protocol, packets, bytes, start, end, action, logstatus]";
        assert!(m(all, LINE));
        assert!(!m(all, "2 123 eni-1 a b 1 2 6 1 1 1 1 ACCEPT")); // 13 fields
        let p = Pattern::parse(all).unwrap();
        assert_eq!(p.matches(LINE).unwrap()["bytes"], "4249");
        assert!(m(
            "[version, accountid, interfaceid, srcaddr = 172.31.9.69, dstaddr, srcport, dstport, protocol, packets, bytes, start, end, action, logstatus]",
            LINE
        ));
        assert!(m(
            "[version, accountid, interfaceid, srcaddr = 172.31.9.*, dstaddr, srcport, dstport, protocol, packets, bytes, start, end, action, logstatus]",
            LINE
        ));
        assert!(!m(
            "[version, accountid, interfaceid, srcaddr = 10.0.2.*, dstaddr, srcport, dstport, protocol, packets, bytes, start, end, action, logstatus]",
            LINE
        ));
        assert!(m(
            "[version, accountid, interfaceid, srcaddr, dstaddr, srcport, dstport = 80 || dstport = 3389, protocol, packets, bytes >= 400, start, end, action = REJECT, logstatus]",
            LINE
        ));
        assert!(!m(
            "[version, accountid, interfaceid, srcaddr, dstaddr, srcport, dstport = 80 || dstport = 8080, protocol, packets, bytes, start, end, action, logstatus]",
            LINE
        ));
        assert!(!m(
            "[version, accountid, interfaceid, srcaddr, dstaddr, srcport, dstport, protocol, packets, bytes > 5000, start, end, action, logstatus]",
            LINE
        ));
        let ssh = "[version, account, eni, source, destination, srcport, destport=\"22\", protocol=\"6\", packets, bytes, windowstart, windowend, action=\"REJECT\", flowlogstatus]";
        assert!(!m(ssh, LINE));
        assert!(m(ssh, &LINE.replace(" 3389 ", " 22 ")));
        assert!(!m(
            ssh,
            &LINE.replace(" 3389 ", " 22 ").replace("REJECT", "ACCEPT")
        ));
        assert!(m("[..., action = REJECT, status]", LINE));
        assert!(m(
            "[v, ..., dstport = 3389 && protocol = 7 || dstport = 3389, ...]",
            LINE
        ));
        assert!(m("[v, a, i, s, d, sp, dp != 22, ...]", LINE));
        assert!(m("[v, a, i, s, d, sp > 1024 && sp < 65536, ...]", LINE));
    }

    #[test]
    fn terms_and_errors() {
        assert!(m("REJECT", LINE));
        assert!(m("REJECT 3389", LINE));
        assert!(!m("REJECT 8080", LINE));
        assert!(m("?ACCEPT ?REJECT", LINE));
        assert!(!m("-REJECT", LINE));
        assert!(m("\"3389 6\"", LINE));
        assert!(m("\" \"", LINE));
        assert!(m("", LINE));
        let e = Pattern::parse("[a, , b]").unwrap_err().to_string();
        assert!(e.contains("at character 3: empty field"), "{e}");
        assert!(Pattern::parse("[a, b = ]").is_err());
        assert!(Pattern::parse("[a, b").is_err());
        assert!(Pattern::parse("{ $.a = 1 }").is_err());
        assert!(Pattern::parse("\"open").is_err());
    }
}
