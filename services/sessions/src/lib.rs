//! aap-sessions
