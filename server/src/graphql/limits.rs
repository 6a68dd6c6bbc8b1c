//! Bounds on a client's GraphQL document, checked before async-graphql parses it.
//!
//! The parser recurses once per level of selection sets, argument lists, list values and input
//! objects, and so does everything that walks the parsed document afterwards. A few kilobytes of
//! `[[[[…` would overflow a worker's stack and abort the process for every tenant, so the nesting
//! of brackets is counted over the raw text first, without recursion. Selection depth and
//! complexity are checked later by async-graphql on the parsed document; this bound is wider
//! and exists only to make parsing safe.

use async_graphql::{
    ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::ExecutableDocument,
};
use std::sync::Arc;

use crate::error::Error;

/// How deep `{`, `[` and `(` may nest in one document. The deepest legitimate document nests a
/// few selection levels (bounded by the depth limit) and a few input levels inside each.
pub const MAX_NESTING: usize = 64;

/// Longest text of a GraphQL error echoed back to the client (messages can quote the document).
pub const MAX_ECHOED_CHARS: usize = 500;

/// Refuses a document whose brackets nest deeper than `max`. Strings, block strings and comments
/// are skipped, so brackets inside them do not count. Runs in one pass without recursion.
pub fn check_nesting(query: &str, max: usize) -> Result<(), Error> {
    let bytes = query.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    // `\"""` is an escaped triple quote inside a block string.
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max {
                    return Err(Error::invalid(
                        "query",
                        format!("nests more than {max} levels of braces, brackets and parentheses"),
                    ));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Cuts a message that would echo a large part of the client's document back.
pub fn cut_echo(message: &mut String) {
    if message.chars().count() > MAX_ECHOED_CHARS {
        let end = message
            .char_indices()
            .nth(MAX_ECHOED_CHARS)
            .map_or(message.len(), |(i, _)| i);
        message.truncate(end);
        message.push('…');
    }
}

/// The schema extension that applies [`check_nesting`] to every document on every transport
/// (HTTP checks it before its own parse too; websocket operations reach only this).
pub struct NestingLimit;

impl ExtensionFactory for NestingLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(NestingLimitExtension)
    }
}

struct NestingLimitExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for NestingLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // The same code as over HTTP: a document refused before it is parsed.
        if let Err(e) = check_nesting(query, MAX_NESTING) {
            let mut error = async_graphql::ServerError::new(e.to_string(), None);
            let mut extensions = async_graphql::ErrorExtensionValues::default();
            extensions.set("code", crate::error::ErrorCode::GraphqlParseFailed.as_str());
            error.extensions = Some(extensions);
            return Err(error);
        }
        next.run(ctx, query, variables).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_brackets_outside_strings_and_comments() {
        let deep = |n: usize| format!("{{ wallet(id: {}\"x\"{}) {{ id }} }}", "[".repeat(n), "]".repeat(n));
        assert!(check_nesting(&deep(10), MAX_NESTING).is_ok());
        // 2 levels for `{` and `(`, so 62 list levels still fit and 63 do not.
        assert!(check_nesting(&deep(62), MAX_NESTING).is_ok());
        assert!(check_nesting(&deep(63), MAX_NESTING).is_err());
        assert!(check_nesting(&deep(100_000), MAX_NESTING).is_err());
        let in_string = format!("{{ a(s: \"{}\") }}", "[".repeat(1000));
        assert!(check_nesting(&in_string, MAX_NESTING).is_ok());
        let escaped = format!("{{ a(s: \"\\\"{}\") }}", "{".repeat(1000));
        assert!(check_nesting(&escaped, MAX_NESTING).is_ok());
        let block = format!("{{ a(s: \"\"\"x\\\"\"\"{}\"\"\") }}", "(".repeat(1000));
        assert!(check_nesting(&block, MAX_NESTING).is_ok());
        let comment = format!("# {}\n{{ a }}", "{".repeat(1000));
        assert!(check_nesting(&comment, MAX_NESTING).is_ok());
        // An unterminated string does not hide what follows from the count past its line.
        let unterminated = format!("{{ a(s: \"x\n{}", "[".repeat(1000));
        assert!(check_nesting(&unterminated, MAX_NESTING).is_err());
        let input_object = format!("mutation {{ c(input: {}1{}) }}", "{a: ".repeat(500), "}".repeat(500));
        let err = check_nesting(&input_object, MAX_NESTING).unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT");
    }

    #[test]
    fn long_messages_are_cut() {
        let mut m = "é".repeat(2000);
        cut_echo(&mut m);
        assert_eq!(m.chars().count(), MAX_ECHOED_CHARS + 1);
        let mut short = "short".to_string();
        cut_echo(&mut short);
        assert_eq!(short, "short");
    }
}
