//! The alerting rules (deploy/prometheus/aap-alerts.yaml) cannot page on what nothing exports.
//! Every expression is parsed as Prometheus parses it (promql-parser), and every metric, label,
//! label value and `$labels.x` it names is checked against the `/metrics` of a real platform
//! (PostgreSQL, NATS) and an in-process bot, after a run that makes every series the rules read:
//! leases granted, exhausted and refused, sessions returned challenged, expired and rate limited,
//! a selector-missing release, a lost submit, a lapsed claim, a dead letter, a page too large for
//! the results stream, a bot whose browser does not start, a call of an unknown method. Counters
//! are read through rate or increase, gauges never, and the shared gauges with max, never sum.
//! Every alert has a severity, a summary and a runbook whose anchor is a section of
//! docs/alerts.md; the Kubernetes PrometheusRule is the same file.
//!
//! The live test runs in its own process (nextest), so the counters it reads are its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aap_platform::metrics::exposition::Scrape;
use aap_proto::v1::{CreateAccountRequest, LeaseOutcome, LeaseSessionRequest, ReturnSessionRequest};
use common::*;
use futures::StreamExt;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use yaml_rust2::{Yaml, YamlLoader};

const RULES: &str = include_str!("../../../deploy/prometheus/aap-alerts.yaml");
const K8S_RULE: &str = include_str!("../../../deploy/k8s/monitoring/prometheusrule.yaml");
const RUNBOOKS: &str = include_str!("../../../docs/alerts.md");
const OPERATIONS: &str = include_str!("../../../docs/operations.md");

/// Labels Prometheus adds to every series it scrapes: any rule may match or group on them.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];
const SEVERITIES: [&str; 2] = ["page", "ticket"];
/// Keys a rule of an alert may have (Prometheus' rule format).
const RULE_KEYS: [&str; 6] = ["alert", "expr", "for", "keep_firing_for", "labels", "annotations"];

/// One alerting rule as the rules file says it.
#[derive(Debug)]
struct Alert {
    name: String,
    expr: String,
    severity: String,
    annotations: BTreeMap<String, String>,
}

fn text(yaml: &Yaml) -> Option<String> {
    match yaml {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn strings(yaml: &Yaml) -> BTreeMap<String, String> {
    yaml.as_hash()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((text(k)?, text(v).unwrap_or_else(|| format!("{v:?}")))))
        .collect()
}

/// The rules of `text`, each checked for the shape Prometheus loads: the errors beside them.
fn alerts(text_of_file: &str) -> (Vec<Alert>, Vec<String>) {
    let docs = YamlLoader::load_from_str(text_of_file).expect("the rules file is YAML");
    let mut errors = Vec::new();
    let mut alerts = Vec::new();
    let mut groups = BTreeSet::new();
    let Some(list) = docs[0]["groups"].as_vec() else {
        return (alerts, vec!["no `groups` list".to_owned()]);
    };
    for group in list {
        let group_name = text(&group["name"]).unwrap_or_default();
        if group_name.is_empty() || !groups.insert(group_name.clone()) {
            errors.push(format!("group {group_name:?}: a name of its own is required"));
        }
        for rule in group["rules"].as_vec().into_iter().flatten() {
            let keys: Vec<String> = rule.as_hash().into_iter().flatten().filter_map(|(k, _)| text(k)).collect();
            let name = text(&rule["alert"]).unwrap_or_default();
            for key in &keys {
                if !RULE_KEYS.contains(&key.as_str()) {
                    errors.push(format!("{name}: unknown key {key:?}"));
                }
            }
            if let Some(for_) = text(&rule["for"])
                && !is_duration(&for_)
            {
                errors.push(format!("{name}: `for: {for_}` is not a Prometheus duration"));
            }
            let labels = strings(&rule["labels"]);
            alerts.push(Alert {
                name,
                expr: text(&rule["expr"]).unwrap_or_default(),
                severity: labels.get("severity").cloned().unwrap_or_default(),
                annotations: strings(&rule["annotations"]),
            });
        }
    }
    (alerts, errors)
}

/// Prometheus' duration: units from years to milliseconds, largest first, each at most once.
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    let mut units = ["y", "w", "d", "h", "m", "s", "ms"].as_slice();
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        let tail = &rest[digits..];
        let unit_len = if tail.starts_with("ms") { 2 } else { tail.len().min(1) };
        let Some(at) = units.iter().position(|u| *u == &tail[..unit_len]) else {
            return false;
        };
        units = &units[at + 1..];
        rest = &tail[unit_len..];
    }
    true
}

