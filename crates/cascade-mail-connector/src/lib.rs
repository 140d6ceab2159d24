//! The reference connector: a demo "mail service" speaking Cascade's connector protocol
//! (`docs/connector-protocol.md`) over HTTPS.
//!
//! It keeps its resources (one per Cascade subscription: a domain with mailboxes),
//! its transactions and nothing else in a JSON file in its data directory, next to
//! the self-signed certificate it creates on first start (`rcgen`) and loads on the
//! next, so a restarted connector keeps its pin and its state. It implements the whole
//! protocol: signed requests checked (instance id, skew, HMAC), signed answers, the
//! async path (a provision answers `202 pending` with `Retry-After` and completes
//! after `async_delay`), idempotent transactions, `PUT` for limits and suspension,
//! idempotent `DELETE`, `GET /usage` with a counter (`messages_sent`) and levels
//! (`mailbox`, `storage_mb`), and the reverse connectivity check (`POST
//! /callback-check` makes it call Cascade back with a signed request).
//!
//! For tests and the bench it can also be started in-process ([`start`]), seeded with
//! synthetic resources, and told to misbehave ([`Fault`]).
//!
//! Choices: `axum` + `axum-server` on rustls with the ring provider (no OpenSSL); a
//! JSON file rather than SQLite because the state is tiny and a third party reading
//! this code should see the protocol, not a storage layer.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cascade_domain::connector::{
    self as proto, H_INSTANCE, H_SIGNATURE, H_TIMESTAMP, H_TRANSACTION, OfferedResourceType,
    OperationResult, OperationStatus, ResourceRequest, ResourceState, SelfDescription,
    SettingSchema, Signed, UsageKind, UsageReading, UsageReport,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the connector misbehaves (tests of Cascade's fault handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    #[default]
    None,
    /// Answers 200 with a body that is not the protocol's JSON.
    Garbage,
    /// Answers 500.
    Error500,
    /// Never answers.
    Hang,
    /// Signs answers with a wrong key.
    BadSignature,
}

/// Start-up settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Certificate, key and store live here; `None` = in memory, fresh certificate.
    pub data_dir: Option<PathBuf>,
    pub secret: String,
    /// When set, requests for another instance id are refused.
    pub instance_id: Option<i64>,
    pub skew_secs: i64,
    /// How long a provisioning takes (0 = answered at once).
    pub async_delay: Duration,
    pub fault: Fault,
    /// Synthetic resources created at start (bench): `sub-{seed_first}` onwards.
    pub seed_resources: usize,
    pub seed_first: i64,
    /// The resource type code whose limit is the number of mailboxes (and under which
    /// their count is reported), `mailbox` unless a catalog names it otherwise.
    pub mailbox_code: String,
    /// The service name it describes itself with (`mail`; what resource types name).
    pub service: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            data_dir: None,
            secret: "secret".into(),
            instance_id: None,
            skew_secs: proto::DEFAULT_SKEW_SECS,
            async_delay: Duration::from_secs(1),
            fault: Fault::None,
            seed_resources: 0,
            seed_first: 1,
            mailbox_code: "mailbox".into(),
            service: "mail".into(),
        }
    }
}

/// One provisioned resource: a mail domain of one customer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MailResource {
    pub customer: proto::Customer,
    pub limits: BTreeMap<String, i64>,
    pub settings: serde_json::Value,
    pub state: ResourceState,
    pub mailboxes: Vec<String>,
    /// Unix day of creation (the `messages_sent` counter grows from it).
    pub created_day: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Transaction {
    /// Unix seconds when the work is done.
    ready_at: i64,
    result: OperationResult,
}

/// The connector's own store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Store {
    pub resources: BTreeMap<String, MailResource>,
    transactions: BTreeMap<String, Transaction>,
    /// Callbacks to Cascade made (nonce → outcome), for inspection.
    pub callbacks: BTreeMap<String, String>,
}

pub struct Shared {
    cfg: Config,
    store: Mutex<Store>,
    fault: Mutex<Fault>,
    http: reqwest::Client,
}

