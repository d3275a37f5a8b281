//! Claude (claude.ai): placeholder, replaced by the real adapter.

use thirtyfour::WebDriver;

use super::{Adapter, AskError, Captured, Manifest};

/// The Claude (claude.ai) adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct Claude {
    manifest: Manifest,
    origin: String,
}

impl Claude {
    /// The selector roles this adapter needs in its manifest.
    pub const ROLES: &'static [&'static str] = &["composer"];

    /// An adapter for the site at `origin` (the manifest's `base_url` when `None`).
    pub fn new(manifest: Manifest, origin: Option<&str>) -> Claude {
        let origin = origin.unwrap_or(&manifest.base_url).trim_end_matches('/').to_owned();
        Claude { manifest, origin }
    }
}

impl Adapter for Claude {
    fn assistant(&self) -> &str {
        &self.manifest.assistant
    }

    fn origin(&self) -> &str {
        &self.origin
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    async fn ask(&self, _driver: &WebDriver, _prompt: &str) -> Result<Captured, AskError> {
        Err(AskError::SelectorMissing("composer"))
    }
}
