//! Timing and failure knobs, set at start and changed at runtime through `PUT /__sim/config`.

use serde::{Deserialize, Serialize};

/// How the simulator behaves. `Default` is realistic but fast: a whole answer takes about 2 s,
/// including one mid-stream pause long enough to fool a "text stopped changing for 1 s" check.
///
/// The same JSON shape is accepted by `PUT /__sim/config`, where any subset of fields may be
/// given (the others keep their current value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Delay between the request and the first streamed token, in ms.
    pub first_token_delay_ms: u64,
    /// Delay between two streamed chunks, in ms.
    pub chunk_delay_ms: u64,
    /// Words per streamed chunk (at least 1).
    pub words_per_chunk: usize,
    /// One silent pause in the middle of every answer, in ms (0: none).
    pub pause_ms: u64,
    /// Factor applied to every delay for `[[slow]]` prompts (or all prompts when `slow`).
    pub slow_factor: u64,
    /// Every prompt behaves as if marked `[[slow]]`.
    pub slow: bool,
    /// Every answer comes without citations, as if marked `[[no-citations]]`.
    pub no_citations: bool,
    /// Every prompt hits the rate limit, as if marked `[[rate-limit]]`.
    pub rate_limit: bool,
    /// A session hits the rate limit once it has received this many answers.
    pub rate_limit_after: Option<u64>,
    /// Every answer fails mid-stream, as if marked `[[error]]`.
    pub error: bool,
    /// Every session is treated as expired: every page is the login wall.
    pub logged_out: bool,
    /// Every page and answer request gets the bot challenge, as if marked `[[challenge]]`.
    pub challenge: bool,
    /// Every answer stalls a third of the way, as if marked `[[stall]]`.
    pub stall: bool,
    /// How long a stalled answer holds its stream open before dropping it, in ms.
    pub stall_ms: u64,
    /// Every answer finishes normally with no text at all, as if marked `[[empty]]`.
    pub empty: bool,
    /// Serve the site's redesigned markup: other class names and test ids, as a site ships
    /// after a redesign. A bot keeps working only through its manifest's fallback selectors.
    /// The same as `variant = "redesign"`.
    pub redesign: bool,
    /// Which page variant the site serves ([`crate::Site::variants`] lists each site's): empty
    /// or `current` for today's look-alike, `redesign`, or a variant built from another public
    /// description of the site (other wrappers, sources in a dialog, a pane or a tab, late
    /// sources, a stop control that clears early). Unknown names are refused.
    pub variant: String,
    /// Every answer's sources arrive late: the sources list, panel or dialog fills (or shows up)
    /// only after the answer text has finished and the site's finish signals show.
    pub late_sources: bool,
    /// A dialog over the page on arrival (the site's onboarding / "what's new" / upgrade upsell,
    /// `role=dialog`, `aria-modal`, a close button, Escape closes it) whose backdrop intercepts
    /// every click and whose focus trap takes the keys, as if marked `[[modal]]`. Once closed it
    /// stays closed for the browser profile, as the real ones do.
    pub modal: bool,
    /// A fixed cookie / notice banner over the bottom of the page, up to above the composer, so
    /// it covers the composer and the send button, as if marked `[[banner]]`. Escape does not
    /// close it; its buttons do (remembered for the profile).
    pub banner: bool,
    /// The page calls `alert()` when the composer first gets focus, as if marked `[[alert]]`.
    pub alert: bool,
    /// The page calls `confirm()` when the composer first gets focus, as if marked
    /// `[[confirm]]`.
    pub confirm: bool,
    /// Once something was typed, leaving the page asks "Leave site?" (`beforeunload`), as if
    /// marked `[[beforeunload]]`.
    pub beforeunload: bool,
    /// The first click on the page opens a new tab (`window.open`) that takes the focus, as if
    /// marked `[[new-window]]`; while its own tab is hidden the page holds its answer stream
    /// (a background tab gets no animation frames, which the sites render in).
    pub new_window: bool,
    /// The dialog and the banner cannot be closed: no close button, Escape ignored, the banner
    /// without buttons, as if marked `[[sticky]]`. A bot must give up on them.
    pub sticky: bool,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            first_token_delay_ms: 250,
            chunk_delay_ms: 12,
            words_per_chunk: 3,
            pause_ms: 1200,
            slow_factor: 4,
            slow: false,
            no_citations: false,
            rate_limit: false,
            rate_limit_after: None,
            error: false,
            logged_out: false,
            challenge: false,
            stall: false,
            stall_ms: 600_000,
            empty: false,
            redesign: false,
            variant: String::new(),
            late_sources: false,
            modal: false,
            banner: false,
            alert: false,
            confirm: false,
            beforeunload: false,
            new_window: false,
            sticky: false,
        }
    }
}

