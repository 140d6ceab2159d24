//! A black-box test harness for the HTTP API: the real router, driven in-process with
//! `tower::ServiceExt::oneshot`, on a per-test database (SQLite or PostgreSQL) and a
//! manual clock.
//!
//! Requests carry `ConnectInfo<SocketAddr>` like a real server started with
//! `into_make_service_with_connect_info`, so the per-address login throttle sees a
//! client address; tests choose it per request (`Req::client_addr`) or per app
//! (`TestApp::set_addr`).
//!
//! Fixtures go through the public API wherever one exists (accounts, users, roles,
//! login, tokens). The store is used only where the API has no door: the provider (made
//! by `cascade admin create-provider`), tasks in chosen states, and API tokens for the
//! fixture admins, which are minted directly to keep argon2 work per test small (one
//! login per channel goes through `POST /session` + `POST /me/tokens`).

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::clock::{ManualClock, Timestamp};
use cascade_domain::ids::{AccountId, TaskId, UserId};
use cascade_domain::privilege::BuiltinRole;
use cascade_domain::user::NewUserInput;
use cascade_http::state::{AppState, HttpConfig};
use cascade_store::Db;
use cascade_store::accounts::Accounts;
use cascade_store::auth::Auth;
use cascade_store::events::Event;
use cascade_store::tasks::{NewTask, Tasks};
use cascade_store::users::Users;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tower::ServiceExt;

/// Start of every test's clock: 2023-11-14T22:13:20Z.
pub const T0: Timestamp = Timestamp(1_700_000_000_000_000);
/// The password of every fixture user that has one.
pub const PASSWORD: &str = "correct horse battery staple";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One argon2 hash of [`PASSWORD`], shared by every fixture user created through the store.
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| cascade_http::password::hash_password(PASSWORD))
}

/// How a request authenticates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cred {
    #[default]
    Anon,
    /// `Authorization: Bearer <secret>`.
    Bearer(String),
    /// The `cascade_session` cookie.
    Session(String),
}

pub const ANON: Cred = Cred::Anon;

impl From<&Cred> for Cred {
    fn from(c: &Cred) -> Self {
        c.clone()
    }
}
impl From<&str> for Cred {
    fn from(s: &str) -> Self {
        Cred::Bearer(s.to_string())
    }
}
impl From<&String> for Cred {
    fn from(s: &String) -> Self {
        Cred::Bearer(s.clone())
    }
}

pub struct TestApp {
    pub db: Db,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    router: Router,
    addr: Mutex<SocketAddr>,
    seq: AtomicU64,
}

impl TestApp {
    pub fn new(db: Db) -> TestApp {
        Self::with_config(db, HttpConfig::default())
    }

    pub fn with_config(db: Db, config: HttpConfig) -> TestApp {
        let clock = Arc::new(ManualClock::new(T0));
        let state = AppState::new(db.clone(), clock.clone(), config, None);
        let router = cascade_http::router(state.clone());
        TestApp {
            db,
            clock,
            state,
            router,
            addr: Mutex::new(addr("192.0.2.1")),
            seq: AtomicU64::new(0),
        }
    }

    /// The client address used by requests that do not choose one.
    pub fn set_addr(&self, a: SocketAddr) {
        *self.addr.lock().unwrap() = a;
    }

    pub fn advance_secs(&self, secs: i64) {
        self.clock.advance_secs(secs);
    }

