//! The query crate's error: user faults (a query that does not parse or plan, a lake that is not
//! there) kept apart from engine failures, each with the position in the query when one is known.

use datafusion::error::DataFusionError;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in a query text an error was found: a byte offset and the length of the offending text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Byte offset of the first offending character.
    pub offset: usize,
    /// Length in bytes of the offending text (at least 1 when shown).
    pub len: usize,
}

impl Position {
    /// A position `len` bytes long starting at `offset`.
    pub fn new(offset: usize, len: usize) -> Self {
        Self { offset, len }
    }

    /// The 1-based line and column (in characters) of this position in `text`.
    pub fn line_col(&self, text: &str) -> (usize, usize) {
        flowscope_record::position::line_col(text, self.offset)
    }

    /// Converts a 1-based line and column (characters) into a byte offset in `text`.
    pub fn from_line_col(text: &str, line: usize, col: usize, len: usize) -> Self {
        let mut offset = 0;
        for (i, l) in text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                let within: usize = l
                    .chars()
                    .take(col.saturating_sub(1))
                    .map(char::len_utf8)
                    .sum();
                return Self::new(offset + within, len);
            }
            offset += l.len();
        }
        Self::new(text.len(), len)
    }
}

/// Everything that can go wrong while opening a lake or running a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The folder is not a flowscope lake (or cannot be read).
    #[error("{path}: {reason}")]
    Lake {
        /// The lake folder as given.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The lake itself failed (recovery, listing).
    #[error(transparent)]
    Store(#[from] flowscope_lake::Error),
    /// The query text is wrong: a syntax error, an unknown field or function, a bad argument.
    #[error("{message}")]
    Query {
        /// What is wrong, in words.
        message: String,
        /// Where in the query text, when known.
        position: Option<Position>,
    },
    /// A rule or option outside the query text is wrong (a Contributor Insights rule, a time).
    #[error("{0}")]
    Invalid(String),
    /// Writing the result failed (a closed pipe, a full disk).
    #[error("cannot write the result: {0}")]
    Output(#[source] std::io::Error),
    /// The engine failed while planning or running a valid query.
    #[error(transparent)]
    Engine(DataFusionError),
}

impl Error {
    /// A query error at `position`.
    pub fn query(message: impl Into<String>, position: Option<Position>) -> Self {
        Self::Query {
            message: message.into(),
            position,
        }
    }

    /// Whether this is a write to a closed pipe (`flowscope sql ... | head`), which is not a
    /// failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The position in the query text this error points at, if any.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Query { position, .. } => *position,
            _ => None,
        }
    }

    /// Converts a DataFusion error raised for the SQL text `sql`, keeping the position the parser
    /// or planner reported (as a line and column) and the plain message.
    pub fn from_sql(error: DataFusionError, sql: &str) -> Self {
        if let Some(message) = time_as_text(&error.to_string()) {
            return Self::Query {
                message,
                position: None,
            };
        }
        let position = sql_position(&error, sql);
        let user_fault = matches!(
            error.find_root(),
            DataFusionError::SQL(..)
                | DataFusionError::Plan(_)
                | DataFusionError::SchemaError(..)
                | DataFusionError::NotImplemented(_)
        ) || position.is_some();
        if !user_fault {
            return Self::Engine(error);
        }
        let mut message = error
            .diagnostic()
            .map(|d| clean_message(&d.message))
            .unwrap_or_else(|| clean_message(&error.find_root().to_string()));
        let mut position = position;
        let suggested = message.to_ascii_lowercase().contains("did you mean");
        if let Some(hint) = unknown_column_hint(&error).filter(|_| !suggested) {
            message.push_str(&hint);
        } else if matches!(error.find_root(), DataFusionError::SQL(..))
            && !suggested
            && let Some((word, keyword)) = position.and_then(|p| misspelt_keyword(sql, p.offset))
        {
            // `SELECT srcaddr FORM flows`: the parser took `FORM` for an alias and stumbled on
            // what follows. The misspelt word is what to point at.
            message = format!(
                "{message}; did you mean {keyword} instead of `{}`?",
                &sql[word.clone()]
            );
            position = Some(Position::new(word.start, word.len()));
        }
        Self::Query { message, position }
    }

    /// Renders the error with the query text: the message, then the offending line with a caret
    /// under the position.
    pub fn render(&self, text: &str) -> String {
        let Some(position) = self.position() else {
            return self.to_string();
        };
        let (line_no, col) = position.line_col(text);
        let line = text.lines().nth(line_no - 1).unwrap_or("");
        let width = text[position.offset.min(text.len())..]
            .chars()
            .take(position.len.max(1))
            .take_while(|c| *c != '\n')
            .count()
            .max(1);
        format!(
            "{self} (line {line_no}, column {col})\n  {line}\n  {}{}",
            " ".repeat(col - 1),
            "^".repeat(width)
        )
    }
}