/// GitHub's anchor of a heading: lowercase, spaces to hyphens, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every heading of docs/alerts.md by its anchor, and the level-2 headings that name an alert.
fn runbook_sections() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut anchors = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    for line in RUNBOOKS.lines() {
        let Some(heading) = line.strip_prefix('#') else { continue };
        let heading = heading.trim_start_matches('#').trim();
        anchors.insert(anchor(heading));
        if line.starts_with("## Aap") {
            alerts.insert(heading.to_owned());
        }
    }
    (anchors, alerts)
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_runbook_section() {
    let (alerts, errors) = alerts(RULES);
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(alerts.len() >= 20, "the rules file has its alerts: {}", alerts.len());
    let (anchors, sections) = runbook_sections();
    let mut names = BTreeSet::new();
    for alert in &alerts {
        let name = &alert.name;
        assert!(name.starts_with("Aap") && name.chars().all(|c| c.is_ascii_alphanumeric()), "{name:?}");
        assert!(names.insert(name.clone()), "{name} is defined twice");
        assert!(SEVERITIES.contains(&alert.severity.as_str()), "{name}: severity {:?}", alert.severity);
        for key in ["summary", "description", "runbook_url"] {
            assert!(alert.annotations.get(key).is_some_and(|v| !v.trim().is_empty()), "{name}: no {key}");
        }
        let url = &alert.annotations["runbook_url"];
        assert_eq!(url, &format!("docs/alerts.md#{}", anchor(name)), "{name}: the runbook is its own section");
        assert!(anchors.contains(&anchor(name)), "{name}: docs/alerts.md has no section `## {name}`");
        if let Err(error) = parser::parse(&alert.expr) {
            panic!("{name}: the expression does not parse: {error}\n{}", alert.expr);
        }
    }
    let stale: Vec<_> = sections.difference(&names).collect();
    assert!(stale.is_empty(), "docs/alerts.md has runbooks of alerts the rules do not have: {stale:?}");
}

#[test]
fn the_kubernetes_rule_is_the_rules_file() {
    // generate.sh: the rules file's leading comment dropped, every other line under `spec:`.
    let mut expected = String::new();
    let mut leading = true;
    for line in RULES.lines() {
        leading &= line.starts_with('#');
        if leading {
            continue;
        }
        if !line.is_empty() {
            expected.push_str("  ");
        }
        expected.push_str(line);
        expected.push('\n');
    }
    let (head, spec) = K8S_RULE.split_once("\nspec:\n").expect("the PrometheusRule has a spec");
    assert!(head.contains("kind: PrometheusRule") && head.contains("apiVersion: monitoring.coreos.com/v1"));
    assert!(
        spec == expected,
        "deploy/k8s/monitoring/prometheusrule.yaml is stale: run deploy/k8s/monitoring/generate.sh"
    );
    let rule = &YamlLoader::load_from_str(K8S_RULE).expect("YAML")[0];
    let file = &YamlLoader::load_from_str(RULES).expect("YAML")[0];
    assert_eq!(rule["spec"]["groups"], file["groups"]);
}

/// What a platform and a bot export, as a scrape shows it.
struct Exported {
    /// Every sample name the registered families declare (a histogram's `_bucket`, `_sum`,
    /// `_count`; a counter's `_total`).
    names: BTreeSet<String>,
    /// Sample name → label → the values seen.
    labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Sample names of counters (histograms' series included): read only through rate and kin.
    counters: BTreeSet<String>,
    /// Gauges docs/operations.md marks shared: the same from every replica, so `max`, not `sum`.
    shared: BTreeSet<String>,
}

impl Exported {
    fn of(scrape: &Scrape) -> Exported {
        let mut types = scrape.types.clone();
        types.extend(aap_platform::metrics::families());
        let full = Scrape { samples: Vec::new(), types: types.clone() };
        let mut names = full.declared_names();
        names.insert("up".to_owned());
        let mut labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for sample in &scrape.samples {
            let of = labels.entry(sample.name.clone()).or_default();
            for (label, value) in &sample.labels {
                of.entry(label.clone()).or_default().insert(value.clone());
            }
        }
        // Prometheus' own: one series a target, with the target's labels only.
        labels.insert("up".to_owned(), BTreeMap::new());
        let mut counters = BTreeSet::new();
        for (family, kind) in &types {
            match kind.as_str() {
                "counter" => {
                    counters.insert(format!("{family}_total"));
                }
                "histogram" => counters.extend(["_bucket", "_sum", "_count"].map(|s| format!("{family}{s}"))),
                _ => {}
            }
        }
        let shared = OPERATIONS
            .lines()
            .filter(|line| line.contains("| gauge, shared |"))
            .filter_map(|line| line.split('`').nth(1).map(str::to_owned))
            .collect();
        Exported { names, labels, counters, shared }
    }

