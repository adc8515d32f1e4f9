//! An error and its causes on one line, for people.

/// `outer: cause: root`, leaving out a cause whose text the line already holds (drivers often
/// print their source inside their own message, so `{:#}` would say it twice or three times).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cur = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_already_said_are_left_out() {
        let root = E("X", None);
        let mid = E("error returned from database: X", Some(Box::new(root)));
        let top = E(
            "history store: error returned from database: X",
            Some(Box::new(mid)),
        );
        assert_eq!(
            error_chain(&top),
            "history store: error returned from database: X"
        );
        let top = E("cannot record", Some(Box::new(E("disk full", None))));
        assert_eq!(error_chain(&top), "cannot record: disk full");
    }
}
