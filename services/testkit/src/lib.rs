//! aap-testkit
