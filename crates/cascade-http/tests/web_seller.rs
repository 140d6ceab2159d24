//! The provider and reseller panel in-process, on both backends: a reseller edits a
//! retail price on its copy, previews a sync to its sub-reseller (the preview shows the
//! change), applies it with the preview's digest (the sub-reseller's copy has the new
//! price, the audit trail lists the run); restrictions show as blocked; accounts are
//! browsed, searched, created and held/released through the API's rules; a customer and
//! another reseller reach nothing; a form without its CSRF token changes nothing.

mod common;

use axum::http::{Method, StatusCode};
use cascade_domain::privilege::BuiltinRole;
use cascade_store::{Db, on_tx};
use common::{Cred, PASSWORD, Resp, TestApp};
use serde_json::{Value, json};

async fn sql(db: &Db, q: &str) -> i64 {
    let mut tx = db.begin().await.unwrap();
    let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(q).fetch_one(c).await).unwrap();
    tx.commit().await.unwrap();
    id
}

struct Fixture {
    app: TestApp,
    p: i64,
    a: i64,
    a2: i64,
    ac: i64,
    p_tok: Cred,
    a_tok: Cred,
    template: i64,
}

/// P → A (reseller) → A2 (reseller), AC customer of A; logins with passwords.
async fn fixture(db: Db) -> Fixture {
    let app = TestApp::new(db.clone());
    let p = app.store_provider().await;
    let admin = app.builtin_role(BuiltinRole::AccountAdmin).await;
    let pu = app.store_user(p, "p-admin", true, &[admin]).await;
    let p_tok = Cred::Bearer(app.mint_token(pu).await);
    let a = app
        .create_account(&p_tok, p, "reseller", "Reseller A")
        .await;
    let b = app
        .create_account(&p_tok, p, "reseller", "Reseller B")
        .await;
    let a2 = app
        .create_account(&p_tok, a, "reseller", "Reseller A2")
        .await;
    let ac = app
        .create_account(&p_tok, a, "customer", "Customer of A")
        .await;
    let au = app.store_user(a, "a-admin", true, &[admin]).await;
    app.store_user(b, "b-admin", true, &[admin]).await;
    app.store_user(a2, "a2-admin", true, &[admin]).await;
    app.store_user(ac, "ac-admin", true, &[admin]).await;
    let a_tok = Cred::Bearer(app.mint_token(au).await);
    let template = sql(&db, &format!("INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ({p}, 'Office', '[]', '{{}}', 0, 0) RETURNING id")).await;
    Fixture {
        app,
        p,
        a,
        a2,
        ac,
        p_tok,
        a_tok,
        template,
    }
}

fn fee(units: i64) -> Value {
    json!({"amount": units * 1_000_000})
}

fn content() -> Value {
    let period = json!({"uid": "m1", "duration": 1, "unit": "month", "active": true, "setup": fee(0), "recurring": fee(10), "renewal": fee(10),
        "transfer": fee(0), "cancellation": fee(0), "refund": {"full_refund_days": 30, "non_refundable": 0, "after": "prorated"}, "sort": 1});
    json!({
        "name": {"default": "en", "values": {"en": "Office Suite", "fr": "Suite bureautique"}},
        "published": true, "visible": true, "listing_priority": 10,
        "billing_model": "charge_before_billing_period", "period_type": {"type": "monthly_on_statement_day"},
        "recurring_basis": "billing_period",
        "periods": [period],
        "rates": [],
    })
}

/// The CSRF token of a page's first form.
fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + 20;
    html[i..i + 64].to_string()
}

fn recurring(plan: &Value) -> i64 {
    plan["content"]["periods"][0]["recurring"]["amount"]
        .as_i64()
        .unwrap()
}

