//! Playwright storage state: the logged-in browser state operators upload for an account. The
//! types live in [`aap_proto::storage_state`], where the platform checks an upload with the same
//! rules the bot reads a lease with.

pub use aap_proto::storage_state::{StorageState, StoredCookie, StoredEntry, StoredOrigin};
