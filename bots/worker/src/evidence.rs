//! Evidence of failed attempts: the page's HTML, a screenshot and a short JSON note, kept on
//! disk so an operator can see what the bot saw. Bounded: HTML is cut at a size limit, a
//! screenshot over its limit is dropped, and only the newest `max_files` cases are kept.
//!
//! A bot on the platform's gRPC API also hands each failed attempt to the platform
//! (`SessionService.ReportEvidence`, with the lease it held), so that operators see it whatever
//! host the bot ran on. Best effort: a report that fails is logged and the task goes on. The
//! seed's HTTP API has no such call: a bot polling it keeps its evidence on disk only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aap_proto::v1::ReportEvidenceRequest;
use aap_proto::v1::session_service_client::SessionServiceClient;
use chrono::{DateTime, Utc};
use serde::Serialize;
use thirtyfour::WebDriver;

use crate::grpc::AuthChannel;
use crate::source::limits;

/// Largest page HTML and screenshot the platform takes, in bytes.
use aap_proto::limits::{
    MAX_EVIDENCE_HTML_BYTES as PLATFORM_MAX_HTML_BYTES, MAX_EVIDENCE_SCREENSHOT_BYTES as PLATFORM_MAX_SCREENSHOT_BYTES,
};

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
    /// The SessionService lease the bot held, if any: ties the case to its account on the
    /// platform.
    pub lease_id: Option<&'a str>,
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

/// Hands evidence to the platform (`SessionService.ReportEvidence`).
#[derive(Debug, Clone)]
pub struct EvidenceReporter {
    client: SessionServiceClient<AuthChannel>,
    bot_id: String,
    timeout: Duration,
}

impl EvidenceReporter {
    /// Reports over `channel` as `bot_id`, each call bounded by `timeout`.
    pub(crate) fn new(channel: AuthChannel, bot_id: &str, timeout: Duration) -> EvidenceReporter {
        EvidenceReporter { client: SessionServiceClient::new(channel), bot_id: bot_id.to_owned(), timeout }
    }

    /// Sends one case; a failure is logged, never returned: the task goes on without it.
    async fn report(&self, case: &Case<'_>, page: &Page) {
        let request = report_request(&self.bot_id, case, page);
        let bytes = request.screenshot_png.len() + request.html.len();
        let mut request = tonic::Request::new(request);
        request.set_timeout(self.timeout);
        let started = std::time::Instant::now();
        match self.client.clone().report_evidence(request).await {
            Ok(reply) => tracing::info!(
                evidence_id = reply.into_inner().evidence_id,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "evidence reported to the platform"
            ),
            Err(status) => tracing::warn!(error = %status, bytes, "reporting evidence to the platform failed"),
        }
    }
}

/// What the browser showed when an attempt failed.
#[derive(Debug)]
struct Page {
    html: String,
    truncated: bool,
    screenshot: Option<Vec<u8>>,
    url: String,
    title: String,
    captured_at: DateTime<Utc>,
}

