//! The console's routes: the page and its assets, the login form, and the JSON APIs the page
//! renders (docs/console.md lists them with their fields). Errors become responses in one place,
//! [`ApiError`]'s `IntoResponse`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use chronik_kafka_client::consumer_protocol::{decode_assignment, TopicPartitions};
use serde::{Deserialize, Serialize};

use super::assets;
use super::lag::LagPoint;
use super::sampler::BrokerDisk;
use super::{events, session, Console};
use crate::api::auth::Authenticator;
use crate::api::{cluster_view, BrokerView, ControllerView};

/// Records the message browser shows unless asked otherwise, and the most it shows.
const DEFAULT_RECORDS: i64 = 20;
const MAX_RECORDS: i64 = 500;

/// The console's routes, credentials checked as [`session`] says.
pub fn router(console: Arc<Console>, auth: Arc<Authenticator>) -> Router {
    let pages = Router::new()
        .route("/", get(assets::index))
        .route("/console.js", get(assets::js))
        .route_layer(middleware::from_fn_with_state(
            auth.clone(),
            session::require_for_pages,
        ));
    let apis = Router::new()
        .route("/api/v1/overview", get(overview_api))
        .route("/api/v1/topics", get(topics))
        .route("/api/v1/topics/{topic}", get(topic))
        .route(
            "/api/v1/topics/{topic}/partitions/{partition}/records",
            get(records),
        )
        .route("/api/v1/groups", get(groups))
        .route("/api/v1/groups/{group}", get(group))
        .route("/api/v1/events", get(events::events))
        .route_layer(middleware::from_fn_with_state(
            auth.clone(),
            session::require_for_apis,
        ));
    let login = Router::new()
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        // The stylesheet is open: the login form uses it, and it says nothing about the cluster.
        .route("/console.css", get(assets::css))
        .with_state(auth);
    pages.merge(apis).with_state(console).merge(login)
}

/// Why an API request failed.
#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    BadRequest(String),
    /// The brokers could not answer.
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        };
        (
            status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::json!({ "error": message })),
        )
            .into_response()
    }
}

fn reply<T: Serialize>(value: T) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(value)).into_response()
}

