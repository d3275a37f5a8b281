//! aap-answers
