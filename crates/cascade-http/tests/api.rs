//! The API suite: black-box tests of the real router, each storage-touching test on
//! SQLite and on PostgreSQL (`both_backends!`), time moved with a manual clock.

mod common;

use axum::http::{Method, StatusCode};
use cascade_domain::privilege::BuiltinRole;
use cascade_http::state::HttpConfig;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const OK: StatusCode = StatusCode::OK;
const CREATED: StatusCode = StatusCode::CREATED;
const NO_CONTENT: StatusCode = StatusCode::NO_CONTENT;
const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;
const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
const NOT_FOUND: StatusCode = StatusCode::NOT_FOUND;
const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;

// ---------------------------------------------------------------------------------------
// Tenant isolation, table-driven over every endpoint
// ---------------------------------------------------------------------------------------

/// What the isolation table acts on in one account: the account, its admin, a second
/// user ("staff", holding the custom role), a custom role, and two tasks (one pending,
/// one cancelled so that it can be retried).
#[derive(Debug)]
struct Target {
    tag: &'static str,
    account: i64,
    admin: i64,
    staff: i64,
    role: i64,
    task_pending: i64,
    task_cancelled: i64,
}

async fn target(app: &TestApp, party: &Party) -> Target {
    let role = app
        .create_role(
            party.cred(),
            party.account,
            &format!("Viewer {}", party.tag),
            grants(&["ACCOUNTS_VIEW"]),
        )
        .await;
    let staff = app
        .create_user(
            party.cred(),
            party.account,
            &format!("{}-staff", party.tag),
            &[role],
        )
        .await;
    let task_pending = app.enqueue_task(Some(party.account), "test.noop").await;
    let task_cancelled = app.cancelled_task(Some(party.account), "test.noop").await;
    Target {
        tag: party.tag,
        account: party.account,
        admin: party.admin,
        staff,
        role,
        task_pending,
        task_cancelled,
    }
}

/// The actor's side: A (its own account) and A2 (its child).
struct Mine {
    a: Target,
    a2: Target,
    tech_role: i64,
}

