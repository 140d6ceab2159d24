//! The seller panel's catalog pages in-process, on both backends: resource types
//! (create, edit, refusals), service templates (settings edited by the owner, a
//! reseller's override applying to its subtree with the effective value and where it
//! comes from), the sales category tree (create, rename, explicit up/down order that the
//! online store shows, plans assigned and taken out), notification templates
//! (inherited live, first edit makes a copy, preview with sample variables, invalid
//! template refused with nothing saved, revert), and the provider's connector
//! deployment wizard against the reference mail connector (self-description shown
//! before anything is written; confirm creates everything and the two-way check passes;
//! resellers get a 404). Every form is checked to change nothing without its CSRF token
//! or with bad input, and another seller's objects stay out of reach.

mod common;

use axum::http::{Method, StatusCode};
use cascade_domain::clock::{Clock, SystemClock};
use cascade_domain::privilege::BuiltinRole;
use cascade_mail_connector::{Config, Fault, start};
use cascade_store::{Db, on_tx};
use common::{Cred, PASSWORD, Resp, TestApp};
use serde_json::{Value, json};
use std::net::SocketAddr;

const SECRET: &str = "s3cret-s3cret-s3cret";
const WIDE_SKEW: i64 = 10 * 86_400;

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
    p_tok: Cred,
    a_tok: Cred,
}

/// P → A (reseller) → A2 (reseller), P → B (reseller); an admin login in each.
async fn fixture(db: Db) -> Fixture {
    let app = TestApp::with_config(
        db,
        cascade_http::HttpConfig {
            connector_skew_secs: WIDE_SKEW,
            ..Default::default()
        },
    );
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
    let au = app.store_user(a, "a-admin", true, &[admin]).await;
    app.store_user(b, "b-admin", true, &[admin]).await;
    app.store_user(a2, "a2-admin", true, &[admin]).await;
    let a_tok = Cred::Bearer(app.mint_token(au).await);
    Fixture {
        app,
        p,
        a,
        a2,
        p_tok,
        a_tok,
    }
}

fn fee(units: i64) -> Value {
    json!({"amount": units * 1_000_000})
}

