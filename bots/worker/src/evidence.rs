//! Evidence of failed attempts: the page's HTML, a screenshot and a short JSON note, kept on
//! disk so an operator can see what the bot saw. Bounded: HTML is cut at a size limit, a
//! screenshot over its limit is dropped, and only the newest `max_files` cases are kept.

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;
use thirtyfour::WebDriver;

/// Where and how much evidence to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceOptions {
    /// Directory for the files (created on first use).
    pub dir: PathBuf,
    /// Failure cases kept (each is up to three files); the oldest go first. 0 keeps none.
    pub max_cases: usize,
    /// HTML beyond this many bytes is cut off.
    pub max_html_bytes: usize,
    /// A screenshot larger than this is not kept.
    pub max_screenshot_bytes: usize,
}

impl Default for EvidenceOptions {
    /// Under the system's temporary directory: a library user (a test, `aap dev`) never writes
    /// into the working directory by accident. `aap-bot` defaults to `./evidence` (its flag).
    fn default() -> Self {
        EvidenceOptions {
            dir: std::env::temp_dir().join("aap-bot-evidence"),
            max_cases: 100,
            max_html_bytes: 2 * 1024 * 1024,
            max_screenshot_bytes: 4 * 1024 * 1024,
        }
    }
}

/// What the note next to the HTML and screenshot says.
#[derive(Debug, Serialize)]
struct Note<'a> {
    captured_at: String,
    evaluation_id: i64,
    attempt: u32,
    class: &'a str,
    error: &'a str,
    assistant: &'a str,
    manifest_version: &'a str,
    manifest_fingerprint: &'a str,
    url: String,
    title: String,
    html_bytes: usize,
    html_truncated: bool,
    screenshot: bool,
}

/// One failure to record.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    /// The evaluation being answered.
    pub evaluation_id: i64,
    /// The bot's attempt number within the task (1-based).
    pub attempt: u32,
    /// The failure class, e.g. `selector-missing`.
    pub class: &'a str,
    /// The error text.
    pub error: &'a str,
    /// Lowercase assistant id.
    pub assistant: &'a str,
    /// Version of the adapter manifest in use.
    pub manifest_version: &'a str,
    /// Its fingerprint.
    pub manifest_fingerprint: &'a str,
}

/// Keeps evidence under [`EvidenceOptions`].
#[derive(Debug, Clone)]
pub struct Evidence {
    options: EvidenceOptions,
}

impl Evidence {
    /// Evidence kept as `options` say.
    pub fn new(options: EvidenceOptions) -> Evidence {
        Evidence { options }
    }

    /// Saves the page's HTML, a screenshot and a note for `case`; returns the common path stem
    /// (`<dir>/<time>-e<evaluation>-a<attempt>-<class>`) to cite in the release reason, or `None`
    /// when nothing could be kept (evidence off, a dead browser, a full disk). Never fails the
    /// caller: evidence is a help, not a duty.
    pub async fn keep(&self, driver: &WebDriver, case: Case<'_>) -> Option<String> {
        if self.options.max_cases == 0 {
            return None;
        }
        if let Err(error) = tokio::fs::create_dir_all(&self.options.dir).await {
            tracing::warn!(%error, dir = %self.options.dir.display(), "cannot create the evidence directory");
            return None;
        }
        let stem = self.options.dir.join(format!(
            "{}-e{}-a{}-{}",
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            case.evaluation_id,
            case.attempt,
            case.class
        ));
        let html = driver.source().await.ok();
        let screenshot = driver.screenshot_as_png().await.ok();
        let url = driver.current_url().await.map(|url| url.to_string()).unwrap_or_default();
        let title = driver.title().await.unwrap_or_default();
        if html.is_none() && screenshot.is_none() {
            tracing::debug!("no evidence: the browser does not answer");
            return None;
        }

        let (html, truncated) =
            html.map_or((String::new(), false), |html| bound_html(html, self.options.max_html_bytes));
        let screenshot = screenshot.filter(|png| png.len() <= self.options.max_screenshot_bytes);
        let note = Note {
            captured_at: Utc::now().to_rfc3339(),
            evaluation_id: case.evaluation_id,
            attempt: case.attempt,
            class: case.class,
            error: case.error,
            assistant: case.assistant,
            manifest_version: case.manifest_version,
            manifest_fingerprint: case.manifest_fingerprint,
            url,
            title,
            html_bytes: html.len(),
            html_truncated: truncated,
            screenshot: screenshot.is_some(),
        };
        let written = async {
            tokio::fs::write(with_extension(&stem, "html"), html.as_bytes()).await?;
            if let Some(png) = &screenshot {
                tokio::fs::write(with_extension(&stem, "png"), png).await?;
            }
            let note = serde_json::to_vec_pretty(&note).map_err(std::io::Error::other)?;
            tokio::fs::write(with_extension(&stem, "json"), note).await
        }
        .await;
        if let Err(error) = written {
            tracing::warn!(%error, stem = %stem.display(), "cannot write evidence");
            return None;
        }
        self.prune().await;
        Some(stem.display().to_string())
    }

