//! Tokens of the Logs Insights language, each with its byte span in the query text.
//!
//! `/` is division after a value and a regex literal anywhere else, as in the console: after
//! `like`, `=~`, `(`, `,` or at the start of an expression.

use crate::error::{Error, Position, Result};

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A field, function or keyword name (`srcAddr`, `@timestamp`, `stats`, `and`).
    Ident(String),
    /// A back-quoted name (`` `log-status` ``).
    Quoted(String),
    /// A string literal (single or double quotes).
    Str(String),
    /// A regex literal `/.../`.
    Regex(String),
    /// An integer literal.
    Int(i64),
    /// A decimal literal.
    Float(f64),
    /// A time period such as `5m` (in seconds).
    Period(i64),
    /// `|`
    Pipe,
    /// `,`
    Comma,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
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
    /// `=~`
    Match,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `^`
    Caret,
    /// `%`
    Percent,
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Byte offset of its first character.
    pub start: usize,
    /// Byte offset just past it.
    pub end: usize,
}

impl Token {
    /// The token's position for error messages.
    pub fn position(&self) -> Position {
        Position::new(self.start, (self.end - self.start).max(1))
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '@' | '.' | '$')
}

/// Words after which a `/` starts a regex rather than a division.
fn keyword_before_value(word: &str) -> bool {
    ["like", "and", "or", "not", "in", "by", "as"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// Splits `text` into tokens; `#` starts a comment to the end of the line.
///
/// # Errors
/// [`Error::Query`] at an unterminated string or regex, or a character the language lacks.
pub fn tokenize(text: &str) -> Result<Vec<Token>> {
    let mut tokens: Vec<Token> = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            for (_, c) in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        // `parse @message /regex/`: the pattern follows a field name.
        let after_parse_field = tokens.len() >= 2
            && matches!(&tokens[tokens.len() - 2].tok, Tok::Ident(w) if w.eq_ignore_ascii_case("parse"));
        let value_before = !after_parse_field
            && tokens.last().is_some_and(|t| match &t.tok {
                Tok::Ident(w) => !keyword_before_value(w),
                Tok::Quoted(_)
                | Tok::Str(_)
                | Tok::Int(_)
                | Tok::Float(_)
                | Tok::Period(_)
                | Tok::Regex(_)
                | Tok::RParen
                | Tok::RBracket => true,
                _ => false,
            });
        chars.next();
        let simple = |tok| Some(tok);
        let tok = match c {
            '|' => simple(Tok::Pipe),
            ',' => simple(Tok::Comma),
            '(' => simple(Tok::LParen),
            ')' => simple(Tok::RParen),
            '[' => simple(Tok::LBracket),
            ']' => simple(Tok::RBracket),
            '+' => simple(Tok::Plus),
            '-' => simple(Tok::Minus),
            '*' => simple(Tok::Star),
            '^' => simple(Tok::Caret),
            '%' => simple(Tok::Percent),
            '=' => match chars.peek() {
                Some(&(_, '~')) => {
                    chars.next();
                    simple(Tok::Match)
                }
                Some(&(_, '=')) => {
                    chars.next();
                    simple(Tok::Eq)
                }
                _ => simple(Tok::Eq),
            },
            '!' => match chars.peek() {
                Some(&(_, '=')) => {
                    chars.next();
                    simple(Tok::Ne)
                }
                _ => None,
            },
            '<' => match chars.peek() {
                Some(&(_, '=')) => {
                    chars.next();
                    simple(Tok::Le)
                }
                _ => simple(Tok::Lt),
            },
            '>' => match chars.peek() {
                Some(&(_, '=')) => {
                    chars.next();
                    simple(Tok::Ge)
                }
                _ => simple(Tok::Gt),
            },
            '/' if value_before => simple(Tok::Slash),
            '/' => {
                let body = delimited(text, start, '/', &mut chars, "regex")?;
                Some(Tok::Regex(body))
            }
            '"' | '\'' => {
                let body = delimited(text, start, c, &mut chars, "string")?;
                Some(Tok::Str(body))
            }
            '`' => {
                let body = delimited(text, start, '`', &mut chars, "back-quoted name")?;
                Some(Tok::Quoted(body))
            }
            c if c.is_ascii_digit() => {
                let mut end = start + 1;
                while let Some(&(i, d)) = chars.peek() {
                    if d.is_ascii_digit() || d == '.' {
                        chars.next();
                        end = i + 1;
                    } else {
                        break;
                    }
                }
                let number = &text[start..end];
                let mut unit_end = end;
                while let Some(&(i, u)) = chars.peek() {
                    if u.is_ascii_alphabetic() {
                        chars.next();
                        unit_end = i + 1;
                    } else {
                        break;
                    }
                }
                let unit = &text[end..unit_end];
                let bad = || {
                    Error::query(
                        format!("`{}` is not a number", &text[start..unit_end]),
                        Some(Position::new(start, unit_end - start)),
                    )
                };
                if unit.is_empty() {
                    if number.contains('.') {
                        Some(Tok::Float(number.parse().map_err(|_| bad())?))
                    } else {
                        Some(Tok::Int(number.parse().map_err(|_| bad())?))
                    }
                } else {
                    let n: i64 = number.parse().map_err(|_| bad())?;
                    let seconds = period_unit(unit).ok_or_else(|| {
                        Error::query(
                            format!(
                                "`{}`: unknown time unit `{unit}` (use s, m, h, d or w)",
                                &text[start..unit_end]
                            ),
                            Some(Position::new(start, unit_end - start)),
                        )
                    })?;
                    Some(Tok::Period(n.saturating_mul(seconds)))
                }
            }
            c if is_name_char(c) => {
                let mut end = start + c.len_utf8();
                while let Some(&(i, d)) = chars.peek() {
                    if is_name_char(d) {
                        chars.next();
                        end = i + d.len_utf8();
                    } else {
                        break;
                    }
                }
                Some(Tok::Ident(text[start..end].to_string()))
            }
            _ => None,
        };
        let Some(tok) = tok else {
            return Err(Error::query(
                format!("unexpected character `{c}`"),
                Some(Position::new(start, c.len_utf8())),
            ));
        };
        let end = chars.peek().map_or(text.len(), |&(i, _)| i);
        tokens.push(Token { tok, start, end });
    }
    Ok(tokens)
}

/// Seconds in a period unit.
pub fn period_unit(unit: &str) -> Option<i64> {
    Some(match unit {
        "s" | "sec" => 1,
        "m" | "min" => 60,
        "h" | "hr" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    })
}

/// Reads up to the closing `close`, honouring backslash escapes (kept for regexes, resolved for
/// strings and names).
fn delimited(
    text: &str,
    start: usize,
    close: char,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    what: &str,
) -> Result<String> {
    let mut body = String::new();
    while let Some((_, c)) = chars.next() {
        if c == close {
            return Ok(body);
        }
        if c == '\\' {
            if let Some((_, next)) = chars.next() {
                if close == '/' && next != '/' {
                    body.push('\\');
                }
                body.push(next);
            }
            continue;
        }
        body.push(c);
    }
    Err(Error::query(
        format!("unterminated {what}"),
        Some(Position::new(start, text.len() - start)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn regex_versus_division() {
        assert_eq!(
            toks("filter a like /x\\/y/ | fields b / 2"),
            vec![
                Tok::Ident("filter".into()),
                Tok::Ident("a".into()),
                Tok::Ident("like".into()),
                Tok::Regex("x/y".into()),
                Tok::Pipe,
                Tok::Ident("fields".into()),
                Tok::Ident("b".into()),
                Tok::Slash,
                Tok::Int(2),
            ]
        );
    }

    #[test]
    fn periods_strings_comments() {
        assert_eq!(
            toks(
                "# top\nstats count(*) by bin(5m) as t | filter x = 'a|b' and `log-status`!=\"OK\""
            ),
            vec![
                Tok::Ident("stats".into()),
                Tok::Ident("count".into()),
                Tok::LParen,
                Tok::Star,
                Tok::RParen,
                Tok::Ident("by".into()),
                Tok::Ident("bin".into()),
                Tok::LParen,
                Tok::Period(300),
                Tok::RParen,
                Tok::Ident("as".into()),
                Tok::Ident("t".into()),
                Tok::Pipe,
                Tok::Ident("filter".into()),
                Tok::Ident("x".into()),
                Tok::Eq,
                Tok::Str("a|b".into()),
                Tok::Ident("and".into()),
                Tok::Quoted("log-status".into()),
                Tok::Ne,
                Tok::Str("OK".into()),
            ]
        );
    }

    #[test]
    fn errors_have_positions() {
        let e = tokenize("filter a = 'open").unwrap_err();
        assert_eq!(e.position().unwrap().offset, 11);
        let e = tokenize("stats count(*) by bin(5q)").unwrap_err();
        assert_eq!(e.position().unwrap().offset, 22);
    }
}