#[derive(Debug, Serialize)]
pub struct ControllerOverview {
    #[serde(flatten)]
    pub view: ControllerView,
    /// Log entries this controller is behind the furthest commit known here; `None` when this
    /// controller does not know (only the active controller knows the others').
    pub lag: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct BrokerOverview {
    #[serde(flatten)]
    pub view: BrokerView,
    /// From the latest sample; `None` when the broker was not sampled (fenced, or no sample yet).
    pub disk: Option<BrokerDisk>,
}

/// `/api/v1/overview` and the data of `metadata` events.
#[derive(Debug, Serialize)]
pub struct Overview {
    pub cluster_id: String,
    /// The controller answering.
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub metadata_offset: u64,
    pub controllers: Vec<ControllerOverview>,
    pub brokers: Vec<BrokerOverview>,
    pub topic_count: usize,
    pub partition_count: usize,
    pub leaderless_partitions: usize,
    pub under_replicated_partitions: usize,
    /// When the sample behind `disk` was taken (0: none yet), and by which controller.
    pub sampled_at_ms: i64,
    pub sampled_by: u64,
    pub sample_errors: Vec<String>,
}

/// The overview as of this controller's applied metadata and latest sample.
pub fn overview(console: &Console) -> Overview {
    let cluster = cluster_view(&console.quorum);
    let sample = console.sample();
    let furthest = cluster
        .controllers
        .iter()
        .map(|c| c.commit_index.max(c.applied_index))
        .max()
        .unwrap_or(-1);
    let controllers = cluster
        .controllers
        .into_iter()
        .map(|view| {
            let known = view.is_self || cluster.leader_id == Some(console.quorum.node_id());
            let lag = (known && view.applied_index >= 0).then(|| furthest - view.applied_index);
            ControllerOverview { view, lag }
        })
        .collect();
    let brokers = cluster
        .brokers
        .into_iter()
        .map(|view| BrokerOverview {
            disk: sample.disks.get(&view.broker_id).cloned(),
            view,
        })
        .collect();
    Overview {
        cluster_id: cluster.cluster_id,
        node_id: console.quorum.node_id(),
        leader_id: cluster.leader_id,
        metadata_offset: cluster.metadata_offset,
        controllers,
        brokers,
        topic_count: cluster.topic_count,
        partition_count: cluster.partition_count,
        leaderless_partitions: cluster.leaderless_partitions,
        under_replicated_partitions: cluster.under_replicated_partitions,
        sampled_at_ms: sample.at_ms,
        sampled_by: console.quorum.node_id(),
        sample_errors: sample.errors.clone(),
    }
}

async fn overview_api(State(console): State<Arc<Console>>) -> Response {
    reply(overview(&console))
}

#[derive(Debug, Serialize)]
struct TopicSummary {
    name: String,
    topic_id: String,
    partitions: usize,
    replication_factor: usize,
    under_replicated: usize,
    leaderless: usize,
    /// The leaders' copies, from the latest sample; `None` before one.
    size_bytes: Option<i64>,
}

async fn topics(State(console): State<Arc<Console>>) -> Response {
    let sample = console.sample();
    let summaries: Vec<TopicSummary> = console.quorum.applied().with_image(|image| {
        image
            .topics
            .values()
            .map(|topic| {
                let sizes: Vec<i64> = (0..topic.partitions.len() as i32)
                    .filter_map(|p| sample.sizes.get(&(topic.name.clone(), p)).copied())
                    .collect();
                TopicSummary {
                    name: topic.name.clone(),
                    topic_id: topic.id.to_string(),
                    partitions: topic.partitions.len(),
                    replication_factor: topic.replication_factor(),
                    under_replicated: topic
                        .partitions
                        .iter()
                        .filter(|p| p.is_under_replicated())
                        .count(),
                    leaderless: topic.partitions.iter().filter(|p| !p.has_leader()).count(),
                    size_bytes: (sample.at_ms > 0).then(|| sizes.iter().sum()),
                }
            })
            .collect()
    });
    let mut summaries = summaries;
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    reply(serde_json::json!({ "topics": summaries, "sampled_at_ms": sample.at_ms }))
}

#[derive(Debug, Serialize)]
struct PartitionDetail {
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    under_replicated: bool,
    log_start_offset: Option<i64>,
    high_watermark: Option<i64>,
    /// The leader's copy.
    size_bytes: Option<i64>,
}

async fn topic(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let image = console.quorum.applied().image();
    let topic = image
        .topic_by_name(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no topic '{name}'")))?;
    let mut reader = console.reader.lock().await;
    let active = reader.learn(&image);
    let (offsets, mut errors) = reader.offsets(&image, &name).await;
    let mut sizes: BTreeMap<i32, i64> = BTreeMap::new();
    for broker in active {
        let led: Vec<i32> = (0..topic.partitions.len() as i32)
            .filter(|&p| topic.partitions[p as usize].leader == broker)
            .collect();
        if led.is_empty() {
            continue;
        }
        let wanted = BTreeMap::from([(name.clone(), led)]);
        match reader.log_dirs(broker, Some(&wanted)).await {
            Ok(dirs) => sizes.extend(
                dirs.iter()
                    .flat_map(|dir| dir.replicas.iter())
                    .filter(|r| r.topic == name)
                    .map(|r| (r.partition, r.size_bytes)),
            ),
            Err(error) => errors.push(format!("broker {broker}: {error}")),
        }
    }
    drop(reader);
    let partitions: Vec<PartitionDetail> = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let index = index as i32;
            let offsets = offsets.get(&index).copied().unwrap_or_default();
            PartitionDetail {
                partition: index,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                under_replicated: p.is_under_replicated(),
                log_start_offset: offsets.log_start_offset,
                high_watermark: offsets.high_watermark,
                size_bytes: sizes.get(&index).copied(),
            }
        })
        .collect();
    Ok(reply(serde_json::json!({
        "name": topic.name,
        "topic_id": topic.id.to_string(),
        "replication_factor": topic.replication_factor(),
        "configs": topic.configs,
        "cluster_configs": image.cluster_configs,
        "partitions": partitions,
        "errors": errors,
    })))
}