impl From<DataFusionError> for Error {
    fn from(error: DataFusionError) -> Self {
        // The optimiser folds `start > '2026-11-02'` when the query runs, not when it is
        // planned: the same explanation either way.
        match time_as_text(&error.to_string()) {
            Some(message) => Self::Query {
                message,
                position: None,
            },
            None => Self::Engine(error),
        }
    }
}

/// Finds the position DataFusion reported: a diagnostic span, or sqlparser's
/// `at Line: L, Column: C` suffix.
fn sql_position(error: &DataFusionError, sql: &str) -> Option<Position> {
    if let Some(span) = error.diagnostic().and_then(|d| d.span)
        && span.start.line > 0
    {
        let len = if span.end.line == span.start.line {
            (span.end.column.saturating_sub(span.start.column)) as usize
        } else {
            1
        };
        return Some(Position::from_line_col(
            sql,
            span.start.line as usize,
            span.start.column as usize,
            len.max(1),
        ));
    }
    let text = error.to_string();
    let at = text.rfind("at Line: ")?;
    let rest = &text[at + "at Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let (line, col) = (line.trim().parse().ok()?, col.parse().ok()?);
    let len = token_len(sql, Position::from_line_col(sql, line, col, 1).offset);
    Some(Position::from_line_col(sql, line, col, len))
}

/// A date written where Unix seconds are (`WHERE start > '2026-11-02'`): the cast DataFusion
/// could not make, explained with the number to write instead.
fn time_as_text(message: &str) -> Option<String> {
    let rest = &message[message.find("Cannot cast string '")? + "Cannot cast string '".len()..];
    let (text, rest) = rest.split_once('\'')?;
    if !rest.trim_start().starts_with("to value of Int") {
        return None;
    }
    let seconds = flowscope_record::time::parse_datetime(text)?;
    Some(format!(
        "'{text}' is a date, and `start` and `end` are Unix seconds: write {seconds} (that time \
         in Unix seconds), or from_unixtime(start) > TIMESTAMP '{text}', or use --start/--end"
    ))
}

/// The length of the word or symbol starting at `offset`.
fn token_len(text: &str, offset: usize) -> usize {
    let rest = &text[offset.min(text.len())..];
    let word = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum::<usize>();
    word.max(1)
}

/// Strips DataFusion's layer prefixes ("Error during planning: ", "SQL error: ...") and the
/// position suffix, which the rendering shows under the query instead.
fn clean_message(text: &str) -> String {
    let mut s = text.trim();
    for prefix in [
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "This feature is not implemented: ",
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
        }
    }
    let s = match s.find(" at Line: ") {
        Some(i) => &s[..i],
        None => s,
    };
    let s = s.strip_prefix("ParserError(\"").unwrap_or(s);
    let s = s.strip_suffix("\")").unwrap_or(s);
    sentence(s)
}

