//! Selector manifests: what an adapter looks for on the page, kept as data so a site redesign is
//! a TOML change (`bots/worker/adapters/<assistant>.toml`, overridable with `--adapters-dir`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::common::collapse;

/// The built-in manifests, compiled in.
const BUILT_IN: &[(&str, &str)] = &[
    ("chatgpt", include_str!("../../adapters/chatgpt.toml")),
    ("claude", include_str!("../../adapters/claude.toml")),
    ("perplexity", include_str!("../../adapters/perplexity.toml")),
    ("google-ai-overview", include_str!("../../adapters/google-ai-overview.toml")),
];

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No manifest exists for the assistant.
    #[error("no adapter manifest for assistant {0:?}")]
    Unknown(String),
    /// The override file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file tried.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML does not have the expected shape.
    #[error("invalid manifest {origin}: {source}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// A role lists no selector, or a role the adapter needs is missing.
    #[error("manifest {origin} lists no selector for role {role}")]
    EmptyRole {
        /// Where the text came from.
        origin: String,
        /// The role.
        role: String,
    },
    /// A text pattern that is blank: it would match every text (one in `challenge_patterns`
    /// would take every page for a challenge).
    #[error("manifest {origin} has a blank entry in {list}: it would match every text")]
    BlankPattern {
        /// Where the text came from.
        origin: String,
        /// The list it is in.
        list: &'static str,
    },
}

/// Waits and deadlines of an adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Page load until the composer or the login wall shows, in seconds.
    pub page_load_secs: u64,
    /// Click on send until the assistant turn appears, in seconds.
    pub first_turn_secs: u64,
    /// Click on send until the answer is complete, in seconds: the hard deadline.
    pub answer_deadline_secs: u64,
    /// How long the answer must stay unchanged once the page says it is done, in ms.
    pub settle_ms: u64,
    /// Page probe interval, in ms.
    pub poll_ms: u64,
    /// How long to wait for the sources panel, in ms.
    pub sources_panel_ms: u64,
}

impl Timing {
    /// `page_load_secs` as a duration.
    pub fn page_load(&self) -> Duration {
        Duration::from_secs(self.page_load_secs)
    }
    /// `first_turn_secs` as a duration.
    pub fn first_turn(&self) -> Duration {
        Duration::from_secs(self.first_turn_secs)
    }
    /// `answer_deadline_secs` as a duration.
    pub fn answer_deadline(&self) -> Duration {
        Duration::from_secs(self.answer_deadline_secs)
    }
    /// `settle_ms` as a duration.
    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }
    /// `poll_ms` as a duration (at least 10 ms).
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(10))
    }
    /// `sources_panel_ms` as a duration.
    pub fn sources_panel(&self) -> Duration {
        Duration::from_millis(self.sources_panel_ms)
    }
}

/// CSS selectors per role (role name → selectors in order of preference). Which roles exist is
/// the adapter's business: each adapter names the roles it needs ([`Manifest::require`]).
pub type Selectors = BTreeMap<String, Vec<String>>;

