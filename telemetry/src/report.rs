//! The last line a process prints when it stops on an error: one line an operator can act on.
//!
//! anyhow's `Debug` form (what `fn main() -> anyhow::Result<()>` prints) is a headline such as
//! `Error: database` and then a numbered "Caused by" list, where each cause whose message
//! already quotes its source repeats it (three lines of `Connection refused`), and a gRPC
//! status shows up as `code: 'Some requested entity was not found', message: "..."` followed by
//! the `Debug` of its transport error. [`one_line`] joins the chain with `: `, leaves out a
//! cause the line already says, and names a status by its code.

use std::error::Error;

/// `error` and its causes on one line: each cause after a `: `, a cause whose text the line
/// already holds left out, a gRPC status as `<Code>: <message>`.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(error);
    while let Some(error) = cause {
        let text = match error.downcast_ref::<tonic::Status>() {
            Some(status) if status.message().is_empty() => format!("{:?}", status.code()),
            Some(status) => format!("{:?}: {}", status.code(), status.message()),
            None => error.to_string(),
        };
        let text = text.trim();
        if !text.is_empty() && !line.contains(text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(text);
        }
        cause = error.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Wrapped {
        #[error("cannot connect to nats at nats://127.0.0.1:1: {0}")]
        Quoting(#[source] std::io::Error),
        #[error("database")]
        Headline(#[source] std::io::Error),
    }

    fn refused() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused")
    }

    #[test]
    fn a_cause_the_line_already_says_is_left_out() {
        assert_eq!(
            one_line(&Wrapped::Quoting(refused())),
            "cannot connect to nats at nats://127.0.0.1:1: connection refused"
        );
        assert_eq!(one_line(&Wrapped::Headline(refused())), "database: connection refused");
    }

    #[test]
    fn a_grpc_status_is_named_by_its_code() {
        let status = tonic::Status::not_found("prompt 999 does not exist");
        assert_eq!(one_line(&status), "NotFound: prompt 999 does not exist");
    }

    #[test]
    fn the_line_is_one_line() {
        let error = std::io::Error::other("first\nsecond");
        assert_eq!(one_line(&error), "first second");
    }
}