/// Why a config change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The patch is not a JSON object.
    #[error("config patch must be a json object")]
    NotAnObject,
    /// A field is unknown or has the wrong type.
    #[error("invalid simulator config: {0}")]
    Invalid(#[from] serde_json::Error),
    /// The site has no page variant of that name.
    #[error("unknown variant {variant:?} for {site}: one of {known}")]
    UnknownVariant {
        /// The name asked for.
        variant: String,
        /// The site's id.
        site: &'static str,
        /// The site's variants, comma-separated.
        known: String,
    },
}

impl SimulatorConfig {
    /// The page variant in force: `redesign` when that flag is set, else `variant`, `current`
    /// when empty.
    pub fn variant_name(&self) -> &str {
        if self.redesign {
            "redesign"
        } else if self.variant.trim().is_empty() {
            "current"
        } else {
            self.variant.trim()
        }
    }

    /// This config for `site` when its variant is one the site serves.
    pub fn checked(self, site: crate::Site) -> Result<Self, ConfigError> {
        if site.variants().contains(&self.variant_name()) {
            Ok(self)
        } else {
            Err(ConfigError::UnknownVariant {
                variant: self.variant_name().to_owned(),
                site: site.id(),
                known: site.variants().join(", "),
            })
        }
    }

    /// Returns this config with the fields present in `patch` replaced.
    pub fn patched(&self, patch: serde_json::Value) -> Result<Self, ConfigError> {
        let serde_json::Value::Object(patch) = patch else {
            return Err(ConfigError::NotAnObject);
        };
        let mut current = serde_json::to_value(self)?;
        if let serde_json::Value::Object(fields) = &mut current {
            fields.extend(patch);
        }
        Ok(serde_json::from_value(current)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_keeps_unmentioned_fields_and_rejects_unknown_ones() -> Result<(), ConfigError> {
        let base = SimulatorConfig { pause_ms: 7, ..SimulatorConfig::default() };
        let patched = base.patched(json!({"rate_limit": true, "rate_limit_after": 3, "empty": true}))?;
        assert!(patched.rate_limit && patched.empty);
        assert_eq!(patched.rate_limit_after, Some(3));
        assert_eq!(patched.pause_ms, 7);
        assert!(base.patched(json!({"rate_limt": true})).is_err());
        assert!(base.patched(json!([1])).is_err());
        assert!(base.patched(json!({"pause_ms": "long"})).is_err());
        Ok(())
    }

    #[test]
    fn variants_are_checked_per_site() -> Result<(), ConfigError> {
        let base = SimulatorConfig::default();
        assert_eq!(base.variant_name(), "current");
        for site in crate::Site::ALL {
            assert_eq!(site.variants()[0], "current");
            assert!(site.variants().len() >= 3, "{site:?} serves at least three variants");
            for variant in site.variants() {
                let config = base.patched(json!({"variant": variant}))?.checked(site)?;
                assert_eq!(config.variant_name(), *variant);
            }
            assert!(matches!(
                base.patched(json!({"variant": "no-such-variant"}))?.checked(site),
                Err(ConfigError::UnknownVariant { .. })
            ));
        }
        assert_eq!(SimulatorConfig { redesign: true, ..base }.variant_name(), "redesign");
        Ok(())
    }
}
