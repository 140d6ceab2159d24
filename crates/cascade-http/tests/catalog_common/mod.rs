//! A small black-box harness for the catalog API tests: the real router driven
//! in-process with `oneshot`, a manual clock, and a channel of accounts whose
//! administrators hold store-minted API tokens (no argon2 work per test).

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::clock::{ManualClock, Timestamp};
use cascade_domain::ids::{AccountId, RoleId, UserId};
use cascade_domain::privilege::BuiltinRole;
use cascade_domain::user::NewUserInput;
use cascade_http::state::{AppState, HttpConfig};
use cascade_store::Db;
use cascade_store::accounts::Accounts;
use cascade_store::auth::Auth;
use cascade_store::users::Users;
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

pub const T0: Timestamp = Timestamp(1_700_000_000_000_000);

pub struct App {
    pub db: Db,
    router: Router,
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub json: Value,
    pub what: String,
}

impl Resp {
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "{}: {}", self.what, self.json);
        self
    }

    /// A problem document with this status and code.
    #[track_caller]
    pub fn problem(self, status: StatusCode, code: &str) -> Self {
        let r = self.expect(status);
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/problem+json"),
            "{}",
            r.what
        );
        assert_eq!(r.json["code"], code, "{}: {}", r.what, r.json);
        r
    }

    /// A 422 naming `field` with `code`.
    #[track_caller]
    pub fn field(self, field: &str, code: &str) -> Self {
        let r = self.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let errors = r.json["errors"].as_array().cloned().unwrap_or_default();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["code"] == code),
            "{}: no error ({field}, {code}) in {}",
            r.what,
            r.json
        );
        r
    }

    #[track_caller]
    pub fn id(&self) -> i64 {
        self.json["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: no id in {}", self.what, self.json))
    }
}

impl App {
    pub fn new(db: Db) -> App {
        let clock = Arc::new(ManualClock::new(T0));
        let state = AppState::new(db.clone(), clock, HttpConfig::default(), None);
        App {
            db,
            router: cascade_http::router(state),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(v).unwrap())
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40_000))));
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            content_type,
            json,
            what: format!("{method} {path}"),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, token, None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(&body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, token, Some(&body)).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, token, Some(&body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, token, None).await
    }

    /// Every event written, whatever its state.
    pub async fn event_count(&self) -> i64 {
        let mut n = 0;
        for s in ["pending", "done", "failed", "cancelled"] {
            n += self.db.events().count_by_state(s).await.unwrap();
        }
        n
    }

    /// Event kinds of an account, oldest first.
    pub async fn event_kinds(&self, account: i64) -> Vec<String> {
        let mut v: Vec<String> = self
            .db
            .events()
            .for_account(AccountId(account), None, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        v.reverse();
        v
    }

    pub async fn account(&self, vendor: Option<i64>, kind: AccountKind, name: &str) -> i64 {
        let facts = match vendor {
            Some(v) => Some(self.db.accounts().get(AccountId(v)).await.unwrap().facts()),
            None => None,
        };
        let new = NewAccountInput {
            kind,
            name: name.into(),
            contact: ContactInput::default(),
            country: "DE".into(),
            language: "en".into(),
            currency: vendor.is_none().then(|| "EUR".to_string()),
            customer_class_id: None,
        }
        .validate(facts.as_ref())
        .unwrap();
        let mut tx = self.db.begin().await.unwrap();
        let a = Accounts::create(&mut tx, &new, T0).await.unwrap();
        tx.commit().await.unwrap();
        a.id.0
    }

    /// A user of `account` with a built-in role and an API token: the token.
    pub async fn user(&self, account: i64, login: &str, role: BuiltinRole) -> String {
        let role = self.db.roles().builtin(role).await.unwrap().id;
        let new = NewUserInput {
            login: login.into(),
            display_name: login.into(),
            email: format!("{login}@example.com"),
            language: None,
            password: None,
        }
        .validate()
        .unwrap();
        let secret = cascade_http::auth::new_secret("cat_");
        let mut tx = self.db.begin().await.unwrap();
        let u = Users::create(&mut tx, AccountId(account), &new, None, T0)
            .await
            .unwrap();
        Users::attach_role(&mut tx, u.id, RoleId(role.0))
            .await
            .unwrap();
        Auth::create_token(&mut tx, UserId(u.id.0), "fixture", &secret, T0, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        secret
    }

    /// A plan row with the given JSON content, written directly (the plans API has its
    /// own suite; here only the references in the content matter).
    pub async fn raw_plan(&self, owner: i64, template: i64, content: &str) -> i64 {
        let mut tx = self.db.begin().await.unwrap();
        let (id,): (i64,) = cascade_store::on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO plans (owner_account_id, template_id, root_plan_id, parent_plan_id, currency, content, published, visible, withdrawn,
                upstream_changes, listing_priority, version, created_at, updated_at)
             VALUES ($1, $2, NULL, NULL, 'EUR', $3, TRUE, TRUE, FALSE, FALSE, 0, 1, $4, $4) RETURNING id")
            .bind(owner).bind(template).bind(content).bind(T0.0).fetch_one(c).await)
        .unwrap();
        tx.commit().await.unwrap();
        // Written past the store's functions: tell the panels' catalog cache.
        cascade_store::plans::catalog_changed();
        id
    }
}

/// One account of the channel and its administrator's token.
#[derive(Debug, Clone)]
pub struct Party {
    pub id: i64,
    pub token: String,
}

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
/// Each has an `account_admin`; `a_billing` is a billing-staff user of A (no CATALOG_MANAGE).
pub struct Channel {
    pub p: Party,
    pub a: Party,
    pub a2: Party,
    pub a2c: Party,
    pub ac: Party,
    pub b: Party,
    pub bc: Party,
    pub pc: Party,
    pub a_billing: String,
}

impl Channel {
    pub async fn build(app: &App) -> Channel {
        async fn party(app: &App, vendor: Option<i64>, kind: AccountKind, tag: &str) -> Party {
            let id = app.account(vendor, kind, tag).await;
            let token = app
                .user(id, &format!("{tag}-admin"), BuiltinRole::AccountAdmin)
                .await;
            Party { id, token }
        }
        let p = party(app, None, AccountKind::Provider, "p").await;
        let a = party(app, Some(p.id), AccountKind::Reseller, "a").await;
        let a2 = party(app, Some(a.id), AccountKind::Reseller, "a2").await;
        let a2c = party(app, Some(a2.id), AccountKind::Customer, "a2c").await;
        let ac = party(app, Some(a.id), AccountKind::Customer, "ac").await;
        let b = party(app, Some(p.id), AccountKind::Reseller, "b").await;
        let bc = party(app, Some(b.id), AccountKind::Customer, "bc").await;
        let pc = party(app, Some(p.id), AccountKind::Customer, "pc").await;
        let a_billing = app.user(a.id, "a-billing", BuiltinRole::BillingStaff).await;
        Channel {
            p,
            a,
            a2,
            a2c,
            ac,
            b,
            bc,
            pc,
            a_billing,
        }
    }
}
