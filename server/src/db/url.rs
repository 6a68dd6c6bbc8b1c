//! Small helpers over `mysql://user:pass@host:port/db?opts` URLs, enough to swap the database name.

/// Splits into (everything up to the host and port, database, query string).
fn split(url: &str) -> (&str, &str, &str) {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (head, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    match head[after_scheme..].find('/') {
        Some(slash) => {
            let at = after_scheme + slash;
            (&head[..at], &head[at + 1..], query)
        }
        None => (head, "", query),
    }
}

/// The same server, another database.
pub fn with_database(url: &str, database: &str) -> String {
    let (server, _, query) = split(url);
    format!("{server}/{database}{query}")
}

/// The same server and database, as another user.
pub fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let host_from = url[start..].find('@').map_or(start, |at| start + at + 1);
    format!("{}{user}:{password}@{}", &url[..start], &url[host_from..])
}

/// The database the URL names, if any.
pub fn database_name(url: &str) -> Option<&str> {
    let (_, db, _) = split(url);
    (!db.is_empty()).then_some(db)
}

/// The URL with any password replaced, for logs and `doctor`.
pub fn redacted(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let Some(at) = url[start..].find('@').map(|i| start + i) else {
        return url.to_string();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_database_keeping_credentials_and_options() {
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306", "t1"),
            "mysql://root@127.0.0.1:3306/t1"
        );
        assert_eq!(
            with_database("mysql://u:p@h:1/old?ssl=false", "new"),
            "mysql://u:p@h:1/new?ssl=false"
        );
        assert_eq!(database_name("mysql://u:p@h:1/old?x=1"), Some("old"));
        assert_eq!(database_name("mysql://h:1/"), None);
        assert_eq!(redacted("mysql://u:secret@h:1/db"), "mysql://u:***@h:1/db");
        assert_eq!(redacted("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(
            with_credentials("mysql://root@h:1/db?x=1", "app", "pw"),
            "mysql://app:pw@h:1/db?x=1"
        );
        assert_eq!(with_credentials("mysql://h:1/db", "app", "pw"), "mysql://app:pw@h:1/db");
    }
}