    /// Whether `value` is one the label takes. gRPC codes are tonic's, whether or not the run
    /// ended a call with each.
    fn knows_value(&self, metric: &str, label: &str, value: &str) -> bool {
        if label == "code" && (0..17).any(|code| format!("{:?}", tonic::Code::from(code)) == value) {
            return true;
        }
        self.labels.get(metric).and_then(|l| l.get(label)).is_some_and(|values| values.contains(value))
    }

    fn values(&self, metric: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> =
            self.labels.get(metric).and_then(|l| l.get(label)).into_iter().flatten().cloned().collect();
        if label == "code" {
            values.extend((0..17).map(|code| format!("{:?}", tonic::Code::from(code))));
        }
        values
    }
}

/// Where a selector sits in an expression.
#[derive(Clone, Default)]
struct Context {
    /// The function whose argument it is, if any, nearest first.
    function: Option<&'static str>,
    /// The aggregation it is under, nearest.
    aggregation: Option<String>,
    /// Inside `x unless x offset w`: a counter read raw to see that it was born within w.
    birth: bool,
}

/// Everything wrong with `expr` against `exported`, and the labels of its result (for the
/// `$labels.x` of the annotations).
fn check_expr(expr: &str, exported: &Exported) -> (Vec<String>, BTreeSet<String>) {
    let parsed = match parser::parse(expr) {
        Ok(parsed) => parsed,
        Err(error) => return (vec![format!("does not parse: {error}")], BTreeSet::new()),
    };
    let mut errors = Vec::new();
    let out = walk(&parsed, Context::default(), exported, &mut errors);
    (errors, out)
}

fn selector_name(vs: &VectorSelector) -> String {
    vs.name.clone().unwrap_or_else(|| {
        vs.matchers.matchers.iter().find(|m| m.name == "__name__").map(|m| m.value.clone()).unwrap_or_default()
    })
}

fn same_selector(a: &Expr, b: &Expr) -> bool {
    match (a, b) {
        (Expr::VectorSelector(a), Expr::VectorSelector(b)) => {
            a.name == b.name && a.matchers == b.matchers && a.offset.is_none() && b.offset.is_some()
        }
        _ => false,
    }
}

fn check_selector(
    vs: &VectorSelector,
    context: Context,
    exported: &Exported,
    errors: &mut Vec<String>,
) -> BTreeSet<String> {
    let name = selector_name(vs);
    let mut out: BTreeSet<String> = TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
    if !exported.names.contains(&name) {
        errors.push(format!("{name}: no process of the platform nor bot exports it"));
        return out;
    }
    let matched = |m: &&Matcher| m.name != "__name__" && !TARGET_LABELS.contains(&m.name.as_str());
    let Some(labels) = exported.labels.get(&name) else {
        // A family without labels needs no series; one whose labels a rule names does.
        if vs.matchers.matchers.iter().any(|m| matched(&m)) {
            errors.push(format!(
                "{name}: no series in the run's scrape, so its labels cannot be checked: make the test cause one"
            ));
        }
        return out;
    };
    out.extend(labels.keys().cloned());
    let rate_like = matches!(context.function, Some("rate" | "increase" | "irate" | "resets"));
    let counter = exported.counters.contains(&name);
    if counter && !rate_like && !context.birth {
        errors.push(format!("{name} is a counter: read it with rate() or increase()"));
    }
    if !counter && matches!(context.function, Some("rate" | "increase" | "irate")) {
        errors.push(format!("{name} is a gauge: rate() and increase() are for counters (deriv or delta)"));
    }
    if exported.shared.contains(&name) {
        let by_max = matches!(context.aggregation.as_deref(), Some("max" | "min" | "avg"));
        let absent = matches!(context.function, Some("absent" | "absent_over_time"));
        if !by_max && !absent {
            errors.push(format!(
                "{name} is a shared gauge (every replica that reads it reports the same): aggregate it with max, not {}",
                context.aggregation.as_deref().unwrap_or("nothing")
            ));
        }
    }
    for matcher in vs.matchers.matchers.iter().chain(vs.matchers.or_matchers.iter().flatten()).filter(matched) {
        if !labels.contains_key(&matcher.name) {
            errors.push(format!(
                "{name} has no label {:?} (it has {:?})",
                matcher.name,
                labels.keys().collect::<Vec<_>>()
            ));
            continue;
        }
        check_value(&name, matcher, exported, errors);
    }
    out
}

/// A matcher's value must be one the label takes: each word of an alternation `a|b`, or for
/// another regular expression at least one value it matches.
fn check_value(metric: &str, matcher: &Matcher, exported: &Exported, errors: &mut Vec<String>) {
    let label = &matcher.name;
    let words = |v: &str| v.split('|').map(str::to_owned).collect::<Vec<_>>();
    let literal = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '|');
    let unknown: Vec<String> = match &matcher.op {
        MatchOp::Equal | MatchOp::NotEqual => vec![matcher.value.clone()],
        MatchOp::Re(_) | MatchOp::NotRe(_) if literal(&matcher.value) => words(&matcher.value),
        MatchOp::Re(_) | MatchOp::NotRe(_) => {
            let seen = exported.values(metric, label);
            if !seen.iter().any(|value| matcher.is_match(value)) {
                errors.push(format!(
                    "{metric}{{{label}=~{:?}}} matches none of the values seen: {seen:?}",
                    matcher.value
                ));
            }
            Vec::new()
        }
    };
    for value in unknown {
        if !exported.knows_value(metric, label, &value) {
            errors.push(format!(
                "{metric}{{{label}={value:?}}}: {label} never takes {value:?} (seen: {:?})",
                exported.values(metric, label)
            ));
        }
    }
}

