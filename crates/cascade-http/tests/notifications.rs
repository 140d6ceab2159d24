//! Notification templates and password reset through the API, on SQLite and PostgreSQL.

mod common;

use axum::http::{Method, StatusCode};
use cascade_store::on_db;
use common::*;
use serde_json::{Value, json};

async fn put(app: &TestApp, cred: &Cred, path: &str, body: Value) -> Resp {
    app.req(Method::PUT, path)
        .cred(cred)
        .json(&body)
        .send()
        .await
}

fn tpl(p: i64, ev: &str) -> String {
    format!("/api/v1/accounts/{p}/notification-templates/{ev}")
}

fn order_completed(subject_en: &str, text_en: &str) -> Value {
    json!({"default_language": "en", "texts": [
        {"language": "en", "subject": subject_en, "text": text_en},
        {"language": "fr", "subject": "Commande {{ order_id }} terminée", "text": "Bonjour {{ recipient_name }}"},
    ]})
}

/// (recipient, subject, body text) of the outbox rows, by id.
async fn outbox_rows(app: &TestApp) -> Vec<(String, String, String)> {
    let db = &app.db;
    on_db!(db, p => sqlx::query_as("SELECT recipient, subject, body_text FROM outbox ORDER BY id").fetch_all(p).await).unwrap()
}

#[tokio::test]
async fn openapi_lists_the_notification_endpoints() {
    let t = cascade_testkit::TestDb::sqlite().await;
    let app = TestApp::new(t.db.clone());
    let r = app
        .get("/api/v1/openapi.json", ANON)
        .await
        .expect(StatusCode::OK);
    let paths = r.json["paths"].as_object().unwrap();
    for (p, m) in [
        ("/api/v1/accounts/{id}/notification-templates", "get"),
        (
            "/api/v1/accounts/{id}/notification-templates/{event}",
            "put",
        ),
        (
            "/api/v1/accounts/{id}/notification-templates/{event}",
            "delete",
        ),
        (
            "/api/v1/accounts/{id}/notification-templates/{event}/preview",
            "post",
        ),
        ("/api/v1/accounts/{id}/outbox", "get"),
        ("/api/v1/password-reset", "post"),
        ("/api/v1/password-reset/confirm", "post"),
    ] {
        assert!(
            paths.get(p).and_then(|x| x.get(m)).is_some(),
            "OpenAPI lacks {m} {p}"
        );
    }
}