fn content(categories: &[&str]) -> Value {
    let period = json!({"uid": "m1", "duration": 1, "unit": "month", "active": true, "setup": fee(0), "recurring": fee(10), "renewal": fee(10),
        "transfer": fee(0), "cancellation": fee(0), "refund": {"full_refund_days": 30, "non_refundable": 0, "after": "prorated"}, "sort": 1});
    json!({
        "name": {"default": "en", "values": {"en": "Office Suite"}},
        "sales_categories": categories,
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

impl Fixture {
    async fn form(&self, path: &str, cred: &Cred, body: &str) -> Resp {
        self.app
            .req(Method::POST, path)
            .cred(cred.clone())
            .raw(body.to_string(), Some("application/x-www-form-urlencoded"))
            .send()
            .await
    }
    async fn api(&self, path: String) -> Value {
        self.app
            .get(path, &self.p_tok)
            .await
            .expect(StatusCode::OK)
            .json
    }
    /// A session and the CSRF token of one of its pages.
    async fn login(&self, login: &str) -> (Cred, String) {
        let s = self.app.session(login, PASSWORD).await;
        let page = self
            .app
            .get("/seller/dashboard", s.clone())
            .await
            .expect(StatusCode::OK);
        (s, csrf_of(&page.text))
    }
    async fn template(&self, settings: Value) -> i64 {
        self.app
            .post(
                format!("/api/v1/accounts/{}/service-templates", self.p),
                &self.p_tok,
                json!({"name": "Office", "settings": settings}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id()
    }
    async fn plan(&self, template: i64, categories: &[&str]) -> i64 {
        self.app
            .post(
                format!("/api/v1/accounts/{}/plans", self.p),
                &self.p_tok,
                json!({"template_id": template, "content": content(categories)}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id()
    }
}

/// Where `needle` first appears in `hay` (for order checks).
fn at(hay: &str, needle: &str) -> usize {
    hay.find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in the page"))
}

cascade_testkit::both_backends! {
    async fn resource_types_are_created_and_edited_through_the_api_rules(db) {
        let f = fixture(db).await;
        let (s, token) = f.login("p-admin").await;
        let count = || async { sql(&f.app.db, "SELECT COUNT(*) FROM resource_types").await };
        let page = f.app.get("/seller/catalog", s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("id=\"create-type\"") && page.text.contains("id=\"open-wizard\""), "{}", page.text);

        let good = "code=mailbox&service=mail&unit=mailbox&name.en=Mailbox&name.fr=Bo%C3%AEte+aux+lettres&name.ar=&name_default=en";
        // Without the token: refused, nothing written.
        let r = f.form("/seller/resource-types", &s, good).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(count().await, 0);
        // Bad input: the API's field error on the page, nothing written.
        let r = f.form("/seller/resource-types", &s, &format!("_csrf={token}&code=no+spaces!&service=mail&unit=x&name.en=X&name_default=en")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("code"), "{}", r.text);
        let r = f.form("/seller/resource-types", &s, &format!("_csrf={token}&code=box&service=mail&unit=x&name.fr=Bo%C3%AEte&name_default=en")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a default language without a name: {}", r.text);
        assert_eq!(count().await, 0);

        let r = f.form("/seller/resource-types", &s, &format!("_csrf={token}&{good}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let id: i64 = r.header("location").unwrap().rsplit('/').next().unwrap().parse().unwrap();
        let t = f.api(format!("/api/v1/resource-types/{id}")).await;
        assert_eq!((t["code"].as_str(), t["service"].as_str(), t["name"]["values"]["fr"].as_str()), (Some("mailbox"), Some("mail"), Some("Boîte aux lettres")));
        let list = f.app.get("/seller/catalog", s.clone()).await.expect(StatusCode::OK);
        assert!(list.text.contains(&format!("href=\"/seller/resource-types/{id}\"")), "{}", list.text);

        // Edit: name per language, unit, connector binding.
        let edit = f.app.get(format!("/seller/resource-types/{id}"), s.clone()).await.expect(StatusCode::OK);
        assert!(edit.text.contains("id=\"edit-type\""), "{}", edit.text);
        let r = f.form(&format!("/seller/resource-types/{id}"), &s, &format!("_csrf={token}&code=mailbox&service=mail2&unit=box&name.en=Mailbox&name.ar=%D8%A8%D8%B1%D9%8A%D8%AF&name_default=en")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let t = f.api(format!("/api/v1/resource-types/{id}")).await;
        assert_eq!((t["service"].as_str(), t["unit"].as_str(), t["name"]["values"]["ar"].as_str()), (Some("mail2"), Some("box"), Some("بريد")));
        assert!(t["name"]["values"].get("fr").is_none(), "a cleared language is removed: {t}");

        // A reseller below reads it but cannot change it; another tree cannot even see it.
        let (a, a_token) = f.login("a-admin").await;
        let r = f.form(&format!("/seller/resource-types/{id}"), &a, &format!("_csrf={a_token}&code=hacked&service=mail&unit=box&name.en=X&name_default=en")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let page = f.app.get(format!("/seller/resource-types/{id}"), a.clone()).await.expect(StatusCode::OK);
        assert!(!page.text.contains("id=\"edit-type\""), "{}", page.text);
        assert_eq!(f.api(format!("/api/v1/resource-types/{id}")).await["code"], "mailbox");
        // The wizard link is the provider's only.
        let cat = f.app.get("/seller/catalog", a).await.expect(StatusCode::OK);
        assert!(!cat.text.contains("id=\"open-wizard\""), "{}", cat.text);
    }

    async fn template_settings_and_a_resellers_override_for_its_subtree(db) {
        let f = fixture(db).await;
        let tpl = f.template(json!({"region": {"type": "string", "value": "eu"}, "quota": {"type": "integer", "value": 5}})).await;
        let plan = f.plan(tpl, &[]).await;
        let a_copy = f.app.post(format!("/api/v1/plans/{plan}/copies"), &f.p_tok, json!({"reseller_id": f.a})).await.expect(StatusCode::CREATED).id();
        f.app.post(format!("/api/v1/plans/{a_copy}/copies"), &f.a_tok, json!({"reseller_id": f.a2})).await.expect(StatusCode::CREATED);
        let settings = || async { f.api(format!("/api/v1/service-templates/{tpl}")).await["settings"].clone() };

        // The owner edits values and adds a setting.
        let (p, pt) = f.login("p-admin").await;
        let page = f.app.get(format!("/seller/templates/{tpl}"), p.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("id=\"template-settings\""), "{}", page.text);
        let r = f.form(&format!("/seller/templates/{tpl}/settings"), &p, &format!("_csrf={pt}&name=Office&s.region=eu&s.quota=abc")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("settings.quota"), "{}", r.text);
        assert_eq!(settings().await["quota"]["value"], 5, "nothing written");
        let r = f.form(&format!("/seller/templates/{tpl}/settings"), &p, &format!("_csrf={pt}&name=Office&s.region=eu&s.quota=7&new_key=ssl&new_type=boolean&new_value=true")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let s = settings().await;
        assert_eq!((&s["quota"]["value"], &s["ssl"]["value"]), (&json!(7), &json!(true)), "{s}");

        // Reseller A: the vendor's template, read-only, with its effective values.
        let (a, at_) = f.login("a-admin").await;
        let list = f.app.get("/seller/catalog", a.clone()).await.expect(StatusCode::OK);
        assert!(list.text.contains(&format!("href=\"/seller/templates/{tpl}\"")), "{}", list.text);
        let page = f.app.get(format!("/seller/templates/{tpl}"), a.clone()).await.expect(StatusCode::OK);
        assert!(!page.text.contains("id=\"template-settings\"") && page.text.contains("id=\"override\""), "{}", page.text);
        let r = f.form(&format!("/seller/templates/{tpl}/settings"), &a, &format!("_csrf={at_}&name=Mine&s.region=xx&s.quota=1")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(settings().await["region"]["value"], "eu");
        // A bad override: the API's field error, nothing written.
        let r = f.form(&format!("/seller/templates/{tpl}/override"), &a, &format!("_csrf={at_}&on.quota=1&s.quota=many")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(sql(&f.app.db, "SELECT COUNT(*) FROM template_overrides").await, 0);
        // A's override of the region applies to A and its subtree (A2's customers).
        let r = f.form(&format!("/seller/templates/{tpl}/override"), &a, &format!("_csrf={at_}&on.region=1&s.region=de&s.quota=7&s.ssl=true")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let page = f.app.get(format!("/seller/templates/{tpl}"), a.clone()).await.expect(StatusCode::OK);
        let eff = &page.text[at(&page.text, "id=\"effective\"")..];
        assert!(eff.contains(&format!("<tr data-key=\"region\"><td><code>region</code></td><td>de</td><td data-source=\"{}\">Your override</td>", f.a)), "{eff}");
        assert!(eff.contains("<tr data-key=\"quota\"><td><code>quota</code></td><td>7</td><td data-source=\"template\">The template</td>"), "{eff}");
        let (a2, _) = f.login("a2-admin").await;
        let page = f.app.get(format!("/seller/templates/{tpl}"), a2).await.expect(StatusCode::OK);
        let eff = &page.text[at(&page.text, "id=\"effective\"")..];
        assert!(eff.contains(&format!("<td>de</td><td data-source=\"{}\">Override of Reseller A</td>", f.a)), "{eff}");
        // The connector's view is the same computation.
        let e = f.api(format!("/api/v1/service-templates/{tpl}/effective-settings?account_id={}", f.a2)).await;
        assert_eq!((&e["settings"]["region"]["value"], &e["sources"]["region"]), (&json!("de"), &json!(f.a)));
        // The provider is unaffected and sees A's override in its tree.
        let page = f.app.get(format!("/seller/templates/{tpl}"), p.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("<td>eu</td><td data-source=\"template\">"), "{}", page.text);
        assert!(page.text.contains("id=\"overrides\""), "{}", page.text);
        // Another reseller's override page cannot touch A's override.
        let (b, bt) = f.login("b-admin").await;
        let r = f.form(&format!("/seller/templates/{tpl}/settings"), &b, &format!("_csrf={bt}&name=X&s.region=zz")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // Unchecking everything inherits again.
        let r = f.form(&format!("/seller/templates/{tpl}/override"), &a, &format!("_csrf={at_}&s.region=de")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let e = f.api(format!("/api/v1/service-templates/{tpl}/effective-settings?account_id={}", f.a2)).await;
        assert_eq!((&e["settings"]["region"]["value"], &e["sources"]["region"]), (&json!("eu"), &Value::Null));
    }

    async fn category_tree_explicit_order_rename_and_plans(db) {
        let f = fixture(db).await;
        let (s, token) = f.login("p-admin").await;
        let count = || async { sql(&f.app.db, "SELECT COUNT(*) FROM sales_categories").await };
        for code in ["mail", "office", "hosting"] {
            let r = f.form("/seller/categories", &s, &format!("_csrf={token}&code={code}&name={code}-name&parent_id=")).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        }
        // Bad input and no token change nothing.
        let r = f.form("/seller/categories", &s, &format!("_csrf={token}&code=bad+code!&name=x&parent_id=")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        let r = f.form("/seller/categories", &s, "code=sneaky&name=x&parent_id=").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(count().await, 3);
        let tree = f.api(format!("/api/v1/accounts/{}/sales-categories", f.p)).await;
        let ids: Vec<(String, i64)> = tree["items"].as_array().unwrap().iter().map(|c| (c["code"].as_str().unwrap().to_string(), c["id"].as_i64().unwrap())).collect();
        let id = |code: &str| ids.iter().find(|(c, _)| c == code).unwrap().1;
        let order = || async {
            f.api(format!("/api/v1/accounts/{}/sales-categories", f.p)).await["items"].as_array().unwrap()
                .iter().map(|c| c["code"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(order().await, ["mail", "office", "hosting"]);

        // Hosting up: before office. Mail down: after hosting.
        let r = f.form(&format!("/seller/categories/{}/move", id("hosting")), &s, &format!("_csrf={token}&dir=up")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(order().await, ["mail", "hosting", "office"]);
        f.form(&format!("/seller/categories/{}/move", id("mail")), &s, &format!("_csrf={token}&dir=down")).await;
        assert_eq!(order().await, ["hosting", "mail", "office"]);
        // Up at the top changes nothing; a bad direction is refused.
        f.form(&format!("/seller/categories/{}/move", id("hosting")), &s, &format!("_csrf={token}&dir=up")).await;
        let r = f.form(&format!("/seller/categories/{}/move", id("hosting")), &s, &format!("_csrf={token}&dir=sideways")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(order().await, ["hosting", "mail", "office"]);
        // The panel and the online store show that order.
        let page = f.app.get("/seller/categories", s.clone()).await.expect(StatusCode::OK);
        assert!(at(&page.text, &format!("data-category=\"{}\"", id("hosting"))) < at(&page.text, &format!("data-category=\"{}\"", id("mail"))));
        assert!(at(&page.text, &format!("data-category=\"{}\"", id("mail"))) < at(&page.text, &format!("data-category=\"{}\"", id("office"))));
        let store = f.app.get(format!("/store/{}", f.p), common::ANON).await.expect(StatusCode::OK);
        assert!(at(&store.text, "data-category=\"hosting\"") < at(&store.text, "data-category=\"mail\""), "{}", store.text);
        assert!(at(&store.text, "data-category=\"mail\"") < at(&store.text, "data-category=\"office\""), "{}", store.text);

        // Rename in the reader's language.
        let r = f.form(&format!("/seller/categories/{}/rename", id("mail")), &s, &format!("_csrf={token}&name=Email+and+groupware")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(f.api(format!("/api/v1/sales-categories/{}", id("mail"))).await["name"]["values"]["en"], "Email and groupware");

        // Assign a plan, then take it out.
        let tpl = f.template(json!({})).await;
        let plan = f.plan(tpl, &[]).await;
        let r = f.form(&format!("/seller/categories/{}/plans", id("office")), &s, &format!("_csrf={token}&plan_id={plan}&op=add")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(f.api(format!("/api/v1/plans/{plan}")).await["content"]["sales_categories"], json!(["office"]));
        let store = f.app.get(format!("/store/{}", f.p), common::ANON).await.expect(StatusCode::OK);
        let office = &store.text[at(&store.text, "data-category=\"office\"")..];
        assert!(office.contains(&format!("/store/{}/plans/{plan}", f.p)), "{office}");
        f.form(&format!("/seller/categories/{}/plans", id("office")), &s, &format!("_csrf={token}&plan_id={plan}&op=remove")).await;
        assert_eq!(f.api(format!("/api/v1/plans/{plan}")).await["content"]["sales_categories"], json!([]));

        // Another seller can neither move nor rename P's categories, nor list P's plan.
        let (b, bt) = f.login("b-admin").await;
        let r = f.form(&format!("/seller/categories/{}/move", id("office")), &b, &format!("_csrf={bt}&dir=up")).await;
        assert!(r.status == StatusCode::NOT_FOUND || r.status == StatusCode::FORBIDDEN, "{}", r.status);
        let r = f.form(&format!("/seller/categories/{}/rename", id("office")), &b, &format!("_csrf={bt}&name=Mine")).await;
        assert!(r.status == StatusCode::NOT_FOUND || r.status == StatusCode::FORBIDDEN, "{}", r.status);
        assert_eq!(order().await, ["hosting", "mail", "office"]);
        assert_eq!(f.api(format!("/api/v1/sales-categories/{}", id("office"))).await["name"]["values"]["en"], "office-name");
        let page = f.app.get("/seller/categories", b).await.expect(StatusCode::OK);
        assert!(!page.text.contains("office-name"), "B's store tree is its own");
    }

    async fn notification_templates_inherit_copy_preview_and_revert(db) {
        let f = fixture(db).await;
        let (p, pt) = f.login("p-admin").await;
        let (a, at_) = f.login("a-admin").await;
        let ev = "/seller/notifications/order_completed";
        let subject = |acc: i64| {
            let f = &f;
            async move {
                let t = f.api(format!("/api/v1/accounts/{acc}/notification-templates/order_completed")).await;
                let en = t["texts"].as_array().unwrap().iter().find(|x| x["language"] == "en").unwrap()["subject"].as_str().unwrap().to_string();
                (t["source"].as_str().unwrap().to_string(), en)
            }
        };
        let list = f.app.get("/seller/notifications", a.clone()).await.expect(StatusCode::OK);
        assert!(list.text.contains("data-event=\"order_completed\" data-source=\"builtin\""), "{}", list.text);

        // The provider's first edit makes its copy; A inherits it live.
        let r = f.form(ev, &p, &format!("_csrf={pt}&lang=en&subject=Order+%7B%7B+order_id+%7D%7D+done&text=Thanks&html=")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(subject(f.p).await, ("own".to_string(), "Order {{ order_id }} done".to_string()));
        let page = f.app.get(ev, a.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("data-source=\"inherited\"") && page.text.contains("Order {{ order_id }} done"), "{}", page.text);
        f.form(ev, &p, &format!("_csrf={pt}&lang=en&subject=Order+%7B%7B+order_id+%7D%7D+completed&text=Thanks&html=")).await;
        assert_eq!(subject(f.a).await, ("inherited".to_string(), "Order {{ order_id }} completed".to_string()));

        // Preview with the sample variables: rendered, nothing written.
        let r = f.form(&format!("{ev}/preview"), &a, &format!("_csrf={at_}&lang=en&subject=Your+order+%7B%7B+order_id+%7D%7D&text=Hello&html=")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let preview = &r.text[at(&r.text, "id=\"preview\"")..];
        let preview = &preview[..at(preview, "</section>")];
        assert!(preview.contains("<strong>Your order 1042</strong>") && !preview.contains("{{"), "{preview}");
        assert_eq!(subject(f.a).await.0, "inherited");
        // An invalid template: the API's 422 naming the field; nothing saved.
        let r = f.form(ev, &a, &format!("_csrf={at_}&lang=en&subject=%7B%7B+nope+%7D%7D&text=x&html=")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("nope"), "{}", r.text);
        let r = f.form(ev, &a, &format!("_csrf={at_}&lang=en&subject=%7B%25+if+%25%7D&text=x&html=")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(subject(f.a).await.0, "inherited");
        // Without the token: nothing.
        let r = f.form(ev, &a, "lang=en&subject=x&text=x&html=").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // A's first edit (French added) makes its copy; the provider's later edits no longer reach it.
        let r = f.form(ev, &a, &format!("_csrf={at_}&lang=fr&subject=Commande+%7B%7B+order_id+%7D%7D&text=Merci&html=")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        f.form(ev, &p, &format!("_csrf={pt}&lang=en&subject=Changed+upstream&text=Thanks&html=")).await;
        assert_eq!(subject(f.a).await, ("own".to_string(), "Order {{ order_id }} completed".to_string()));
        let page = f.app.get(format!("{ev}?lang=fr"), a.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("data-source=\"own\"") && page.text.contains("value=\"Commande {{ order_id }}\"") && page.text.contains("id=\"revert\""), "{}", page.text);
        // Revert: inherited again, live.
        let r = f.form(&format!("{ev}/revert"), &a, &format!("_csrf={at_}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(subject(f.a).await, ("inherited".to_string(), "Changed upstream".to_string()));
        // An unknown event is a 404 page.
        f.app.get("/seller/notifications/no_such_event", a).await.expect(StatusCode::NOT_FOUND);
    }

    async fn deployment_wizard_against_the_reference_connector(db) {
        let f = fixture(db).await;
        f.app.clock.set(SystemClock.now());
        // The same router on loopback: the connector calls Cascade back there.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = cascade_http::router(f.app.state.clone());
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        });
        let c = start(Config { secret: SECRET.into(), skew_secs: WIDE_SKEW, fault: Fault::None, ..Config::default() }).await.unwrap();
        let pin = c.pin.clone();
        let counts = || async {
            (sql(&f.app.db, "SELECT COUNT(*) FROM connector_instances").await,
             sql(&f.app.db, "SELECT COUNT(*) FROM resource_types").await,
             sql(&f.app.db, "SELECT COUNT(*) FROM plans").await)
        };
        let (s, token) = f.login("p-admin").await;
        let page = f.app.get("/seller/connectors", s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("id=\"wizard\""), "{}", page.text);
        let conn = format!("name=Demo+Mail&endpoint={}&secret={SECRET}&cert_pin={pin}&template_name=Mail+hosting", c.base_url());

        // Bad input: the API's field error, nothing created.
        let r = f.form("/seller/connectors/describe", &s, &format!("_csrf={token}&name=Demo&endpoint=not+a+url&secret={SECRET}&cert_pin=")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("endpoint"), "{}", r.text);
        // Step 2: the self-description, nothing written yet.
        let r = f.form("/seller/connectors/describe", &s, &format!("_csrf={token}&{conn}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let offered = &r.text[at(&r.text, "id=\"offered-types\"")..];
        assert!(offered.contains("<code>mailbox</code>"), "{offered}");
        let schema = &r.text[at(&r.text, "id=\"settings-schema\"")..];
        assert!(schema.contains("<code>domain</code>") && schema.contains("example.test"), "{schema}");
        assert!(r.text.contains("id=\"confirm\""), "{}", r.text);
        assert_eq!(counts().await, (0, 0, 0));
        // Without the token, nothing.
        let r = f.form("/seller/connectors/wizard", &s, &conn).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(counts().await, (0, 0, 0));

        // Step 3: confirm; everything created, then the two-way check.
        let r = f.app.req(Method::POST, "/seller/connectors/wizard").cred(s.clone())
            .header("host", &addr.to_string())
            .raw(format!("_csrf={token}&{conn}"), Some("application/x-www-form-urlencoded")).send().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let (instances, types, plans) = counts().await;
        assert_eq!((instances, plans), (1, 1));
        assert_eq!(types, 3);
        let check = &r.text[at(&r.text, "id=\"check\"")..];
        assert_eq!(check.matches("data-ok=\"true\"").count(), 2, "both directions: {check}");
        let i = at(&r.text, "id=\"created-template\"");
        let tpl: i64 = r.text[..i].rsplit("/seller/templates/").next().unwrap().trim_end_matches(['"', ' ']).parse().unwrap();
        let t = f.api(format!("/api/v1/service-templates/{tpl}")).await;
        assert_eq!((t["name"].as_str(), &t["settings"]["domain"]["value"]), (Some("Mail hosting"), &json!("example.test")));
        // The starter plan's rates by resource type name, prices editable by its owner.
        let i = at(&r.text, "id=\"created-plan\"");
        let plan: i64 = r.text[..i].rsplit("/seller/plans/").next().unwrap().trim_end_matches(['"', ' ']).parse().unwrap();
        let plan_page = f.app.get(format!("/seller/plans/{plan}"), s.clone()).await.expect(StatusCode::OK);
        let prices = &plan_page.text[at(&plan_page.text, "id=\"prices\"")..];
        assert!(prices.contains("<td>Mailbox</td>") && prices.contains("name=\"rate.mailbox.recurring\""), "{prices}");
        let inst = f.api(format!("/api/v1/accounts/{}/connector-instances", f.p)).await;
        assert_eq!(inst[0]["last_check_ok"], true, "{inst}");
        let list = f.app.get("/seller/connectors", s.clone()).await.expect(StatusCode::OK);
        assert!(list.text.contains("Demo Mail") && list.text.contains("<span class=\"badge\">OK</span>"), "{}", list.text);

        // Again: the API's conflict, no second set.
        let r = f.form("/seller/connectors/wizard", &s, &format!("_csrf={token}&{conn}")).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(counts().await, (1, 3, 1));

        // A reseller sees no wizard at all.
        let (a, at_) = f.login("a-admin").await;
        f.app.get("/seller/connectors", a.clone()).await.expect(StatusCode::NOT_FOUND);
        let r = f.form("/seller/connectors/describe", &a, &format!("_csrf={at_}&{conn}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = f.form("/seller/connectors/wizard", &a, &format!("_csrf={at_}&{conn}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(counts().await, (1, 3, 1));
        c.stop().await;
    }
}