#[derive(Deserialize)]
struct RecordsQuery {
    limit: Option<i64>,
}

/// A key, value or header value: text when it is UTF-8, else base64.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Payload {
    Text(String),
    Base64(String),
}

fn payload(bytes: &Option<Bytes>) -> Option<Payload> {
    bytes.as_ref().map(|b| match std::str::from_utf8(b) {
        Ok(text) => Payload::Text(text.to_owned()),
        Err(_) => Payload::Base64(base64::engine::general_purpose::STANDARD.encode(b)),
    })
}

#[derive(Debug, Serialize)]
struct RecordView {
    offset: i64,
    timestamp_ms: i64,
    timestamp_type: &'static str,
    key: Option<Payload>,
    value: Option<Payload>,
    headers: Vec<HeaderView>,
}

#[derive(Debug, Serialize)]
struct HeaderView {
    key: String,
    value: Option<Payload>,
}

async fn records(
    State(console): State<Arc<Console>>,
    Path((name, partition)): Path<(String, i32)>,
    Query(query): Query<RecordsQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_RECORDS);
    if !(1..=MAX_RECORDS).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit is 1 to {MAX_RECORDS}, not {limit}"
        )));
    }
    let image = console.quorum.applied().image();
    let topic = image
        .topic_by_name(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no topic '{name}'")))?;
    if partition < 0 || partition as usize >= topic.partitions.len() {
        return Err(ApiError::NotFound(format!(
            "topic '{name}' has no partition {partition}"
        )));
    }
    let mut reader = console.reader.lock().await;
    reader.learn(&image);
    let latest = reader
        .latest_records(&image, &name, partition, limit)
        .await
        .map_err(ApiError::Unavailable)?;
    drop(reader);
    let records: Vec<RecordView> = latest
        .records
        .iter()
        .map(|record| RecordView {
            offset: record.offset,
            timestamp_ms: record.timestamp,
            timestamp_type: match record.timestamp_type {
                kafka_protocol::records::TimestampType::LogAppend => "LogAppendTime",
                kafka_protocol::records::TimestampType::Creation => "CreateTime",
            },
            key: payload(&record.key),
            value: payload(&record.value),
            headers: record
                .headers
                .iter()
                .map(|(key, value)| HeaderView {
                    key: key.to_string(),
                    value: payload(value),
                })
                .collect(),
        })
        .collect();
    Ok(reply(serde_json::json!({
        "topic": name,
        "partition": partition,
        "leader": latest.leader,
        "log_start_offset": latest.log_start_offset,
        "high_watermark": latest.high_watermark,
        "records": records,
    })))
}

#[derive(Debug, Serialize)]
struct GroupSummary {
    group_id: String,
    state: String,
    protocol_type: String,
    coordinator: i32,
    /// From the latest sample.
    total_lag: Option<i64>,
}

async fn groups(State(console): State<Arc<Console>>) -> Response {
    let image = console.quorum.applied().image();
    let sample = console.sample();
    let mut reader = console.reader.lock().await;
    let active = reader.learn(&image);
    let (listed, errors) = reader.groups(&active).await;
    drop(reader);
    let groups: Vec<GroupSummary> = listed
        .into_iter()
        .map(|(coordinator, group)| GroupSummary {
            total_lag: sample.groups.get(&group.group_id).map(|g| g.total_lag),
            group_id: group.group_id,
            state: group.state,
            protocol_type: group.protocol_type,
            coordinator,
        })
        .collect();
    reply(serde_json::json!({
        "groups": groups,
        "errors": errors,
        "sampled_at_ms": sample.at_ms,
    }))
}

