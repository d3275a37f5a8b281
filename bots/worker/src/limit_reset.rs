//! When a site says its usage limit lifts, read from the limit's own message, so a rate-limited
//! account rests until then instead of for a fixed cool-down: a paid account whose 5-hour or
//! weekly limit was hit would otherwise be lent again every 30 minutes, each time spending a page
//! load and a prompt the site refuses, until the limit lifts.
//!
//! The words, as sites and their clients show them (public sources, 2025–2026):
//! - claude.ai: "You are out of free messages until 2:10 PM"; "You've hit your limit for Claude
//!   messages. Limits will reset at 9:30 AM." (anthropics/claude-code issue 80062, on claude.ai).
//! - Claude's apps and Claude Code: "You've hit your session limit · resets 1:40pm
//!   (Europe/Paris)", "You've hit your weekly limit · resets 4am (Europe/Madrid)", "resets
//!   Thursday 15:59", and a Unix time after a bar ("Claude AI usage limit reached|1760000400").
//! - chatgpt.com: "... please try again after 3:24 PM", "You can use it again at 17:00";
//!   "You've hit the Free plan limit for GPT-4o. Responses will use another model until your
//!   limit resets after 4:04 PM." (a saved page); "You've reached our limit of messages per
//!   hour. Please try again later." names no time.
//! - OpenAI's Codex: "Your rate limit resets, 2:00 AM.", "Resets in 1h 45m", "Try again in 10m."
//!   (a userscript's tests that hide them, 2026).
//!
//! The refusal behind the message says it in numbers, and is read first: the HTTP 429 the page's
//! own fetch received, kept by the response tee (`tee.js`, [`refusals`]): claude.ai's carries a
//! Unix time (`resetsAt` in `error.message`, itself JSON, and the header
//! `anthropic-ratelimit-unified-reset`: clewdr's error.rs, 2026-08); chatgpt.com's
//! `{"detail": {"code": "model_cap_exceeded", "clears_in": 252, "message": "You have sent too
//! many messages to the model. Please try again later."}}` the seconds left (a ChatGPT proxy's
//! README and a Java client, 2023–2024) where its words name no time; a `Retry-After` header
//! the same. Numbers need no language: a page in German says "bis 14:10", which the words below
//! do not read.
//!
//! A time on the clock carries no date or zone: the site wrote it in the page's time zone, so the
//! page resolves it ([`resolve`], `limit_reset.js`); a zone the message names wins. What names no
//! time, or a time further than [`MAX_AHEAD`], leaves the platform's cool-down.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thirtyfour::WebDriver;

/// Furthest ahead a limit is taken to lift: a week's limit and a day's margin (the platform
/// refuses a later time). Further is a misreading, such as a date taken for next year's.
pub const MAX_AHEAD: Duration = aap_proto::limits::MAX_LIMIT_REST;

/// Resolves a [`Clock`] in the page: `arguments[0]` the clock, `arguments[1]` now in ms.
const RESOLVE_JS: &str = include_str!("limit_reset.js");

/// What a limit message says about when the limit lifts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// A Unix time ("...limit reached|1760000400").
    At(SystemTime),
    /// A wait from now ("try again in 2 hours").
    In(Duration),
    /// A time on the clock, with a day when it names one.
    Clock(Clock),
}

/// A time on the clock as a limit message names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Clock {
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub minute: u32,
    /// 0 Sunday to 6 Saturday (JavaScript's `getDay`), for "resets Thursday 15:59".
    pub weekday: Option<u32>,
    /// 1–12, with `day`, for "resets Oct 9 at 5pm".
    pub month: Option<u32>,
    /// 1–31, with `month`.
    pub day: Option<u32>,
    /// "until tomorrow at 9 AM".
    pub tomorrow: bool,
    /// The IANA zone the message names ("(Europe/Paris)"); `None`: the page's own.
    pub zone: Option<String>,
}

/// Words that put a clock time after them as the time the limit lifts.
const CLOCK_WORDS: &[&str] = &["until", "till", "til", "at", "after", "resets", "reset", "by", "from"];
/// Words that put "in <duration>" after them as the wait ("try again in 2 hours").
const WAIT_WORDS: &[&str] = &["again", "resets", "reset", "lifts", "available", "back", "refreshes"];
const WEEKDAYS: [&str; 7] = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
/// How many words before a clock time may hold its keyword and day ("resets Oct 9 at 5pm").
const LOOK_BACK: usize = 6;

