//! aap-simulator
