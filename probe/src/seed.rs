//! Seed lists: one relay URL per line, blanks and `#` comments ignored.

use crate::model::{RelayUrl, RelayUrlError};

/// The seed list bundled with the binary (`probe/seeds/default.txt`).
pub const DEFAULT_SEED_LIST: &str = include_str!("../seeds/default.txt");

/// A line that did not hold a relay URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: usize,
    pub error: RelayUrlError,
}

/// The result of reading a seed list: the URLs (deduplicated, in first-seen order) and the lines
/// that were skipped with their reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedList {
    pub urls: Vec<RelayUrl>,
    pub skipped: Vec<SkippedLine>,
    /// Lines that normalised to a URL seen earlier in the list.
    pub duplicates: usize,
}

/// Parses a seed list. Bad lines never abort the load; they are reported in `skipped`.
/// `allow_local` admits loopback/private hosts (tests and private deployments only).
pub fn parse_seed_list(text: &str, allow_local: bool) -> SeedList {
    let mut out = SeedList::default();
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = if allow_local {
            RelayUrl::parse_allowing_local(line)
        } else {
            RelayUrl::parse(line)
        };
        match parsed {
            Ok(url) if seen.insert(url.clone()) => out.urls.push(url),
            Ok(_) => out.duplicates += 1,
            Err(error) => out.skipped.push(SkippedLine { line: i + 1, error }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_comments_blanks_and_bad_lines_and_keeps_the_rest() {
        let text = "# header\n\nwss://relay.damus.io\n  wss://nos.lol/  \nhttp://not-a-relay.com\nwss://relay.damus.io\nnot a url\nwss://127.0.0.1\n";
        let list = parse_seed_list(text, false);
        let urls: Vec<&str> = list.urls.iter().map(|u| u.as_str()).collect();
        assert_eq!(urls, ["wss://relay.damus.io", "wss://nos.lol"]);
        assert_eq!(list.duplicates, 1);
        let lines: Vec<usize> = list.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [5, 7, 8]);
        assert!(
            list.skipped[0]
                .error
                .to_string()
                .contains("http://not-a-relay.com")
        );
    }

    #[test]
    fn allow_local_admits_loopback() {
        let list = parse_seed_list("ws://127.0.0.1:7777\n", true);
        assert_eq!(list.urls.len(), 1);
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn bundled_list_is_large_and_clean() {
        let list = parse_seed_list(DEFAULT_SEED_LIST, false);
        assert!(list.urls.len() >= 200, "only {} urls", list.urls.len());
        assert!(
            list.skipped.is_empty(),
            "bad lines in the bundled list: {:?}",
            list.skipped
        );
        assert_eq!(list.duplicates, 0);
    }
}
