//! aap-platform
