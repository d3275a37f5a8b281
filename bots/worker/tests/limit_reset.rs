//! A limit message's time on the clock, resolved in a real Chromium as the page that wrote it
//! reads it: in the zone the message names, else the page's own, with daylight saving time, a day
//! or a date, and a time just past.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aap_bot::limit_reset::{self, Clock};
use aap_bot::{Browser, BrowserOptions};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::FutureExt as _;

fn at(rfc3339: &str) -> SystemTime {
    SystemTime::from(DateTime::parse_from_rfc3339(rfc3339).expect("a time"))
}

fn utc(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339()
}

fn clock(hour: u32, minute: u32, zone: &str) -> Clock {
    Clock { hour, minute, zone: Some(zone.to_owned()).filter(|z| !z.is_empty()), ..Clock::default() }
}

#[tokio::test]
async fn clock_times_resolve_in_the_zone_the_page_wrote_them_in() -> Result<()> {
    let browser = Browser::launch(&BrowserOptions::default()).await.context("launch browser")?;
    let result = AssertUnwindSafe(async {
        let driver = browser.driver();
        let cases = [
            // 16:30 in Paris (CET, +1): 13:40 has passed today, so tomorrow's.
            ("2026-12-07T15:30:00Z", clock(13, 40, "Europe/Paris"), Some("2026-12-08T12:40:00Z")),
            // 21:00 in Kolkata (+5:30): 18:00 tomorrow.
            ("2026-12-07T15:30:00Z", clock(18, 0, "Asia/Kolkata"), Some("2026-12-08T12:30:00Z")),
            // Saturday 07:00 in New York; Sunday 9 AM falls after the clocks went forward at 2 AM:
            // EDT (-4), not the EST (-5) of now.
            (
                "2026-03-07T12:00:00Z",
                Clock { weekday: Some(0), ..clock(9, 0, "America/New_York") },
                Some("2026-03-08T13:00:00Z"),
            ),
            // 4 AM that Sunday, whose instant read as UTC falls before the change: the offset of
            // the answer (EDT) counts, not that of the first guess (EST).
            (
                "2026-03-07T12:00:00Z",
                Clock { weekday: Some(0), ..clock(4, 0, "America/New_York") },
                Some("2026-03-08T08:00:00Z"),
            ),
            // A minute past is the time meant (it just passed); twenty minutes past is tomorrow's.
            ("2026-12-07T09:31:00Z", clock(9, 30, "UTC"), Some("2026-12-07T09:30:00Z")),
            ("2026-12-07T09:50:00Z", clock(9, 30, "UTC"), Some("2026-12-08T09:30:00Z")),
            // Just past midnight, 23:55 is yesterday's.
            ("2026-12-08T00:05:00Z", clock(23, 55, "UTC"), Some("2026-12-07T23:55:00Z")),
            // "tomorrow at 9 AM" at 8 AM is not today's 9 AM.
            ("2026-12-07T08:00:00Z", Clock { tomorrow: true, ..clock(9, 0, "UTC") }, Some("2026-12-08T09:00:00Z")),
            // A date this year that has passed is next year's.
            (
                "2026-12-07T08:00:00Z",
                Clock { month: Some(10), day: Some(9), ..clock(17, 0, "UTC") },
                Some("2027-10-09T17:00:00Z"),
            ),
            // No such zone: nothing.
            ("2026-12-07T08:00:00Z", clock(9, 0, "Mars/Olympus_Mons"), None),
            // February 30th never comes.
            ("2026-12-07T08:00:00Z", Clock { month: Some(2), day: Some(30), ..clock(9, 0, "UTC") }, None),
        ];
        for (now, clock, expected) in cases {
            let got = limit_reset::resolve(driver, &clock, at(now)).await;
            assert_eq!(got.map(utc), expected.map(|e| utc(at(e))), "{clock:?} at {now}");
        }

        // Without a zone in the message, the page's own: Los Angeles (PST, -8) here.
        let zone = serde_json::json!({ "timezoneId": "America/Los_Angeles" });
        driver.cdp().send_raw("Emulation.setTimezoneOverride", zone).await?;
        let got = limit_reset::resolve(driver, &clock(14, 10, ""), at("2026-12-07T15:30:00Z")).await;
        assert_eq!(got.map(utc), Some(utc(at("2026-12-07T22:10:00Z"))), "14:10 in Los Angeles");

        // The whole reading, from the message: a time of the next day at most, on the minute.
        let now = SystemTime::now();
        let lifts_at = limit_reset::lifts_at(driver, "You are out of free messages until 2:10 PM")
            .await
            .context("no time read from the message")?;
        let ahead = lifts_at.duration_since(now - Duration::from_secs(15 * 60)).context("long past")?;
        assert!(ahead <= Duration::from_secs(24 * 3600 + 15 * 60), "{} is more than a day ahead", utc(lifts_at));
        assert_eq!(lifts_at.duration_since(UNIX_EPOCH)?.as_secs() % 60, 0, "on the minute");
        // A date further than a site's limit lasts is a misreading: no time.
        let month_on = (Utc::now() + chrono::Duration::days(30)).format("%b %-d");
        let far = limit_reset::lifts_at(driver, &format!("Weekly limit reached, resets {month_on} at 5pm")).await;
        assert_eq!(far.map(utc), None, "{month_on}");
        let week = (Utc::now() + chrono::Duration::days(6)).format("%b %-d");
        let near = limit_reset::lifts_at(driver, &format!("Weekly limit reached, resets {week} at 5pm")).await;
        assert!(near.is_some(), "{week} is within a week");
        Ok::<_, anyhow::Error>(())
    })
    .catch_unwind()
    .await;
    browser.close().await;
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
