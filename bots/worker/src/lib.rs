//! aap-bot