/// An adapter's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bumped on every change.
    pub version: String,
    /// Lowercase assistant id.
    pub assistant: String,
    /// Origin of the assistant's site.
    pub base_url: String,
    /// Path of a new conversation.
    pub new_chat_path: String,
    /// Where a new conversation starts that the site keeps out of the account's history and
    /// memory and out of its training (chatgpt.com's temporary chat, `/?temporary-chat=true`;
    /// claude.ai's incognito chat, `/new?incognito`): used instead of `new_chat_path` unless the
    /// bot runs with `--keep-history`. An account's memory of earlier prompts would otherwise
    /// shape the answers.
    #[serde(default)]
    pub private_chat_path: Option<String>,
    /// Path of the login page on the origin in use (the look-alike's too), for remote login and
    /// `aap session capture`.
    #[serde(default = "default_login_path")]
    pub login_path: String,
    /// The real site's login page when it lives elsewhere or needs a query (accounts.google.com):
    /// used instead of `login_path` while the adapter runs against `base_url` itself.
    #[serde(default)]
    pub login_url: Option<String>,
    /// Lowercase fragments of error texts that mean "rate limited".
    pub rate_limit_patterns: Vec<String>,
    /// Lowercase fragments of page texts (or titles) of a bot challenge such as Cloudflare's.
    #[serde(default)]
    pub challenge_patterns: Vec<String>,
    /// Lowercase fragments of error texts that mean "the prompt is longer than the site takes".
    #[serde(default)]
    pub prompt_refused_patterns: Vec<String>,
    /// Lowercase fragments of the notice a site shows under an answer it stopped at its length
    /// limit ("This response paused because Claude reached its max length for a message").
    #[serde(default)]
    pub cut_short_patterns: Vec<String>,
    /// Lowercase fragments of the notice a site shows when it answers with another model than
    /// the plan's, the plan's limit for it used up ("Responses will use another model until your
    /// limit resets after 4:04 PM").
    #[serde(default)]
    pub model_fallback_patterns: Vec<String>,
    /// Waits and deadlines.
    pub timing: Timing,
    /// Selectors per role.
    pub selectors: Selectors,
    /// Adapter-specific settings (numbers, strings, flags), read with [`Manifest::option_u64`]
    /// and friends, so an adapter's knobs stay data without a change to this type.
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
    /// Short SHA-256 of the manifest text, set when loaded.
    #[serde(skip)]
    pub fingerprint: String,
    /// Where the manifest came from: `built-in` or a file path.
    #[serde(skip)]
    pub source: String,
}

fn default_login_path() -> String {
    "/login".to_owned()
}