fn modifier_labels(modifier: &LabelModifier) -> Vec<String> {
    modifier.labels().labels.clone()
}

fn check_grouping(labels: &[String], known: &BTreeSet<String>, what: &str, errors: &mut Vec<String>) {
    for label in labels {
        if !known.contains(label) {
            errors.push(format!("{what} ({label}): no series below has the label {label:?} (they have {known:?})"));
        }
    }
}

/// Checks every selector and grouping under `expr`; the labels of its result.
fn walk(expr: &Expr, context: Context, exported: &Exported, errors: &mut Vec<String>) -> BTreeSet<String> {
    match expr {
        Expr::VectorSelector(vs) => check_selector(vs, context, exported, errors),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs, context, exported, errors),
        Expr::Paren(p) => walk(&p.expr, context, exported, errors),
        Expr::Unary(u) => walk(&u.expr, context, exported, errors),
        Expr::Subquery(s) => walk(&s.expr, Context { function: None, ..context }, exported, errors),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => BTreeSet::new(),
        Expr::Call(call) => {
            let inner = Context { function: Some(call.func.name), ..context };
            let mut out = BTreeSet::new();
            for arg in &call.args.args {
                out.extend(walk(arg, inner.clone(), exported, errors));
            }
            match call.func.name {
                // absent() carries only its selector's equality matchers; none of these is used.
                "vector" | "time" | "scalar" | "absent" | "absent_over_time" => BTreeSet::new(),
                _ => out,
            }
        }
        Expr::Aggregate(agg) => {
            let op = agg.op.to_string();
            let below_context = Context { aggregation: Some(op.clone()), function: None, ..context.clone() };
            let below = walk(&agg.expr, below_context, exported, errors);
            if let Some(param) = &agg.param {
                walk(param, context, exported, errors);
            }
            match &agg.modifier {
                Some(modifier @ LabelModifier::Include(_)) => {
                    let labels = modifier_labels(modifier);
                    check_grouping(&labels, &below, &format!("{op} by"), errors);
                    labels.into_iter().collect()
                }
                Some(modifier @ LabelModifier::Exclude(_)) => {
                    let labels = modifier_labels(modifier);
                    check_grouping(&labels, &below, &format!("{op} without"), errors);
                    below.into_iter().filter(|l| !labels.contains(l)).collect()
                }
                None if matches!(op.as_str(), "topk" | "bottomk") => below,
                None => BTreeSet::new(),
            }
        }
        Expr::Binary(binary) => {
            let op = binary.op.to_string();
            let birth = op == "unless" && same_selector(&binary.lhs, &binary.rhs);
            let inner = Context { birth: context.birth || birth, ..context };
            let left = walk(&binary.lhs, inner.clone(), exported, errors);
            let right = walk(&binary.rhs, inner, exported, errors);
            let scalar = |e: &Expr| matches!(e, Expr::NumberLiteral(_));
            if scalar(&binary.lhs) {
                return right;
            }
            if scalar(&binary.rhs) {
                return left;
            }
            let both: BTreeSet<String> = left.intersection(&right).cloned().collect();
            let modifier = binary.modifier.as_ref();
            if let Some(matching) = modifier.and_then(|m| m.matching.as_ref()) {
                check_grouping(&modifier_labels(matching), &both, &format!("{op} on/ignoring"), errors);
            }
            if let Some(extra) = modifier.and_then(|m| m.card.labels()) {
                check_grouping(&extra.labels, &right.union(&left).cloned().collect(), "group_left/right", errors);
            }
            match (op.as_str(), modifier.and_then(|m| m.matching.as_ref())) {
                ("and" | "unless", _) => left,
                ("or", _) => left.union(&right).cloned().collect(),
                (_, Some(on @ LabelModifier::Include(_))) => modifier_labels(on).into_iter().collect(),
                (_, Some(ignoring @ LabelModifier::Exclude(_))) => {
                    let ignored = modifier_labels(ignoring);
                    left.into_iter().filter(|l| !ignored.contains(l)).collect()
                }
                (_, None) => left,
            }
        }
    }
}