    /// A number unique within this app, for logins and names.
    pub fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn req(&self, method: Method, path: impl Into<String>) -> Req<'_> {
        Req {
            app: self,
            method,
            path: path.into(),
            cred: Cred::Anon,
            body: None,
            headers: vec![],
            addr: None,
        }
    }

    pub async fn get(&self, path: impl Into<String>, cred: impl Into<Cred>) -> Resp {
        self.req(Method::GET, path).cred(cred).send().await
    }

    pub async fn post(&self, path: impl Into<String>, cred: impl Into<Cred>, body: Value) -> Resp {
        self.req(Method::POST, path)
            .cred(cred)
            .json(&body)
            .send()
            .await
    }

    /// POST without a body (`/disable`, `/retry`, …).
    pub async fn post_empty(&self, path: impl Into<String>, cred: impl Into<Cred>) -> Resp {
        self.req(Method::POST, path).cred(cred).send().await
    }

    pub async fn patch(&self, path: impl Into<String>, cred: impl Into<Cred>, body: Value) -> Resp {
        self.req(Method::PATCH, path)
            .cred(cred)
            .json(&body)
            .send()
            .await
    }

    pub async fn delete(&self, path: impl Into<String>, cred: impl Into<Cred>) -> Resp {
        self.req(Method::DELETE, path).cred(cred).send().await
    }

    // ---- sessions and tokens through the API ----

    pub async fn login(&self, login: &str, password: &str) -> Resp {
        self.post(
            "/api/v1/session",
            ANON,
            json!({"login": login, "password": password}),
        )
        .await
    }

    pub async fn login_from(&self, from: SocketAddr, login: &str, password: &str) -> Resp {
        self.req(Method::POST, "/api/v1/session")
            .client_addr(from)
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
    }

    /// Log in (must succeed) and return the session.
    pub async fn session(&self, login: &str, password: &str) -> Cred {
        let r = self.login(login, password).await.expect(StatusCode::OK);
        Cred::Session(r.session_cookie().expect("login sets the session cookie"))
    }

    /// Create a personal API token through `POST /me/tokens`: (token id, secret).
    pub async fn api_token(&self, cred: impl Into<Cred>, name: &str) -> (i64, String) {
        let r = self
            .post("/api/v1/me/tokens", cred, json!({"name": name}))
            .await
            .expect(StatusCode::CREATED);
        (
            r.id(),
            r.json["secret"].as_str().expect("secret").to_string(),
        )
    }

    // ---- store-level fixtures (no API door) ----

    /// The provider account (bootstrapped by the CLI in production).
    pub async fn store_provider(&self) -> i64 {
        let new = NewAccountInput {
            kind: AccountKind::Provider,
            name: "Provider".into(),
            contact: ContactInput::default(),
            country: "DE".into(),
            language: "en".into(),
            currency: Some("EUR".into()),
            customer_class_id: None,
        }
        .validate(None)
        .unwrap();
        let mut tx = self.db.begin().await.unwrap();
        let a = Accounts::create(&mut tx, &new, T0).await.unwrap();
        tx.commit().await.unwrap();
        a.id.0
    }

    /// A user created in the store, with [`PASSWORD`] when `with_password`.
    pub async fn store_user(
        &self,
        account: i64,
        login: &str,
        with_password: bool,
        roles: &[i64],
    ) -> i64 {
        let input = NewUserInput {
            login: login.into(),
            display_name: format!("User {login}"),
            email: format!("{login}@example.com"),
            language: None,
            password: None,
        };
        let hash = with_password.then(password_hash);
        let mut tx = self.db.begin().await.unwrap();
        let u = Users::create(
            &mut tx,
            AccountId(account),
            &input.validate().unwrap(),
            hash,
            self.clock_now(),
        )
        .await
        .unwrap();
        for r in roles {
            Users::attach_role(&mut tx, u.id, cascade_domain::ids::RoleId(*r))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        u.id.0
    }

    /// An API token minted in the store (the secret is as good as one from the API).
    pub async fn mint_token(&self, user: i64) -> String {
        let secret = cascade_http::auth::new_secret("cat_");
        let mut tx = self.db.begin().await.unwrap();
        Auth::create_token(
            &mut tx,
            UserId(user),
            "fixture",
            &secret,
            self.clock_now(),
            None,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        secret
    }

    pub async fn builtin_role(&self, b: BuiltinRole) -> i64 {
        self.db.roles().builtin(b).await.unwrap().id.0
    }

    /// A pending task of `account` (what the worker's dispatcher would create).
    pub async fn enqueue_task(&self, account: Option<i64>, kind: &str) -> i64 {
        let mut tx = self.db.begin().await.unwrap();
        let id = Tasks::enqueue(
            &mut tx,
            NewTask::new(kind, account.map(AccountId), json!({"fixture": true})),
            self.clock_now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        id.0
    }

    /// A task of `account` that was cancelled (so it can be retried).
    pub async fn cancelled_task(&self, account: Option<i64>, kind: &str) -> i64 {
        let id = self.enqueue_task(account, kind).await;
        let mut tx = self.db.begin().await.unwrap();
        assert!(
            Tasks::cancel(&mut tx, TaskId(id), self.clock_now())
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        id
    }

    pub fn clock_now(&self) -> Timestamp {
        use cascade_domain::clock::Clock;
        self.clock.now()
    }

    // ---- observations ----

    /// Every event ever written (whatever its state).
    pub async fn event_count(&self) -> i64 {
        let ev = self.db.events();
        let mut n = 0;
        for s in ["pending", "done", "failed", "cancelled"] {
            n += ev.count_by_state(s).await.unwrap();
        }
        n
    }

    /// The events of an account, oldest first.
    pub async fn events_of(&self, account: i64) -> Vec<Event> {
        let mut v = self
            .db
            .events()
            .for_account(AccountId(account), None, 10_000)
            .await
            .unwrap();
        v.reverse();
        v
    }

    pub async fn count_descendants(&self, account: i64) -> i64 {
        self.db
            .accounts()
            .count_descendants(AccountId(account))
            .await
            .unwrap()
    }

    // ---- API fixtures ----

    /// `POST /accounts` (must succeed): the new account's id.
    pub async fn create_account(
        &self,
        cred: impl Into<Cred>,
        vendor: i64,
        kind: &str,
        name: &str,
    ) -> i64 {
        self.post("/api/v1/accounts", cred, account_body(vendor, kind, name))
            .await
            .expect(StatusCode::CREATED)
            .id()
    }

    /// `POST /accounts/{id}/users` without a password (must succeed): the new user's id.
    pub async fn create_user(
        &self,
        cred: impl Into<Cred>,
        account: i64,
        login: &str,
        role_ids: &[i64],
    ) -> i64 {
        self.post(
            format!("/api/v1/accounts/{account}/users"),
            cred,
            user_body(login, role_ids),
        )
        .await
        .expect(StatusCode::CREATED)
        .id()
    }

    /// `POST /accounts/{id}/roles` (must succeed): the new role's id.
    pub async fn create_role(
        &self,
        cred: impl Into<Cred>,
        account: i64,
        name: &str,
        grants: Value,
    ) -> i64 {
        self.post(
            format!("/api/v1/accounts/{account}/roles"),
            cred,
            json!({"name": name, "grants": grants}),
        )
        .await
        .expect(StatusCode::CREATED)
        .id()
    }
}

pub fn addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), 40_000)
}