impl Manifest {
    /// The manifest for `assistant`: `<dir>/<assistant>.toml` when `dir` is given and has that
    /// file, the built-in one otherwise.
    pub fn load(assistant: &str, dir: Option<&Path>) -> Result<Manifest, ManifestError> {
        if let Some(dir) = dir {
            let path = dir.join(format!("{assistant}.toml"));
            if path.is_file() {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ManifestError::Read { path: path.clone(), source })?;
                return Manifest::parse(&text, &path.display().to_string());
            }
        }
        let text = BUILT_IN
            .iter()
            .find(|(name, _)| *name == assistant)
            .map(|(_, text)| *text)
            .ok_or_else(|| ManifestError::Unknown(assistant.to_owned()))?;
        Manifest::parse(text, "built-in")
    }

    /// Parses and checks a manifest; `origin` names it in errors and logs.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text)
            .map_err(|source| ManifestError::Parse { origin: origin.to_owned(), source: Box::new(source) })?;
        for (role, selectors) in &manifest.selectors {
            if selectors.iter().all(|s| s.trim().is_empty()) {
                return Err(ManifestError::EmptyRole { origin: origin.to_owned(), role: role.clone() });
            }
        }
        let lists = [
            ("rate_limit_patterns", &manifest.rate_limit_patterns),
            ("challenge_patterns", &manifest.challenge_patterns),
            ("prompt_refused_patterns", &manifest.prompt_refused_patterns),
            ("cut_short_patterns", &manifest.cut_short_patterns),
            ("model_fallback_patterns", &manifest.model_fallback_patterns),
        ];
        if let Some((list, _)) = lists.iter().find(|(_, patterns)| patterns.iter().any(|p| p.trim().is_empty())) {
            return Err(ManifestError::BlankPattern { origin: origin.to_owned(), list });
        }
        manifest.fingerprint = hex::encode(&Sha256::digest(text.as_bytes())[..6]);
        manifest.source = origin.to_owned();
        Ok(manifest)
    }

    /// Checks that every role in `roles` has at least one selector.
    pub fn require(&self, roles: &[&str]) -> Result<(), ManifestError> {
        for role in roles {
            if self.selectors.get(*role).is_none_or(|list| list.iter().all(|s| s.trim().is_empty())) {
                return Err(ManifestError::EmptyRole { origin: self.source.clone(), role: (*role).to_owned() });
            }
        }
        Ok(())
    }

    /// The selectors of `role` (empty when the manifest has none).
    pub fn selectors(&self, role: &str) -> &[String] {
        self.selectors.get(role).map_or(&[], Vec::as_slice)
    }

    /// An integer option from `[options]`, or `default`.
    pub fn option_u64(&self, name: &str, default: u64) -> u64 {
        self.options.get(name).and_then(toml::Value::as_integer).and_then(|v| u64::try_from(v).ok()).unwrap_or(default)
    }

    /// A millisecond option from `[options]` as a duration, or `default_ms`.
    pub fn option_ms(&self, name: &str, default_ms: u64) -> Duration {
        Duration::from_millis(self.option_u64(name, default_ms))
    }

    /// A text option from `[options]`, or `default`.
    pub fn option_str<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.options.get(name).and_then(toml::Value::as_str).unwrap_or(default)
    }

    /// A list of texts from `[options]` (entries that are not text are skipped), or `default`
    /// when the option is missing or lists nothing.
    pub fn option_strings(&self, name: &str, default: &[&str]) -> Vec<String> {
        let listed: Vec<String> = self
            .options
            .get(name)
            .and_then(toml::Value::as_array)
            .map(|values| values.iter().filter_map(toml::Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if listed.is_empty() { default.iter().map(|text| (*text).to_owned()).collect() } else { listed }
    }

    /// A flag from `[options]`, or `default`.
    pub fn option_bool(&self, name: &str, default: bool) -> bool {
        self.options.get(name).and_then(toml::Value::as_bool).unwrap_or(default)
    }

    /// Whether a page text or title is a bot challenge (Cloudflare's "Just a moment..." and kin).
    pub fn is_challenge(&self, text: &str) -> bool {
        matches_any(&self.challenge_patterns, text)
    }

    /// The selectors as one JSON object (role → list), for page scripts.
    pub fn selectors_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.selectors).unwrap_or_default()
    }

    /// Whether an error text means the account is rate limited.
    pub fn is_rate_limit(&self, text: &str) -> bool {
        matches_any(&self.rate_limit_patterns, text)
    }

    /// Whether an error text means the site refused the prompt for its length.
    pub fn is_prompt_refused(&self, text: &str) -> bool {
        matches_any(&self.prompt_refused_patterns, text)
    }

    /// Where a new conversation starts: [`Manifest::private_chat_path`] when the manifest has
    /// one, else `new_chat_path`.
    pub fn chat_path(&self) -> &str {
        self.private_chat_path.as_deref().unwrap_or(&self.new_chat_path)
    }

    /// How many times `text` holds a notice of an answer cut short (`cut_short_patterns`, white
    /// space runs read as one space): counted, not just found, so a page's notices can be told
    /// from the same words quoted in the prompt or the answer.
    pub fn cut_short_notices(&self, text: &str) -> usize {
        notices(&self.cut_short_patterns, text)
    }

    /// How many times `text` holds a notice of an answer from another model than the plan's
    /// (`model_fallback_patterns`), counted as [`Manifest::cut_short_notices`] counts, but only
    /// where a sentence starts (a line's start, or after `.`, `!` or `?`): the site's notice is
    /// a sentence of its own, where a quote of it in a prompt, a title or a source's name follows
    /// other words or a quotation mark.
    pub fn model_fallback_notices(&self, text: &str) -> usize {
        text.lines().map(|line| sentences_opened(&self.model_fallback_patterns, line)).sum()
    }

    /// The page's notice of an answer from another model (`model_fallback_patterns`): the last
    /// line of `page` holding one, with the line before it when that one speaks of a limit (the
    /// site may break "You've hit the Free plan limit for GPT-4o." and "Responses will use
    /// another model until ..." over two lines); white space collapsed, at most 400 characters.
    pub fn model_fallback_notice(&self, page: &str) -> Option<String> {
        let lines: Vec<&str> = page.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
        let at = lines.iter().rposition(|line| sentences_opened(&self.model_fallback_patterns, line) > 0)?;
        let before = at.checked_sub(1).map(|i| lines[i]).filter(|line| comparable(line).contains("limit"));
        let notice = match before {
            Some(before) => format!("{before} {}", lines[at]),
            None => lines[at].to_owned(),
        };
        Some(collapse(&notice).chars().take(400).collect())
    }
}

/// How many sentences of `line` open with one of `patterns` (white space runs read as one space).
fn sentences_opened(patterns: &[String], line: &str) -> usize {
    let line = collapse(&comparable(line));
    let opens = |at: usize| {
        let before = line[..at].trim_end();
        before.is_empty() || before.ends_with(['.', '!', '?'])
    };
    patterns
        .iter()
        .map(|pattern| line.match_indices(&collapse(&comparable(pattern))).filter(|(at, _)| opens(*at)).count())
        .sum()
}