/// The report of `case` on `page` as the platform takes it: within every bound of
/// [`aap_proto::limits`] whatever this bot's own bounds and the page are (a report past one is
/// refused whole, and the operator sees nothing). A long prompt makes a long page: Google's
/// results page of an 8 KB prompt has an address of over 8,000 characters and a title of
/// over 8,000, so the address goes as none (a cut one is a wrong one; the note on disk keeps
/// it) and the title and error are cut, ending in `…`.
fn report_request(bot_id: &str, case: &Case<'_>, page: &Page) -> ReportEvidenceRequest {
    // The platform takes web addresses only (it shows them as links): a browser error page or
    // about:blank goes as none too.
    let url_fits = aap_proto::urls::check_web_url(&page.url).is_ok() && limits::url_problem(&page.url).is_none();
    ReportEvidenceRequest {
        bot_id: bot_id.to_owned(),
        lease_id: case.lease_id.unwrap_or_default().to_owned(),
        assistant: case.assistant.to_owned(),
        evaluation_id: case.evaluation_id,
        attempt: case.attempt,
        class: case.class.to_owned(),
        error: limits::fit_reason(case.error),
        url: if url_fits { page.url.clone() } else { String::new() },
        title: limits::fit_title(&page.title),
        captured_at: Some(prost_types::Timestamp {
            seconds: page.captured_at.timestamp(),
            nanos: i32::try_from(page.captured_at.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        // Within the platform's bounds whatever this bot's own are (its cut HTML carries a
        // marker beyond its limit).
        screenshot_png: page
            .screenshot
            .clone()
            .filter(|png| png.len() <= PLATFORM_MAX_SCREENSHOT_BYTES)
            .unwrap_or_default(),
        html: bound_html(page.html.clone(), PLATFORM_MAX_HTML_BYTES - 64).0,
        manifest_version: case.manifest_version.to_owned(),
    }
}

/// Keeps evidence under [`EvidenceOptions`], and hands it to the platform when it has a
/// reporter.
#[derive(Debug, Clone)]
pub struct Evidence {
    options: EvidenceOptions,
    reporter: Option<EvidenceReporter>,
}

impl Evidence {
    /// Evidence kept as `options` say.
    pub fn new(options: EvidenceOptions) -> Evidence {
        Evidence { options, reporter: None }
    }

    /// Also hands every failed attempt to the platform through `reporter`.
    pub fn reporting_to(mut self, reporter: EvidenceReporter) -> Evidence {
        self.reporter = Some(reporter);
        self
    }

    /// Reads what the browser shows, bounded as the options say; `None` when the browser does
    /// not answer.
    async fn capture(&self, driver: &WebDriver, assistant: &str) -> Option<Page> {
        // The browser refuses the page's source while a JavaScript dialog is open (and dismisses
        // it): the dialogs are answered first, their text logged, and the page behind is read.
        if let Err(error) = crate::adapter::answer_js_dialogs(driver, assistant).await {
            tracing::debug!(%error, "cannot answer the javascript dialog");
        }
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
        Some(Page { html, truncated, screenshot, url, title, captured_at: Utc::now() })
    }

    /// Saves the page's HTML, a screenshot and a note for `case`, and reports them to the
    /// platform when the bot talks gRPC; returns the common path stem
    /// (`<dir>/<time>-e<evaluation>-a<attempt>-<class>`) to cite in the release reason, or `None`
    /// when nothing could be kept on disk (evidence off, a dead browser, a full disk). Never
    /// fails the caller: evidence is a help, not a duty.
    pub async fn keep(&self, driver: &WebDriver, case: Case<'_>) -> Option<String> {
        // The platform keeps the failure classes only; a page kept for another reason
        // (`sources-disagree`: the answer stood) stays on disk.
        let report = self.reporter.as_ref().filter(|_| aap_proto::FAILURE_CLASSES.contains(&case.class));
        if self.options.max_cases == 0 && report.is_none() {
            return None;
        }
        let page = self.capture(driver, case.assistant).await?;
        let stem = self.write(&case, &page).await;
        if let Some(reporter) = report {
            reporter.report(&case, &page).await;
        }
        stem
    }

    /// Writes a captured page to disk; returns its path stem.
    async fn write(&self, case: &Case<'_>, page: &Page) -> Option<String> {
        if self.options.max_cases == 0 {
            return None;
        }
        if let Err(error) = tokio::fs::create_dir_all(&self.options.dir).await {
            tracing::warn!(%error, dir = %self.options.dir.display(), "cannot create the evidence directory");
            return None;
        }
        let stem = self.options.dir.join(format!(
            "{}-e{}-a{}-{}",
            page.captured_at.format("%Y%m%dT%H%M%S%.3fZ"),
            case.evaluation_id,
            case.attempt,
            case.class
        ));
        let Page { html, truncated, screenshot, url, title, captured_at } = page;
        let note = Note {
            captured_at: captured_at.to_rfc3339(),
            evaluation_id: case.evaluation_id,
            attempt: case.attempt,
            class: case.class,
            error: case.error,
            assistant: case.assistant,
            manifest_version: case.manifest_version,
            manifest_fingerprint: case.manifest_fingerprint,
            url: url.clone(),
            title: title.clone(),
            html_bytes: html.len(),
            html_truncated: *truncated,
            screenshot: screenshot.is_some(),
        };
        let written = async {
            tokio::fs::write(with_extension(&stem, "html"), html.as_bytes()).await?;
            if let Some(png) = screenshot {
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
    use crate::browser::testing::with_a_dialog_open;

    /// A page that holds a JavaScript dialog open is still kept whole (before, the browser
    /// refused its HTML while the dialog was open, and only the screenshot was kept).
    #[tokio::test]
    async fn a_page_behind_a_javascript_dialog_is_kept_with_its_html() -> anyhow::Result<()> {
        with_a_dialog_open("<p id=kept>the page behind the dialog</p>", "Something went wrong.", async |driver| {
            let page = Evidence::new(EvidenceOptions::default()).capture(driver, "chatgpt").await;
            let page = page.ok_or_else(|| anyhow::anyhow!("nothing captured"))?;
            anyhow::ensure!(page.html.contains("the page behind the dialog"), "no HTML kept: {:?}", page.html);
            anyhow::ensure!(page.screenshot.is_some(), "no screenshot kept");
            Ok(())
        })
        .await
    }

    #[test]
    fn a_report_of_a_long_prompts_page_fits_the_platforms_bounds() {
        use aap_proto::limits::{MAX_REASON_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS};
        // Google's results page of an 8 KB prompt: the prompt is in its address and its title.
        let prompt = "which laptop ".repeat(630);
        let case = Case {
            lease_id: Some("lease-1"),
            evaluation_id: 7,
            attempt: 2,
            class: "assistant-error",
            error: &format!("the assistant failed: {}", "Something went wrong. ".repeat(300)),
            assistant: "google-ai-overview",
            manifest_version: "2026.12.1",
            manifest_fingerprint: "f00d",
        };
        let page = Page {
            html: "<html>results</html>".to_owned(),
            truncated: false,
            screenshot: Some(vec![0; PLATFORM_MAX_SCREENSHOT_BYTES + 1]),
            url: format!("https://www.google.com/search?q={}", prompt.replace(' ', "+")),
            title: format!("{prompt} - Google Search"),
            captured_at: Utc::now(),
        };
        let report = report_request("bot-1", &case, &page);
        assert_eq!(report.url, "", "an address over the bound goes as none (the note on disk keeps it)");
        assert_eq!(report.title.chars().count(), MAX_TITLE_CHARS);
        assert!(report.title.starts_with("which laptop") && report.title.ends_with('…'), "{}", report.title);
        assert_eq!(report.error.chars().count(), MAX_REASON_CHARS);
        assert!(report.screenshot_png.is_empty(), "a screenshot over the platform's bound is left out");
        assert_eq!((report.evaluation_id, report.attempt, report.html.as_str()), (7, 2, "<html>results</html>"));

        // A page within the bounds goes as it is.
        let short =
            Page { url: "https://www.google.com/search?q=laptops".to_owned(), title: "laptops".to_owned(), ..page };
        let case = Case { error: "the answer is empty", ..case };
        let report = report_request("bot-1", &case, &short);
        assert_eq!((report.url.as_str(), report.title.as_str()), (short.url.as_str(), "laptops"));
        assert_eq!(report.error, "the answer is empty");
        let at_the_bound = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS - 20));
        let report = report_request("bot-1", &case, &Page { url: at_the_bound.clone(), ..short });
        assert_eq!(report.url, at_the_bound, "an address of exactly {MAX_URL_CHARS} characters is kept");
    }

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