/// One word of the message: as written (a zone's case), and lowercased without the punctuation
/// around it.
struct Word<'a> {
    raw: &'a str,
    bare: String,
}

impl Word<'_> {
    /// Whether a sentence ends with this word ("...messages. Limits will reset at ..."): words
    /// before it belong to another sentence. A day's or month's short name ("Oct.") ends none.
    fn ends_sentence(&self) -> bool {
        self.raw.ends_with(['.', '!', '?'])
            && named(&self.bare, &MONTHS).is_none()
            && named(&self.bare, &WEEKDAYS).is_none()
    }
}

fn words(text: &str) -> Vec<Word<'_>> {
    text.split_whitespace()
        .map(|raw| {
            let lower = raw.to_lowercase().replace("a.m.", "am").replace("p.m.", "pm");
            let bare = lower.trim_matches(|c: char| !c.is_alphanumeric()).to_owned();
            Word { raw, bare }
        })
        .collect()
}

/// When `text` (a limit message as the page shows it) says the limit lifts, if it says.
pub fn parse(text: &str) -> Option<Said> {
    let words = words(text);
    if let Some(at) = words.iter().find_map(|word| unix_time(word.raw)) {
        return Some(Said::At(at));
    }
    for i in 0..words.len() {
        if let Some(clock) = clock_at(&words, i) {
            return Some(Said::Clock(clock));
        }
    }
    (0..words.len()).find_map(|i| wait_at(&words, i)).map(Said::In)
}

/// "...reached|1760000400": ten digits after a bar (times from 2001 to 2286).
fn unix_time(word: &str) -> Option<SystemTime> {
    let (_, tail) = word.rsplit_once('|')?;
    let digits = tail.trim_end_matches(|c: char| !c.is_ascii_digit());
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(digits.parse().ok()?))
}

