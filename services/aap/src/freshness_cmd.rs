//! `aap history` (how a prompt's answer and its sources changed over time) and `aap refresh
//! set|list|delete` (an operator's refresh schedules), and the durations they take ("90s",
//! "15m", "12h", "7d", "2w").

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use aap_proto::v1::answers_service_client::AnswersServiceClient;
use aap_proto::v1::{
    DeleteRefreshScheduleRequest, HistoryRequest, HistoryResponse, ListRefreshSchedulesRequest, RefreshSchedule,
    ScheduleRefreshRequest,
};
use clap::{Args, Subcommand};
use futures::StreamExt;

use crate::client::{Bearer, Client};

/// A duration as people write it: a number and a unit (s, m, h, d, w), or seconds alone.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 90s, 15m, 12h or 7d"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        other => return Err(format!("unknown unit {other:?} in {text:?}: use s, m, h, d or w")),
    };
    number.checked_mul(seconds).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"))
}

/// `assistant=duration`, e.g. `chatgpt=7d`, for the server's per-assistant max age.
pub fn parse_assistant_age(text: &str) -> Result<(String, Duration), String> {
    let (assistant, age) = assistant_setting(text, "age, e.g. chatgpt=7d")?;
    Ok((assistant, parse_duration(age)?))
}

/// A per-assistant setting `assistant=value`: the known assistant id and the value's text.
/// `form` says what the value is and gives an example, for the error.
pub fn assistant_setting<'a>(text: &'a str, form: &str) -> Result<(String, &'a str), String> {
    let (assistant, value) = text.split_once('=').ok_or_else(|| format!("{text:?}: write assistant={form}"))?;
    let assistant = assistant.trim();
    if aap_platform::assistants::by_id(assistant).is_none() {
        return Err(format!("unknown assistant {assistant:?} in {text:?}"));
    }
    Ok((assistant.to_owned(), value))
}

/// `8d 3h`-style rendering of a duration, for people.
pub fn human(duration: Duration) -> String {
    let s = duration.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => {
            format!("{}h{}", s / 3600, if s % 3600 >= 60 { format!(" {}m", s % 3600 / 60) } else { String::new() })
        }
        _ => format!(
            "{}d{}",
            s / 86_400,
            if s % 86_400 >= 3600 { format!(" {}h", s % 86_400 / 3600) } else { String::new() }
        ),
    }
}

fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: duration.as_secs() as i64, nanos: duration.subsec_nanos() as i32 }
}

fn when(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "never".to_owned())
}

/// Where the platform is and who calls it.
#[derive(Debug, Args)]
pub struct Conn {
    /// The platform's gRPC address; `https://` for TLS.
    /// Default: the `AAP_SERVER` in <data dir>/dev.env (`aap dev` writes it), else
    /// http://127.0.0.1:50051.
    #[arg(long, env = "AAP_SERVER")]
    server: Option<String>,
    #[command(flatten)]
    tls: crate::client::TlsArgs,
    /// Token; read from <data dir>/dev.env when unset (the customer token for `history`, the
    /// operator token for `refresh`).
    #[arg(long)]
    token: Option<String>,
    /// Data dir of `aap dev`, where dev.env holds the dev tokens.
    #[arg(long, env = "AAP_DATA_DIR", default_value = ".aap")]
    data_dir: PathBuf,
}

impl Conn {
    async fn connect(&self, key: &str) -> anyhow::Result<Client> {
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            None => std::env::var(key).ok(),
        };
        let token = crate::client::token_or_dev(&token, &self.data_dir, key)?;
        let channel =
            crate::client::channel(&crate::client::server_or_dev(&self.server, &self.data_dir), &self.tls.client_tls())
                .await?;
        Ok(AnswersServiceClient::with_interceptor(channel, Bearer::new(&token)?))
    }
}

/// `aap history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The prompt's id.
    prompt_id: i64,
    /// The assistant, as `id` or `id:plan` (default plan: every plan).
    #[arg(long = "target", short = 't', default_value = "chatgpt")]
    target: String,
    #[command(flatten)]
    conn: Conn,
}

/// Prints every answer the prompt has had for the target, oldest first.
pub async fn history(args: HistoryArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let mut client = args.conn.connect("AAP_CUSTOMER_TOKEN").await?;
    let target = crate::client::parse_target(&args.target);
    let request = HistoryRequest { prompt_id: args.prompt_id, target: Some(target), include_html: false };
    let mut stream = client.history(request).await?.into_inner();
    let mut entries = Vec::new();
    while let Some(entry) = stream.next().await {
        entries.push(entry?);
    }
    print_history(&entries, out)?;
    Ok(())
}

/// The history as people read it: each answer's date, a line of its text, and the sources it
/// added (+) and dropped (-) since the one before.
pub fn print_history(entries: &[HistoryResponse], out: &mut impl Write) -> std::io::Result<()> {
    if entries.is_empty() {
        writeln!(out, "no answers yet")?;
        return Ok(());
    }
    let mut previous_text: Option<&str> = None;
    for entry in entries {
        let Some(answer) = entry.answer.as_ref() else { continue };
        let current = if entry.current { "  (current)" } else { "" };
        writeln!(
            out,
            "{}  [{}/{}] evaluation {}{current}",
            when(answer.captured_at.as_ref()),
            answer.assistant,
            answer.plan,
            answer.evaluation_id
        )?;
        let flat: String = answer.response_text.split_whitespace().collect::<Vec<_>>().join(" ");
        let line: String = flat.chars().take(120).collect();
        let more = if flat.chars().count() > 120 { "…" } else { "" };
        let same = previous_text == Some(answer.response_text.as_str());
        writeln!(out, "    {}{line}{more}", if same { "(same text) " } else { "" })?;
        for url in &entry.added_urls {
            writeln!(out, "    + {url}")?;
        }
        for url in &entry.dropped_urls {
            writeln!(out, "    - {url}")?;
        }
        previous_text = Some(answer.response_text.as_str());
    }
    Ok(())
}