impl Fixture {
    /// A plan of P delegated to A and on to A2: (original, A's copy, A2's copy).
    async fn chain(&self) -> (i64, i64, i64) {
        let plan = self
            .app
            .post(
                format!("/api/v1/accounts/{}/plans", self.p),
                &self.p_tok,
                json!({"template_id": self.template, "content": content()}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id();
        let delegate = |plan: i64, reseller: i64, cred: Cred| async move {
            self.app
                .post(
                    format!("/api/v1/plans/{plan}/copies"),
                    &cred,
                    json!({"reseller_id": reseller}),
                )
                .await
                .expect(StatusCode::CREATED)
                .id()
        };
        let a_copy = delegate(plan, self.a, self.p_tok.clone()).await;
        let a2_copy = delegate(a_copy, self.a2, self.a_tok.clone()).await;
        (plan, a_copy, a2_copy)
    }
    async fn plan(&self, id: i64) -> Value {
        self.app
            .get(format!("/api/v1/plans/{id}"), &self.p_tok)
            .await
            .expect(StatusCode::OK)
            .json
    }
    async fn form(&self, path: &str, cred: &Cred, body: &str) -> Resp {
        self.app
            .req(Method::POST, path)
            .cred(cred.clone())
            .raw(body.to_string(), Some("application/x-www-form-urlencoded"))
            .send()
            .await
    }
}

cascade_testkit::both_backends! {
    async fn reseller_edits_a_price_previews_and_syncs_to_its_sub_reseller(db) {
        let f = fixture(db).await;
        let (_, a_copy, a2_copy) = f.chain().await;
        let s = f.app.session("a-admin", PASSWORD).await;

        let list = f.app.get("/seller/plans", s.clone()).await.expect(StatusCode::OK);
        assert!(list.text.contains(&format!("href=\"/seller/plans/{a_copy}\"")), "{}", list.text);
        let page = f.app.get(format!("/seller/plans/{a_copy}"), s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("name=\"period.m1.recurring\" value=\"10.00\""), "{}", page.text);
        let token = csrf_of(&page.text);

        // Without the token: refused, nothing written.
        let r = f.form(&format!("/seller/plans/{a_copy}/prices"), &s, "period.m1.recurring=12.50").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(recurring(&f.plan(a_copy).await), 10_000_000);
        // Not a price: the API-style field error, nothing written.
        let r = f.form(&format!("/seller/plans/{a_copy}/prices"), &s, &format!("_csrf={token}&period.m1.recurring=cheap")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("period.m1.recurring"), "{}", r.text);
        assert_eq!(recurring(&f.plan(a_copy).await), 10_000_000);

        let r = f.form(&format!("/seller/plans/{a_copy}/prices"), &s, &format!("_csrf={token}&period.m1.recurring=12.50")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(recurring(&f.plan(a_copy).await), 12_500_000);
        assert_eq!(recurring(&f.plan(a2_copy).await), 10_000_000, "not passed down before the sync");

        // Applying without a preview's digest is refused.
        let sync = format!("_csrf={token}&o_plan_fees=1&scope=all");
        let r = f.form(&format!("/seller/plans/{a_copy}/sync"), &s, &sync).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        // The preview names the copy and the change.
        let preview = f.form(&format!("/seller/plans/{a_copy}/sync/preview"), &s, &sync).await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        assert!(preview.text.contains(&format!("data-copy=\"{a2_copy}\"")), "{}", preview.text);
        assert!(preview.text.contains("Reseller A2"), "{}", preview.text);
        let changes = &preview.text[preview.text.find("class=\"changes\"").expect("a table of changes")..];
        assert!(changes.contains("<code>periods[m1].recurring</code></td><td>10.00</td><td>12.50</td>"), "{changes}");
        assert_eq!(recurring(&f.plan(a2_copy).await), 10_000_000, "a preview changes nothing");
        let i = preview.text.find("name=\"digest\" value=\"").unwrap() + 21;
        let digest = &preview.text[i..i + 64];

        // A stale digest is the API's conflict.
        let r = f.form(&format!("/seller/plans/{a_copy}/sync"), &s, &format!("{sync}&digest={}", "0".repeat(64))).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(recurring(&f.plan(a2_copy).await), 10_000_000);

        let r = f.form(&format!("/seller/plans/{a_copy}/sync"), &s, &format!("{sync}&digest={digest}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(recurring(&f.plan(a2_copy).await), 12_500_000);
        let page = f.app.get(format!("/seller/plans/{a_copy}"), s.clone()).await.expect(StatusCode::OK);
        let audit = &page.text[page.text.find("id=\"sync-runs\"").unwrap()..];
        assert!(!audit.contains("Nothing here yet"), "{audit}");
        // The form offers the subscriptions option; its preview counts them (none sold here).
        assert!(page.text.contains("name=\"o_subscriptions\""), "{}", page.text);
        let subs = f.form(&format!("/seller/plans/{a_copy}/sync/preview"), &s, &format!("{sync}&o_subscriptions=1")).await;
        assert!(subs.text.contains("<strong id=\"sync-subscriptions\">0</strong>"), "{}", subs.text);
    }

    async fn restrictions_show_as_blocked_in_the_preview(db) {
        let f = fixture(db).await;
        let (_, a_copy, a2_copy) = f.chain().await;
        let s = f.app.session("a-admin", PASSWORD).await;
        let page = f.app.get(format!("/seller/accounts/{}/sync-settings", f.a2), s.clone()).await.expect(StatusCode::OK);
        let token = csrf_of(&page.text);
        let r = f.form(&format!("/seller/accounts/{}/sync-settings", f.a2), &s, &format!("_csrf={token}&r_prices=1")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let page = f.app.get(format!("/seller/accounts/{}/sync-settings", f.a2), s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("name=\"r_prices\" value=\"1\" checked"), "{}", page.text);
        f.form(&format!("/seller/plans/{a_copy}/prices"), &s, &format!("_csrf={token}&period.m1.recurring=11")).await;
        let preview = f.form(&format!("/seller/plans/{a_copy}/sync/preview"), &s, &format!("_csrf={token}&o_plan_fees=1&scope=all")).await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        let blocked = &preview.text[preview.text.find("Blocked by a restriction").expect("a blocked section")..];
        assert!(blocked.contains("Prices"), "{blocked}");
        assert_eq!(recurring(&f.plan(a2_copy).await), 10_000_000);
    }

    async fn accounts_browse_search_create_hold_and_release(db) {
        let f = fixture(db).await;
        let s = f.app.session("a-admin", PASSWORD).await;
        let page = f.app.get("/seller/accounts", s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("Reseller A2") && page.text.contains("Customer of A"), "{}", page.text);
        assert!(!page.text.contains("Reseller B"), "another reseller's accounts are not shown");
        let token = csrf_of(&page.text);
        let r = f.form("/seller/accounts", &s, &format!("_csrf={token}&vendor_id={}&kind=customer&name=Fresh+Customer&email=&country=DE&language=en", f.a)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let found = f.app.get("/seller/accounts?q=Fresh", s.clone()).await.expect(StatusCode::OK);
        assert!(found.text.contains("Fresh Customer") && !found.text.contains("Reseller A2"), "{}", found.text);
        // Creating under an account outside one's tree is refused (the API's rule).
        let p = f.p;
        let r = f.form("/seller/accounts", &s, &format!("_csrf={token}&vendor_id={p}&kind=customer&name=Sneaky&country=DE&language=en")).await;
        assert!(r.status.is_client_error(), "{}", r.status);
        // Hold and release.
        let ac = f.ac;
        let r = f.form(&format!("/seller/accounts/{ac}/status"), &s, &format!("_csrf={token}&status=admin_hold&next=/seller/accounts%3Fq%3DCustomer")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        // Back on the list, which says how many subscriptions the hold suspended.
        let back = r.headers["location"].to_str().unwrap().to_string();
        assert_eq!(back, "/seller/accounts?q=Customer&held=0");
        let page = f.app.get(&back, s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("The account is on hold: 0 subscription(s) suspended."), "{}", page.text);
        let acc = f.app.get(format!("/api/v1/accounts/{ac}"), &f.p_tok).await.json;
        assert_eq!(acc["status"], "admin_hold");
        let r = f.form(&format!("/seller/accounts/{ac}/status"), &s, &format!("_csrf={token}&status=active")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.headers["location"], "/seller/accounts?released=0");
        let acc = f.app.get(format!("/api/v1/accounts/{ac}"), &f.p_tok).await.json;
        assert_eq!(acc["status"], "active");
        // The customer's orders, subscriptions and documents; not one's own, not another's.
        let billing = f.app.get(format!("/seller/accounts/{ac}/billing"), s.clone()).await.expect(StatusCode::OK);
        assert!(billing.text.contains("id=\"documents\"") && billing.text.contains("Customer of A"), "{}", billing.text);
        f.app.get(format!("/seller/accounts/{}/billing", f.a), s.clone()).await.expect(StatusCode::NOT_FOUND);
        let b = f.app.session("b-admin", PASSWORD).await;
        f.app.get(format!("/seller/accounts/{ac}/billing"), b).await.expect(StatusCode::NOT_FOUND);
        // The tree one level down.
        let sub = f.app.get(format!("/seller/accounts?under={}", f.a2), s.clone()).await.expect(StatusCode::OK);
        assert!(sub.text.contains("Reseller A2"));
    }

    async fn others_reach_nothing(db) {
        let f = fixture(db).await;
        let (plan, a_copy, _) = f.chain().await;
        // Another reseller: not its plan, not its account.
        let b = f.app.session("b-admin", PASSWORD).await;
        f.app.get(format!("/seller/plans/{a_copy}"), b.clone()).await.expect(StatusCode::NOT_FOUND);
        f.app.get(format!("/seller/accounts?under={}", f.a), b.clone()).await.expect(StatusCode::NOT_FOUND);
        // The sub-reseller cannot see its parent's copy or the original.
        let a2 = f.app.session("a2-admin", PASSWORD).await;
        f.app.get(format!("/seller/plans/{plan}"), a2.clone()).await.expect(StatusCode::NOT_FOUND);
        // A customer gets no seller panel at all.
        let c = f.app.session("ac-admin", PASSWORD).await;
        f.app.get("/seller/dashboard", c.clone()).await.expect(StatusCode::NOT_FOUND);
        f.app.get("/seller/accounts", c).await.expect(StatusCode::NOT_FOUND);
        // Logged out: to the login page.
        let r = f.app.get("/seller/dashboard", common::ANON).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
    }

    async fn dashboard_and_task_manager(db) {
        let f = fixture(db).await;
        let t = f.app.enqueue_task(Some(f.p), "provision.noop").await;
        let s = f.app.session("p-admin", PASSWORD).await;
        let d = f.app.get("/seller/dashboard", s.clone()).await.expect(StatusCode::OK);
        assert!(d.text.contains("Failed tasks") && d.text.contains("Provider panel"), "{}", d.text);
        let tasks = f.app.get("/seller/tasks", s.clone()).await.expect(StatusCode::OK);
        assert!(tasks.text.contains("provision.noop"), "{}", tasks.text);
        let token = csrf_of(&tasks.text);
        let r = f.form(&format!("/seller/tasks/{t}/cancel"), &s, &format!("_csrf={token}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let cancelled = f.app.get("/seller/tasks?state=cancelled", s.clone()).await.expect(StatusCode::OK);
        assert!(cancelled.text.contains("provision.noop"), "{}", cancelled.text);
        let pending = f.app.get("/seller/tasks?state=pending", s.clone()).await.expect(StatusCode::OK);
        assert!(!pending.text.contains("provision.noop"), "{}", pending.text);
        // French panel.
        let Cred::Session(secret) = &s else { unreachable!() };
        let fr = f.app.req(Method::GET, "/seller/tasks")
            .header("cookie", &format!("cascade_session={secret}; cascade_lang=fr")).send().await;
        assert!(fr.text.contains("Gestionnaire de tâches"), "{}", fr.text);
    }
}
