//! aap-embedding