/// A clock time at word `i` that a keyword before it makes the lift's ("until 2:10 PM"), with
/// the day and zone around it.
fn clock_at(words: &[Word<'_>], i: usize) -> Option<Clock> {
    let (hour, minute, used) = time_of_day(&words[i].bare, words.get(i + 1).map(|w| w.bare.as_str()))?;
    let mut clock = Clock { hour, minute, ..Clock::default() };
    let mut keyword = false;
    let before = &words[i.saturating_sub(LOOK_BACK)..i];
    for (j, word) in before.iter().enumerate().rev() {
        if word.ends_sentence() {
            break;
        }
        let bare = word.bare.as_str();
        if CLOCK_WORDS.contains(&bare) {
            keyword = true;
        } else if bare == "tomorrow" {
            clock.tomorrow = true;
        } else if let Some(weekday) = named(bare, &WEEKDAYS) {
            clock.weekday = Some(weekday);
        } else if let Some(month) = named(bare, &MONTHS) {
            // "Oct 9" or "9 Oct": the day is the word next to it that is one.
            let day = |k: usize| before.get(k).and_then(|w: &Word<'_>| day_of_month(&w.bare));
            if let Some(day) = day(j + 1).or_else(|| j.checked_sub(1).and_then(day)) {
                clock.month = Some(month + 1);
                clock.day = Some(day);
            }
        }
    }
    if !keyword {
        return None;
    }
    clock.zone = words.get(i + used).and_then(|word| zone(word.raw));
    Some(clock)
}

/// "2:10" with "pm" after it, "2:10pm", "6pm", "15:59": hour, minute and the words it took. A
/// bare number is no time ("9" in "Oct 9").
fn time_of_day(word: &str, next: Option<&str>) -> Option<(u32, u32, usize)> {
    let (digits, suffix, used) = match word.strip_suffix("am").or_else(|| word.strip_suffix("pm")) {
        Some(digits) => (digits, Some(&word[digits.len()..]), 1),
        None => match next {
            Some(next @ ("am" | "pm")) => (word, Some(next), 2),
            _ => (word, None, 1),
        },
    };
    let (hour, minute) = match digits.split_once(':') {
        Some((hour, minute)) if minute.len() == 2 => (hour, minute.parse::<u32>().ok()?),
        Some(_) => return None,
        None if suffix.is_some() => (digits, 0),
        None => return None,
    };
    if hour.is_empty() || hour.len() > 2 || !hour.bytes().all(|b| b.is_ascii_digit()) || minute > 59 {
        return None;
    }
    let hour: u32 = hour.parse().ok()?;
    let hour = match suffix {
        Some(_) if !(1..=12).contains(&hour) => return None,
        Some("am") => hour % 12,
        Some(_) => hour % 12 + 12,
        None if hour > 23 => return None,
        None => hour,
    };
    Some((hour, minute, used))
}

/// The index of `word` among `names`, by the whole name or its first three letters or more
/// ("thu", "thurs", "oct").
fn named(word: &str, names: &[&str]) -> Option<u32> {
    if word.len() < 3 {
        return None;
    }
    names.iter().position(|name| name.starts_with(word)).and_then(|i| u32::try_from(i).ok())
}

fn day_of_month(word: &str) -> Option<u32> {
    let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic()); // "9th"
    digits.parse().ok().filter(|day| (1..=31).contains(day)).filter(|_| digits.len() <= 2)
}

/// "(Europe/Paris)" after a time: the zone it was written in.
fn zone(raw: &str) -> Option<String> {
    let inner = raw.trim_end_matches(['.', ',', ';']).strip_prefix('(')?.strip_suffix(')')?;
    let known = inner.contains('/') || matches!(inner.to_ascii_uppercase().as_str(), "UTC" | "GMT");
    let plain = inner.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    (known && plain && inner.len() <= 64).then(|| inner.to_owned())
}

/// "in 2 hours", "in 1 hour and 30 minutes", "in 45m" after a word that makes it the wait.
fn wait_at(words: &[Word<'_>], i: usize) -> Option<Duration> {
    if words[i].bare != "in" || !words[i.saturating_sub(3)..i].iter().any(|w| WAIT_WORDS.contains(&w.bare.as_str())) {
        return None;
    }
    let mut total = 0u64;
    let mut rest = words[i + 1..].iter().map(|w| w.bare.as_str()).filter(|w| *w != "and").peekable();
    while let Some(word) = rest.next() {
        let split = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
        let Ok(count) = word[..split].parse::<u64>() else { break };
        let unit = match &word[split..] {
            "" => match rest.next() {
                Some(unit) => unit,
                None => break,
            },
            unit => unit,
        };
        let seconds = match unit {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            _ => break,
        };
        total = total.saturating_add(count.saturating_mul(seconds));
    }
    (total > 0).then(|| Duration::from_secs(total))
}

/// Resolves `clock` in the page's time zone (or the one it names) as of `now`: the first such
/// time from 15 minutes before `now` on; `None` when there is none within 8 days (a year, for a
/// date), the zone is unknown, or the page cannot run the script.
pub async fn resolve(driver: &WebDriver, clock: &Clock, now: SystemTime) -> Option<SystemTime> {
    let now_ms = u64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    let args = vec![serde_json::json!(clock), serde_json::json!(now_ms)];
    let at = match driver.execute(RESOLVE_JS, args).await {
        Ok(ret) => ret.json().as_f64()?,
        Err(error) => {
            tracing::debug!(%error, "the page could not resolve the limit's reset time");
            return None;
        }
    };
    (at.is_finite() && at >= 0.0).then(|| UNIX_EPOCH + Duration::from_millis(at as u64))
}

/// A refusal the page's own fetch received, as the tee kept it: a usage limit (HTTP 429) or a
/// prompt too long (HTTP 413).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Refusal {
    /// Its place among the page's teed responses (a stream [`crate::adapter::stream::Mark`]
    /// orders both).
    pub seq: u64,
    /// The refused request's URL.
    pub url: String,
    /// Its HTTP status: 429 or 413.
    pub status: u16,
    /// Its `Retry-After` header: seconds, or an HTTP date.
    pub retry_after: String,
    /// Its `anthropic-ratelimit-unified-reset` header: a Unix time (claude.ai).
    pub reset: String,
    /// Its body, up to 64 KiB.
    pub text: String,
    /// How long before the bot asked the response came, by the page's clock.
    pub age_ms: u64,
}

/// The HTTP status of a usage-limit refusal (Too Many Requests).
pub const LIMIT_STATUS: u16 = 429;
/// The HTTP status of a refusal of a prompt too long (Content Too Large).
pub const TOO_LONG_STATUS: u16 = 413;

/// How far back a refusal belongs to the attempt that failed: an attempt takes minutes at most.
const REFUSAL_WITHIN: Duration = Duration::from_secs(10 * 60);

/// The refusals (HTTP 429 and 413) the page received in the last ten minutes, oldest first; none
/// when the page has no tee (a document older than the browser's scripts) or cannot be asked.
pub async fn refusals(driver: &WebDriver) -> Vec<Refusal> {
    let script = "return window.__aapTee && window.__aapTee.limits ? window.__aapTee.limits(arguments[0]) : [];";
    let within = serde_json::json!(REFUSAL_WITHIN.as_millis() as u64);
    match driver.execute(script, vec![within]).await {
        Ok(ret) => ret.convert().unwrap_or_default(),
        Err(error) => {
            tracing::debug!(%error, "cannot read the page's refusals");
            Vec::new()
        }
    }
}

/// When `refusal` says the limit lifts, as of `now`: its reset header, then its body (`resetsAt`
/// or `clears_in`, at any depth, in a string of JSON too), then `Retry-After`; a wait counts from
/// when the response came.
pub fn refusal_lifts_at(refusal: &Refusal, now: SystemTime) -> Option<SystemTime> {
    let came = now.checked_sub(Duration::from_millis(refusal.age_ms))?;
    if let Some(at) = refusal.reset.trim().parse::<f64>().ok().and_then(unix) {
        return Some(at);
    }
    if let Some(at) = serde_json::from_str::<Value>(&refusal.text).ok().and_then(|body| in_body(&body, came, 0)) {
        return Some(at);
    }
    let retry_after = refusal.retry_after.trim();
    match retry_after.parse::<f64>() {
        Ok(seconds) => wait(came, seconds),
        Err(_) => chrono::DateTime::parse_from_rfc2822(retry_after).ok().map(SystemTime::from),
    }
}

/// A Unix time in seconds, or milliseconds when it is too large for seconds of this era.
fn unix(value: f64) -> Option<SystemTime> {
    let seconds = if value > 1e11 { value / 1000.0 } else { value };
    (seconds.is_finite() && (1e9..1e11).contains(&seconds)).then(|| UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

/// A time as a site's JSON gives it: an RFC 3339 string (`2026-09-20T01:31:58Z`,
/// `...14.421525+00:00`), or a Unix time ([`unix`]) as a number or a string of one.
pub fn time_value(value: &Value) -> Option<SystemTime> {
    match value {
        Value::Number(n) => n.as_f64().and_then(unix),
        Value::String(text) => chrono::DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(SystemTime::from)
            .or_else(|| text.trim().parse::<f64>().ok().and_then(unix)),
        _ => None,
    }
}

/// `seconds` after `from`, for a wait a site could mean (under a year).
fn wait(from: SystemTime, seconds: f64) -> Option<SystemTime> {
    (seconds.is_finite() && (0.0..=366.0 * 86_400.0).contains(&seconds))
        .then(|| from.checked_add(Duration::from_secs_f64(seconds)))
        .flatten()
}

fn in_body(value: &Value, came: SystemTime, depth: u8) -> Option<SystemTime> {
    if depth > 6 {
        return None;
    }
    match value {
        Value::Object(fields) => {
            let own = fields.iter().find_map(|(key, value)| match key.as_str() {
                "resetsAt" | "resets_at" | "resetAt" | "reset_at" => time_value(value),
                "clears_in" | "retry_after" | "retryAfter" => value.as_f64().and_then(|seconds| wait(came, seconds)),
                _ => None,
            });
            own.or_else(|| fields.values().find_map(|value| in_body(value, came, depth + 1)))
        }
        Value::Array(items) => items.iter().find_map(|item| in_body(item, came, depth + 1)),
        // claude.ai's `error.message` is itself a JSON document.
        Value::String(text) if text.trim_start().starts_with('{') => {
            serde_json::from_str::<Value>(text).ok().and_then(|inner| in_body(&inner, came, depth + 1))
        }
        _ => None,
    }
}

/// Where the time a limit lifts was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The site's HTTP 429 ([`refusals`]).
    Refusal,
    /// The limit message's words ([`parse`]).
    Words,
    /// The site's response stream (chatgpt.com's `model_limits[].resets_after`).
    Stream,
}

impl Source {
    /// The name metrics and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Refusal => "refusal",
            Source::Words => "words",
            Source::Stream => "stream",
        }
    }
}

