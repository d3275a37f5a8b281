//! What a bearer token must be for a client to send it as `authorization: Bearer <token>`.
//!
//! Every client of the platform (the `aap` commands, the bots, the chaos and load runs) reads
//! its token with [`header_token`], so a token is refused, or trimmed, the same way whichever
//! program was given it.

use std::fmt;

use tonic::metadata::{Ascii, MetadataValue};

/// Why a token cannot be sent in an `authorization` header. Its message is a predicate, to
/// follow what the caller calls the token ("the token is empty"); it never says the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// Nothing is left once the white space around it is trimmed.
    Empty,
    /// A space, a control character or a non-ASCII character remains inside it.
    Unsendable,
}

impl fmt::Display for TokenProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenProblem::Empty => "is empty",
            TokenProblem::Unsendable => {
                "holds a space, a control character or a non-ASCII character, which a header cannot carry"
            }
        })
    }
}

impl std::error::Error for TokenProblem {}

/// The token `given` less the white space around it (a token read from a file or a mounted
/// secret often ends in a line break or CRLF), or why no header can carry it.
pub fn header_token(given: &str) -> Result<&str, TokenProblem> {
    let token = given.trim();
    if token.is_empty() {
        return Err(TokenProblem::Empty);
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(TokenProblem::Unsendable);
    }
    Ok(token)
}

/// The value `Bearer <token>` of an `authorization` header, for the token `given` as
/// [`header_token`] reads it.
pub fn bearer_header(given: &str) -> Result<MetadataValue<Ascii>, TokenProblem> {
    let token = header_token(given)?;
    // Cannot fail: every character of `token` is visible ASCII.
    MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| TokenProblem::Unsendable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_around_the_token_is_trimmed() {
        for given in ["aap_s3cr3t", "aap_s3cr3t\n", "aap_s3cr3t\r\n", " aap_s3cr3t ", "\taap_s3cr3t"] {
            assert_eq!(header_token(given), Ok("aap_s3cr3t"), "{given:?}");
        }
    }

    #[test]
    fn an_empty_or_blank_token_is_refused() {
        for given in ["", " ", "\n", "\r\n", " \t "] {
            assert_eq!(header_token(given), Err(TokenProblem::Empty), "{given:?}");
        }
    }

    #[test]
    fn a_token_no_header_can_carry_is_refused() {
        for given in ["aap s3cr3t", "aap\ts3cr3t", "aap\0s3cr3t", "aap\u{7f}s3cr3t", "aap\ns3cr3t", "aap_s3cr3t\u{e9}"]
        {
            assert_eq!(header_token(given), Err(TokenProblem::Unsendable), "{given:?}");
        }
    }

    #[test]
    fn the_header_is_bearer_and_the_trimmed_token() {
        let header = bearer_header("aap_s3cr3t\r\n").expect("sendable");
        assert_eq!(header.to_str().expect("ascii"), "Bearer aap_s3cr3t");
        assert_eq!(bearer_header("aap s3cr3t").map(|_| ()), Err(TokenProblem::Unsendable));
    }

    #[test]
    fn the_problem_reads_after_what_the_caller_calls_the_token() {
        assert_eq!(format!("the token {}", TokenProblem::Empty), "the token is empty");
        let unsendable = TokenProblem::Unsendable.to_string();
        assert!(unsendable.starts_with("holds a space") && unsendable.ends_with("which a header cannot carry"));
    }
}