/// How many times `text` holds one of `patterns` (white space runs read as one space).
fn notices(patterns: &[String], text: &str) -> usize {
    let spaced = |text: &str| collapse(&comparable(text));
    let text = spaced(text);
    patterns.iter().map(|pattern| text.matches(&spaced(pattern)).count()).sum()
}

/// A text as patterns are matched against it: lowercased, a typographic apostrophe read as a
/// straight one.
fn comparable(text: &str) -> String {
    text.to_lowercase().replace('\u{2019}', "'")
}

/// Whether `text` holds one of `patterns`, both lowercased and a typographic apostrophe read as
/// a straight one.
fn matches_any(patterns: &[String], text: &str) -> bool {
    let text = comparable(text);
    patterns.iter().any(|pattern| text.contains(&comparable(pattern)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_chatgpt_manifest_loads_with_a_fingerprint() -> Result<(), ManifestError> {
        let manifest = Manifest::load("chatgpt", None)?;
        assert_eq!(manifest.assistant, "chatgpt");
        assert_eq!(manifest.selectors("composer")[0], "#prompt-textarea");
        assert!(manifest.require(&["composer", "send_button"]).is_ok());
        assert!(matches!(manifest.require(&["no_such_role"]), Err(ManifestError::EmptyRole { .. })));
        assert_eq!(manifest.fingerprint.len(), 12);
        assert_eq!(manifest.source, "built-in");
        assert!(
            manifest.is_rate_limit("You\u{2019}ve reached our limit of messages per hour. Please try again later.")
        );
        assert!(!manifest.is_rate_limit("Something went wrong while generating the response."));
        assert!(matches!(Manifest::load("bard", None), Err(ManifestError::Unknown(_))));
        Ok(())
    }

    #[test]
    fn a_blank_text_pattern_is_refused_at_load() -> Result<(), ManifestError> {
        for list in [
            "rate_limit_patterns",
            "challenge_patterns",
            "prompt_refused_patterns",
            "cut_short_patterns",
            "model_fallback_patterns",
        ] {
            let mut value: toml::Value = toml::from_str(BUILT_IN[0].1).expect("the built-in manifest parses");
            value.as_table_mut().expect("a table").insert(list.to_owned(), toml::Value::from(vec!["too long", "  "]));
            let text = toml::to_string(&value).expect("serialises");
            match Manifest::parse(&text, "override") {
                Err(ManifestError::BlankPattern { list: named, .. }) => assert_eq!(named, list),
                other => panic!("{list}: expected BlankPattern, got {other:?}"),
            }
        }
        Manifest::load("chatgpt", None).map(|_| ())
    }

    /// Notices are counted, white space runs and a typographic apostrophe read alike, so the
    /// page's own can be told from a quote of it.
    #[test]
    fn cut_short_notices_are_counted() -> Result<(), ManifestError> {
        let manifest = Manifest::load("claude", None)?;
        let notice = "This response paused because Claude reached its max length for a message. Hit continue.";
        assert_eq!(manifest.cut_short_notices(notice), 1);
        assert_eq!(manifest.cut_short_notices(&format!("Q: \"{notice}\"\n\nA: ...\n{notice}")), 2);
        assert_eq!(manifest.cut_short_notices("Claude REACHED  its\tmax length for a\nmessage"), 1);
        assert_eq!(manifest.cut_short_notices("Claude\u{2019}s answer was whole."), 0);
        assert_eq!(Manifest::load("perplexity", None)?.cut_short_notices(notice), 0, "no patterns: no notice");
        Ok(())
    }

    /// chatgpt.com's notice of an answer from another model, as saved pages show it: on one line
    /// or two, with "and apps will be unavailable", in hours or at a clock time.
    #[test]
    fn a_model_fallback_notice_is_found_with_its_limit() -> Result<(), ManifestError> {
        let manifest = Manifest::load("chatgpt", None)?;
        let cases = [
            (
                "Would you like any enhancements?\n\nYou\u{2019}ve hit the Free plan limit for GPT-4o.\nResponses will use another model until your limit resets after 7:35 AM.\n\nGet Plus\n",
                "You\u{2019}ve hit the Free plan limit for GPT-4o. Responses will use another model until your limit resets after 7:35 AM.",
            ),
            (
                "Just say \"All three\"\n\nResponses will use another model and apps will be unavailable until your limit resets after 1:48 PM.\n\nUpgrade to Go",
                "Responses will use another model and apps will be unavailable until your limit resets after 1:48 PM.",
            ),
            (
                "You've hit the Free plan limit for GPT-5. Responses will use another model until your limit resets in 5 hours, or get ChatGPT Plus.",
                "You've hit the Free plan limit for GPT-5. Responses will use another model until your limit resets in 5 hours, or get ChatGPT Plus.",
            ),
        ];
        for (page, notice) in cases {
            assert_eq!(manifest.model_fallback_notices(page), 1, "{page}");
            assert_eq!(manifest.model_fallback_notice(page).as_deref(), Some(notice), "{page}");
        }
        // A line before it that speaks of no limit is not the notice's.
        let page = "The answer ends here.\nResponses will use another model until your limit resets after 4:04 PM.";
        let notice = manifest.model_fallback_notice(page);
        assert_eq!(notice.as_deref(), Some("Responses will use another model until your limit resets after 4:04 PM."));
        assert_eq!(manifest.model_fallback_notice("An answer about models and their limits."), None);
        // Quoted in a prompt, a title or a sentence, it opens no sentence: no notice.
        for quoted in [
            "Why does ChatGPT say \"Responses will use another model until your limit resets after 4:04 PM\"?",
            "Why does ChatGPT say \"Responses will use another model - Wikipedia",
            "It said responses will use another model.",
        ] {
            assert_eq!(manifest.model_fallback_notices(quoted), 0, "{quoted}");
            assert_eq!(manifest.model_fallback_notice(quoted), None, "{quoted}");
        }
        assert_eq!(
            manifest.model_fallback_notices(
                "Hm! Responses will use another model. Really? responses will use another model"
            ),
            2
        );
        assert_eq!(Manifest::load("claude", None)?.model_fallback_notices(cases[0].0), 0, "no patterns: no notice");
        Ok(())
    }

    #[test]
    fn string_options_fall_back_to_the_default_when_missing_or_empty() -> Result<(), ManifestError> {
        let mut manifest = Manifest::load("perplexity", None)?;
        let list = |items: &[toml::Value]| toml::Value::Array(items.to_vec());
        manifest.options.insert("parts".into(), list(&["/a".into(), 7.into(), "/b".into()]));
        manifest.options.insert("empty".into(), list(&[]));
        assert_eq!(manifest.option_strings("parts", &["/x"]), vec!["/a", "/b"]);
        assert_eq!(manifest.option_strings("empty", &["/x"]), vec!["/x"]);
        assert_eq!(manifest.option_strings("missing", &["/x"]), vec!["/x"]);
        assert!(manifest.option_strings("missing", &[]).is_empty());
        Ok(())
    }

    #[test]
    fn an_override_file_wins_and_empty_roles_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let text = BUILT_IN[0].1.replace("version = \"", "version = \"test-");
        std::fs::write(dir.path().join("chatgpt.toml"), &text)?;
        let manifest = Manifest::load("chatgpt", Some(dir.path()))?;
        assert!(manifest.version.starts_with("test-"));
        assert_ne!(manifest.fingerprint, Manifest::load("chatgpt", None)?.fingerprint);

        let broken = text.replace("[timing]", "unknown_key = 1\n[timing]");
        assert!(Manifest::parse(&broken, "test").is_err());
        // The built-in role's list (whatever its entries and comments) emptied.
        let built_in = BUILT_IN[0].1;
        let start = built_in.find("\nassistant_message = [").ok_or("no assistant_message role")? + 1;
        let end = start + built_in[start..].find("\n]").ok_or("unterminated assistant_message")? + 2;
        let empty = format!("{}assistant_message = []{}", &built_in[..start], &built_in[end..]);
        assert!(matches!(
            Manifest::parse(&empty, "test"),
            Err(ManifestError::EmptyRole { role, .. }) if role == "assistant_message"
        ));
        Ok(())
    }
}