pub fn account_body(vendor: i64, kind: &str, name: &str) -> Value {
    json!({"vendor_id": vendor, "kind": kind, "name": name, "country": "DE", "language": "en"})
}

pub fn user_body(login: &str, role_ids: &[i64]) -> Value {
    json!({"login": login, "display_name": format!("User {login}"), "email": format!("{login}@example.com"), "role_ids": role_ids})
}

/// Grants in the API's shape from privilege names (`MANAGE_DOMAINS=place_orders` for levels).
pub fn grants(privileges: &[&str]) -> Value {
    Value::Array(
        privileges
            .iter()
            .map(|p| match p.split_once('=') {
                Some((p, level)) => json!({"privilege": p, "level": level}),
                None => json!({"privilege": p}),
            })
            .collect(),
    )
}

/// A request being built.
pub struct Req<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    cred: Cred,
    body: Option<(Vec<u8>, Option<String>)>,
    headers: Vec<(String, String)>,
    addr: Option<SocketAddr>,
}

impl Req<'_> {
    pub fn cred(mut self, c: impl Into<Cred>) -> Self {
        self.cred = c.into();
        self
    }
    pub fn json(mut self, v: &Value) -> Self {
        self.body = Some((
            serde_json::to_vec(v).unwrap(),
            Some("application/json".into()),
        ));
        self
    }
    /// A raw body with the given content type (`None`: no content-type header).
    pub fn raw(mut self, bytes: impl Into<Vec<u8>>, content_type: Option<&str>) -> Self {
        self.body = Some((bytes.into(), content_type.map(str::to_string)));
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn client_addr(mut self, a: SocketAddr) -> Self {
        self.addr = Some(a);
        self
    }

    pub async fn send(self) -> Resp {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(&self.path);
        match &self.cred {
            Cred::Anon => {}
            Cred::Bearer(s) => b = b.header(header::AUTHORIZATION, format!("Bearer {s}")),
            Cred::Session(s) => {
                b = b.header(
                    header::COOKIE,
                    format!("{}={s}", cascade_http::auth::SESSION_COOKIE),
                )
            }
        }
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let body = match self.body {
            Some((bytes, ct)) => {
                if let Some(ct) = ct {
                    b = b.header(header::CONTENT_TYPE, ct);
                }
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).expect("request");
        let from = self.addr.unwrap_or_else(|| *self.app.addr.lock().unwrap());
        req.extensions_mut().insert(ConnectInfo(from));
        let res = self
            .app
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            method: self.method,
            path: self.path,
            status,
            headers,
            text,
            json,
        }
    }
}

