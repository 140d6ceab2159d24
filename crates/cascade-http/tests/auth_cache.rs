//! The session cache (issue 5) must not delay a refusal: each test first resolves a
//! session twice (so the second request is served from the cache), then makes the
//! write through its ordinary path and checks that the very next request is refused,
//! on SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

const OK: StatusCode = StatusCode::OK;

/// A logged-in user of `account` with `roles` and its session (resolved twice: cached).
async fn warm_session(app: &TestApp, account: i64, login: &str, roles: &[i64]) -> (i64, Cred) {
    let id = app.store_user(account, login, true, roles).await;
    let s = app.session(login, PASSWORD).await;
    app.get("/api/v1/me", &s).await.expect(OK);
    app.get("/panel", &s).await.expect(OK);
    app.get("/api/v1/me", &s).await.expect(OK);
    (id, s)
}

/// The panel sends a refused session to the login page.
async fn panel_refuses(app: &TestApp, s: &Cred) {
    let r = app.get("/panel", s).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.header("location"), Some("/login"));
}

cascade_testkit::both_backends! {
    async fn a_logged_out_session_is_refused_at_once(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let (_, s) = warm_session(&app, ch.ac.account, "ac-shopper", &[ch.admin_role]).await;
        app.delete("/api/v1/session", &s).await.expect(StatusCode::NO_CONTENT);
        app.get("/api/v1/me", &s).await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
        panel_refuses(&app, &s).await;
    }

    async fn a_password_change_ends_the_other_cached_sessions_at_once(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let (_, other) = warm_session(&app, ch.ac.account, "ac-shopper", &[ch.admin_role]).await;
        let mine = app.session("ac-shopper", PASSWORD).await;
        app.post("/api/v1/me/password", &mine, json!({"current_password": PASSWORD, "new_password": "another long password 42"}))
            .await.expect(StatusCode::NO_CONTENT);
        app.get("/api/v1/me", &other).await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
        panel_refuses(&app, &other).await;
        // The session that changed it stays valid.
        app.get("/api/v1/me", &mine).await.expect(OK);
    }

    async fn a_disabled_user_and_a_cancelled_account_are_refused_at_once(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let (u, s) = warm_session(&app, ch.ac.account, "ac-shopper", &[ch.admin_role]).await;
        app.post_empty(format!("/api/v1/users/{u}/disable"), ch.ac.cred()).await.expect(OK);
        app.get("/api/v1/me", &s).await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
        panel_refuses(&app, &s).await;

        let (_, s) = warm_session(&app, ch.bc.account, "bc-shopper", &[ch.admin_role]).await;
        app.post(format!("/api/v1/accounts/{}/status", ch.bc.account), ch.b.cred(), json!({"status": "cancelled", "reason": "closed"}))
            .await.expect(OK);
        app.get("/api/v1/me", &s).await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
        panel_refuses(&app, &s).await;
    }

    async fn a_revoked_privilege_is_refused_at_once(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let role = app.create_role(ch.ac.cred(), ch.ac.account, "User managers", grants(&["USERS_MANAGE"])).await;
        let (u, s) = warm_session(&app, ch.ac.account, "ac-staff", &[role]).await;
        let users = format!("/api/v1/accounts/{}/users", ch.ac.account);
        app.get(&users, &s).await.expect(OK);
        app.get(&users, &s).await.expect(OK);

        // The role loses the privilege: refused on the next request.
        app.patch(format!("/api/v1/roles/{role}"), ch.ac.cred(), json!({"name": "User managers", "grants": grants(&["SHOW_PRICES"])}))
            .await.expect(OK);
        app.get(&users, &s).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
        // Given back: allowed on the next request too.
        app.patch(format!("/api/v1/roles/{role}"), ch.ac.cred(), json!({"name": "User managers", "grants": grants(&["USERS_MANAGE"])}))
            .await.expect(OK);
        app.get(&users, &s).await.expect(OK);

        // The role is detached from the user: refused on the next request.
        app.delete(format!("/api/v1/users/{u}/roles/{role}"), ch.ac.cred()).await.expect(OK);
        app.get(&users, &s).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    }

    async fn a_write_this_process_does_not_see_waits_out_the_time_to_live(db) {
        // As if another server wrote: raw SQL, no generation bump. The cached session
        // stays valid until its entry ages out, then the refusal is seen.
        let app = TestApp::with_config(db.clone(), cascade_http::HttpConfig { auth_cache_ttl_ms: 1_500, ..Default::default() });
        let ch = Channel::build(&app).await;
        let (u, s) = warm_session(&app, ch.ac.account, "ac-shopper", &[ch.admin_role]).await;
        disable_behind_the_back(&db, u).await;
        app.get("/api/v1/me", &s).await.expect(OK);
        tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
        app.get("/api/v1/me", &s).await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");

        // With the cache off, such a write is seen on the next request.
        let app = TestApp::with_config(db.clone(), cascade_http::HttpConfig { auth_cache_ttl_ms: 0, ..Default::default() });
        let (u, s) = warm_session(&app, ch.ac.account, "ac-shopper2", &[ch.admin_role]).await;
        disable_behind_the_back(&db, u).await;
        app.get("/api/v1/me", &s).await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
}

async fn disable_behind_the_back(db: &cascade_store::Db, user: i64) {
    let q = "UPDATE users SET disabled = TRUE WHERE id = $1";
    match db {
        cascade_store::Db::Sqlite { write, .. } => {
            sqlx::query(q).bind(user).execute(write).await.unwrap();
        }
        cascade_store::Db::Postgres(p) => {
            sqlx::query(q).bind(user).execute(p).await.unwrap();
        }
    }
}
