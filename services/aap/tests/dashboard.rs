//! The Grafana dashboard (deploy/grafana/aap-pipeline.json) and the metrics reference in
//! docs/operations.md cannot rot: every metric the dashboard's PromQL names is one the platform
//! or the bots export, and every exported family is documented.

use std::collections::BTreeSet;

use aap_platform::metrics::exposition::Scrape;

const DASHBOARD: &str = include_str!("../../../deploy/grafana/aap-pipeline.json");
const OPERATIONS: &str = include_str!("../../../docs/operations.md");

/// Every family of the platform's crates and the bot's: those registered (a family with no
/// series yet is not in a scrape) and those a scrape shows (collectors').
fn exported() -> Scrape {
    aap::metrics::register_all();
    let mut scrape = Scrape::parse(&aap_platform::metrics::encode()).expect("the exposition parses");
    scrape.types.extend(aap_platform::metrics::families());
    scrape
}

/// Every `expr` of every panel, rows' nested panels included: (panel title, expr).
fn queries(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.clone(), expr.to_owned()));
            }
        }
        queries(&panel["panels"], out);
    }
}

/// The `aap_...` identifiers of a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("aap_") {
        let before = rest[..at].chars().last();
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
        // Inside a word (a label value such as "my_aap_x") it is not a metric.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut all = Vec::new();
    queries(&dashboard["panels"], &mut all);
    assert!(all.len() >= 20, "the dashboard has its queries: {}", all.len());
    let declared = exported().declared_names();
    let mut used = BTreeSet::new();
    for (title, expr) in &all {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "panel {title:?} queries no aap_ metric: {expr}");
        for name in names {
            assert!(declared.contains(&name), "panel {title:?} queries {name}, which nothing exports: {expr}");
            used.insert(name);
        }
    }
    // The pipeline's parts the issue names are all on it.
    for wanted in [
        "aap_answers_ask_first_event_seconds_count",
        "aap_answers_ask_first_event_seconds_bucket",
        "aap_queue_messages",
        "aap_evaluations",
        "aap_ingest_lag_seconds_bucket",
        "aap_task_redeliveries_total",
        "aap_bot_attempt_failures_total",
        "aap_session_accounts",
        "aap_embedding_seconds_bucket",
        "aap_db_pool_connections",
        "aap_grpc_server_handled_total",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
}

#[test]
fn the_dashboard_check_finds_names_that_are_not_exported() {
    let declared = exported().declared_names();
    let names =
        metric_names(r#"sum by (x) (rate(aap_no_such_thing_total{a="aap_label_value"}[5m])) / aap_evaluations"#);
    assert_eq!(names, BTreeSet::from(["aap_evaluations".to_owned(), "aap_no_such_thing_total".to_owned()]));
    assert!(!declared.contains("aap_no_such_thing_total"));
    assert!(declared.contains("aap_evaluations"));
}

#[test]
fn every_exported_metric_is_documented_in_operations() {
    let scrape = exported();
    assert!(scrape.types.len() >= 30, "the platform's and the bot's families: {:?}", scrape.types.keys());
    for (family, kind) in &scrape.types {
        let shown = match kind.as_str() {
            "counter" => format!("`{family}_total`"),
            _ => format!("`{family}`"),
        };
        assert!(OPERATIONS.contains(&shown), "docs/operations.md does not list {shown} ({kind})");
    }
}