/// A response: status, headers and the body (parsed as JSON when it is JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// Assert the status (showing the request and body when it differs).
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(
            self.status, status,
            "{} {} answered {}: {}",
            self.method, self.path, self.status, self.text
        );
        self
    }

    /// Assert a problem document: status, `application/problem+json`, and `code`.
    #[track_caller]
    pub fn expect_problem(self, status: StatusCode, code: &str) -> Self {
        let s = self.expect(status);
        s.assert_problem_shape();
        assert_eq!(
            s.json["code"], code,
            "{} {}: unexpected problem code: {}",
            s.method, s.path, s.text
        );
        s
    }

    /// Assert a 422 whose `errors` name `field` (with `code` when given).
    #[track_caller]
    pub fn expect_field(self, field: &str, code: Option<&str>) -> Self {
        let s = self.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let hit = s.field_errors().into_iter().find(|(f, _)| f == field);
        let Some((_, c)) = hit else {
            panic!(
                "{} {}: no error for field `{field}`: {}",
                s.method, s.path, s.text
            )
        };
        if let Some(code) = code {
            assert_eq!(
                c, code,
                "{} {}: field `{field}`: {}",
                s.method, s.path, s.text
            );
        }
        s
    }

    /// Any problem document is well formed: content type, numeric status equal to the
    /// HTTP status, a non-empty `code` and a `type` derived from it.
    #[track_caller]
    pub fn assert_problem_shape(&self) {
        assert_eq!(
            self.content_type(),
            Some(PROBLEM_JSON),
            "{} {}: not a problem document: {}",
            self.method,
            self.path,
            self.text
        );
        assert_eq!(self.json["status"], self.status.as_u16(), "{}", self.text);
        let code = self.json["code"].as_str().unwrap_or_default();
        assert!(!code.is_empty(), "problem without a code: {}", self.text);
        assert_eq!(
            self.json["type"],
            format!("urn:cascade:problem:{code}"),
            "{}",
            self.text
        );
        assert!(
            self.json["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            self.text
        );
    }

    /// `(field, code)` of each entry of `errors`.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.json["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["field"].as_str().unwrap_or_default().to_string(),
                            e["code"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[track_caller]
    pub fn id(&self) -> i64 {
        self.json["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no id in {}", self.text))
    }

    /// The ids of a page's `items`.
    #[track_caller]
    pub fn item_ids(&self) -> Vec<i64> {
        self.items()
            .iter()
            .map(|i| i["id"].as_i64().expect("item id"))
            .collect()
    }

    #[track_caller]
    pub fn items(&self) -> Vec<Value> {
        self.json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("not a page: {}", self.text))
            .clone()
    }

    /// The session secret set by a `Set-Cookie: cascade_session=…` header.
    pub fn session_cookie(&self) -> Option<String> {
        let prefix = format!("{}=", cascade_http::auth::SESSION_COOKIE);
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                c.strip_prefix(&prefix)
                    .map(|rest| rest.split(';').next().unwrap_or_default().to_string())
            })
            .filter(|s| !s.is_empty())
    }
}