/// Everything wrong with one alert against what is exported: its expression, and the
/// `$labels.x` of its annotations (each must be a label of the expression's result).
fn check_alert(alert: &Alert, exported: &Exported) -> Vec<String> {
    let (mut errors, out) = check_expr(&alert.expr, exported);
    for (key, value) in &alert.annotations {
        let mut rest = value.as_str();
        while let Some(at) = rest.find("$labels.") {
            let tail = &rest[at + "$labels.".len()..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            let label = &tail[..end];
            if !out.contains(label) {
                errors
                    .push(format!("annotation {key} names $labels.{label}, which the result does not carry ({out:?})"));
            }
            rest = &tail[end..];
        }
    }
    errors.into_iter().map(|e| format!("{}: {e}", alert.name)).collect()
}

async fn scrape(url: &str) -> Scrape {
    let response = reqwest::get(url).await.expect("scrape").error_for_status().expect("scrape status");
    Scrape::parse(&response.text().await.expect("body")).expect("the exposition parses")
}

/// Asks `prompt` of ChatGPT; the stream's events once it ends.
fn asking(app: &TestApp, prompt: &str) -> tokio::task::JoinHandle<Vec<aap_proto::v1::answer_event::Event>> {
    let mut answers = app.answers();
    let request = ask_text(prompt, &["chatgpt"]);
    tokio::spawn(async move {
        let stream = answers.ask(request).await.expect("ask").into_inner();
        collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))).await
    })
}

/// Creates a ChatGPT account labelled `label`.
async fn account(app: &TestApp, label: &str) {
    app.sessions(OPERATOR)
        .create_account(CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: label.into(),
            storage_state_json: r#"{"cookies": [], "origins": []}"#.into(),
            ..CreateAccountRequest::default()
        })
        .await
        .expect("account created");
}