#[derive(Debug, Serialize)]
struct MemberView {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    assignment: Vec<TopicPartitions>,
}

#[derive(Debug, Serialize)]
struct GroupPartitionView {
    topic: String,
    partition: i32,
    committed_offset: Option<i64>,
    high_watermark: Option<i64>,
    lag: Option<i64>,
    member_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct LagSeries {
    topic: String,
    partition: i32,
    points: Vec<LagPoint>,
}

async fn group(
    State(console): State<Arc<Console>>,
    Path(group_id): Path<String>,
) -> Result<Response, ApiError> {
    let image = console.quorum.applied().image();
    let mut reader = console.reader.lock().await;
    reader.learn(&image);
    let (coordinator, described) = reader
        .admin()
        .describe_group(&group_id)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let committed = reader
        .admin()
        .committed_offsets(&group_id)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if described.state == "Dead" && described.members.is_empty() && committed.is_empty() {
        return Err(ApiError::NotFound(format!("no group '{group_id}'")));
    }
    let mut errors = Vec::new();
    let members: Vec<MemberView> = described
        .members
        .iter()
        .map(|member| MemberView {
            member_id: member.member_id.clone(),
            group_instance_id: member.group_instance_id.clone(),
            client_id: member.client_id.clone(),
            client_host: member.client_host.clone(),
            assignment: match decode_assignment(&member.assignment) {
                Ok(assignment) => assignment.topics,
                Err(error) => {
                    errors.push(format!("member {}: {error}", member.member_id));
                    Vec::new()
                }
            },
        })
        .collect();
    let mut owners: BTreeMap<(String, i32), String> = BTreeMap::new();
    for member in &members {
        for assigned in &member.assignment {
            for &partition in &assigned.partitions {
                owners.insert(
                    (assigned.topic.clone(), partition),
                    member.member_id.clone(),
                );
            }
        }
    }
    let mut keys: Vec<(String, i32)> = committed.keys().cloned().collect();
    keys.extend(owners.keys().cloned());
    keys.sort();
    keys.dedup();
    let mut high_watermarks: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut topics: Vec<&String> = keys.iter().map(|(topic, _)| topic).collect();
    topics.dedup();
    for topic in topics {
        let (offsets, topic_errors) = reader.offsets(&image, topic).await;
        errors.extend(topic_errors);
        for (partition, offsets) in offsets {
            if let Some(hw) = offsets.high_watermark {
                high_watermarks.insert((topic.clone(), partition), hw);
            }
        }
    }
    drop(reader);
    let partitions: Vec<GroupPartitionView> = keys
        .iter()
        .map(|key| {
            let committed_offset = committed.get(key).copied();
            let high_watermark = high_watermarks.get(key).copied();
            GroupPartitionView {
                topic: key.0.clone(),
                partition: key.1,
                committed_offset,
                high_watermark,
                lag: committed_offset
                    .zip(high_watermark)
                    .map(|(c, hw)| (hw - c).max(0)),
                member_id: owners.get(key).cloned(),
            }
        })
        .collect();
    let history: Vec<LagSeries> = console
        .history()
        .group(&group_id)
        .into_iter()
        .map(|((topic, partition), points)| LagSeries {
            topic,
            partition,
            points,
        })
        .collect();
    Ok(reply(serde_json::json!({
        "group_id": group_id,
        "state": described.state,
        "protocol_type": described.protocol_type,
        "protocol": described.protocol,
        "coordinator": coordinator,
        "members": members,
        "partitions": partitions,
        "history": history,
        "sampled_by": console.quorum.node_id(),
        "sample_interval_ms": console.config.sample_interval.map(|i| i.as_millis() as u64),
        "errors": errors,
    })))
}

#[cfg(test)]
mod tests {
    //! The routes without a socket: a one-voter quorum in a temp dir, the router called directly.

    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::Duration;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::Request;
    use chronik_control_auth::Token;
    use futures::StreamExt;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;
    use crate::api::http_listener::HttpPeer;
    use crate::console::ConsoleConfig;
    use crate::quorum::Quorum;

