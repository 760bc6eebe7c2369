//! The Logs Insights syntax tree and its recursive-descent parser.

use super::lexer::{Tok, Token, tokenize};
use crate::error::{Error, Position, Result};

/// A byte range in the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span as an error position.
    pub fn position(self) -> Position {
        Position::new(self.start, (self.end - self.start).max(1))
    }

    fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A parsed query: commands in pipe order.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The commands.
    pub commands: Vec<Command>,
    /// Where each command's name is, in the same order.
    pub spans: Vec<Span>,
}

/// One command of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `fields a, b as c`: adds fields to the results.
    Fields(Vec<Projection>),
    /// `display a, b`: the fields shown (the last `display` wins).
    Display(Vec<Projection>),
    /// `filter expr` (also `where`).
    Filter(Expr),
    /// `stats agg [as x], ... [by expr [as y], ...]`.
    Stats {
        /// Aggregations.
        aggregates: Vec<Projection>,
        /// Grouping expressions.
        by: Vec<Projection>,
    },
    /// `sort a desc, b asc`.
    /// Keys: the expression, descending or not, and its text as written (after `stats`, a key
    /// written as an unnamed aggregate, `count(*)`, means that column, as in AWS).
    Sort(Vec<(Expr, bool, String)>),
    /// `limit n`.
    Limit(usize, Span),
    /// `parse field "glob*pattern" as a, b` or `parse field /(?<a>..)/`.
    Parse {
        /// The field parsed.
        source: Expr,
        /// The pattern.
        pattern: ParsePattern,
        /// Names given with `as` (glob patterns).
        names: Vec<(String, Span)>,
        /// Where the command is.
        span: Span,
    },
    /// `dedup a, b`.
    Dedup(Vec<Expr>, Span),
}

/// A `parse` pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsePattern {
    /// A string where `*` captures.
    Glob(String),
    /// A regex with named groups.
    Regex(String),
}

/// An expression with an optional `as` name, and its source text (the default column name).
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// The expression.
    pub expr: Expr,
    /// The `as` name.
    pub alias: Option<String>,
    /// The expression as written.
    pub text: String,
}

impl Projection {
    /// The output column name: the alias, else the expression as written.
    pub fn name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.text)
    }
}

