//! aap-evaluations
