//! [`Failure`]: what an example's `main` returns when it fails, printed as the
//! error's own message and its causes (`Error: <message>: <cause>`), not as a
//! debug dump of the error's fields.

use std::error::Error;
use std::fmt;

/// Any error, shown by `main` as its message followed by its causes.
pub struct Failure(Box<dyn Error + 'static>);

impl<E: Into<Box<dyn Error + 'static>>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.into())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            // Errors that print their cause in their own message are not repeated.
            if !self.0.to_string().ends_with(&c.to_string()) {
                write!(f, ": {c}")?;
            }
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::Failure;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read `specs.toml`")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("queue spec [default]: unknown key `memroy`")]
    struct Plain;

    #[test]
    fn shows_the_message_and_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let f = Failure::from(Outer(io));
        assert_eq!(format!("{f:?}"), "cannot read `specs.toml`: no such file");
        assert_eq!(
            format!("{:?}", Failure::from(Plain)),
            "queue spec [default]: unknown key `memroy`"
        );
        assert_eq!(format!("{:?}", Failure::from("plain text")), "plain text");
    }
}