impl Shared {
    fn now_secs() -> i64 {
        cascade_domain::clock::Clock::now(&cascade_domain::clock::SystemClock).0 / 1_000_000
    }

    fn save(&self, s: &Store) {
        if let Some(dir) = &self.cfg.data_dir {
            let tmp = dir.join("store.json.tmp");
            if let Ok(bytes) = serde_json::to_vec(s)
                && std::fs::write(&tmp, bytes).is_ok()
            {
                let _ = std::fs::rename(tmp, dir.join("store.json"));
            }
        }
    }

    /// A copy of the store (tests look at mailboxes).
    pub fn snapshot(&self) -> Store {
        self.store.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running connector.
pub struct Running {
    pub addr: SocketAddr,
    /// Hex SHA-256 of the certificate DER: what Cascade pins.
    pub pin: String,
    pub shared: Arc<Shared>,
    handle: axum_server::Handle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }
    /// Stop at once (in-flight requests are dropped: "connector gone").
    pub async fn stop(self) {
        self.handle.shutdown();
        let _ = self.join.await;
    }
}

/// The self-description.
pub fn describe(service: &str) -> SelfDescription {
    SelfDescription {
        protocol: proto::PROTOCOL_VERSION,
        service: service.into(),
        name: "Demo Mail".into(),
        resource_types: vec![
            OfferedResourceType {
                code: "mailbox".into(),
                name: "Mailbox".into(),
                unit: "mailbox".into(),
                measurable: true,
                usage: Some(UsageKind::Level),
                default_limit: 5,
            },
            OfferedResourceType {
                code: "storage_mb".into(),
                name: "Mail storage".into(),
                unit: "MB".into(),
                measurable: true,
                usage: Some(UsageKind::Level),
                default_limit: 1024,
            },
            OfferedResourceType {
                code: "messages_sent".into(),
                name: "Messages sent".into(),
                unit: "message".into(),
                measurable: true,
                usage: Some(UsageKind::Counter),
                default_limit: 0,
            },
        ],
        settings: vec![
            SettingSchema {
                key: "domain".into(),
                kind: "string".into(),
                required: false,
                default: Some(serde_json::json!("example.test")),
                description: Some("Mail domain of the customer's mailboxes".into()),
            },
            SettingSchema {
                key: "quota_mb".into(),
                kind: "integer".into(),
                required: false,
                default: Some(serde_json::json!(100)),
                description: Some("Storage per mailbox".into()),
            },
        ],
    }
}

fn load_cert(dir: Option<&PathBuf>) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    if let Some(d) = dir {
        let (c, k) = (d.join("cert.der"), d.join("key.der"));
        if c.exists() && k.exists() {
            return Ok((std::fs::read(c)?, std::fs::read(k)?));
        }
    }
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let (cert, key) = (ck.cert.der().to_vec(), ck.key_pair.serialize_der());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
        std::fs::write(d.join("cert.der"), &cert)?;
        std::fs::write(d.join("key.der"), &key)?;
    }
    Ok((cert, key))
}

/// Start serving HTTPS; returns once the socket is bound.
pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    let (cert, key) = load_cert(cfg.data_dir.as_ref())?;
    let pin = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&cert));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut store = Store::default();
    if let Some(d) = &cfg.data_dir
        && let Ok(bytes) = std::fs::read(d.join("store.json"))
    {
        store = serde_json::from_slice(&bytes)?;
    }
    let today = Shared::now_secs() / 86_400;
    for i in 0..cfg.seed_resources {
        store.resources.insert(
            format!("sub-{}", cfg.seed_first + i as i64),
            MailResource {
                customer: proto::Customer {
                    id: i as i64,
                    name: format!("Seed {i}"),
                },
                limits: BTreeMap::from([(cfg.mailbox_code.clone(), 1)]),
                settings: serde_json::json!({}),
                state: ResourceState::Active,
                mailboxes: vec![format!("user0@seed{i}.test")],
                created_day: today,
            },
        );
    }
    let shared = Arc::new(Shared {
        fault: Mutex::new(cfg.fault),
        store: Mutex::new(store),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        cfg,
    });
    let app = router(shared.clone());
    let listener = std::net::TcpListener::bind(shared.cfg.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
    )
    .handle(handle.clone());
    let join = tokio::spawn(server.serve(app.into_make_service()));
    Ok(Running {
        addr,
        pin,
        shared,
        handle,
        join,
    })
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/describe",
            get(|State(s): State<Arc<Shared>>| async move { axum::Json(describe(&s.cfg.service)) }),
        )
        .route("/resources", post(provision))
        .route(
            "/resources/{id}",
            get(read).put(configure).delete(unprovision),
        )
        .route("/transactions/{tx}", get(transaction))
        .route("/usage", get(usage))
        .route("/callback-check", post(callback_check))
        .layer(middleware::from_fn_with_state(shared.clone(), signatures))
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(proto::ErrorBody {
            error: code.into(),
            message: message.into(),
        }),
    )
        .into_response()
}