/// `aap refresh`: an operator's refresh schedules.
#[derive(Debug, Subcommand)]
pub enum RefreshCommand {
    /// Keeps prompts fresh: every --every, each gets a refresh evaluation per target. Replaces
    /// the schedule of that name.
    Set {
        /// The schedule's name.
        name: String,
        /// A prompt to keep fresh (repeat).
        #[arg(long = "prompt-id", required = true)]
        prompt_ids: Vec<i64>,
        /// How often, e.g. 1d or 12h (at least 1m).
        #[arg(long, value_parser = parse_duration)]
        every: Duration,
        /// Assistant to refresh, as `id` or `id:plan` (repeat). Default: every assistant.
        #[arg(long = "target", short = 't')]
        targets: Vec<String>,
        /// Run the first refresh now rather than one interval from now.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists the schedules.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Deletes a schedule; evaluations it started go on.
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn refresh(command: RefreshCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        RefreshCommand::Set { name, prompt_ids, every, targets, now, conn } => {
            let mut client = conn.connect("AAP_OPERATOR_TOKEN").await?;
            let request = ScheduleRefreshRequest {
                name,
                prompt_ids,
                targets: targets.iter().map(|t| crate::client::parse_target(t)).collect(),
                every: Some(proto_duration(every)),
                run_now: now,
            };
            let saved = client.schedule_refresh(request).await?.into_inner().schedule;
            print_schedules(saved.as_slice(), out)?;
        }
        RefreshCommand::List { conn } => {
            let mut client = conn.connect("AAP_OPERATOR_TOKEN").await?;
            let schedules = client.list_refresh_schedules(ListRefreshSchedulesRequest {}).await?.into_inner().schedules;
            if schedules.is_empty() {
                writeln!(out, "no refresh schedules")?;
            }
            print_schedules(&schedules, out)?;
        }
        RefreshCommand::Delete { name, conn } => {
            let mut client = conn.connect("AAP_OPERATOR_TOKEN").await?;
            client.delete_refresh_schedule(DeleteRefreshScheduleRequest { name: name.clone() }).await?;
            writeln!(out, "deleted {name:?}")?;
        }
    }
    Ok(())
}

pub fn print_schedules(schedules: &[RefreshSchedule], out: &mut impl Write) -> std::io::Result<()> {
    for s in schedules {
        let every = s.every.as_ref().map(|d| human(Duration::from_secs(d.seconds.max(0) as u64))).unwrap_or_default();
        let targets: Vec<String> = s.targets.iter().map(|t| format!("{}/{}", t.assistant, t.plan)).collect();
        writeln!(
            out,
            "{:?}: {} prompt{} every {every} on {}; next {}, last {} (by {})",
            s.name,
            s.prompt_ids.len(),
            if s.prompt_ids.len() == 1 { "" } else { "s" },
            targets.join(", "),
            when(s.next_run_at.as_ref()),
            when(s.last_run_at.as_ref()),
            s.created_by
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aap_proto::v1::Answer;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        assert_eq!(parse_duration("3600"), Ok(Duration::from_secs(3600)));
        for bad in ["", "d", "-1d", "1y", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_assistant_age("claude=1d"), Ok(("claude".to_owned(), Duration::from_secs(86_400))));
        assert!(parse_assistant_age("altavista=1d").is_err());
        assert!(parse_assistant_age("claude").is_err());
        assert_eq!(human(Duration::from_secs(90_000)), "1d 1h");
    }

    #[test]
    fn history_prints_each_answer_with_its_added_and_dropped_sources() -> anyhow::Result<()> {
        let answer = |id: i64, text: &str, at: i64| Answer {
            evaluation_id: id,
            assistant: "chatgpt".into(),
            plan: "any".into(),
            response_text: text.into(),
            captured_at: Some(prost_types::Timestamp { seconds: at, nanos: 0 }),
            ..Answer::default()
        };
        let entries = vec![
            HistoryResponse {
                answer: Some(answer(7, "HubSpot is the usual pick.", 1_796_000_000)),
                added_urls: vec!["https://a.example/crm".into()],
                dropped_urls: vec![],
                current: false,
            },
            HistoryResponse {
                answer: Some(answer(9, "Pipedrive, for pipelines.", 1_796_600_000)),
                added_urls: vec!["https://c.example/crm".into()],
                dropped_urls: vec!["https://a.example/crm".into()],
                current: true,
            },
        ];
        let mut out = Vec::new();
        print_history(&entries, &mut out)?;
        assert_eq!(
            String::from_utf8(out)?,
            "2026-11-30 00:53 UTC  [chatgpt/any] evaluation 7\n    HubSpot is the usual pick.\n    + https://a.example/crm\n\
             2026-12-06 23:33 UTC  [chatgpt/any] evaluation 9  (current)\n    Pipedrive, for pipelines.\n    \
             + https://c.example/crm\n    - https://a.example/crm\n"
        );
        Ok(())
    }
}
