//! Error text for people: an error and its sources in one line.

/// An error and its sources, `: `-joined (for event messages, logs and command-line errors).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn joins_every_source() {
        assert_eq!(super::error_chain(&Outer(Inner)), "outer: inner");
        assert_eq!(super::error_chain(&Inner), "inner");
    }
}