/// The transaction id of a verified request, for handlers.
#[derive(Clone)]
struct TxId(String);

/// The instance id a verified request came for (callbacks are signed as that instance).
#[derive(Clone)]
struct InstanceId(String);

/// Verify the request's signature, run the handler, sign the answer.
async fn signatures(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let fault = s.fault();
    if fault == Fault::Hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let (mut parts, body) = req.into_parts();
    let header =
        |h: &HeaderMap, n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let tx = header(&parts.headers, H_TRANSACTION).unwrap_or_default();
    let resp = 'r: {
        let Ok(bytes) = to_bytes(body, 16 * 1024 * 1024).await else {
            break 'r error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "body too large");
        };
        let (Some(ts), Some(sig), Some(inst)) = (
            header(&parts.headers, H_TIMESTAMP),
            header(&parts.headers, H_SIGNATURE),
            header(&parts.headers, H_INSTANCE),
        ) else {
            break 'r error(
                StatusCode::UNAUTHORIZED,
                "unsigned",
                "missing signature headers",
            );
        };
        if tx.is_empty() {
            break 'r error(
                StatusCode::BAD_REQUEST,
                "no_transaction",
                "missing transaction id",
            );
        }
        if let Some(want) = s.cfg.instance_id
            && inst != want.to_string()
        {
            break 'r error(
                StatusCode::FORBIDDEN,
                "wrong_instance",
                "unknown instance id",
            );
        }
        let Ok(ts) = ts.parse::<i64>() else {
            break 'r error(
                StatusCode::UNAUTHORIZED,
                "bad_timestamp",
                "malformed timestamp",
            );
        };
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        if let Err(e) = proto::verify(
            s.cfg.secret.as_bytes(),
            ts,
            &tx,
            Signed::Request {
                method: parts.method.as_str(),
                path: &path,
            },
            &bytes,
            &sig,
            Shared::now_secs(),
            s.cfg.skew_secs,
        ) {
            break 'r error(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string());
        }
        parts.extensions.insert(TxId(tx.clone()));
        parts.extensions.insert(InstanceId(inst));
        match fault {
            Fault::Error500 => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the mail service is broken",
            ),
            Fault::Garbage => (StatusCode::OK, "<html>surprise</html>").into_response(),
            _ => {
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
        }
    };
    let (mut parts, body) = resp.into_parts();
    let bytes = to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
    let now = Shared::now_secs();
    let key = if fault == Fault::BadSignature {
        b"not-the-secret".as_slice()
    } else {
        s.cfg.secret.as_bytes()
    };
    let sig = proto::sign(
        key,
        now,
        &tx,
        Signed::Response {
            status: parts.status.as_u16(),
        },
        &bytes,
    );
    if let Ok(v) = HeaderValue::from_str(&now.to_string()) {
        parts.headers.insert(H_TIMESTAMP, v);
    }
    if let Ok(v) = HeaderValue::from_str(&sig) {
        parts.headers.insert(H_SIGNATURE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&tx) {
        parts.headers.insert(H_TRANSACTION, v);
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn op_response(t: &Transaction, now: i64) -> Response {
    if now < t.ready_at {
        let mut r = (
            StatusCode::ACCEPTED,
            axum::Json(OperationResult {
                status: OperationStatus::Pending,
                message: None,
                resource: None,
            }),
        )
            .into_response();
        r.headers_mut()
            .insert("retry-after", HeaderValue::from((t.ready_at - now).max(1)));
        r
    } else {
        (StatusCode::OK, axum::Json(t.result.clone())).into_response()
    }
}

fn mailboxes_for(limit: i64, domain: &str) -> Vec<String> {
    (0..limit.clamp(0, 10_000))
        .map(|i| format!("user{i}@{domain}"))
        .collect()
}

fn parse_request(bytes: &[u8]) -> Result<ResourceRequest, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            e.to_string(),
        ))
    })
}