    const ADMIN: &str = "admin-token-0123456789";

    /// One voter that leads itself, bootstrapped with a cluster id.
    async fn single_quorum(dir: &Path) -> Arc<Quorum> {
        crate::quorum::test_support::single_voter(dir, "console-test").await
    }

    fn console(quorum: Arc<Quorum>, shutdown: CancellationToken) -> Arc<Console> {
        let config = ConsoleConfig {
            listener: None,
            request_timeout: Duration::from_secs(1),
            sample_interval: None,
            history_len: 10,
        };
        Arc::new(Console::new(quorum, config, shutdown))
    }

    fn secured() -> Arc<Authenticator> {
        Arc::new(Authenticator::new(
            Some(Token::new(ADMIN).unwrap()),
            Some(Token::new("cluster-token-0123456789").unwrap()),
            false,
        ))
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    fn login(token: &str) -> Request<Body> {
        let peer = HttpPeer {
            addr: SocketAddr::from(([127, 0, 0, 1], 50000)),
            verified_certificate: false,
            tls: false,
        };
        let mut request = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    }

    async fn json(response: Response) -> serde_json::Value {
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn pages_and_apis_want_the_token_and_a_browser_gets_it_by_logging_in() {
        let dir = tempfile::tempdir().unwrap();
        let quorum = single_quorum(dir.path()).await;
        let routes = router(console(quorum, CancellationToken::new()), secured());
        let call = |request| routes.clone().oneshot(request);

        let page = call(get("/", &[])).await.unwrap();
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert_eq!(page.headers()[header::LOCATION], "/login");
        assert_eq!(
            call(get("/api/v1/overview", &[])).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let bearer = format!("Bearer {ADMIN}");
        let overview = call(get("/api/v1/overview", &[("authorization", &bearer)]))
            .await
            .unwrap();
        assert_eq!(overview.status(), StatusCode::OK);
        let overview = json(overview).await;
        assert_eq!(overview["cluster_id"], "console-test");
        assert_eq!(overview["controllers"][0]["role"], "leader");
        for open in ["/login", "/console.css"] {
            assert_eq!(call(get(open, &[])).await.unwrap().status(), StatusCode::OK);
        }

        let refused = call(login("wrong-token-0123456789")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.headers().get(header::SET_COOKIE).is_none());
        let accepted = call(login(ADMIN)).await.unwrap();
        assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
        let cookie = accepted.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            cookie.starts_with(&format!("chronik_console={ADMIN};"))
                && cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
                && !cookie.contains("Secure"),
            "{cookie}"
        );
        let pair = cookie.split(';').next().unwrap();
        for path in ["/", "/console.js", "/api/v1/overview", "/api/v1/topics"] {
            let answer = call(get(path, &[("cookie", pair)])).await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{path}");
        }
        let wrong_cookie = "chronik_console=wrong-token-0123456789";
        assert_eq!(
            call(get("/api/v1/overview", &[("cookie", wrong_cookie)]))
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        let missing = call(get("/api/v1/topics/nope", &[("cookie", pair)]))
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(json(missing).await["error"], "no topic 'nope'");
    }

    #[tokio::test]
    async fn an_event_stream_starts_with_the_overview_and_ends_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let quorum = single_quorum(dir.path()).await;
        let shutdown = CancellationToken::new();
        let routes = router(
            console(quorum, shutdown.clone()),
            Arc::new(Authenticator::open()),
        );
        let response = routes.oneshot(get("/api/v1/events", &[])).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut frames = response.into_body().into_data_stream();
        let first = frames.next().await.unwrap().unwrap();
        let first = String::from_utf8(first.to_vec()).unwrap();
        assert!(
            first.starts_with("event: metadata\ndata: {") && first.contains("console-test"),
            "{first}"
        );
        shutdown.cancel();
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(frame) = frames.next().await {
                frame.unwrap();
            }
        })
        .await;
        assert!(end.is_ok(), "the stream ended at shutdown");
    }
}