    /// Deletes the oldest cases beyond `max_cases`. Names start with a UTC time stamp, so name
    /// order is age order.
    async fn prune(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.options.dir).await else { return };
        let mut stems = std::collections::BTreeSet::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            if matches!(path.extension().and_then(|e| e.to_str()), Some("html" | "png" | "json")) {
                stems.insert(path.with_extension(""));
            }
        }
        let excess = stems.len().saturating_sub(self.options.max_cases);
        for stem in stems.into_iter().take(excess) {
            for extension in ["html", "png", "json"] {
                let _ = tokio::fs::remove_file(with_extension(&stem, extension)).await;
            }
        }
    }
}

fn with_extension(stem: &Path, extension: &str) -> PathBuf {
    let mut path = stem.as_os_str().to_owned();
    path.push(".");
    path.push(extension);
    PathBuf::from(path)
}

/// `html` cut to at most `limit` bytes on a character boundary, with a marker comment when cut.
fn bound_html(mut html: String, limit: usize) -> (String, bool) {
    if html.len() <= limit {
        return (html, false);
    }
    let mut end = limit;
    while !html.is_char_boundary(end) {
        end -= 1;
    }
    html.truncate(end);
    html.push_str("\n<!-- truncated by aap-bot -->\n");
    (html, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_cut_on_a_character_boundary_and_marked() {
        let (kept, cut) = bound_html("<p>héllo</p>".to_owned(), 5);
        assert!(cut);
        assert!(kept.starts_with("<p>h"));
        assert!(!kept.contains('é'), "the two-byte é does not fit in five bytes: {kept}");
        assert!(kept.ends_with("<!-- truncated by aap-bot -->\n"));
        assert_eq!(bound_html("<p>x</p>".to_owned(), 100), ("<p>x</p>".to_owned(), false));
    }

    #[tokio::test]
    async fn only_the_newest_cases_are_kept() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        for (index, stem) in [
            "20260101T000000.000Z-e1-a1-timeout",
            "20260102T000000.000Z-e2-a1-timeout",
            "20260103T000000.000Z-e3-a1-timeout",
        ]
        .iter()
        .enumerate()
        {
            std::fs::write(dir.path().join(format!("{stem}.html")), "x")?;
            std::fs::write(dir.path().join(format!("{stem}.json")), "{}")?;
            if index > 0 {
                std::fs::write(dir.path().join(format!("{stem}.png")), "png")?;
            }
        }
        let evidence =
            Evidence::new(EvidenceOptions { dir: dir.path().to_owned(), max_cases: 2, ..Default::default() });
        evidence.prune().await;
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path())?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "20260102T000000.000Z-e2-a1-timeout.html",
                "20260102T000000.000Z-e2-a1-timeout.json",
                "20260102T000000.000Z-e2-a1-timeout.png",
                "20260103T000000.000Z-e3-a1-timeout.html",
                "20260103T000000.000Z-e3-a1-timeout.json",
                "20260103T000000.000Z-e3-a1-timeout.png",
            ]
        );
        Ok(())
    }
}