fn domain_of(r: &ResourceRequest) -> String {
    r.settings
        .get("domain")
        .and_then(|v| v.as_str())
        .unwrap_or("example.test")
        .to_string()
}

async fn provision(
    State(s): State<Arc<Shared>>,
    axum::Extension(TxId(tx)): axum::Extension<TxId>,
    body: bytes::Bytes,
) -> Response {
    let now = Shared::now_secs();
    let mut st = s.store.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = st.transactions.get(&tx) {
        return op_response(t, now);
    }
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let domain = domain_of(&req);
    if domain.is_empty() || !domain.contains('.') {
        let t = Transaction {
            ready_at: now,
            result: OperationResult {
                status: OperationStatus::Failed,
                message: Some(format!("`{domain}` is not a mail domain")),
                resource: None,
            },
        };
        st.transactions.insert(tx, t.clone());
        s.save(&st);
        return op_response(&t, now);
    }
    let mailboxes = mailboxes_for(
        req.limits.get(&s.cfg.mailbox_code).copied().unwrap_or(0),
        &domain,
    );
    let existing = st.resources.get(&req.resource_id).cloned();
    let res = MailResource {
        customer: req.customer.clone(),
        limits: req.limits.clone(),
        settings: req.settings.clone(),
        state: req.state,
        mailboxes,
        created_day: existing.map(|e| e.created_day).unwrap_or(now / 86_400),
    };
    let view = serde_json::to_value(&res).unwrap_or_default();
    st.resources.insert(req.resource_id.clone(), res);
    let t = Transaction {
        ready_at: now + s.cfg.async_delay.as_secs() as i64,
        result: OperationResult {
            status: OperationStatus::Done,
            message: None,
            resource: Some(view),
        },
    };
    st.transactions.insert(tx, t.clone());
    s.save(&st);
    let mut r = op_response(&t, now);
    if r.status() == StatusCode::OK {
        *r.status_mut() = StatusCode::CREATED;
    }
    r
}

async fn read(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let st = s.store.lock().unwrap_or_else(|e| e.into_inner());
    match st.resources.get(&id) {
        Some(r) => axum::Json(r).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no resource {id}"),
        ),
    }
}

async fn configure(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    axum::Extension(TxId(tx)): axum::Extension<TxId>,
    body: bytes::Bytes,
) -> Response {
    let now = Shared::now_secs();
    let mut st = s.store.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = st.transactions.get(&tx) {
        return op_response(t, now);
    }
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let domain = domain_of(&req);
    let Some(res) = st.resources.get_mut(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no resource {id}"),
        );
    };
    res.limits = req.limits.clone();
    res.settings = req.settings.clone();
    res.state = req.state;
    res.mailboxes = mailboxes_for(
        req.limits.get(&s.cfg.mailbox_code).copied().unwrap_or(0),
        &domain,
    );
    let view = serde_json::to_value(&*res).unwrap_or_default();
    let t = Transaction {
        ready_at: now,
        result: OperationResult {
            status: OperationStatus::Done,
            message: None,
            resource: Some(view),
        },
    };
    st.transactions.insert(tx, t.clone());
    s.save(&st);
    op_response(&t, now)
}

async fn unprovision(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut st = s.store.lock().unwrap_or_else(|e| e.into_inner());
    let existed = st.resources.remove(&id).is_some();
    s.save(&st);
    let message = if existed { "removed" } else { "already absent" };
    axum::Json(OperationResult {
        status: OperationStatus::Done,
        message: Some(message.into()),
        resource: None,
    })
    .into_response()
}