/// When the limit whose message is `text` lifts, as the page at `driver` knows it: from the
/// site's refusal behind the message when it says ([`refusals`]), else from the message's words
/// ([`parse`], a clock time resolved in the page); `None` when neither names a time, or the time
/// is further than [`MAX_AHEAD`]. A time just past is returned as it is.
pub async fn lifts_at(driver: &WebDriver, text: &str) -> Option<SystemTime> {
    read(driver, text).await.map(|(at, _)| at)
}

/// [`lifts_at`], with where the time was read.
pub async fn read(driver: &WebDriver, text: &str) -> Option<(SystemTime, Source)> {
    let now = SystemTime::now();
    let refused = refusals(driver)
        .await
        .iter()
        .rev()
        .filter(|refusal| refusal.status == LIMIT_STATUS)
        .find_map(|refusal| refusal_lifts_at(refusal, now));
    let (at, source) = match refused {
        Some(at) => (at, Source::Refusal),
        None => {
            let at = match parse(text)? {
                Said::At(at) => at,
                Said::In(wait) => now.checked_add(wait)?,
                Said::Clock(clock) => resolve(driver, &clock, now).await?,
            };
            (at, Source::Words)
        }
    };
    within_reach(at, now, text).then_some((at, source))
}

/// Whether `at` is no further than [`MAX_AHEAD`] from `now` (logged when it is: `said` is where
/// it was read).
pub fn within_reach(at: SystemTime, now: SystemTime, said: &str) -> bool {
    let near = now.checked_add(MAX_AHEAD).is_some_and(|furthest| at <= furthest);
    if !near {
        tracing::warn!(said, "the limit's reset time is further ahead than a site's limit lasts; ignored");
    }
    near
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(hour: u32, minute: u32) -> Clock {
        Clock { hour, minute, ..Clock::default() }
    }

    #[test]
    fn the_sites_words_name_a_time_on_the_clock() {
        let cases = [
            ("You are out of free messages until 2:10 PM", clock(14, 10)),
            (
                "You've hit your limit for Claude messages. Limits will reset at 9:30 AM.  View your usage details.",
                clock(9, 30),
            ),
            ("You've reached the current usage cap for GPT-4, please try again after 3:24 PM", clock(15, 24)),
            ("You can use it again at 17:00.", clock(17, 0)),
            ("Usage limit reached \u{2014} your limit will reset at 12 a.m.", clock(0, 0)),
            ("until 12pm", clock(12, 0)),
            (
                "You've hit your session limit \u{b7} resets 1:40pm (Europe/Paris)",
                Clock { zone: Some("Europe/Paris".into()), ..clock(13, 40) },
            ),
            (
                "You've hit your limit \u{b7} resets 6pm (Asia/Bangkok)",
                Clock { zone: Some("Asia/Bangkok".into()), ..clock(18, 0) },
            ),
            ("Weekly usage: 31% (resets Thursday 15:59)", Clock { weekday: Some(4), ..clock(15, 59) }),
            (
                "Weekly limit reached \u{2219} resets Oct 9 at 5pm",
                Clock { month: Some(10), day: Some(9), ..clock(17, 0) },
            ),
            ("resets 9th October, 05:00", Clock { month: Some(10), day: Some(9), ..clock(5, 0) }),
            ("You're out of messages until tomorrow at 9 AM", Clock { tomorrow: true, ..clock(9, 0) }),
            ("resets Fri 4am (UTC)", Clock { weekday: Some(5), zone: Some("UTC".into()), ..clock(4, 0) }),
            // chatgpt.com's notice when a plan's model runs out (a saved page, 2024-2025).
            (
                "You\u{2019}ve hit the Free plan limit for GPT-4o. Responses will use another model until your limit resets after 4:04 PM.",
                clock(16, 4),
            ),
            // OpenAI's Codex banners, as a userscript that hides them quotes them (2026).
            ("Your rate limit resets, 2:00 AM. Upgrade or use one of your rate limit resets now.", clock(2, 0)),
            ("Your rate limit resets \u{2014} 2:00 AM.", clock(2, 0)),
            ("Your rate limit resets: 2:00 AM.", clock(2, 0)),
            ("Your rate limit resets; 2:00 AM.", clock(2, 0)),
            ("Resets, 2:00 AM", clock(2, 0)),
            ("Wait until 1:24 AM.", clock(1, 24)),
            ("Resets 1:24 AM", clock(1, 24)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Some(Said::Clock(expected)), "{text}");
        }
    }

    #[test]
    fn a_unix_time_or_a_wait_is_taken_as_it_is() {
        for text in ["Claude AI usage limit reached|1760000400", "Claude AI usage limit reached |1760000400."] {
            assert_eq!(parse(text), Some(Said::At(UNIX_EPOCH + Duration::from_secs(1_760_000_400))), "{text}");
        }
        assert_eq!(parse("Too many requests. Try again in 2 hours."), Some(Said::In(Duration::from_secs(7200))));
        assert_eq!(parse("Please try again in 1 hour and 30 minutes"), Some(Said::In(Duration::from_secs(5400))));
        assert_eq!(parse("Your limit resets in 45m"), Some(Said::In(Duration::from_secs(45 * 60))));
        assert_eq!(parse("available again in 1h 5m"), Some(Said::In(Duration::from_secs(3900))));
        assert_eq!(parse("Resets in 1h 45m"), Some(Said::In(Duration::from_secs(6300))));
        assert_eq!(parse("You've hit your usage limit. Try again in 10m."), Some(Said::In(Duration::from_secs(600))));
    }

    #[test]
    fn a_refusal_says_when_the_limit_lifts_in_numbers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let refusal = |text: &str| Refusal { text: text.to_owned(), age_ms: 2_000, ..Refusal::default() };
        let lifts = |r: &Refusal| {
            refusal_lifts_at(r, now).and_then(|at| at.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs())
        };
        // claude.ai: `error.message` is JSON again, with resetsAt; the header says it too.
        let claude = refusal(
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"{\"type\":\"exceeded_limit\",\"resetsAt\":1800018000,\"remaining\":null}"}}"#,
        );
        assert_eq!(lifts(&claude), Some(1_800_018_000));
        let header_only = Refusal { reset: "1800003600".into(), ..refusal("not json") };
        assert_eq!(lifts(&header_only), Some(1_800_003_600));
        // chatgpt.com: the seconds left, counted from when the refusal came (2 s ago).
        let chatgpt = refusal(
            r#"{"detail":{"clears_in":252,"code":"model_cap_exceeded","message":"You have sent too many messages to the model. Please try again later."}}"#,
        );
        assert_eq!(lifts(&chatgpt), Some(1_800_000_000 - 2 + 252));
        // Retry-After in seconds or as an HTTP date; milliseconds and RFC 3339 in a body.
        assert_eq!(lifts(&Refusal { retry_after: "120".into(), ..refusal("") }), Some(1_800_000_000 - 2 + 120));
        let dated = Refusal { retry_after: "Fri, 15 Jan 2027 09:00:00 GMT".into(), ..refusal("") };
        assert_eq!(lifts(&dated), Some(1_800_003_600));
        assert_eq!(lifts(&refusal(r#"{"resetsAt":1800007200000}"#)), Some(1_800_007_200));
        assert_eq!(lifts(&refusal(r#"{"error":{"resets_at":"2027-01-15T09:00:00Z"}}"#)), Some(1_800_003_600));
        // Nothing that says when: nothing.
        for nothing in [
            refusal(r#"{"detail":"Too many requests"}"#),
            refusal(r#"{"clears_in":-5}"#),
            refusal(r#"{"clears_in":1e300}"#),
            refusal(r#"{"resetsAt":12}"#),
            Refusal { retry_after: "soon".into(), ..refusal("<html>429</html>") },
        ] {
            assert_eq!(lifts(&nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn words_that_name_no_time_for_the_lift_say_nothing() {
        for text in [
            "You've reached our limit of messages per hour. Please try again later.",
            "Too many requests",
            // A number of messages, a bare number, a window: no time the limit lifts.
            "You've sent 40 messages in 3 hours",
            "You've used 50 of 50 messages. Limits reset weekly.",
            "Resets Oct 9",
            "Your limit resets on Oct 9.",
            "Resets tomorrow",
            "Your rate limit resets in 0m.",
            "5-hour usage limit: 80%",
            // A clock time no keyword makes the lift's, or in the sentence before the keyword.
            "It is 5:00 PM",
            "Limits reset daily. It is 2:10 PM now.",
            "until 13pm",
            "until 25:00",
            "until 9:7 PM",
            // A zone that is no zone stays out.
            "resets 6pm (see below)",
            "code|123456789",
        ] {
            let got = parse(text);
            let zone_dropped = matches!(&got, Some(Said::Clock(Clock { zone: None, .. })));
            if text.contains("(see below)") {
                assert!(zone_dropped, "{text}: {got:?}");
            } else {
                assert_eq!(got, None, "{text}");
            }
        }
    }
}