/// How a request for a target outside the actor's subtree must be refused.
#[derive(Debug, Clone, Copy)]
enum Denied {
    /// The path names the target: 404, as if it did not exist.
    NotFound,
    /// The body or query names the target: 422 naming that field.
    Field(&'static str),
}

/// Which of the actor's own targets the positive control uses.
#[derive(Debug, Clone, Copy)]
enum Own {
    /// The actor's own account (custom roles are managed by their own account only).
    A,
    /// The actor's child account.
    A2,
}

type Build = fn(&Target, &Mine) -> (Method, String, Option<Value>);

struct Row {
    name: &'static str,
    build: Build,
    denied: Denied,
    allowed: StatusCode,
    own: Own,
}

fn isolation_rows() -> Vec<Row> {
    use Denied::*;
    use Own::*;
    vec![
        Row {
            name: "GET /accounts/{id}",
            build: |t, _| (Method::GET, format!("/api/v1/accounts/{}", t.account), None),
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "PATCH /accounts/{id}",
            build: |t, _| {
                (
                    Method::PATCH,
                    format!("/api/v1/accounts/{}", t.account),
                    Some(json!({"name": format!("Renamed {} by A", t.tag)})),
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "POST /accounts/{id}/status",
            build: |t, _| {
                (
                    Method::POST,
                    format!("/api/v1/accounts/{}/status", t.account),
                    Some(json!({"status": "admin_hold", "reason": "isolation test"})),
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "GET /accounts/{id}/children",
            build: |t, _| {
                (
                    Method::GET,
                    format!("/api/v1/accounts/{}/children", t.account),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "GET /accounts/{id}/descendants",
            build: |t, _| {
                (
                    Method::GET,
                    format!("/api/v1/accounts/{}/descendants", t.account),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "GET /accounts/{id}/vendors",
            build: |t, _| {
                (
                    Method::GET,
                    format!("/api/v1/accounts/{}/vendors", t.account),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "GET /accounts/{id}/users",
            build: |t, _| {
                (
                    Method::GET,
                    format!("/api/v1/accounts/{}/users", t.account),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "POST /accounts/{id}/users",
            build: |t, _| {
                (
                    Method::POST,
                    format!("/api/v1/accounts/{}/users", t.account),
                    Some(user_body(&format!("made-by-a-in-{}", t.tag), &[])),
                )
            },
            denied: NotFound,
            allowed: CREATED,
            own: A2,
        },
        Row {
            name: "GET /accounts/{id}/roles",
            build: |t, _| {
                (
                    Method::GET,
                    format!("/api/v1/accounts/{}/roles", t.account),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "POST /accounts/{id}/roles",
            build: |t, _| {
                (
                    Method::POST,
                    format!("/api/v1/accounts/{}/roles", t.account),
                    Some(
                        json!({"name": format!("Made by A in {}", t.tag), "grants": grants(&["ACCOUNTS_VIEW"])}),
                    ),
                )
            },
            denied: NotFound,
            allowed: CREATED,
            own: A,
        },
        Row {
            name: "GET /users/{id}",
            build: |t, _| (Method::GET, format!("/api/v1/users/{}", t.admin), None),
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "PATCH /users/{id}",
            build: |t, _| {
                (
                    Method::PATCH,
                    format!("/api/v1/users/{}", t.staff),
                    Some(json!({"display_name": "Renamed by A", "email": "renamed@example.com"})),
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "POST /users/{id}/disable",
            build: |t, _| {
                (
                    Method::POST,
                    format!("/api/v1/users/{}/disable", t.staff),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "POST /users/{id}/enable",
            build: |t, _| {
                (
                    Method::POST,
                    format!("/api/v1/users/{}/enable", t.staff),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "POST /users/{id}/roles",
            build: |t, m| {
                (
                    Method::POST,
                    format!("/api/v1/users/{}/roles", t.staff),
                    Some(json!({"role_id": m.tech_role})),
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "DELETE /users/{id}/roles/{role_id}",
            build: |t, _| {
                (
                    Method::DELETE,
                    format!("/api/v1/users/{}/roles/{}", t.staff, t.role),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "GET /roles/{id} (custom)",
            build: |t, _| (Method::GET, format!("/api/v1/roles/{}", t.role), None),
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "PATCH /roles/{id}",
            build: |t, _| {
                (
                    Method::PATCH,
                    format!("/api/v1/roles/{}", t.role),
                    Some(json!({"name": format!("Renamed {} by A", t.tag), "grants": []})),
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A,
        },
        Row {
            name: "GET /tasks/{id}",
            build: |t, _| {
                (
                    Method::GET,
                    format!("/api/v1/tasks/{}", t.task_pending),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "POST /tasks/{id}/retry",
            build: |t, _| {
                (
                    Method::POST,
                    format!("/api/v1/tasks/{}/retry", t.task_cancelled),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "POST /tasks/{id}/cancel",
            build: |t, _| {
                (
                    Method::POST,
                    format!("/api/v1/tasks/{}/cancel", t.task_pending),
                    None,
                )
            },
            denied: NotFound,
            allowed: OK,
            own: A2,
        },
        Row {
            name: "GET /tasks?account_id=",
            build: |t, _| {
                (
                    Method::GET,
                    format!("/api/v1/tasks?account_id={}", t.account),
                    None,
                )
            },
            denied: Field("account_id"),
            allowed: OK,
            own: A2,
        },
        Row {
            name: "POST /accounts (vendor_id)",
            build: |t, _| {
                (
                    Method::POST,
                    "/api/v1/accounts".into(),
                    Some(account_body(
                        t.account,
                        "customer",
                        &format!("Made by A under {}", t.tag),
                    )),
                )
            },
            denied: Field("vendor_id"),
            allowed: CREATED,
            own: A2,
        },
        Row {
            name: "POST /users/{own}/roles (role_id)",
            build: |t, m| {
                (
                    Method::POST,
                    format!("/api/v1/users/{}/roles", m.a2.staff),
                    Some(json!({"role_id": t.role})),
                )
            },
            denied: Field("role_id"),
            allowed: OK,
            own: A,
        },
        Row {
            name: "POST /accounts/{own}/users (role_ids)",
            build: |t, m| {
                (
                    Method::POST,
                    format!("/api/v1/accounts/{}/users", m.a2.account),
                    Some(user_body(&format!("with-role-of-{}", t.tag), &[t.role])),
                )
            },
            denied: Field("role_ids[0]"),
            allowed: CREATED,
            own: A,
        },
    ]
}

async fn send(
    app: &TestApp,
    cred: &Cred,
    (method, path, body): (Method, String, Option<Value>),
) -> Resp {
    let mut r = app.req(method, path).cred(cred);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await
}

/// Everything a target's endpoints could change, as the provider sees it.
async fn snapshot(app: &TestApp, provider: &Party, t: &Target) -> Value {
    let cred = provider.cred();
    let mut out = serde_json::Map::new();
    for path in [
        format!("/api/v1/accounts/{}", t.account),
        format!("/api/v1/accounts/{}/children", t.account),
        format!("/api/v1/accounts/{}/users?limit=200", t.account),
        format!("/api/v1/accounts/{}/roles", t.account),
        format!("/api/v1/roles/{}", t.role),
        format!("/api/v1/tasks?account_id={}&limit=200", t.account),
    ] {
        let r = app.get(&path, &cred).await.expect(OK);
        out.insert(path, r.json);
    }
    out.insert("events".into(), json!(app.event_count().await));
    out.insert(
        "accounts".into(),
        json!(app.count_descendants(provider.account).await),
    );
    Value::Object(out)
}

cascade_testkit::both_backends! {
    async fn tenant_isolation_over_every_endpoint(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let mine = Mine { a: target(&app, &ch.a).await, a2: target(&app, &ch.a2).await, tech_role: app.builtin_role(BuiltinRole::TechnicalStaff).await };
        let foreign = [target(&app, &ch.p).await, target(&app, &ch.b).await, target(&app, &ch.bc).await];
        let actor = ch.a.cred();
        let provider = &ch.p;
        let rows = isolation_rows();

        // A's admin, against its vendor (P), its sibling (B) and B's customer (BC).
        for t in &foreign {
            for row in &rows {
                let before = snapshot(&app, provider, t).await;
                app.advance_secs(60); // any write would move an `updated_at`
                let r = send(&app, &actor, (row.build)(t, &mine)).await;
                let ctx = format!("{} on {}: {} {}", row.name, t.tag, r.status, r.text);
                match row.denied {
                    Denied::NotFound => {
                        assert_eq!(r.status, NOT_FOUND, "{ctx}");
                        r.assert_problem_shape();
                        assert_eq!(r.json["code"], "not_found", "{ctx}");
                    }
                    Denied::Field(f) => {
                        assert_eq!(r.status, UNPROCESSABLE, "{ctx}");
                        r.assert_problem_shape();
                        assert!(r.field_errors().iter().any(|(name, _)| name == f), "{ctx}: expected an error naming `{f}`");
                    }
                }
                let after = snapshot(&app, provider, t).await;
                assert_eq!(before, after, "{} on {} changed something", row.name, t.tag);
            }
        }

        // A foreign account answers exactly like one that does not exist.
        let missing = app.get("/api/v1/accounts/987654", &actor).await.expect(NOT_FOUND);
        for t in &foreign {
            let r = app.get(format!("/api/v1/accounts/{}", t.account), &actor).await.expect(NOT_FOUND);
            assert_eq!(r.json, missing.json);
        }

        // Positive control: the same requests on A's own subtree succeed, so the table
        // above can fail.
        for row in &rows {
            let t = match row.own {
                Own::A => &mine.a,
                Own::A2 => &mine.a2,
            };
            let events = app.event_count().await;
            let r = send(&app, &actor, (row.build)(t, &mine)).await;
            assert_eq!(r.status, row.allowed, "control {} on {}: {}", row.name, t.tag, r.text);
            if row.allowed == CREATED {
                assert!(app.event_count().await > events, "control {} wrote no event", row.name);
            }
        }
    }

    async fn lists_show_only_the_callers_subtree(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let a = ch.a.cred();

        let desc = app.get(format!("/api/v1/accounts/{}/descendants", ch.a.account), &a).await.expect(OK);
        assert_eq!(desc.item_ids().into_iter().collect::<BTreeSet<_>>(), BTreeSet::from([ch.a2.account, ch.ac.account, ch.a2c.account]));
        let children = app.get(format!("/api/v1/accounts/{}/children", ch.a.account), &a).await.expect(OK);
        assert_eq!(children.item_ids(), vec![ch.a2.account, ch.ac.account]);

        // The vendor chain stops at the caller's own account.
        let chain = app.get(format!("/api/v1/accounts/{}/vendors", ch.a2c.account), &a).await.expect(OK);
        let ids: Vec<i64> = chain.json.as_array().unwrap().iter().map(|v| v["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![ch.a2.account, ch.a.account]);
        let own = app.get(format!("/api/v1/accounts/{}/vendors", ch.a.account), &a).await.expect(OK);
        assert_eq!(own.json, json!([]));
        // The provider sees the whole chain.
        let chain = app.get(format!("/api/v1/accounts/{}/vendors", ch.a2c.account), ch.p.cred()).await.expect(OK);
        assert_eq!(chain.json.as_array().unwrap().len(), 3);

        // Roles: built-ins plus the account's own custom roles, never another's.
        let a_role = app.create_role(&a, ch.a.account, "A viewer", grants(&["ACCOUNTS_VIEW"])).await;
        let b_role = app.create_role(ch.b.cred(), ch.b.account, "B viewer", grants(&["ACCOUNTS_VIEW"])).await;
        let roles = app.get(format!("/api/v1/accounts/{}/roles", ch.a.account), &a).await.expect(OK);
        let ids: BTreeSet<i64> = roles.json.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert!(ids.contains(&a_role) && ids.contains(&ch.admin_role), "{}", roles.text);
        assert!(!ids.contains(&b_role), "{}", roles.text);

        // Tasks: one in every account plus a system task.
        let mut by_account = std::collections::BTreeMap::new();
        for p in ch.all() {
            by_account.insert(p.account, app.enqueue_task(Some(p.account), "test.noop").await);
        }
        let system = app.enqueue_task(None, "test.system").await;
        let list = app.get("/api/v1/tasks?limit=200", &a).await.expect(OK);
        let seen: BTreeSet<i64> = list.items().iter().map(|t| t["account_id"].as_i64().expect("A sees no system task")).collect();
        assert_eq!(seen, BTreeSet::from([ch.a.account, ch.a2.account, ch.ac.account, ch.a2c.account]));
        let b_list = app.get("/api/v1/tasks?limit=200", ch.b.cred()).await.expect(OK);
        let seen: BTreeSet<i64> = b_list.item_ids().into_iter().collect();
        assert_eq!(seen, BTreeSet::from([by_account[&ch.b.account], by_account[&ch.bc.account]]));
        // System tasks are the provider's.
        let p_list = app.get("/api/v1/tasks?limit=200", ch.p.cred()).await.expect(OK);
        assert!(p_list.item_ids().contains(&system));
        assert_eq!(p_list.item_ids().len(), 9);
        app.get(format!("/api/v1/tasks/{system}"), &a).await.expect_problem(NOT_FOUND, "not_found");
        app.post_empty(format!("/api/v1/tasks/{system}/cancel"), &a).await.expect_problem(NOT_FOUND, "not_found");
        app.get(format!("/api/v1/tasks/{system}"), ch.p.cred()).await.expect(OK);
    }
}

// ---------------------------------------------------------------------------------------
// Users, roles and privileges
// ---------------------------------------------------------------------------------------

cascade_testkit::both_backends! {
    async fn manage_affiliated_accounts_reaches_users_below_only(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let a = ch.a.cred();
        let affiliates = app.create_role(&a, ch.a.account, "Affiliates", grants(&["MANAGE_AFFILIATED_ACCOUNTS", "ACCOUNTS_VIEW"])).await;
        let viewer = app.create_role(&a, ch.a.account, "Viewer", grants(&["ACCOUNTS_VIEW"])).await;
        let m = app.create_user(&a, ch.a.account, "a-affiliates", &[affiliates]).await;
        let mt = Cred::Bearer(app.mint_token(m).await);

        // Child (A2, AC) and sub-child (A2C) accounts: create users, change details,
        // disable and enable, attach and detach roles.
        for (i, p) in [&ch.a2, &ch.ac, &ch.a2c].into_iter().enumerate() {
            app.get(format!("/api/v1/accounts/{}/users", p.account), &mt).await.expect(OK);
            let u = app.create_user(&mt, p.account, &format!("by-m-{i}"), &[viewer]).await;
            let r = app.patch(format!("/api/v1/users/{}", p.admin), &mt, json!({"display_name": "Changed by M"})).await.expect(OK);
            assert_eq!(r.json["display_name"], "Changed by M");
            let r = app.post_empty(format!("/api/v1/users/{u}/disable"), &mt).await.expect(OK);
            assert_eq!(r.json["disabled"], true);
            let r = app.post_empty(format!("/api/v1/users/{u}/enable"), &mt).await.expect(OK);
            assert_eq!(r.json["disabled"], false);
            let r = app.delete(format!("/api/v1/users/{u}/roles/{viewer}"), &mt).await.expect(OK);
            assert_eq!(r.json["roles"], json!([]));
            let r = app.post(format!("/api/v1/users/{u}/roles"), &mt, json!({"role_id": viewer})).await.expect(OK);
            assert_eq!(r.json["roles"][0]["id"], viewer);
        }

        // Not the users of its own account, and not itself.
        let a_admin_before = app.get(format!("/api/v1/users/{}", ch.a.admin), ch.p.cred()).await.expect(OK).json;
        let m_before = app.get(format!("/api/v1/users/{m}"), ch.p.cred()).await.expect(OK).json;
        let a_users_before = app.get(format!("/api/v1/accounts/{}/users", ch.a.account), ch.p.cred()).await.expect(OK).json;
        let events = app.event_count().await;
        app.get(format!("/api/v1/accounts/{}/users", ch.a.account), &mt).await.expect_problem(FORBIDDEN, "forbidden");
        app.post(format!("/api/v1/accounts/{}/users", ch.a.account), &mt, user_body("m-in-own", &[])).await.expect_problem(FORBIDDEN, "forbidden");
        app.patch(format!("/api/v1/users/{}", ch.a.admin), &mt, json!({"display_name": "x"})).await.expect_problem(FORBIDDEN, "forbidden");
        app.post_empty(format!("/api/v1/users/{}/disable", ch.a.admin), &mt).await.expect_problem(FORBIDDEN, "forbidden");
        app.post(format!("/api/v1/users/{}/roles", ch.a.admin), &mt, json!({"role_id": viewer})).await.expect_problem(FORBIDDEN, "forbidden");
        app.delete(format!("/api/v1/users/{}/roles/{}", ch.a.admin, ch.admin_role), &mt).await.expect_problem(FORBIDDEN, "forbidden");
        app.post_empty(format!("/api/v1/users/{m}/disable"), &mt).await.expect_problem(FORBIDDEN, "forbidden");
        app.post(format!("/api/v1/users/{m}/roles"), &mt, json!({"role_id": viewer})).await.expect_problem(FORBIDDEN, "forbidden");
        app.delete(format!("/api/v1/users/{m}/roles/{affiliates}"), &mt).await.expect_problem(FORBIDDEN, "forbidden");
        // Nor anything outside its subtree.
        app.post(format!("/api/v1/accounts/{}/users", ch.b.account), &mt, user_body("m-in-b", &[])).await.expect_problem(NOT_FOUND, "not_found");
        app.patch(format!("/api/v1/users/{}", ch.bc.admin), &mt, json!({"display_name": "x"})).await.expect_problem(NOT_FOUND, "not_found");
        app.patch(format!("/api/v1/users/{}", ch.p.admin), &mt, json!({"display_name": "x"})).await.expect_problem(NOT_FOUND, "not_found");

        assert_eq!(app.event_count().await, events);
        assert_eq!(app.get(format!("/api/v1/users/{}", ch.a.admin), ch.p.cred()).await.json, a_admin_before);
        assert_eq!(app.get(format!("/api/v1/users/{m}"), ch.p.cred()).await.json, m_before);
        assert_eq!(app.get(format!("/api/v1/accounts/{}/users", ch.a.account), ch.p.cred()).await.json, a_users_before);

        // Its own details, like anyone's, it may change.
        let r = app.patch(format!("/api/v1/users/{m}"), &mt, json!({"display_name": "M herself"})).await.expect(OK);
        assert_eq!(r.json["display_name"], "M herself");
    }

    async fn users_cannot_disable_themselves_or_change_their_own_roles(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let tech = app.builtin_role(BuiltinRole::TechnicalStaff).await;
        for p in [&ch.p, &ch.a, &ch.a2c] {
            let c = p.cred();
            let before = app.get(format!("/api/v1/users/{}", p.admin), &c).await.expect(OK).json;
            let events = app.event_count().await;
            app.post_empty(format!("/api/v1/users/{}/disable", p.admin), &c).await.expect_problem(FORBIDDEN, "forbidden");
            app.post_empty(format!("/api/v1/users/{}/enable", p.admin), &c).await.expect_problem(FORBIDDEN, "forbidden");
            app.post(format!("/api/v1/users/{}/roles", p.admin), &c, json!({"role_id": tech})).await.expect_problem(FORBIDDEN, "forbidden");
            app.delete(format!("/api/v1/users/{}/roles/{}", p.admin, ch.admin_role), &c).await.expect_problem(FORBIDDEN, "forbidden");
            assert_eq!(app.event_count().await, events, "{}", p.tag);
            let after = app.get(format!("/api/v1/users/{}", p.admin), &c).await.expect(OK).json;
            assert_eq!(before, after, "{}", p.tag);
            assert_eq!(after["roles"].as_array().unwrap().len(), 1);
        }
        // The vendor's admin may do it for them (control).
        app.post(format!("/api/v1/users/{}/roles", ch.a.admin), ch.p.cred(), json!({"role_id": tech})).await.expect(OK);
        app.post_empty(format!("/api/v1/users/{}/disable", ch.a.admin), ch.p.cred()).await.expect(OK);
    }

    async fn no_privilege_escalation_through_roles(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let a = ch.a.cred();
        let users_only = app.create_role(&a, ch.a.account, "User managers", grants(&["USERS_MANAGE"])).await;
        let u = app.create_user(&a, ch.a.account, "a-user-manager", &[users_only]).await;
        let ut = Cred::Bearer(app.mint_token(u).await);
        let colleague = app.create_user(&a, ch.a.account, "a-colleague", &[]).await;

        // Attaching a role with privileges the caller lacks: 403, nothing attached.
        let events = app.event_count().await;
        let r = app.post(format!("/api/v1/users/{colleague}/roles"), &ut, json!({"role_id": ch.admin_role})).await;
        r.expect_problem(FORBIDDEN, "forbidden");
        let r = app.post(format!("/api/v1/accounts/{}/users", ch.a.account), &ut, user_body("a-new-admin", &[ch.admin_role])).await;
        r.expect_problem(FORBIDDEN, "forbidden");
        assert_eq!(app.event_count().await, events);
        let c = app.get(format!("/api/v1/users/{colleague}"), &a).await.expect(OK);
        assert_eq!(c.json["roles"], json!([]));
        let users = app.get(format!("/api/v1/accounts/{}/users", ch.a.account), &a).await.expect(OK);
        assert!(!users.text.contains("a-new-admin"));
        // Control: a role within its privileges may be given.
        let r = app.post(format!("/api/v1/users/{colleague}/roles"), &ut, json!({"role_id": users_only})).await.expect(OK);
        assert_eq!(r.json["roles"][0]["id"], users_only);

        // MANAGE_AFFILIATED_ACCOUNTS does not let one hand out an administrator role below.
        let affiliates = app.create_role(&a, ch.a.account, "Affiliates", grants(&["MANAGE_AFFILIATED_ACCOUNTS", "ACCOUNTS_VIEW"])).await;
        let m = app.create_user(&a, ch.a.account, "a-affiliates", &[affiliates]).await;
        let mt = Cred::Bearer(app.mint_token(m).await);
        let a2_user = app.create_user(ch.a2.cred(), ch.a2.account, "a2-plain", &[]).await;
        app.post(format!("/api/v1/users/{a2_user}/roles"), &mt, json!({"role_id": ch.admin_role})).await.expect_problem(FORBIDDEN, "forbidden");
        let billing = app.builtin_role(BuiltinRole::BillingStaff).await;
        app.post(format!("/api/v1/users/{a2_user}/roles"), &mt, json!({"role_id": billing})).await.expect_problem(FORBIDDEN, "forbidden");
        app.post(format!("/api/v1/users/{a2_user}/roles"), &mt, json!({"role_id": affiliates})).await.expect(OK);

        // Custom roles cannot grant what their creator lacks, levels included.
        let roles_role = app.create_role(&a, ch.a.account, "Role managers", grants(&["ROLES_MANAGE", "ACCOUNTS_VIEW", "MANAGE_DOMAINS=manage_settings"])).await;
        let r_user = app.create_user(&a, ch.a.account, "a-role-manager", &[roles_role]).await;
        let rt = Cred::Bearer(app.mint_token(r_user).await);
        let roles_path = format!("/api/v1/accounts/{}/roles", ch.a.account);
        let roles_before = app.get(&roles_path, &a).await.expect(OK).json;
        for g in [vec!["BILLING_MANAGE"], vec!["USERS_MANAGE", "ACCOUNTS_VIEW"], vec!["MANAGE_DOMAINS=place_orders"], vec!["MANAGE_DOMAINS=manage_contacts"]] {
            let r = app.post(&roles_path, &rt, json!({"name": format!("Escalation {g:?}"), "grants": grants(&g)})).await;
            r.expect_problem(FORBIDDEN, "forbidden");
        }
        assert_eq!(app.get(&roles_path, &a).await.json, roles_before);
        // Control: within its own privileges it may.
        let ok_role = app.create_role(&rt, ch.a.account, "Domain helpers", grants(&["ACCOUNTS_VIEW", "MANAGE_DOMAINS=manage_settings"])).await;
        // …and may not widen a role afterwards either.
        let before = app.get(format!("/api/v1/roles/{ok_role}"), &a).await.expect(OK).json;
        let r = app.patch(format!("/api/v1/roles/{ok_role}"), &rt, json!({"name": "Domain helpers", "grants": grants(&["ACCOUNTS_VIEW", "TASKS_MANAGE"])})).await;
        r.expect_problem(FORBIDDEN, "forbidden");
        let r = app.patch(format!("/api/v1/roles/{ok_role}"), &rt, json!({"name": "Domain helpers", "grants": grants(&["MANAGE_DOMAINS=place_orders"])})).await;
        r.expect_problem(FORBIDDEN, "forbidden");
        assert_eq!(app.get(format!("/api/v1/roles/{ok_role}"), &a).await.json, before);
        app.patch(format!("/api/v1/roles/{ok_role}"), &rt, json!({"name": "Domain helpers", "grants": grants(&["ACCOUNTS_VIEW"])})).await.expect(OK);
        // Built-in roles cannot be changed by anyone.
        app.patch(format!("/api/v1/roles/{}", ch.admin_role), ch.p.cred(), json!({"name": "Mine now", "grants": []})).await.expect_problem(FORBIDDEN, "forbidden");
        // Custom roles are managed by their own account only, not by the vendor.
        app.patch(format!("/api/v1/roles/{ok_role}"), ch.p.cred(), json!({"name": "Vendor's", "grants": []})).await.expect_problem(FORBIDDEN, "forbidden");
    }
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

/// One malformed request and how it must be answered.
struct Bad {
    name: &'static str,
    method: Method,
    path: String,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    status: StatusCode,
    code: &'static str,
    /// Fields (and their rule codes, when given) the `errors` must name.
    fields: Vec<(&'static str, Option<&'static str>)>,
}

fn bad(
    name: &'static str,
    method: Method,
    path: String,
    body: Value,
    fields: Vec<(&'static str, Option<&'static str>)>,
) -> Bad {
    Bad {
        name,
        method,
        path,
        body: serde_json::to_vec(&body).unwrap(),
        content_type: Some("application/json"),
        status: UNPROCESSABLE,
        code: "validation_failed",
        fields,
    }
}

fn with(base: &Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut v = base.clone();
    f(v.as_object_mut().unwrap());
    v
}

cascade_testkit::both_backends! {
    async fn bad_input_is_a_problem_naming_the_field_and_writes_nothing(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let a = ch.a.cred();
        let accounts = "/api/v1/accounts".to_string();
        let base = account_body(ch.a.account, "customer", "Valid Co");
        let users = format!("/api/v1/accounts/{}/users", ch.a.account);
        let ubase = user_body("valid-user", &[]);
        let roles = format!("/api/v1/accounts/{}/roles", ch.a.account);
        app.create_role(&a, ch.a.account, "Existing", grants(&[])).await;
        let post = || Method::POST;
        let mut cases = vec![
            Bad { name: "truncated JSON", method: post(), path: accounts.clone(), body: br#"{"vendor_id": 1, "kind": "#.to_vec(), content_type: Some("application/json"),
                  status: StatusCode::BAD_REQUEST, code: "malformed_json", fields: vec![] },
            Bad { name: "not JSON", method: post(), path: accounts.clone(), body: b"vendor_id=1&kind=customer".to_vec(), content_type: Some("application/json"),
                  status: StatusCode::BAD_REQUEST, code: "malformed_json", fields: vec![] },
            Bad { name: "no content type", method: post(), path: accounts.clone(), body: serde_json::to_vec(&base).unwrap(), content_type: None,
                  status: StatusCode::UNSUPPORTED_MEDIA_TYPE, code: "unsupported_media_type", fields: vec![] },
            Bad { name: "form content type", method: post(), path: accounts.clone(), body: serde_json::to_vec(&base).unwrap(), content_type: Some("application/x-www-form-urlencoded"),
                  status: StatusCode::UNSUPPORTED_MEDIA_TYPE, code: "unsupported_media_type", fields: vec![] },
            bad("vendor_id as string", post(), accounts.clone(), with(&base, |m| { m.insert("vendor_id".into(), json!("A")); }), vec![("vendor_id", None)]),
            bad("name as number", post(), accounts.clone(), with(&base, |m| { m.insert("name".into(), json!(42)); }), vec![("name", None)]),
            bad("contact.phone as number", post(), accounts.clone(), with(&base, |m| { m.insert("contact".into(), json!({"phone": 5})); }), vec![("contact.phone", None)]),
            bad("array body", post(), accounts.clone(), json!([base.clone()]), vec![]),
            bad("missing name (named: see missing_fields_are_named)", post(), accounts.clone(), with(&base, |m| { m.remove("name"); }), vec![]),
            bad("unknown kind", post(), accounts.clone(), with(&base, |m| { m.insert("kind".into(), json!("wizard")); }), vec![("kind", None)]),
            bad("kind provider", post(), accounts.clone(), with(&base, |m| { m.insert("kind".into(), json!("provider")); }), vec![("kind", None)]),
            bad("unknown field", post(), accounts.clone(), with(&base, |m| { m.insert("evil".into(), json!(true)); }), vec![("evil", None)]),
            bad("unknown nested field", post(), accounts.clone(), with(&base, |m| { m.insert("contact".into(), json!({"fax": "+49 30 1"})); }), vec![("contact.fax", None)]),
            bad("name of 201 characters", post(), accounts.clone(), with(&base, |m| { m.insert("name".into(), json!("n".repeat(201))); }), vec![("name", Some("too_long"))]),
            bad("blank name", post(), accounts.clone(), with(&base, |m| { m.insert("name".into(), json!("   ")); }), vec![("name", Some("required"))]),
            bad("control character in name", post(), accounts.clone(), with(&base, |m| { m.insert("name".into(), json!("bell\u{7}co")); }), vec![("name", Some("control_characters"))]),
            bad("invalid email", post(), accounts.clone(), with(&base, |m| { m.insert("contact".into(), json!({"email": "not-an-email"})); }), vec![("contact.email", Some("invalid_email"))]),
            bad("invalid phone", post(), accounts.clone(), with(&base, |m| { m.insert("contact".into(), json!({"phone": "call me"})); }), vec![("contact.phone", Some("invalid_phone"))]),
            bad("unknown country", post(), accounts.clone(), with(&base, |m| { m.insert("country".into(), json!("XX")); }), vec![("country", Some("invalid_country"))]),
            bad("lower-case country", post(), accounts.clone(), with(&base, |m| { m.insert("country".into(), json!("de")); }), vec![("country", Some("invalid_country"))]),
            bad("invalid language", post(), accounts.clone(), with(&base, |m| { m.insert("language".into(), json!("not a language")); }), vec![("language", Some("invalid_language"))]),
            bad("invalid currency", post(), accounts.clone(), with(&base, |m| { m.insert("currency".into(), json!("EURO")); }), vec![("currency", None)]),
            bad("currency other than the vendor's", post(), accounts.clone(), with(&base, |m| { m.insert("currency".into(), json!("USD")); }), vec![("currency", Some("currency_mismatch"))]),
            bad("customer as vendor", post(), accounts.clone(), account_body(ch.ac.account, "customer", "Under a customer"), vec![("vendor_id", Some("vendor_not_seller"))]),
            bad("several bad fields", post(), accounts.clone(),
                json!({"vendor_id": ch.a.account, "kind": "customer", "name": "", "country": "Germany", "language": "??", "contact": {"email": "@"}}),
                vec![("name", None), ("country", None), ("language", None), ("contact.email", None)]),
            // Users
            bad("invalid login", post(), users.clone(), with(&ubase, |m| { m.insert("login".into(), json!("a b")); }), vec![("login", Some("invalid_login"))]),
            bad("invalid user email", post(), users.clone(), with(&ubase, |m| { m.insert("email".into(), json!("nope")); }), vec![("email", Some("invalid_email"))]),
            bad("short password", post(), users.clone(), with(&ubase, |m| { m.insert("password".into(), json!("short")); }), vec![("password", Some("password_too_short"))]),
            bad("invalid user language", post(), users.clone(), with(&ubase, |m| { m.insert("language".into(), json!("1234567")); }), vec![("language", Some("invalid_language"))]),
            bad("display name of 201 characters", post(), users.clone(), with(&ubase, |m| { m.insert("display_name".into(), json!("d".repeat(201))); }), vec![("display_name", Some("too_long"))]),
            bad("role id of the wrong type", post(), users.clone(), with(&ubase, |m| { m.insert("role_ids".into(), json!(["x"])); }), vec![("role_ids[0]", None)]),
            bad("unknown role id", post(), users.clone(), with(&ubase, |m| { m.insert("role_ids".into(), json!([987_654])); }), vec![("role_ids[0]", Some("unknown_role"))]),
            bad("login already taken (in another account)", post(), users.clone(), user_body(&ch.a2.admin_login, &[]), vec![("login", Some("login_taken"))]),
            bad("login already taken (other case)", post(), users.clone(), user_body(&ch.a.admin_login.to_uppercase(), &[]), vec![("login", Some("login_taken"))]),
            // Updates
            bad("PATCH unknown country", Method::PATCH, format!("/api/v1/accounts/{}", ch.a2.account), json!({"country": "ZZ"}), vec![("country", Some("invalid_country"))]),
            bad("PATCH name of 201 characters", Method::PATCH, format!("/api/v1/accounts/{}", ch.a2.account), json!({"name": "n".repeat(201)}), vec![("name", Some("too_long"))]),
            bad("PATCH contact email", Method::PATCH, format!("/api/v1/accounts/{}", ch.a2.account), json!({"contact": {"email": "bad"}}), vec![("contact.email", Some("invalid_email"))]),
            bad("PATCH unknown account field", Method::PATCH, format!("/api/v1/accounts/{}", ch.a2.account), json!({"status": "cancelled"}), vec![("status", None)]),
            bad("PATCH user email", Method::PATCH, format!("/api/v1/users/{}", ch.a2.admin), json!({"email": "bad"}), vec![("email", Some("invalid_email"))]),
            bad("unknown status", post(), format!("/api/v1/accounts/{}/status", ch.a2.account), json!({"status": "frozen"}), vec![("status", None)]),
            // Roles and tokens
            bad("unknown privilege", post(), roles.clone(), json!({"name": "R", "grants": [{"privilege": "FLY"}]}), vec![("grants[0]", Some("unknown_privilege"))]),
            bad("level missing", post(), roles.clone(), json!({"name": "R", "grants": [{"privilege": "MANAGE_DOMAINS"}]}), vec![("grants[0]", Some("level_required"))]),
            bad("unknown level", post(), roles.clone(), json!({"name": "R", "grants": [{"privilege": "MANAGE_DOMAINS", "level": "everything"}]}), vec![("grants[0]", Some("unknown_level"))]),
            bad("duplicate privilege", post(), roles.clone(), json!({"name": "R", "grants": [{"privilege": "SHOW_PRICES"}, {"privilege": "SHOW_PRICES"}]}), vec![("grants[1]", Some("duplicate_privilege"))]),
            bad("role name already taken", post(), roles.clone(), json!({"name": "Existing", "grants": []}), vec![("name", Some("role_name_taken"))]),
            bad("role name of 101 characters", post(), roles.clone(), json!({"name": "r".repeat(101), "grants": []}), vec![("name", Some("too_long"))]),
            bad("token lifetime out of range", post(), "/api/v1/me/tokens".into(), json!({"name": "t", "expires_in_days": 0}), vec![("expires_in_days", Some("out_of_range"))]),
            bad("login wrong type", post(), "/api/v1/session".into(), json!({"login": 1, "password": "x"}), vec![("login", None)]),
        ];
        cases.push(Bad { name: "empty body", method: post(), path: accounts.clone(), body: vec![], content_type: Some("application/json"),
                         status: StatusCode::BAD_REQUEST, code: "malformed_json", fields: vec![] });

        let p = ch.p.account;
        let accounts_before = app.count_descendants(p).await;
        let events_before = app.event_count().await;
        let users_before = app.get(&users, &a).await.expect(OK).json;
        let roles_before = app.get(&roles, &a).await.expect(OK).json;
        let a2_before = app.get(format!("/api/v1/accounts/{}", ch.a2.account), &a).await.expect(OK).json;
        let mut failures = vec![];
        for c in &cases {
            app.advance_secs(1);
            let r = app.req(c.method.clone(), c.path.clone()).cred(&a).raw(c.body.clone(), c.content_type).send().await;
            let mut problems = vec![];
            if r.status != c.status {
                problems.push(format!("status {} (expected {})", r.status, c.status));
            }
            if r.content_type() != Some(PROBLEM_JSON) {
                problems.push(format!("content-type {:?}", r.content_type()));
            }
            if r.json["code"] != c.code {
                problems.push(format!("code {} (expected {})", r.json["code"], c.code));
            }
            if r.json["status"] != r.status.as_u16() {
                problems.push("`status` member differs from the HTTP status".into());
            }
            let named = r.field_errors();
            for (f, code) in &c.fields {
                match named.iter().find(|(n, _)| n == f) {
                    None => problems.push(format!("no error names `{f}`")),
                    Some((_, got)) if code.is_some_and(|c| c != got) => problems.push(format!("`{f}` has code {got} (expected {code:?})")),
                    Some(_) => {}
                }
            }
            if !problems.is_empty() {
                failures.push(format!("{}: {}\n    body: {}", c.name, problems.join("; "), r.text));
            }
        }
        assert!(failures.is_empty(), "{} of {} bad requests were not answered as expected:\n  {}", failures.len(), cases.len(), failures.join("\n  "));

        assert_eq!(app.count_descendants(p).await, accounts_before, "an account was created");
        assert_eq!(app.event_count().await, events_before, "an event was written");
        assert_eq!(app.get(&users, &a).await.json, users_before);
        assert_eq!(app.get(&roles, &a).await.json, roles_before);
        assert_eq!(app.get(format!("/api/v1/accounts/{}", ch.a2.account), &a).await.json, a2_before);
        // Control: the valid base requests are accepted.
        app.post(&accounts, &a, base).await.expect(CREATED);
        app.post(&users, &a, ubase).await.expect(CREATED);
    }

    async fn missing_fields_are_named_in_errors(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let a = ch.a.cred();
        let before = app.count_descendants(ch.p.account).await;
        let base = account_body(ch.a.account, "customer", "Valid Co");
        let mut failures = vec![];
        for field in ["vendor_id", "kind", "name", "country", "language"] {
            let r = app.post("/api/v1/accounts", &a, with(&base, |m| { m.remove(field); })).await.expect(UNPROCESSABLE);
            r.assert_problem_shape();
            if !r.field_errors().iter().any(|(f, _)| f == field) {
                failures.push(format!("missing `{field}`: {}", r.text));
            }
        }
        let r = app.post(format!("/api/v1/accounts/{}/users", ch.a.account), &a, json!({"login": "no-email", "display_name": "No Email"})).await.expect(UNPROCESSABLE);
        if !r.field_errors().iter().any(|(f, _)| f == "email") {
            failures.push(format!("missing user `email`: {}", r.text));
        }
        let r = app.post(format!("/api/v1/accounts/{}/roles", ch.a.account), &a, json!({"grants": []})).await.expect(UNPROCESSABLE);
        if !r.field_errors().iter().any(|(f, _)| f == "name") {
            failures.push(format!("missing role `name`: {}", r.text));
        }
        assert_eq!(app.count_descendants(ch.p.account).await, before);
        assert!(failures.is_empty(), "a missing field is not named in `errors[].field`:\n  {}", failures.join("\n  "));
    }

    async fn a_body_with_trailing_garbage_is_rejected(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let a = ch.a.cred();
        let before = app.count_descendants(ch.p.account).await;
        let events = app.event_count().await;
        let valid = serde_json::to_vec(&account_body(ch.a.account, "customer", "Trailing Co")).unwrap();
        for tail in [&b"}"[..], b" garbage", br#"{"name": "second"}"#] {
            let body = [valid.clone(), tail.to_vec()].concat();
            let r = app.req(Method::POST, "/api/v1/accounts").cred(&a).raw(body.clone(), Some("application/json")).send().await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "accepted a body that is not one JSON value: {:?} -> {}", String::from_utf8_lossy(&body), r.text);
            r.assert_problem_shape();
            assert_eq!(r.json["code"], "malformed_json");
        }
        assert_eq!(app.count_descendants(ch.p.account).await, before, "an account was created from an invalid body");
        assert_eq!(app.event_count().await, events);
    }

    async fn body_over_the_limit_is_413(db) {
        let app = TestApp::with_config(db, HttpConfig { body_limit: 512, ..HttpConfig::default() });
        let ch = Channel::build(&app).await;
        let a = ch.a.cred();
        let before = app.count_descendants(ch.p.account).await;
        let events = app.event_count().await;
        // Over the limit, even though the body would otherwise fail validation (a
        // 600-character name) — the size is refused first.
        let big = account_body(ch.a.account, "customer", &"x".repeat(600));
        app.post("/api/v1/accounts", &a, big.clone()).await.expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        app.req(Method::POST, "/api/v1/accounts").cred(&a).header("idempotency-key", "big-1").json(&big).send().await
            .expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        app.patch(format!("/api/v1/accounts/{}", ch.a2.account), &a, json!({"name": "y".repeat(600)})).await
            .expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        app.req(Method::POST, "/api/v1/session").raw(vec![b' '; 4096], Some("application/json")).send().await
            .expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        assert_eq!(app.count_descendants(ch.p.account).await, before);
        assert_eq!(app.event_count().await, events);
        // Under the limit the same endpoint works.
        app.post("/api/v1/accounts", &a, account_body(ch.a.account, "customer", "Small")).await.expect(CREATED);
    }

    async fn invalid_cursor_and_limit_are_rejected(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let p = ch.p.cred();
        use base64::Engine;
        let foreign_cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("x:1");
        let lists = [
            format!("/api/v1/accounts/{}/descendants", ch.p.account),
            format!("/api/v1/accounts/{}/children", ch.p.account),
            format!("/api/v1/accounts/{}/users", ch.p.account),
            "/api/v1/tasks".to_string(),
        ];
        for list in &lists {
            for (q, field) in [
                ("cursor=garbage!", "cursor"),
                ("cursor=bm9wZQ", "cursor"),
                (&*format!("cursor={foreign_cursor}"), "cursor"),
                ("limit=0", "limit"),
                ("limit=201", "limit"),
                ("limit=-5", "limit"),
            ] {
                app.get(format!("{list}?{q}"), &p).await.expect_field(field, None);
            }
            let r = app.get(format!("{list}?limit=abc"), &p).await;
            assert_eq!(r.status, UNPROCESSABLE, "{list}?limit=abc: {}", r.text);
            r.assert_problem_shape();
            app.get(format!("{list}?limit=200"), &p).await.expect(OK);
            app.get(format!("{list}?limit=1"), &p).await.expect(OK);
        }
        let d = &lists[0];
        app.get(format!("{d}?kind=wizard"), &p).await.expect_field("kind", Some("invalid_kind"));
        app.get(format!("{d}?status=frozen"), &p).await.expect_field("status", Some("invalid_status"));
        app.get(format!("{d}?q={}", "q".repeat(201)), &p).await.expect_field("q", Some("too_long"));
        app.get("/api/v1/tasks?state=sleeping", &p).await.expect(UNPROCESSABLE).assert_problem_shape();
        let r = app.get(format!("{d}?bogus=1"), &p).await;
        assert_eq!(r.status, UNPROCESSABLE, "{}", r.text);
        r.assert_problem_shape();
    }
}

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

/// A provider with an admin (token minted) and a plain user with [`PASSWORD`] in it.
async fn auth_fixture(app: &TestApp) -> (i64, Cred, i64) {
    let admin_role = app.builtin_role(BuiltinRole::AccountAdmin).await;
    let p = app.store_provider().await;
    let admin = app.store_user(p, "p-admin", false, &[admin_role]).await;
    let token = Cred::Bearer(app.mint_token(admin).await);
    let tech = app.builtin_role(BuiltinRole::TechnicalStaff).await;
    let user = app.store_user(p, "alice", true, &[tech]).await;
    (p, token, user)
}

cascade_testkit::both_backends! {
    async fn wrong_password_and_unknown_login_get_the_same_answer(db) {
        let app = TestApp::new(db);
        let (_, admin, alice) = auth_fixture(&app).await;
        let wrong = app.login("alice", "not the password at all").await;
        let unknown = app.login("nobody-here", "not the password at all").await;
        wrong.clone().expect_problem(UNAUTHORIZED, "invalid_credentials");
        unknown.clone().expect_problem(UNAUTHORIZED, "invalid_credentials");
        assert_eq!(wrong.json, unknown.json);
        assert!(wrong.session_cookie().is_none() && unknown.session_cookie().is_none());
        // A disabled user with the right password is refused the same way.
        app.post_empty(format!("/api/v1/users/{alice}/disable"), &admin).await.expect(OK);
        let disabled = app.login("alice", PASSWORD).await;
        assert_eq!(disabled.status, UNAUTHORIZED);
        assert_eq!(disabled.json, wrong.json);
        // Control: the right password of an enabled user works (logins are case-insensitive).
        app.post_empty(format!("/api/v1/users/{alice}/enable"), &admin).await.expect(OK);
        let ok = app.login("ALICE", PASSWORD).await.expect(OK);
        assert_eq!(ok.json["user"]["login"], "alice");
        let cookie = ok.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>().join("\n");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"), "{cookie}");
        app.get("/api/v1/me", ANON).await.expect_problem(UNAUTHORIZED, "unauthenticated");
        app.get("/api/v1/me", "cat_not-a-real-token").await.expect_problem(UNAUTHORIZED, "unauthenticated");
        app.get("/api/v1/me", Cred::Session("cs_not-a-real-session".into())).await.expect_problem(UNAUTHORIZED, "unauthenticated");
    }

    async fn a_disabled_user_is_refused_at_once(db) {
        let app = TestApp::new(db);
        let (_, admin, alice) = auth_fixture(&app).await;
        let session = app.session("alice", PASSWORD).await;
        let (_, token) = app.api_token(&session, "alice's token").await;
        app.get("/api/v1/me", &session).await.expect(OK);
        app.get("/api/v1/me", &token).await.expect(OK);

        app.post_empty(format!("/api/v1/users/{alice}/disable"), &admin).await.expect(OK);
        app.get("/api/v1/me", &session).await.expect_problem(UNAUTHORIZED, "unauthenticated");
        app.get("/api/v1/me", &token).await.expect_problem(UNAUTHORIZED, "unauthenticated");
        app.post("/api/v1/me/tokens", &token, json!({"name": "another"})).await.expect_problem(UNAUTHORIZED, "unauthenticated");

        // Enabling does not revive the old session (disabling voided it); a new login works.
        app.post_empty(format!("/api/v1/users/{alice}/enable"), &admin).await.expect(OK);
        app.get("/api/v1/me", &session).await.expect_problem(UNAUTHORIZED, "unauthenticated");
        let fresh = app.session("alice", PASSWORD).await;
        app.get("/api/v1/me", &fresh).await.expect(OK);
    }

    async fn a_revoked_token_is_refused_at_once(db) {
        let app = TestApp::new(db);
        let (_, admin, _) = auth_fixture(&app).await;
        let session = app.session("alice", PASSWORD).await;
        let (id1, t1) = app.api_token(&session, "one").await;
        let (_, t2) = app.api_token(&session, "two").await;
        app.get("/api/v1/me", &t1).await.expect(OK);
        // Another user cannot revoke it.
        app.delete(format!("/api/v1/me/tokens/{id1}"), &admin).await.expect_problem(NOT_FOUND, "not_found");
        app.get("/api/v1/me", &t1).await.expect(OK);
        app.delete(format!("/api/v1/me/tokens/{id1}"), &t2).await.expect(NO_CONTENT);
        app.get("/api/v1/me", &t1).await.expect_problem(UNAUTHORIZED, "unauthenticated");
        app.get("/api/v1/me", &t2).await.expect(OK);
        app.delete(format!("/api/v1/me/tokens/{id1}"), &t2).await.expect(NOT_FOUND);
        let list = app.get("/api/v1/me/tokens", &session).await.expect(OK);
        let revoked = list.json.as_array().unwrap().iter().find(|t| t["id"] == id1).unwrap().clone();
        assert!(revoked["revoked_at"].is_string(), "{revoked}");
        assert!(!list.text.contains(&t1), "token list leaks a secret");

        // Expiry: a token for one day stops working after it.
        let r = app.post("/api/v1/me/tokens", &session, json!({"name": "short", "expires_in_days": 1})).await.expect(CREATED);
        let short = r.json["secret"].as_str().unwrap().to_string();
        app.get("/api/v1/me", &short).await.expect(OK);
        app.advance_secs(86_400 + 1);
        app.get("/api/v1/me", &short).await.expect_problem(UNAUTHORIZED, "unauthenticated");
        app.get("/api/v1/me", &t2).await.expect(OK);
    }

    async fn password_change_ends_other_sessions_but_keeps_the_current(db) {
        let app = TestApp::new(db);
        auth_fixture(&app).await;
        let s1 = app.session("alice", PASSWORD).await;
        let s2 = app.session("alice", PASSWORD).await;
        let new_password = "a brand new passphrase";
        app.post("/api/v1/me/password", &s1, json!({"current_password": "wrong password!", "new_password": new_password})).await
            .expect_field("current_password", Some("wrong_password"));
        app.post("/api/v1/me/password", &s1, json!({"current_password": PASSWORD, "new_password": "short"})).await
            .expect_field("new_password", Some("password_too_short"));
        app.get("/api/v1/me", &s2).await.expect(OK);

        app.post("/api/v1/me/password", &s1, json!({"current_password": PASSWORD, "new_password": new_password})).await.expect(NO_CONTENT);
        app.get("/api/v1/me", &s1).await.expect(OK);
        app.get("/api/v1/me", &s2).await.expect_problem(UNAUTHORIZED, "unauthenticated");
        app.login("alice", PASSWORD).await.expect_problem(UNAUTHORIZED, "invalid_credentials");
        app.session("alice", new_password).await;
        app.get("/api/v1/me", &s1).await.expect(OK);
    }

    async fn logout_ends_the_session(db) {
        let app = TestApp::new(db);
        auth_fixture(&app).await;
        let s = app.session("alice", PASSWORD).await;
        let other = app.session("alice", PASSWORD).await;
        let me = app.get("/api/v1/me", &s).await.expect(OK);
        assert_eq!(me.json["user"]["login"], "alice");
        let r = app.delete("/api/v1/session", &s).await.expect(NO_CONTENT);
        let cleared = r.headers.get_all("set-cookie").iter().any(|v| v.to_str().unwrap().starts_with("cascade_session="));
        assert!(cleared, "logout does not clear the cookie");
        app.get("/api/v1/me", &s).await.expect_problem(UNAUTHORIZED, "unauthenticated");
        app.get("/api/v1/me", &other).await.expect(OK);
        app.delete("/api/v1/session", ANON).await.expect_problem(UNAUTHORIZED, "unauthenticated");

        // Sessions also end by themselves after their lifetime.
        app.advance_secs(HttpConfig::default().session_ttl_secs + 1);
        app.get("/api/v1/me", &other).await.expect_problem(UNAUTHORIZED, "unauthenticated");
    }

    async fn login_throttle_per_login(db) {
        let app = TestApp::new(db);
        auth_fixture(&app).await;
        // Five failures for one login, each from another address (so no address is locked).
        for i in 1..=5 {
            app.login_from(addr(&format!("198.51.100.{i}")), "alice", "wrong password #").await.expect_problem(UNAUTHORIZED, "invalid_credentials");
        }
        let fresh = addr("198.51.100.99");
        app.login_from(fresh, "alice", PASSWORD).await.expect_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
        app.login_from(fresh, "Alice", PASSWORD).await.expect_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
        app.advance_secs(899);
        app.login_from(fresh, "alice", PASSWORD).await.expect_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
        // Other logins are not affected.
        app.login_from(fresh, "p-admin", "whatever password").await.expect_problem(UNAUTHORIZED, "invalid_credentials");
        app.advance_secs(2);
        let ok = app.login_from(fresh, "alice", PASSWORD).await.expect(OK);
        assert!(ok.session_cookie().is_some());
    }

    async fn login_throttle_per_address(db) {
        let app = TestApp::new(db);
        auth_fixture(&app).await;
        let spray = addr("203.0.113.7");
        for i in 0..5 {
            app.login_from(spray, &format!("guess-{i}"), "password guess").await.expect_problem(UNAUTHORIZED, "invalid_credentials");
        }
        // The address is locked for every login, even with the right password…
        app.login_from(spray, "alice", PASSWORD).await.expect_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
        app.login_from(spray, "guess-9", "password guess").await.expect_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
        // …while another address is not.
        app.login_from(addr("203.0.113.8"), "alice", PASSWORD).await.expect(OK);
        app.advance_secs(901);
        app.login_from(spray, "alice", PASSWORD).await.expect(OK);
    }
}

// ---------------------------------------------------------------------------------------
// API conventions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn openapi_document_is_3_1_and_lists_the_api() {
    let t = cascade_testkit::TestDb::sqlite().await;
    let app = TestApp::new(t.db.clone());
    let r = app.get("/api/v1/openapi.json", ANON).await.expect(OK);
    assert!(
        r.content_type()
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let version = r.json["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi version {version}");
    let paths = r.json["paths"].as_object().expect("paths");
    for p in [
        "/api/v1/session",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/me/tokens",
        "/api/v1/me/tokens/{id}",
        "/api/v1/accounts",
        "/api/v1/accounts/{id}",
        "/api/v1/accounts/{id}/status",
        "/api/v1/accounts/{id}/children",
        "/api/v1/accounts/{id}/descendants",
        "/api/v1/accounts/{id}/vendors",
        "/api/v1/accounts/{id}/users",
        "/api/v1/accounts/{id}/roles",
        "/api/v1/users/{id}",
        "/api/v1/users/{id}/disable",
        "/api/v1/users/{id}/enable",
        "/api/v1/users/{id}/roles",
        "/api/v1/users/{id}/roles/{role_id}",
        "/api/v1/roles/{id}",
        "/api/v1/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/tasks/{id}/retry",
        "/api/v1/tasks/{id}/cancel",
    ] {
        assert!(
            paths.contains_key(p),
            "OpenAPI lacks {p}; has {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(paths["/api/v1/accounts/{id}"].get("patch").is_some());
    assert!(
        paths["/api/v1/session"].get("post").is_some()
            && paths["/api/v1/session"].get("delete").is_some()
    );
}

cascade_testkit::both_backends! {
    async fn health_endpoints_answer(db) {
        let app = TestApp::new(db);
        app.get("/healthz", ANON).await.expect(OK);
        app.get("/readyz", ANON).await.expect(OK);
    }

    async fn every_response_has_a_request_id(db) {
        let app = TestApp::new(db);
        let (_, admin, _) = auth_fixture(&app).await;
        let responses = vec![
            app.get("/healthz", ANON).await,
            app.get("/readyz", ANON).await,
            app.get("/api/v1/openapi.json", ANON).await,
            app.get("/api/v1/me", &admin).await,
            app.get("/api/v1/me", ANON).await,
            app.get("/api/v1/nowhere", ANON).await,
            app.req(Method::PUT, "/api/v1/me").cred(&admin).send().await,
            app.post("/api/v1/accounts", &admin, json!({"kind": "wizard"})).await,
            app.req(Method::POST, "/api/v1/accounts").cred(&admin).raw(b"{".to_vec(), Some("application/json")).send().await,
            app.login("alice", "wrong password").await,
            app.get("/api/v1/accounts/424242", &admin).await,
        ];
        let statuses: BTreeSet<u16> = responses.iter().map(|r| r.status.as_u16()).collect();
        assert!(statuses.len() >= 6, "expected a spread of statuses, got {statuses:?}");
        let mut ids = BTreeSet::new();
        for r in &responses {
            let id = r.header("x-request-id").unwrap_or_else(|| panic!("{} {} ({}) has no x-request-id", r.method, r.path, r.status));
            assert!(!id.is_empty());
            ids.insert(id.to_string());
        }
        assert_eq!(ids.len(), responses.len(), "request ids are not unique");
        // A caller's own request id is kept.
        let r = app.req(Method::GET, "/healthz").header("x-request-id", "trace-me-123").send().await;
        assert_eq!(r.header("x-request-id"), Some("trace-me-123"));
        // Unknown endpoints and methods are problems too.
        app.get("/api/v1/nowhere", ANON).await.expect_problem(NOT_FOUND, "not_found");
        app.req(Method::PUT, "/api/v1/me").send().await.expect_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }

    async fn cursor_pagination_returns_every_account_once(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let p = ch.p.cred();
        let mut expected: BTreeSet<i64> = ch.all().iter().filter(|x| x.tag != "p").map(|x| x.account).collect();
        for i in 0..9 {
            expected.insert(app.create_account(&p, ch.p.account, "customer", &format!("Extra {i}")).await);
        }
        assert_eq!(expected.len(), 16);
        for limit in [1, 3, 4, 16, 200] {
            let mut seen = vec![];
            let mut pages = 0;
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/api/v1/accounts/{}/descendants?limit={limit}&cursor={c}", ch.p.account),
                    None => format!("/api/v1/accounts/{}/descendants?limit={limit}", ch.p.account),
                };
                let r = app.get(path, &p).await.expect(OK);
                pages += 1;
                assert!(r.items().len() <= limit);
                seen.extend(r.item_ids());
                match r.json["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
                assert!(pages <= 20, "pagination does not end");
            }
            let unique: BTreeSet<i64> = seen.iter().copied().collect();
            assert_eq!(unique.len(), seen.len(), "limit {limit}: an account came twice: {seen:?}");
            assert_eq!(unique, expected, "limit {limit}");
            assert_eq!(pages, 16usize.div_ceil(limit).max(1), "limit {limit}: pages");
        }
        // Filters keep working across pages; a reseller pages through its own subtree only.
        let mut seen = vec![];
        let mut cursor = String::new();
        loop {
            let r = app.get(format!("/api/v1/accounts/{}/descendants?limit=1&kind=customer{cursor}", ch.a.account), ch.a.cred()).await.expect(OK);
            seen.extend(r.item_ids());
            match r.json["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seen, vec![ch.ac.account, ch.a2c.account]);
    }

    async fn idempotency_key_replays_the_first_response(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let a = ch.a.cred();
        let before = app.count_descendants(ch.a.account).await;
        let events = app.event_count().await;
        let body = account_body(ch.a.account, "customer", "Exactly Once GmbH");
        let send = |key: &'static str, body: Value, cred: Cred| {
            let app = &app;
            async move { app.req(Method::POST, "/api/v1/accounts").cred(cred).header("idempotency-key", key).json(&body).send().await }
        };
        let first = send("order-1", body.clone(), a.clone()).await.expect(CREATED);
        assert_eq!(first.header("idempotency-replayed"), None);
        app.advance_secs(5);
        let again = send("order-1", body.clone(), a.clone()).await.expect(CREATED);
        assert_eq!(again.header("idempotency-replayed"), Some("true"));
        assert_eq!(again.json, first.json);
        assert_eq!(again.content_type(), first.content_type());
        assert!(again.header("x-request-id").is_some());
        assert_eq!(app.count_descendants(ch.a.account).await, before + 1, "the repeat created another account");
        assert_eq!(app.event_count().await, events + 1);

        // Same key, different body: 422, nothing created.
        let other = account_body(ch.a.account, "customer", "Something Else Ltd");
        let r = send("order-1", other.clone(), a.clone()).await;
        assert_eq!(r.status, UNPROCESSABLE, "{}", r.text);
        r.assert_problem_shape();
        assert_eq!(r.json["errors"][0]["code"], "idempotency_key_reused");
        assert_eq!(app.count_descendants(ch.a.account).await, before + 1);

        // Keys belong to a user: another user's identical key is a new request.
        let b_body = account_body(ch.b.account, "customer", "Exactly Once GmbH");
        let b = send("order-1", b_body, ch.b.cred()).await.expect(CREATED);
        assert_eq!(b.header("idempotency-replayed"), None);
        assert_ne!(b.id(), first.id());
        // A new key is a new request; no key means no replay.
        send("order-2", other.clone(), a.clone()).await.expect(CREATED);
        app.post("/api/v1/accounts", &a, other.clone()).await.expect(CREATED);
        assert_eq!(app.count_descendants(ch.a.account).await, before + 3);
        // Invalid keys are refused.
        let r = app.req(Method::POST, "/api/v1/accounts").cred(&a).header("idempotency-key", "has space").json(&other).send().await;
        r.expect_problem(StatusCode::BAD_REQUEST, "invalid_idempotency_key");
        assert_eq!(app.count_descendants(ch.a.account).await, before + 3);
    }

    async fn state_changes_write_events_and_user_created_becomes_a_task(db) {
        let app = TestApp::new(db.clone());
        let ch = Channel::build(&app).await;
        let a = ch.a.cred();
        let events = app.event_count().await;
        let acct = app.create_account(&a, ch.a.account, "customer", "Evented Co").await;
        let ev = app.events_of(acct).await;
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].kind, "account.created");
        assert_eq!(ev[0].subject_id, acct);
        assert_eq!(ev[0].actor_user_id.map(|u| u.0), Some(ch.a.admin));
        assert_eq!(ev[0].payload["vendor_id"], ch.a.account);

        app.patch(format!("/api/v1/accounts/{acct}"), &a, json!({"name": "Evented & Co"})).await.expect(OK);
        app.post(format!("/api/v1/accounts/{acct}/status"), &a, json!({"status": "admin_hold", "reason": "unpaid"})).await.expect(OK);
        let user = app.create_user(&a, acct, "evented-user", &[ch.admin_role]).await;
        let kinds: Vec<String> = app.events_of(acct).await.into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["account.created", "account.updated", "account.status_changed", "user.created"]);
        let status_ev = app.events_of(acct).await.into_iter().find(|e| e.kind == "account.status_changed").unwrap();
        assert_eq!(status_ev.payload, json!({"from": "active", "to": "admin_hold", "reason": "unpaid"}));
        assert_eq!(app.event_count().await, events + 4);

        // The worker's dispatcher turns user.created into the welcome mail task.
        let tasks_path = format!("/api/v1/tasks?account_id={acct}&kind=notify.welcome_user");
        assert_eq!(app.get(&tasks_path, &a).await.expect(OK).items().len(), 0);
        db.events().dispatch_pending(100, app.clock_now(), cascade_worker::route).await.unwrap();
        let tasks = app.get(&tasks_path, &a).await.expect(OK);
        let items = tasks.items();
        assert_eq!(items.len(), 1, "{}", tasks.text);
        assert_eq!(items[0]["payload"]["user_id"], user);
        assert_eq!(items[0]["payload"]["login"], "evented-user");
        assert_eq!(items[0]["state"], "pending");
        // …visible to the vendor chain, not to others.
        let task_id = items[0]["id"].as_i64().unwrap();
        app.get(format!("/api/v1/tasks/{task_id}"), ch.p.cred()).await.expect(OK);
        app.get(format!("/api/v1/tasks/{task_id}"), ch.b.cred()).await.expect_problem(NOT_FOUND, "not_found");
        app.get(format!("/api/v1/tasks/{task_id}"), ch.a2.cred()).await.expect_problem(NOT_FOUND, "not_found");
        // Cancelling and retrying it are state changes too.
        app.post_empty(format!("/api/v1/tasks/{task_id}/cancel"), &a).await.expect(OK);
        app.post_empty(format!("/api/v1/tasks/{task_id}/cancel"), &a).await.expect_problem(StatusCode::CONFLICT, "conflict");
        let r = app.post_empty(format!("/api/v1/tasks/{task_id}/retry"), &a).await.expect(OK);
        assert_eq!(r.json["state"], "pending");
        let kinds: Vec<String> = app.events_of(acct).await.into_iter().map(|e| e.kind).collect();
        assert_eq!(&kinds[4..], ["task.cancelled", "task.retried"]);
    }
}

// ---------------------------------------------------------------------------------------
// Account status
// ---------------------------------------------------------------------------------------

cascade_testkit::both_backends! {
    async fn account_status_hold_release_and_cancel(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let p = ch.p.cred();
        let a = ch.a.cred();
        let status_of = |id: i64| {
            let app = &app;
            let p = p.clone();
            async move { app.get(format!("/api/v1/accounts/{id}"), p).await.expect(OK).json["status"].as_str().unwrap().to_string() }
        };
        let hold = |s: &str| json!({"status": s});

        // The vendor holds and releases.
        let r = app.post(format!("/api/v1/accounts/{}/status", ch.a.account), &p, json!({"status": "admin_hold", "reason": "audit"})).await.expect(OK);
        assert_eq!(r.json["status"], "admin_hold");
        assert_eq!(status_of(ch.a.account).await, "admin_hold");
        app.post(format!("/api/v1/accounts/{}/status", ch.a.account), &p, hold("credit_hold")).await.expect(OK);
        app.post(format!("/api/v1/accounts/{}/status", ch.a.account), &p, hold("active")).await.expect(OK);
        assert_eq!(status_of(ch.a.account).await, "active");
        // So does a vendor further up (the provider, for A2C).
        app.post(format!("/api/v1/accounts/{}/status", ch.a2c.account), &p, hold("admin_hold")).await.expect(OK);
        app.post(format!("/api/v1/accounts/{}/status", ch.a2c.account), &a, hold("active")).await.expect(OK);

        // An account cannot hold itself; nor can anyone below it hold it.
        let events = app.event_count().await;
        app.post(format!("/api/v1/accounts/{}/status", ch.a.account), &a, hold("admin_hold")).await.expect_problem(FORBIDDEN, "forbidden");
        app.post(format!("/api/v1/accounts/{}/status", ch.p.account), &p, hold("admin_hold")).await.expect_problem(FORBIDDEN, "forbidden");
        app.post(format!("/api/v1/accounts/{}/status", ch.a.account), ch.a2.cred(), hold("admin_hold")).await.expect_problem(NOT_FOUND, "not_found");
        app.post(format!("/api/v1/accounts/{}/status", ch.a.account), ch.b.cred(), hold("admin_hold")).await.expect_problem(NOT_FOUND, "not_found");
        // Staying where one is is not a transition.
        app.post(format!("/api/v1/accounts/{}/status", ch.a.account), &p, hold("active")).await.expect_field("status", Some("invalid_status_transition"));
        assert_eq!(app.event_count().await, events);
        assert_eq!(status_of(ch.a.account).await, "active");
        assert_eq!(status_of(ch.p.account).await, "active");

        // Cancel is final: cancelled → active is 422.
        let r = app.post(format!("/api/v1/accounts/{}/status", ch.ac.account), &a, json!({"status": "cancelled", "reason": "left"})).await.expect(OK);
        assert_eq!(r.json["status"], "cancelled");
        app.post(format!("/api/v1/accounts/{}/status", ch.ac.account), &a, hold("active")).await.expect_field("status", Some("invalid_status_transition"));
        app.post(format!("/api/v1/accounts/{}/status", ch.ac.account), &p, hold("admin_hold")).await.expect_field("status", Some("invalid_status_transition"));
        assert_eq!(status_of(ch.ac.account).await, "cancelled");
        // The cancelled account's users are refused…
        app.get("/api/v1/me", ch.ac.cred()).await.expect_problem(UNAUTHORIZED, "unauthenticated");
        // …and nothing is created under a cancelled reseller.
        app.post(format!("/api/v1/accounts/{}/status", ch.a2.account), &a, hold("cancelled")).await.expect(OK);
        app.post("/api/v1/accounts", &a, account_body(ch.a2.account, "customer", "Late")).await.expect_field("vendor_id", Some("vendor_cancelled"));
    }

    async fn users_of_a_cancelled_account_cannot_log_in(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        app.store_user(ch.ac.account, "ac-person", true, &[ch.admin_role]).await;
        app.session("ac-person", PASSWORD).await;
        app.post(format!("/api/v1/accounts/{}/status", ch.ac.account), ch.a.cred(), json!({"status": "cancelled"})).await.expect(OK);
        // Every request of the account's users is refused, so a login must not succeed
        // either (nor hand out the account's data in its answer).
        let r = app.login("ac-person", PASSWORD).await;
        assert_eq!(r.status, UNAUTHORIZED, "login into a cancelled account: {}", r.text);
        assert!(r.session_cookie().is_none());
    }
}