async fn transaction(State(s): State<Arc<Shared>>, Path(tx): Path<String>) -> Response {
    let st = s.store.lock().unwrap_or_else(|e| e.into_inner());
    match st.transactions.get(&tx) {
        Some(t) => op_response(t, Shared::now_secs()),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no transaction {tx}"),
        ),
    }
}

#[derive(Deserialize)]
struct UsageQuery {
    date: String,
}

fn unix_day(date: &str) -> Option<i64> {
    let mut it = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (it.next()??, it.next()??, it.next()??);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

async fn usage(State(s): State<Arc<Shared>>, Query(q): Query<UsageQuery>) -> Response {
    let Some(day) = unix_day(&q.date) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "date must be YYYY-MM-DD",
        );
    };
    let st = s.store.lock().unwrap_or_else(|e| e.into_inner());
    let mut readings = Vec::with_capacity(st.resources.len() * 3);
    for (id, r) in &st.resources {
        let boxes = r.mailboxes.len() as i64;
        let quota = r
            .settings
            .get("quota_mb")
            .and_then(|v| v.as_i64())
            .unwrap_or(100);
        readings.push(UsageReading {
            resource_id: id.clone(),
            resource_type: s.cfg.mailbox_code.clone(),
            kind: UsageKind::Level,
            value: boxes,
        });
        readings.push(UsageReading {
            resource_id: id.clone(),
            resource_type: "storage_mb".into(),
            kind: UsageKind::Level,
            value: boxes * quota / 2,
        });
        // A counter: 7 messages per mailbox per day since creation.
        let days = (day - r.created_day + 1).max(0);
        readings.push(UsageReading {
            resource_id: id.clone(),
            resource_type: "messages_sent".into(),
            kind: UsageKind::Counter,
            value: days * 7 * boxes,
        });
    }
    axum::Json(UsageReport {
        date: q.date,
        readings,
    })
    .into_response()
}

#[derive(Deserialize)]
struct CallbackCheck {
    callback_url: String,
    nonce: String,
}

/// Call Cascade back with a signed request: proves the connector holds the instance's
/// secret and can reach Cascade.
async fn callback_check(
    State(s): State<Arc<Shared>>,
    axum::Extension(InstanceId(inst)): axum::Extension<InstanceId>,
    body: bytes::Bytes,
) -> Response {
    let Ok(c) = serde_json::from_slice::<CallbackCheck>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "expected {callback_url, nonce}",
        );
    };
    let Ok(url) = reqwest::Url::parse(&c.callback_url) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "callback_url is not a URL",
        );
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let payload = serde_json::to_vec(&serde_json::json!({"nonce": c.nonce})).unwrap_or_default();
    let now = Shared::now_secs();
    let sig = proto::sign(
        s.cfg.secret.as_bytes(),
        now,
        &c.nonce,
        Signed::Request {
            method: "POST",
            path: &path,
        },
        &payload,
    );
    let res = s
        .http
        .post(url)
        .header(H_INSTANCE, inst)
        .header(H_TRANSACTION, &c.nonce)
        .header(H_TIMESTAMP, now.to_string())
        .header(H_SIGNATURE, sig)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await;
    let (status, message) = match res {
        Ok(r) if r.status().is_success() => (
            OperationStatus::Done,
            format!("Cascade answered {}", r.status()),
        ),
        Ok(r) => (
            OperationStatus::Failed,
            format!("Cascade answered {}", r.status()),
        ),
        Err(e) => (
            OperationStatus::Failed,
            format!("could not reach Cascade: {e}"),
        ),
    };
    let mut st = s.store.lock().unwrap_or_else(|e| e.into_inner());
    st.callbacks.insert(c.nonce, message.clone());
    axum::Json(OperationResult {
        status,
        message: Some(message),
        resource: None,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(unix_day("1970-01-01"), Some(0));
        assert_eq!(unix_day("2000-03-01"), Some(11_017));
        assert_eq!(unix_day("nope"), None);
    }
}