/// One account of the channel with its administrator.
#[derive(Debug, Clone)]
pub struct Party {
    pub tag: &'static str,
    pub account: i64,
    /// The administrator (built-in `account_admin`).
    pub admin: i64,
    pub admin_login: String,
    /// The administrator's API token.
    pub token: String,
}

impl Party {
    pub fn cred(&self) -> Cred {
        Cred::Bearer(self.token.clone())
    }
}

/// The demo-like channel:
///
/// ```text
/// P (provider)
/// ├── A (L1 reseller)
/// │   ├── A2 (L2 reseller)
/// │   │   └── A2C (customer)
/// │   └── AC (customer)
/// ├── B (L1 reseller)
/// │   └── BC (customer)
/// └── PC (customer)
/// ```
///
/// Every account has an administrator with the built-in `account_admin` role and an API
/// token. P's administrator has [`PASSWORD`] and got its token by logging in
/// (`POST /session`) and calling `POST /me/tokens`; the other accounts and their
/// administrators are created through the API by the seller above them.
pub struct Channel {
    pub p: Party,
    pub a: Party,
    pub b: Party,
    pub a2: Party,
    pub pc: Party,
    pub ac: Party,
    pub a2c: Party,
    pub bc: Party,
    pub admin_role: i64,
}

impl Channel {
    pub async fn build(app: &TestApp) -> Channel {
        let admin_role = app.builtin_role(BuiltinRole::AccountAdmin).await;
        let p_account = app.store_provider().await;
        let p_admin = app
            .store_user(p_account, "p-admin", true, &[admin_role])
            .await;
        let session = app.session("p-admin", PASSWORD).await;
        let (_, token) = app.api_token(&session, "fixture").await;
        let p = Party {
            tag: "p",
            account: p_account,
            admin: p_admin,
            admin_login: "p-admin".into(),
            token,
        };

        let a = Self::party(app, &p, "a", "reseller", admin_role).await;
        let b = Self::party(app, &p, "b", "reseller", admin_role).await;
        let pc = Self::party(app, &p, "pc", "customer", admin_role).await;
        let a2 = Self::party(app, &a, "a2", "reseller", admin_role).await;
        let ac = Self::party(app, &a, "ac", "customer", admin_role).await;
        let a2c = Self::party(app, &a2, "a2c", "customer", admin_role).await;
        let bc = Self::party(app, &b, "bc", "customer", admin_role).await;
        Channel {
            p,
            a,
            b,
            a2,
            pc,
            ac,
            a2c,
            bc,
            admin_role,
        }
    }

    /// An account created by `seller`'s admin under `seller`, with an admin created by it.
    async fn party(
        app: &TestApp,
        seller: &Party,
        tag: &'static str,
        kind: &str,
        admin_role: i64,
    ) -> Party {
        let account = app
            .create_account(
                seller.cred(),
                seller.account,
                kind,
                &format!("Account {}", tag.to_uppercase()),
            )
            .await;
        let login = format!("{tag}-admin");
        let admin = app
            .create_user(seller.cred(), account, &login, &[admin_role])
            .await;
        let token = app.mint_token(admin).await;
        Party {
            tag,
            account,
            admin,
            admin_login: login,
            token,
        }
    }

    pub fn all(&self) -> [&Party; 8] {
        [
            &self.p, &self.a, &self.b, &self.a2, &self.pc, &self.ac, &self.a2c, &self.bc,
        ]
    }
}