/// Makes every series the rules read: leases granted, exhausted and refused; sessions back as
/// challenged, expired and rate limited; a selector-missing release; a prompt-refused release; a
/// lost submit; a lapsed claim; a dead letter; an answer without its page; a bot whose browser
/// does not start; a call of an unknown method.
async fn run_everything_the_alerts_watch(app: &TestApp) {
    // The session pool.
    for label in ["alerts-1", "alerts-2", "alerts-3"] {
        account(app, label).await;
    }
    let lease = |assistant: &str| {
        let mut sessions = app.sessions(BOT);
        let request =
            LeaseSessionRequest { assistant: assistant.into(), plan: String::new(), bot_id: "test-bot".into() };
        async move { sessions.lease_session(request).await }
    };
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(lease("chatgpt").await.expect("lease granted").into_inner());
    }
    lease("chatgpt").await.expect_err("every account leased: exhausted");
    lease("claude").await.expect_err("no claude account");
    for (lease, outcome) in
        leases.iter().zip([LeaseOutcome::Challenged, LeaseOutcome::Expired, LeaseOutcome::RateLimited])
    {
        app.sessions(BOT)
            .return_session(ReturnSessionRequest {
                lease_id: lease.lease_id.clone(),
                outcome: outcome as i32,
                runs: 1,
                detail: format!("{outcome:?}"),
                ..Default::default()
            })
            .await
            .expect("returned");
    }

    // The site changed: a required selector is missing and the bot fails the task at once.
    let waiting = asking(app, "Which selector went missing today?");
    fail_next_task(app, "chatgpt", "selector-missing: no element for role composer (after 1 attempts)").await;
    first_failed(&waiting.await.expect("stream"));

    // A prompt longer than the assistant takes: the bot refuses it at once (the customers'
    // doing, which AapAnswersFailingForGood leaves out).
    let waiting = asking(app, "Which prompt was too long for the box?");
    fail_next_task(
        app,
        "chatgpt",
        "prompt-refused: the assistant does not take the prompt: the prompt has 2100 characters; the site takes at most 2048",
    )
    .await;
    first_failed(&waiting.await.expect("stream"));

    // A submit lost between the gateway's mark and the results stream, asked again; then a
    // polling bot that goes silent, whose claim lapses; the third attempt is answered.
    let waiting = asking(app, "Where do lost answers go?");
    let task = poll_task(app, "chatgpt", "").await;
    let holder = aap_evaluations::store::Holder::new(BOT_NAME, "test-bot");
    let submission =
        aap_evaluations::grpc::parse_submission(submit_request(task.evaluation_id, "Lost")).expect("valid");
    let digest = aap_evaluations::gateway::submission_digest(&submission);
    aap_evaluations::store::mark_submitted(&app.pool, task.evaluation_id, &holder, &digest)
        .await
        .expect("mark")
        .expect("the test bot holds it");
    let again = poll_task(app, "chatgpt", "").await;
    assert_eq!((again.evaluation_id, again.attempt), (task.evaluation_id, 2), "asked again after the lost submit");
    let last = poll_task(app, "chatgpt", "").await;
    assert_eq!((last.evaluation_id, last.attempt), (task.evaluation_id, 3), "delivered again after the lapse");
    submit(app, last.evaluation_id, "Found").await.expect("submit");
    first_answer(&waiting.await.expect("stream"));

    // A page larger than a message of the results stream: the answer is kept without it.
    let waiting = asking(app, "How large can a page be?");
    let task = poll_task(app, "chatgpt", "").await;
    let mut large = submit_request(task.evaluation_id, "Large");
    large.capture.as_mut().expect("capture").response_html = "€".repeat(4_000_000);
    app.evaluations().submit(large).await.expect("taken without its page");
    first_answer(&waiting.await.expect("stream"));

    // A result the database refuses: dead-lettered, its evaluation failed. What Submit does, by
    // hand, with an answer PostgreSQL cannot store; marked an hour ahead, since the ingest's five
    // tries (a second apart) outlast this run's 2 s submitted timeout, which would ask it again.
    let waiting = asking(app, "Which answers does the database refuse?");
    let task = poll_task(app, "chatgpt", "").await;
    sqlx::query("UPDATE evaluations SET status = 'submitted', updated_at = now() + interval '1 hour' WHERE id = $1")
        .bind(task.evaluation_id)
        .execute(&app.pool)
        .await
        .expect("mark submitted");
    let nats = async_nats::connect(app.nats_url.as_str()).await.expect("nats");
    publish_poison_result(app, &nats, &task).await;
    first_failed(&waiting.await.expect("stream"));

    // A bot whose browser cannot start: it leases, fails to launch twice, and fails the task.
    account(app, "alerts-bot").await;
    let mut config = aap_bot::BotConfig::grpc(&app.grpc_url, BOT, "alerts-bot", "chatgpt", "Plus");
    config.browser.chromedriver = "/nonexistent/chromedriver".into();
    config.browser.chromium = "/nonexistent/chromium".into();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let bot = tokio::spawn(aap_bot::run(config, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    first_failed(&asking(app, "Does a bot without a browser answer?").await.expect("stream"));
    stop.send(true).expect("stop the bot");
    bot.await.expect("bot joins").expect("bot stops cleanly");

    // A call of a method the platform does not serve: counted as service "unknown".
    let status =
        raw_grpc(app, "/aap.v1.NoSuchService/Nothing", BOT, grpc_frame(&aap_proto::v1::PollRequest::default()), &[])
            .await;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "not in the access table: {status:?}");
}