/// An expression and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `and`
    And,
    /// `or`
    Or,
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
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^`
    Pow,
}

/// Expression forms.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A field name.
    Field(String),
    /// A string literal.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A decimal literal.
    Float(f64),
    /// A period literal (`5m`), in seconds.
    Period(i64),
    /// A regex literal.
    Regex(String),
    /// `*` inside `count(*)`.
    Star,
    /// `not e`
    Not(Box<Expr>),
    /// `-e`
    Neg(Box<Expr>),
    /// `a op b`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `e [not] like pattern` (a string: substring; a regex: match).
    Like {
        /// The tested value.
        expr: Box<Expr>,
        /// A `Str` or `Regex` expression.
        pattern: Box<Expr>,
        /// `not like`.
        negated: bool,
    },
    /// `e =~ /re/`
    Match {
        /// The tested value.
        expr: Box<Expr>,
        /// The regex (a `Regex` or `Str` expression).
        pattern: Box<Expr>,
    },
    /// `e [not] in [a, b]`
    In {
        /// The tested value.
        expr: Box<Expr>,
        /// The members.
        list: Vec<Expr>,
        /// `not in`.
        negated: bool,
    },
    /// `name(args)`
    Call {
        /// The function name as written.
        name: String,
        /// Arguments.
        args: Vec<Expr>,
    },
}

/// Commands the language has that flowscope does not run.
const UNSUPPORTED: &[&str] = &[
    "pattern",
    "diff",
    "anomaly",
    "unmask",
    "filterindex",
    "source",
    "unnest",
    "lookup",
    "join",
    "addtotals",
    "autoregress",
    "logcompare",
    "filldown",
    "fillmissing",
    "cidrlookup",
    "outlier",
    "accum",
    "appendcols",
    "sessionize",
    "countfrequent",
];

/// Parses a Logs Insights query.
///
/// # Errors
/// [`Error::Query`] pointing at the offending token.
pub fn parse(text: &str) -> Result<Query> {
    let tokens = tokenize(text)?;
    let mut p = Parser {
        text,
        tokens,
        at: 0,
    };
    let mut commands = Vec::new();
    let mut spans = Vec::new();
    if p.tokens.is_empty() {
        return Err(Error::query("the query is empty", None));
    }
    loop {
        spans.push(p.span_here());
        commands.push(p.command()?);
        match p.peek() {
            None => break,
            Some(Tok::Pipe) => {
                p.at += 1;
            }
            Some(_) => return Err(p.unexpected("`|` or the end of the query")),
        }
    }
    Ok(Query { commands, spans })
}

/// Parses a lone expression, such as the condition of a `filter`.
///
/// # Errors
/// [`Error::Query`] pointing at the offending token.
pub fn parse_expr(text: &str) -> Result<Expr> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(Error::query("the expression is empty", None));
    }
    let mut p = Parser {
        text,
        tokens,
        at: 0,
    };
    let e = p.expr()?;
    if p.peek().is_some() {
        return Err(p.unexpected("the end of the expression"));
    }
    Ok(e)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|t| &t.tok)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Tok> {
        self.tokens.get(self.at + ahead).map(|t| &t.tok)
    }

    fn span_here(&self) -> Span {
        match self.tokens.get(self.at) {
            Some(t) => Span {
                start: t.start,
                end: t.end,
            },
            None => Span {
                start: self.text.len(),
                end: self.text.len(),
            },
        }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn unexpected(&self, wanted: &str) -> Error {
        match self.tokens.get(self.at) {
            Some(t) => Error::query(
                format!("expected {wanted}, found `{}`", &self.text[t.start..t.end]),
                Some(t.position()),
            ),
            None => Error::query(
                format!("expected {wanted}, found the end of the query"),
                Some(Position::new(self.text.len(), 1)),
            ),
        }
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let yes = self.is_keyword(word);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let yes = self.peek() == Some(tok);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn expect(&mut self, tok: &Tok, wanted: &str) -> Result<Token> {
        if self.peek() == Some(tok) {
            Ok(self.next().expect("peeked"))
        } else {
            Err(self.unexpected(wanted))
        }
    }

    fn command(&mut self) -> Result<Command> {
        let here = self.span_here();
        let Some(Tok::Ident(word)) = self.peek().cloned() else {
            return Err(self.unexpected("a command (fields, filter, stats, sort, limit, ...)"));
        };
        self.at += 1;
        let lower = word.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "fields" => Command::Fields(self.projections()?),
            "display" => Command::Display(self.projections()?),
            "filter" | "where" => Command::Filter(self.expr()?),
            "stats" => {
                let aggregates = self.projections()?;
                let by = if self.eat_keyword("by") {
                    self.projections()?
                } else {
                    Vec::new()
                };
                Command::Stats { aggregates, by }
            }
            "sort" => {
                let mut keys = Vec::new();
                loop {
                    let e = self.expr()?;
                    let text = self.text[e.span.start..e.span.end].to_string();
                    let desc = if self.eat_keyword("desc") {
                        true
                    } else {
                        self.eat_keyword("asc");
                        false
                    };
                    keys.push((e, desc, text));
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                Command::Sort(keys)
            }
            "limit" => {
                let span = self.span_here();
                match self.next().map(|t| t.tok) {
                    Some(Tok::Int(n)) if n > 0 => Command::Limit(n as usize, span),
                    _ => {
                        self.at -= 1;
                        return Err(self.unexpected("a positive number of rows"));
                    }
                }
            }
            "parse" => {
                let source = self.expr_no_regex_target()?;
                let pattern = match self.next().map(|t| t.tok) {
                    Some(Tok::Str(s)) => ParsePattern::Glob(s),
                    Some(Tok::Regex(r)) => ParsePattern::Regex(r),
                    _ => {
                        self.at -= 1;
                        return Err(self.unexpected("a pattern: \"glob * text\" or /regex/"));
                    }
                };
                let mut names = Vec::new();
                if self.eat_keyword("as") {
                    loop {
                        let span = self.span_here();
                        names.push((self.name("a field name")?, span));
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                }
                let span = here.to(self.span_before());
                Command::Parse {
                    source,
                    pattern,
                    names,
                    span,
                }
            }
            "dedup" => {
                let mut fields = vec![self.expr()?];
                while self.eat(&Tok::Comma) {
                    fields.push(self.expr()?);
                }
                Command::Dedup(fields, here.to(self.span_before()))
            }
            other if UNSUPPORTED.contains(&other) => {
                return Err(Error::query(
                    format!("the `{word}` command is not supported by flowscope"),
                    Some(here.position()),
                ));
            }
            _ => {
                return Err(Error::query(
                    format!(
                        "unknown command `{word}` (flowscope runs fields, display, filter, \
                         stats, sort, limit, parse, dedup)"
                    ),
                    Some(here.position()),
                ));
            }
        })
    }

    fn span_before(&self) -> Span {
        let t = &self.tokens[self.at.saturating_sub(1).min(self.tokens.len() - 1)];
        Span {
            start: t.start,
            end: t.end,
        }
    }

    fn name(&mut self, wanted: &str) -> Result<String> {
        match self.peek().cloned() {
            Some(Tok::Ident(n) | Tok::Quoted(n)) => {
                self.at += 1;
                Ok(n)
            }
            _ => Err(self.unexpected(wanted)),
        }
    }

    fn projections(&mut self) -> Result<Vec<Projection>> {
        let mut out = Vec::new();
        loop {
            let expr = self.expr()?;
            let text = match &expr.kind {
                ExprKind::Field(name) => name.clone(),
                _ => self.text[expr.span.start..expr.span.end].to_string(),
            };
            let alias = if self.eat_keyword("as") {
                Some(self.name("a name after `as`")?)
            } else {
                None
            };
            out.push(Projection { expr, alias, text });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(out)
    }

    /// The source of `parse` is a plain field (what follows is the pattern).
    fn expr_no_regex_target(&mut self) -> Result<Expr> {
        let span = self.span_here();
        let name = self.name("the field to parse (e.g. @message)")?;
        Ok(Expr {
            kind: ExprKind::Field(name),
            span,
        })
    }

    fn expr(&mut self) -> Result<Expr> {
        self.or()
    }

    fn or(&mut self) -> Result<Expr> {
        let mut left = self.and()?;
        while self.eat_keyword("or") {
            let right = self.and()?;
            left = binary(BinOp::Or, left, right);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr> {
        let mut left = self.not()?;
        while self.eat_keyword("and") {
            let right = self.not()?;
            left = binary(BinOp::And, left, right);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr> {
        let here = self.span_here();
        if self.eat_keyword("not") {
            let inner = self.not()?;
            let span = here.to(inner.span);
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                span,
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr> {
        let left = self.additive()?;
        let op = match self.peek() {
            Some(Tok::Eq) => Some(BinOp::Eq),
            Some(Tok::Ne) => Some(BinOp::Ne),
            Some(Tok::Lt) => Some(BinOp::Lt),
            Some(Tok::Le) => Some(BinOp::Le),
            Some(Tok::Gt) => Some(BinOp::Gt),
            Some(Tok::Ge) => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.at += 1;
            let right = self.additive()?;
            return Ok(binary(op, left, right));
        }
        if self.eat(&Tok::Match) {
            let pattern = self.primary()?;
            let span = left.span.to(pattern.span);
            return Ok(Expr {
                kind: ExprKind::Match {
                    expr: Box::new(left),
                    pattern: Box::new(pattern),
                },
                span,
            });
        }
        let negated = self.is_keyword("not")
            && matches!(self.peek_at(1), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("like") || w.eq_ignore_ascii_case("in"));
        if negated {
            self.at += 1;
        }
        if self.eat_keyword("like") {
            let pattern = self.primary()?;
            if !matches!(pattern.kind, ExprKind::Str(_) | ExprKind::Regex(_)) {
                return Err(Error::query(
                    "`like` takes a \"string\" or a /regex/",
                    Some(pattern.span.position()),
                ));
            }
            let span = left.span.to(pattern.span);
            return Ok(Expr {
                kind: ExprKind::Like {
                    expr: Box::new(left),
                    pattern: Box::new(pattern),
                    negated,
                },
                span,
            });
        }
        if self.eat_keyword("in") {
            self.expect(&Tok::LBracket, "`[` to start the list")?;
            let mut list = Vec::new();
            if !self.eat(&Tok::RBracket) {
                loop {
                    list.push(self.additive()?);
                    if self.eat(&Tok::RBracket) {
                        break;
                    }
                    self.expect(&Tok::Comma, "`,` or `]`")?;
                }
            }
            let span = left.span.to(self.span_before());
            return Ok(Expr {
                kind: ExprKind::In {
                    expr: Box::new(left),
                    list,
                    negated,
                },
                span,
            });
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => BinOp::Add,
                Some(Tok::Minus) => BinOp::Sub,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.multiplicative()?;
            left = binary(op, left, right);
        }
    }

    fn multiplicative(&mut self) -> Result<Expr> {
        let mut left = self.power()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Star) => BinOp::Mul,
                Some(Tok::Slash) => BinOp::Div,
                Some(Tok::Percent) => BinOp::Mod,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.power()?;
            left = binary(op, left, right);
        }
    }

    fn power(&mut self) -> Result<Expr> {
        let base = self.unary()?;
        if self.eat(&Tok::Caret) {
            let exponent = self.power()?;
            return Ok(binary(BinOp::Pow, base, exponent));
        }
        Ok(base)
    }

    fn unary(&mut self) -> Result<Expr> {
        let here = self.span_here();
        if self.eat(&Tok::Minus) {
            let inner = self.unary()?;
            let span = here.to(inner.span);
            return Ok(match inner.kind {
                ExprKind::Int(n) => Expr {
                    kind: ExprKind::Int(-n),
                    span,
                },
                ExprKind::Float(f) => Expr {
                    kind: ExprKind::Float(-f),
                    span,
                },
                _ => Expr {
                    kind: ExprKind::Neg(Box::new(inner)),
                    span,
                },
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        let Some(token) = self.tokens.get(self.at).cloned() else {
            return Err(self.unexpected("a value"));
        };
        let span = Span {
            start: token.start,
            end: token.end,
        };
        self.at += 1;
        let kind = match token.tok {
            Tok::Str(s) => ExprKind::Str(s),
            Tok::Int(n) => ExprKind::Int(n),
            Tok::Float(f) => ExprKind::Float(f),
            Tok::Period(p) => ExprKind::Period(p),
            Tok::Regex(r) => ExprKind::Regex(r),
            Tok::Star => ExprKind::Star,
            Tok::Quoted(n) => ExprKind::Field(n),
            Tok::LParen => {
                let inner = self.expr()?;
                let close = self.expect(&Tok::RParen, "`)`")?;
                return Ok(Expr {
                    kind: inner.kind,
                    span: span.to(Span {
                        start: close.start,
                        end: close.end,
                    }),
                });
            }
            Tok::Ident(name) => {
                if self.peek() == Some(&Tok::LParen) {
                    self.at += 1;
                    let mut args = Vec::new();
                    if !self.eat(&Tok::RParen) {
                        loop {
                            args.push(self.expr()?);
                            if self.eat(&Tok::RParen) {
                                break;
                            }
                            self.expect(&Tok::Comma, "`,` or `)`")?;
                        }
                    }
                    let end = self.span_before();
                    return Ok(Expr {
                        kind: ExprKind::Call { name, args },
                        span: span.to(end),
                    });
                }
                ExprKind::Field(name)
            }
            _ => {
                self.at -= 1;
                return Err(self.unexpected("a field, a value or a function call"));
            }
        };
        Ok(Expr { kind, span })
    }
}

fn binary(op: BinOp, left: Expr, right: Expr) -> Expr {
    let span = left.span.to(right.span);
    Expr {
        kind: ExprKind::Binary(op, Box::new(left), Box::new(right)),
        span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_queries_parse() {
        for q in [
            "stats avg(bytes), min(bytes), max(bytes) by srcAddr, dstAddr",
            "filter protocol=17 | stats count(*) by srcAddr",
            "stats sum(bytes) as bytesTransferred by srcAddr, dstAddr | sort bytesTransferred desc | limit 10",
            "filter action=\"REJECT\" | stats count(*) as numRejections by srcAddr | sort numRejections desc | limit 20",
            "stats sum(packets) as packetsTransferred by srcAddr, dstAddr | sort packetsTransferred  desc | limit 15",
            "filter isIpv4InSubnet(srcAddr, \"192.0.2.0/24\") | stats sum(bytes) as bytesTransferred by dstAddr | sort bytesTransferred desc | limit 15",
            "filter logStatus=\"SKIPDATA\" | stats count(*) by bin(1h) as t | sort t",
            "filter (dstAddr like 'x.x.x.x' and srcAddr like 'y.y.') | stats sum(bytes) as bytesTransferred by srcAddr, dstAddr | sort bytesTransferred desc | limit 10",
            "filter (srcAddr like 'x.x.x.x' and dstAddr not like 'y.y.')",
            "fields @timestamp, @message | parse @message \"* * *\" as a, b, c | dedup a | limit 5",
            "filter dstPort in [22, 3389] and not (action = 'ACCEPT') | display srcAddr",
            "filter srcAddr =~ /^10\\./ | sort @timestamp desc",
        ] {
            parse(q).unwrap_or_else(|e| panic!("{q}: {}", e.render(q)));
        }
    }

    #[test]
    fn precedence() {
        let q = parse("filter a = 1 or b = 2 and not c = 3").unwrap();
        let Command::Filter(e) = &q.commands[0] else {
            panic!()
        };
        let ExprKind::Binary(BinOp::Or, _, right) = &e.kind else {
            panic!("{e:?}")
        };
        assert!(matches!(right.kind, ExprKind::Binary(BinOp::And, _, _)));
    }

    #[test]
    fn errors_point_at_tokens() {
        let q = "filter a = | stats count(*)";
        let e = parse(q).unwrap_err();
        assert_eq!(e.position().unwrap().offset, 11, "{}", e.render(q));
        let q = "stats count(*) bye srcAddr";
        let e = parse(q).unwrap_err();
        assert_eq!(e.position().unwrap().offset, 15, "{}", e.render(q));
        let q = "fields a | pattern @message";
        let e = parse(q).unwrap_err();
        assert!(e.to_string().contains("not supported"));
        assert_eq!(e.position().unwrap().offset, 11);
        let q = "limit 0";
        assert_eq!(parse(q).unwrap_err().position().unwrap().offset, 6);
    }
}
