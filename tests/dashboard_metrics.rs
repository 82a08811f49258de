//! The Grafana dashboard (`k8s/base/dashboards/lagrate.json`) asks only for
//! metrics that exist. lagrate, trade-consumer and trade-producer run against
//! a real broker, their `/metrics` are read, and every metric and label a
//! panel's query names must be among them, or come from an exporter the
//! deployment installs (listed below with where it comes from).
// Each test is a scenario against real processes, read top to bottom.
#![allow(clippy::too_many_lines)]
// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use lagrate_proto::GetMetricsRequest;
use lagrate_proto::external_scaler_client::ExternalScalerClient;
use testbed::{
    Lagrate, Process, Tansu, eventually, free_port, http_get, scaled_object, unique,
    workspace_binary,
};

/// Metrics the dashboard reads from exporters the deployment installs.
const EXTERNAL: &[(&str, &str)] = &[
    (
        "kafka_server_BrokerTopicMetrics_Count",
        "MSK open monitoring: JMX exporter on :11001",
    ),
    (
        "kafka_consumer_group_ConsumerLagMetrics_Value",
        "MSK open monitoring: JMX exporter on :11001",
    ),
    (
        "kube_horizontalpodautoscaler_status_desired_replicas",
        "kube-state-metrics",
    ),
    (
        "kube_horizontalpodautoscaler_status_current_replicas",
        "kube-state-metrics",
    ),
    (
        "kube_deployment_status_replicas_available",
        "kube-state-metrics",
    ),
    ("kube_node_status_condition", "kube-state-metrics"),
    ("keda_scaler_metrics_value", "KEDA operator"),
    ("keda_scaler_detail_errors_total", "KEDA operator"),
];

/// Labels Prometheus attaches to every series it scrapes through a
/// ServiceMonitor: they are not in the exposition, yet exist in queries.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "service",
    "job",
    "instance",
    "container",
    "endpoint",
];

/// One vector selector of a PromQL expression: `name{label="..", ...}`.
#[derive(Debug, PartialEq)]
struct Selector {
    metric: String,
    labels: Vec<String>,
}

/// What a query names: its selectors, and the labels of its `by (...)`,
/// `without (...)`, `on (...)` and `ignoring (...)` clauses.
#[derive(Debug, Default, PartialEq)]
struct Query {
    selectors: Vec<Selector>,
    grouping: Vec<String>,
}

const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const OPERATORS: &[&str] = &["and", "or", "unless", "bool", "offset"];
/// Aggregations, which may put `by (...)` between their name and `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Reads the metric and label names out of a PromQL expression (Grafana's
/// `$variables` included). Strings and `[range]`s are skipped; an identifier
/// followed by `(` is a function or aggregation.
fn parse_query(expr: &str) -> Query {
    let chars: Vec<char> = expr.chars().collect();
    let mut query = Query::default();
    let mut i = 0;
    let skip_spaces = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    let identifier = |j: usize| {
        let mut end = j;
        while end < chars.len()
            && (chars[end].is_alphanumeric() || chars[end] == '_' || chars[end] == ':')
        {
            end += 1;
        }
        (chars[j..end].iter().collect::<String>(), end)
    };
    // The index after the string literal opening at `j` (escapes honoured).
    let skip_string = |mut j: usize| {
        j += 1;
        while j < chars.len() && chars[j] != '"' {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    // Label names of a `{...}` matcher list or a `(...)` label list starting at `open`.
    let label_list = |open: usize, close: char| {
        let mut labels = Vec::new();
        let mut j = open + 1;
        while j < chars.len() && chars[j] != close {
            let c = chars[j];
            if c == '"' {
                j = skip_string(j);
            } else if c.is_alphabetic() || c == '_' {
                let (name, end) = identifier(j);
                labels.push(name);
                j = end;
            } else {
                j += 1;
            }
        }
        (labels, j + 1)
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = skip_string(i);
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '$' {
            // Numbers (0.99, 1e3) and Grafana variables outside strings.
            i += 1;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' || c == ':' {
            let (name, end) = identifier(i);
            let next = skip_spaces(end);
            let next_char = chars.get(next).copied();
            if GROUPING.contains(&name.as_str()) {
                if next_char == Some('(') {
                    let (labels, after) = label_list(next, ')');
                    query.grouping.extend(labels);
                    i = after;
                } else {
                    i = end;
                }
            } else if OPERATORS.contains(&name.as_str())
                || AGGREGATIONS.contains(&name.as_str())
                || next_char == Some('(')
            {
                i = end;
            } else if next_char == Some('{') {
                let (labels, after) = label_list(next, '}');
                query.selectors.push(Selector {
                    metric: name,
                    labels,
                });
                i = after;
            } else {
                query.selectors.push(Selector {
                    metric: name,
                    labels: Vec::new(),
                });
                i = end;
            }
        } else {
            i += 1;
        }
    }
    query
}

/// Sample names of a Prometheus text exposition, each with its label names.
fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let block = &line[name_end..line.rfind('}').unwrap_or(line.len())];
            labels.extend(
                parse_query(&format!("m{block}}}")).selectors[0]
                    .labels
                    .clone(),
            );
        }
    }
    out
}

fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/base/dashboards/lagrate.json");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard JSON"))
            .expect("dashboard parses");
    let mut out = Vec::new();
    for panel in model["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            out.push((
                panel["title"].as_str().expect("title").to_owned(),
                target["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    out
}

/// The exposition at `addr`, once the process is listening.
fn scrape(addr: SocketAddr) -> Option<String> {
    let (status, body) = http_get(addr, "/metrics");
    (status == 200).then_some(body)
}

#[test]
fn every_dashboard_query_names_metrics_the_binaries_export() {
    let broker = Tansu::start();
    let topic = unique("dashboard");
    let group = unique("dashboard");
    broker.create_topic(&topic, 4);
    let kafka = |port: u16| {
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", topic.clone()),
            ("METRICS_PORT", port.to_string()),
        ]
    };
    let producer_port = free_port();
    let producer_bin = workspace_binary("trade-producer");
    let producer = Process::start(
        producer_bin.to_str().expect("path"),
        &["--rate", "200"],
        &kafka(producer_port),
    );
    let consumer_port = free_port();
    let mut consumer_env = kafka(consumer_port);
    consumer_env.push(("CONSUMER_GROUP", group.clone()));
    consumer_env.push(("DLQ_TOPIC", format!("{topic}-dlq")));
    consumer_env.push(("BATCH_PROCESSING_TIME", "0.05".to_owned()));
    let consumer_bin = workspace_binary("trade-consumer");
    let consumer = Process::start(consumer_bin.to_str().expect("path"), &[], &consumer_env);

    let lagrate_bin = workspace_binary("lagrate");
    let lagrate = Lagrate::start(
        lagrate_bin.to_str().expect("path"),
        &format!(
            "sampling:\n  interval: 1s\n  maxStaleness: 10s\n  warmUp: answer\nclusters:\n  local:\n    bootstrapServers: [\"{}\"]\n    auth: {{ mechanism: none }}\npolicies:\n  default: {{}}\nshadow:\n  - name: shadowed\n    consumerGroup: {group}\n    topic: {topic}\n    metadata: {{ podCapacity: \"100\" }}\n",
            broker.bootstrap()
        ),
    );
    // KEDA's calls: one good ScaledObject and one with bad metadata, so the
    // per-object series and the error codes both exist.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = ExternalScalerClient::connect(lagrate.grpc_url())
            .await
            .expect("connect to lagrate");
        let good = scaled_object(
            "trade-tx-consumer",
            &[
                ("consumerGroup", &group),
                ("topic", &topic),
                ("lagThreshold", "100"),
                ("policy", "default"),
                ("podCapacity", "100"),
            ],
        );
        let bad = scaled_object(
            "broken",
            &[("consumerGroup", &group), ("lagThreshold", "abc")],
        );
        for object in [good, bad] {
            let _ = client
                .get_metrics(GetMetricsRequest {
                    scaled_object_ref: Some(object),
                    metric_name: "dashboard".into(),
                })
                .await;
        }
    });

    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    // Wait until each process exports the series the dashboard reads: the
    // consumer's after it has written batches, lagrate's after a decision.
    let metrics = eventually(
        Duration::from_secs(60),
        "every binary exports its series",
        || {
            let mut all = exposition(&scrape(local(consumer_port))?);
            for (name, labels) in exposition(&scrape(local(producer_port))?)
                .into_iter()
                .chain(exposition(&lagrate.http_get("/metrics").1))
            {
                all.entry(name).or_default().extend(labels);
            }
            let ready = [
                "kafka_message_age_seconds_bucket",
                "kafka_consumer_partition_lag",
                "lagrate_desired_replicas",
                "trade_producer_achieved_rate_per_second",
                "lagrate_shadow_pod_seconds_total",
                "lagrate_shadow_estimated_wait_seconds",
            ]
            .iter()
            .all(|m| all.contains_key(*m));
            ready.then_some(all)
        },
    );
    drop((producer, consumer));

    let external: BTreeMap<&str, &str> = EXTERNAL.iter().copied().collect();
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for (panel, expr) in dashboard_queries() {
        let query = parse_query(&expr);
        assert!(!query.selectors.is_empty(), "{panel}: no metric in {expr}");
        let mut labels_here: BTreeSet<String> =
            TARGET_LABELS.iter().map(|l| l.to_string()).collect();
        for selector in &query.selectors {
            named.insert(selector.metric.clone());
            if external.contains_key(selector.metric.as_str()) {
                labels_here.extend(selector.labels.iter().cloned());
                continue;
            }
            let Some(exported) = metrics.get(&selector.metric) else {
                problems.push(format!(
                    "{panel}: {} is not exported (query: {expr})",
                    selector.metric
                ));
                continue;
            };
            labels_here.extend(exported.iter().cloned());
            for label in &selector.labels {
                if !exported.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                    problems.push(format!(
                        "{panel}: {} has no label {label} (it has {exported:?})",
                        selector.metric
                    ));
                }
            }
        }
        for label in &query.grouping {
            if !labels_here.contains(label) {
                problems.push(format!("{panel}: grouping label {label} is on none of the query's metrics (query: {expr})"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard queries that would show nothing:\n{}",
        problems.join("\n")
    );

    // The panels the deployment promises, by the metric each one needs.
    for needed in [
        "kafka_server_BrokerTopicMetrics_Count", // inbound rate (MSK)
        "lagrate_inbound_rate_per_second",       // inbound rate (lagrate's λ)
        "kafka_messages_processed_total",        // processed rate
        "kafka_consumer_partition_lag",          // lag per partition
        "lagrate_desired_replicas",              // desired ...
        "kube_horizontalpodautoscaler_status_current_replicas", // ... vs actual
        "lagrate_decisions_total",               // decision reasons
        "kafka_message_age_seconds_bucket",      // message age p99
        "lagrate_requests_total",                // scaler errors
        "lagrate_samples_total",
        "lagrate_shadow_replicas", // shadow mode: lagrate vs KEDA vs actual
        "lagrate_shadow_pod_seconds_total", // shadow mode: pod-hours saved
    ] {
        assert!(named.contains(needed), "no panel reads {needed}");
    }
    // Every external metric listed is one the dashboard really reads.
    for (name, source) in EXTERNAL {
        assert!(
            named.contains(*name),
            "{name} ({source}) is listed but no panel reads it"
        );
    }
}

#[test]
fn query_parser_finds_metrics_and_labels() {
    let q = parse_query(
        r#"histogram_quantile(0.99, sum by (le) (rate(kafka_message_age_seconds_bucket{namespace="$namespace"}[$__rate_interval])))"#,
    );
    assert_eq!(
        q.selectors,
        vec![Selector {
            metric: "kafka_message_age_seconds_bucket".into(),
            labels: vec!["namespace".into()]
        }]
    );
    assert_eq!(q.grouping, vec!["le".to_owned()]);

    let q = parse_query(
        r#"sum by (method) (rate(a_total{code!="ok",method=~"Get.*"}[1m])) / on (pod) group_left b"#,
    );
    assert_eq!(q.selectors.len(), 2);
    assert_eq!(
        q.selectors[0].labels,
        vec!["code".to_owned(), "method".to_owned()]
    );
    assert_eq!(
        q.selectors[1],
        Selector {
            metric: "b".into(),
            labels: vec![]
        }
    );
    assert_eq!(q.grouping, vec!["method".to_owned(), "pod".to_owned()]);

    // Strings never yield names, even when they look like selectors.
    let q =
        parse_query(r#"count(kube_node_status_condition{condition="Ready",status="true"} == 1)"#);
    assert_eq!(q.selectors.len(), 1);
    assert_eq!(
        q.selectors[0].labels,
        vec!["condition".to_owned(), "status".to_owned()]
    );
}

#[test]
fn exposition_reads_sample_names_and_labels() {
    let text = "# HELP x_total Things.\n# TYPE x counter\nx_total{action=\"scale-up\",scaled_object=\"a/b\"} 3\nup 1\ny_bucket{le=\"+Inf\"} 2\n";
    let got = exposition(text);
    assert_eq!(
        got["x_total"],
        BTreeSet::from(["action".to_owned(), "scaled_object".to_owned()])
    );
    assert!(got["up"].is_empty());
    assert_eq!(got["y_bucket"], BTreeSet::from(["le".to_owned()]));
    assert!(
        !got.contains_key("x"),
        "the TYPE line names the family, not a sample"
    );
}
