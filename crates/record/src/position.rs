//! Where a byte offset is in a text, as people count: the one conversion every located error
//! (queries, rules files, topologies) uses.

/// The 1-based line and column (in characters) of byte `offset` in `text`. An offset past the
/// end is the end; one inside a character counts from that character's start.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn lines_and_columns_count_from_one_in_characters() {
        let text = "ab\nçd\n\nx";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 5), (2, 2), "after the two-byte ç");
        assert_eq!(line_col(text, 4), (2, 1), "inside ç");
        assert_eq!(line_col(text, 7), (3, 1));
        assert_eq!(line_col(text, 8), (4, 1));
        assert_eq!(line_col(text, 100), (4, 2));
    }
}