/// "; did you mean `srcaddr`?" for a column that is not there but nearly is.
fn unknown_column_hint(error: &DataFusionError) -> Option<String> {
    let DataFusionError::SchemaError(schema_error, _) = error.find_root() else {
        return None;
    };
    let datafusion::common::SchemaError::FieldNotFound {
        field,
        valid_fields,
    } = schema_error.as_ref()
    else {
        return None;
    };
    // Compared without case (`Totl` is near a view's `Total`), shown as the column is named.
    let mut names: Vec<(String, &str)> = valid_fields
        .iter()
        .map(|c| (c.name.to_ascii_lowercase(), c.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let near = flowscope_record::nearest(
        &field.name.to_ascii_lowercase(),
        names.iter().map(|(lower, _)| lower.as_str()),
    )?;
    let (_, name) = names.iter().find(|(lower, _)| lower == near)?;
    Some(format!("; did you mean `{name}`?"))
}

/// The clause keywords a misspelt word in a query was most likely meant to be.
const CLAUSE_KEYWORDS: [&str; 12] = [
    "SELECT", "FROM", "WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "OFFSET", "JOIN", "UNION",
    "DISTINCT", "BETWEEN",
];

/// The word just before the token the parser stumbled on at `at`, when it is not a keyword
/// but nearly one, with that keyword: in `SELECT srcaddr FORM flows` the parser takes `FORM`
/// for an alias and stumbles on `flows`; `GRUOP BY` stumbles on `BY`. Only that word is a
/// suspect: a word further back (an alias `groups`, a column) was parsed and is not a typo.
fn misspelt_keyword(sql: &str, at: usize) -> Option<(std::ops::Range<usize>, &'static str)> {
    let before = sql.get(..at)?;
    let trimmed = before.trim_end();
    if trimmed.len() == before.len() {
        // The stumble is inside a word, not after one.
        return None;
    }
    let start = trimmed
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let word = &trimmed[start..];
    if word.len() < 4 || !word.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let upper = word.to_ascii_uppercase();
    if CLAUSE_KEYWORDS.contains(&upper.as_str()) {
        return None;
    }
    flowscope_record::nearest(&upper, CLAUSE_KEYWORDS).map(|k| (start..trimmed.len(), k))
}

/// SQL's leading keywords, for "did you mean" after a statement that does not start with one.
const STATEMENT_KEYWORDS: [&str; 8] = [
    "SELECT", "WITH", "EXPLAIN", "SHOW", "DESCRIBE", "VALUES", "CREATE", "SET",
];

/// sqlparser's `Expected: X, found: Y` as a sentence: `expected X, found `Y``, with the keyword
/// a misspelt first word was probably meant to be.
fn sentence(message: &str) -> String {
    let Some(rest) = message.strip_prefix("Expected: ") else {
        return message.to_string();
    };
    let Some((expected, found)) = rest.rsplit_once(", found: ") else {
        return format!("expected {rest}");
    };
    let found = found.trim();
    if found == "EOF" {
        return format!("expected {expected}, but the query ends here");
    }
    let hint = if expected == "an SQL statement" {
        flowscope_record::nearest(
            &found.to_ascii_uppercase(),
            STATEMENT_KEYWORDS.iter().copied(),
        )
        .map(|k| format!("; did you mean {k}?"))
        .unwrap_or_default()
    } else {
        String::new()
    };
    format!("expected {expected}, found `{found}`{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_round_trip() {
        let text = "filter a = 1\n| stats count(*) by bärbel";
        let p = Position::from_line_col(text, 2, 21, 6);
        assert_eq!(&text[p.offset..p.offset + 6], "bärbe");
        assert_eq!(p.line_col(text), (2, 21));
    }

    #[test]
    fn a_date_compared_with_seconds_says_what_to_write() {
        let m = time_as_text(
            "Arrow error: Cast error: Cannot cast string '2026-11-02' to value of Int64 type",
        )
        .unwrap();
        assert!(m.contains("write 1793577600"), "{m}");
        assert_eq!(
            time_as_text("Cannot cast string 'abc' to value of Int64 type"),
            None
        );
    }

    #[test]
    fn a_misspelt_clause_keyword_is_found_before_the_error() {
        let sql = "SELECT srcaddr FORM flows";
        let (word, keyword) = misspelt_keyword(sql, 20).unwrap();
        assert_eq!((&sql[word], keyword), ("FORM", "FROM"));
        let sql = "SELECT srcaddr FROM flows GRUOP BY 1";
        let (word, keyword) = misspelt_keyword(sql, 32).unwrap();
        assert_eq!((&sql[word], keyword), ("GRUOP", "GROUP"));
        // Only the word just before the stumble is a suspect: not an alias further back, not
        // a name with an underscore, not a keyword spelt right.
        let sql = "SELECT srcaddr AS groups FROM flows GROUP BY";
        assert_eq!(misspelt_keyword(sql, sql.len()), None);
        assert_eq!(misspelt_keyword("SELECT form_id x", 15), None);
        assert_eq!(misspelt_keyword("SELECT a FROM x", 14), None);
        // An offset inside a multi-byte character is no answer, not a panic.
        assert_eq!(misspelt_keyword("SELECT 'é' FORM x", 9), None);
    }

    #[test]
    fn parser_errors_read_as_sentences() {
        assert_eq!(
            clean_message(
                "SQL error: ParserError(\"Expected: an SQL statement, found: SELEC at Line: 1, Column: 1\")"
            ),
            "expected an SQL statement, found `SELEC`; did you mean SELECT?"
        );
        assert_eq!(
            clean_message("ParserError(\"Expected: ), found: EOF\")"),
            "expected ), but the query ends here"
        );
        assert_eq!(
            sentence("Expected: an SQL statement, found: bogus"),
            "expected an SQL statement, found `bogus`"
        );
    }

    #[test]
    fn render_points_at_the_token() {
        let e = Error::query("unknown field `srcadr`", Some(Position::new(7, 6)));
        let shown = e.render("filter srcadr = '1'");
        assert_eq!(
            shown,
            "unknown field `srcadr` (line 1, column 8)\n  filter srcadr = '1'\n         ^^^^^^"
        );
    }
}