cascade_testkit::both_backends! {
    async fn templates_are_inherited_edited_reverted_and_validated(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let (p, a, a2) = (ch.p.cred(), ch.a.cred(), ch.a2.cred());
        let ev = "order_completed";

        // The provider edits; reseller A (no copy) sees the provider's text, marked inherited.
        let r = put(&app, &p, &tpl(ch.p.account, ev), order_completed("Order {{ order_id }} done", "Hi {{ recipient_name }}")).await.expect(StatusCode::OK);
        assert_eq!((r.json["source"].as_str(), r.json["owner_account_id"].as_i64()), (Some("own"), Some(ch.p.account)));
        let r = app.get(tpl(ch.a.account, ev), &a).await.expect(StatusCode::OK);
        assert_eq!((r.json["source"].as_str(), r.json["owner_account_id"].as_i64()), (Some("inherited"), Some(ch.p.account)));
        assert_eq!(r.json["texts"][0]["subject"], "Order {{ order_id }} done");
        assert!(r.json["variables"].as_array().unwrap().iter().any(|v| v["name"] == "order_id"));

        // The list: every event, cursor-paginated, own/inherited/builtin marked.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
            let r = app.get(format!("/api/v1/accounts/{}/notification-templates?limit=3{q}", ch.a.account), &a).await.expect(StatusCode::OK);
            for i in r.json["items"].as_array().unwrap() {
                seen.push((i["event"].as_str().unwrap().to_string(), i["source"].as_str().unwrap().to_string()));
            }
            match r.json["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 8, "{seen:?}");
        assert_eq!(seen[0], ("order_completed".into(), "inherited".into()));
        assert_eq!(seen[6], ("welcome_user".into(), "builtin".into()));
        assert_eq!(seen[7], ("subscription_status".into(), "builtin".into()));

        // Invalid templates are refused at save time, naming the variable; nothing is written.
        let events = app.event_count().await;
        let r = put(&app, &a, &tpl(ch.a.account, ev), order_completed("Order {{ order_id }}", "Total: {{ invoice_total }}")).await;
        let r = r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let errs = r.field_errors();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "texts[0].text");
        assert!(r.text.contains("invoice_total"), "{}", r.text);
        let r = put(&app, &a, &tpl(ch.a.account, ev), order_completed("Order {{ order_id", "x")).await;
        let r = r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(r.json["errors"][0]["code"], "template_syntax");
        assert_eq!(app.event_count().await, events);
        assert_eq!(app.get(tpl(ch.a.account, ev), &a).await.json["source"], "inherited");

        // A's first edit is its own copy: the provider's later edit no longer reaches A,
        // and A's sub-reseller now inherits from A.
        put(&app, &a, &tpl(ch.a.account, ev), order_completed("A: order {{ order_id }}", "A text")).await.expect(StatusCode::OK);
        put(&app, &p, &tpl(ch.p.account, ev), order_completed("P v2 {{ order_id }}", "P text")).await.expect(StatusCode::OK);
        let r = app.get(tpl(ch.a.account, ev), &a).await.expect(StatusCode::OK);
        assert_eq!((r.json["source"].as_str(), r.json["texts"][0]["subject"].as_str()), (Some("own"), Some("A: order {{ order_id }}")));
        let r = app.get(tpl(ch.a2.account, ev), &a2).await.expect(StatusCode::OK);
        assert_eq!((r.json["source"].as_str(), r.json["owner_account_id"].as_i64()), (Some("inherited"), Some(ch.a.account)));
        // B still follows the provider live.
        let r = app.get(tpl(ch.b.account, ev), &ch.b.cred()).await.expect(StatusCode::OK);
        assert_eq!(r.json["texts"][0]["subject"], "P v2 {{ order_id }}");

        // Preview with sample variables, in French; and of a draft.
        let r = app.post(format!("{}/preview", tpl(ch.a.account, ev)), &a, json!({"language": "fr"})).await.expect(StatusCode::OK);
        assert_eq!((r.json["language"].as_str(), r.json["subject"].as_str()), (Some("fr"), Some("Commande 1042 terminée")));
        let r = app.post(format!("{}/preview", tpl(ch.a.account, ev)), &a, json!({"template": order_completed("Draft {{ order_id }}", "t"), "variables": {"order_id": "7"}})).await.expect(StatusCode::OK);
        assert_eq!(r.json["subject"], "Draft 7");
        app.post(format!("{}/preview", tpl(ch.a.account, ev)), &a, json!({"template": order_completed("{{ nope }}", "t")})).await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

        // Revert: A inherits from the provider again.
        let r = app.delete(tpl(ch.a.account, ev), &a).await.expect(StatusCode::OK);
        assert_eq!((r.json["source"].as_str(), r.json["texts"][0]["subject"].as_str()), (Some("inherited"), Some("P v2 {{ order_id }}")));

        // Tenancy: B cannot see A's templates; customers have none; unknown events do not exist.
        app.get(tpl(ch.a.account, ev), &ch.b.cred()).await.expect(StatusCode::NOT_FOUND);
        put(&app, &ch.b.cred(), &tpl(ch.a.account, ev), order_completed("x", "y")).await.expect(StatusCode::NOT_FOUND);
        app.get(tpl(ch.ac.account, ev), &a).await.expect(StatusCode::CONFLICT);
        app.get(tpl(ch.a.account, "no_such_event"), &a).await.expect(StatusCode::NOT_FOUND);
    }

    async fn password_reset_mails_a_single_use_expiring_token(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        // French text for A's people, from the provider's template.
        put(&app, &ch.p.cred(), &tpl(ch.p.account, "password_reset"), json!({"default_language": "en", "texts": [
            {"language": "en", "subject": "Reset", "text": "Code: {{ token }}"},
        ]})).await.expect(StatusCode::OK);

        // Unknown login: the same answer, nothing queued.
        app.post("/api/v1/password-reset", ANON, json!({"login": "nobody"})).await.expect(StatusCode::ACCEPTED);
        assert!(outbox_rows(&app).await.is_empty());

        app.post("/api/v1/password-reset", ANON, json!({"login": ch.a.admin_login})).await.expect(StatusCode::ACCEPTED);
        let rows = outbox_rows(&app).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, "Reset");
        let token = rows[0].2.strip_prefix("Code: ").unwrap().trim().to_string();
        assert!(token.starts_with("prt_"));
        // Only the hash is stored; the outbox API does not show the body.
        let db = &app.db;
        let (n,): (i64,) = on_db!(db, p => sqlx::query_as("SELECT COUNT(*) FROM password_reset_tokens WHERE token_hash = $1").bind(&token).fetch_one(p).await).unwrap();
        assert_eq!(n, 0);
        let r = app.get(format!("/api/v1/accounts/{}/outbox", ch.a.account), &ch.a.cred()).await.expect(StatusCode::OK);
        assert_eq!(r.json["items"][0]["event"], "password_reset");
        assert!(r.json["items"][0]["text"].is_null());
        let (k,): (String,) = on_db!(db, p => sqlx::query_as("SELECT kind FROM tasks ORDER BY id DESC LIMIT 1").fetch_one(p).await).unwrap();
        assert_eq!(k, "notify.deliver");

        // Wrong token, weak password: refused, naming the field.
        let r = app.post("/api/v1/password-reset/confirm", ANON, json!({"token": "prt_wrong", "new_password": "a brand new passphrase"})).await;
        assert_eq!(r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").field_errors()[0].0, "token");
        let r = app.post("/api/v1/password-reset/confirm", ANON, json!({"token": token, "new_password": "x"})).await;
        assert_eq!(r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").field_errors()[0].0, "new_password");

        app.post("/api/v1/password-reset/confirm", ANON, json!({"token": token, "new_password": "a brand new passphrase"})).await.expect(StatusCode::NO_CONTENT);
        app.login(&ch.a.admin_login, "a brand new passphrase").await.expect(StatusCode::OK);
        // Single use.
        app.post("/api/v1/password-reset/confirm", ANON, json!({"token": token, "new_password": "another new passphrase"})).await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);

        // Expired after an hour.
        app.post("/api/v1/password-reset", ANON, json!({"login": ch.a.admin_login})).await.expect(StatusCode::ACCEPTED);
        let rows = outbox_rows(&app).await;
        let token = rows[1].2.strip_prefix("Code: ").unwrap().trim().to_string();
        app.advance_secs(3601);
        app.post("/api/v1/password-reset/confirm", ANON, json!({"token": token, "new_password": "another new passphrase"})).await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);

        // Requests are limited per login, known or not (the limit tells nothing), and an
        // unknown login takes as long to answer as a known one.
        let started = std::time::Instant::now();
        app.post("/api/v1/password-reset", ANON, json!({"login": "nobody2"})).await.expect(StatusCode::ACCEPTED);
        assert!(started.elapsed() >= cascade_http::api::notifications::RESET_RESPONSE_FLOOR);
        for _ in 1..cascade_http::state::RESET_REQUESTS_PER_WINDOW {
            app.post("/api/v1/password-reset", ANON, json!({"login": "nobody2"})).await.expect(StatusCode::ACCEPTED);
        }
        app.post("/api/v1/password-reset", ANON, json!({"login": "Nobody2"})).await
            .expect_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
        // Another login is not affected, and the window ends.
        let before = outbox_rows(&app).await.len();
        app.post("/api/v1/password-reset", ANON, json!({"login": ch.a.admin_login})).await.expect(StatusCode::ACCEPTED);
        assert_eq!(outbox_rows(&app).await.len(), before + 1);
        app.advance_secs(901);
        app.post("/api/v1/password-reset", ANON, json!({"login": "nobody2"})).await.expect(StatusCode::ACCEPTED);
    }
}