/// A wrong rule of each kind the check is for, and what the check must say of it.
const WRONG: &[(&str, &str)] = &[
    ("sum(rate(aap_evaluations_claim_total[5m]))", "no process of the platform nor bot exports it"),
    (r#"max(aap_evaluations{assistent="chatgpt"})"#, "has no label \"assistent\""),
    (r#"sum(rate(aap_session_leases_total{outcome="exhaused"}[5m]))"#, "never takes \"exhaused\""),
    (r#"sum(rate(aap_session_leases_total{outcome=~"exhausted|no_acount"}[5m]))"#, "never takes \"no_acount\""),
    (r#"sum(rate(aap_grpc_server_handled_total{code="Internl"}[5m]))"#, "never takes \"Internl\""),
    (r#"max(aap_queue_messages{consumer=~"task-.+"})"#, "matches none of the values seen"),
    ("sum by (assitant) (rate(aap_evaluations_claims_total[5m]))", "no series below has the label \"assitant\""),
    ("sum(rate(aap_embedding_refused_total[5m])) by (assistant)", "no series below has the label \"assistant\""),
    ("max(aap_evaluations) unless on (consumer) max(aap_queue_messages)", "no series below has the label \"consumer\""),
    ("sum(aap_evaluations_claims_total) > 0", "is a counter: read it with rate() or increase()"),
    ("sum(rate(aap_session_accounts[5m]))", "is a gauge"),
    (r#"sum by (assistant) (aap_evaluations{state="queued"})"#, "aggregate it with max, not sum"),
    ("rate(aap_evaluations_claims_total)", "does not parse"),
];

#[tokio::test]
async fn every_metric_label_and_value_the_alerts_name_is_exported() {
    let app = spawn_app_with(Options {
        submitted_timeout: Duration::from_secs(2),
        poll_claim_ttl: Duration::from_secs(5),
        ..Options::default()
    })
    .await;
    run_everything_the_alerts_watch(&app).await;

    let (alerts, errors) = alerts(RULES);
    assert!(errors.is_empty(), "{errors:#?}");
    // The shared gauges are read at a scrape, at most once a scheduler tick: scrape until the
    // rules hold or 30 s have passed, then say what does not.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (exported, problems) = loop {
        let exported = Exported::of(&scrape(&app.metrics_url).await);
        let problems: Vec<String> = alerts.iter().flat_map(|alert| check_alert(alert, &exported)).collect();
        if problems.is_empty() || Instant::now() > deadline {
            break (exported, problems);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(problems.is_empty(), "the alerts name what is not exported:\n{}", problems.join("\n"));
    assert!(exported.shared.len() >= 5, "docs/operations.md marks the shared gauges: {:?}", exported.shared);

    // The check fails a wrong rule of each kind, against the same scrape.
    for (expr, expected) in WRONG {
        let (errors, _) = check_expr(expr, &exported);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expr}: expected an error with {expected:?}, got {errors:?}"
        );
    }
    let wrong_label = Alert {
        name: "AapWrong".into(),
        expr: "max by (assistant) (aap_evaluations_oldest_claim_age_seconds) > 1200".into(),
        severity: "page".into(),
        annotations: BTreeMap::from([("summary".into(), "{{ $labels.consumer }} is hung".into())]),
    };
    assert!(check_alert(&wrong_label, &exported).iter().any(|e| e.contains("$labels.consumer")));
}

#[test]
fn durations_and_anchors_are_read_as_prometheus_and_github_do() {
    for good in ["5m", "1h", "1h30m", "90s", "500ms", "2d12h"] {
        assert!(is_duration(good), "{good}");
    }
    for bad in ["", "5", "m", "30m1h", "5mm", "1.5h", "5 m"] {
        assert!(!is_duration(bad), "{bad}");
    }
    assert_eq!(anchor("AapSelectorMissing"), "aapselectormissing");
    assert_eq!(anchor("How to read these rules"), "how-to-read-these-rules");
}
