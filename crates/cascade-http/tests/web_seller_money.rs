//! Seller panel accounts and money, in-process on both backends: the dashboard's
//! revenue and open invoices; an account's invoices and payments (view, PDF, record a
//! bank transfer, apply it, a standalone payment stays open, bad amounts change
//! nothing); users and roles under `MANAGE_AFFILIATED_ACCOUNTS`; billing-screen
//! visibility inherited down the tree with a reseller's override (API, seller page and
//! the customer panel).

mod common;

use axum::http::{Method, StatusCode};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::privilege::BuiltinRole;
use cascade_store::Db;
use cascade_store::documents::{DocKind, Documents, NewDocument};
use common::{Cred, PASSWORD, Resp, TestApp, grants};
use serde_json::{Value, json};

struct Fixture {
    app: TestApp,
    p: i64,
    a: i64,
    b: i64,
    ac: i64,
    bc: i64,
    p_tok: Cred,
    a_tok: Cred,
}

/// P → A, B (resellers); AC customer of A, BC customer of B; an admin login in each.
async fn fixture(db: Db) -> Fixture {
    let app = TestApp::new(db);
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
    let ac = app
        .create_account(&p_tok, a, "customer", "Customer of A")
        .await;
    let bc = app
        .create_account(&p_tok, b, "customer", "Customer of B")
        .await;
    let au = app.store_user(a, "a-admin", true, &[admin]).await;
    app.store_user(b, "b-admin", true, &[admin]).await;
    app.store_user(ac, "ac-admin", true, &[admin]).await;
    app.store_user(bc, "bc-admin", true, &[admin]).await;
    let a_tok = Cred::Bearer(app.mint_token(au).await);
    Fixture {
        app,
        p,
        a,
        b,
        ac,
        bc,
        p_tok,
        a_tok,
    }
}

impl Fixture {
    async fn invoice(&self, issuer: i64, account: i64, date: &str, minor: i64) -> i64 {
        let h = NewDocument {
            kind: DocKind::Invoice,
            issuer: AccountId(issuer),
            account: AccountId(account),
            currency: "EUR",
            issue_date: date,
            due_date: Some("2023-12-31"),
            charge_date: None,
            tax_bp: 0,
            method: None,
            external_ref: None,
            idem_key: None,
        };
        let mut tx = self.app.db.begin().await.unwrap();
        let d = Documents::issue_single(
            &mut tx,
            &h,
            "recurring",
            "Office Suite",
            minor,
            Timestamp(0),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        d.id
    }
    async fn open(&self, doc: i64) -> i64 {
        self.app.db.documents().get(doc).await.unwrap().open_minor
    }
    async fn payments_of(&self, account: i64) -> Vec<(i64, i64, i64)> {
        self.app
            .db
            .documents()
            .of_account(AccountId(account), Some(DocKind::Payment), None, 100)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|d| (d.id, d.total_minor, d.open_minor))
            .collect()
    }
    async fn form(&self, path: &str, cred: &Cred, body: &str) -> Resp {
        self.app
            .req(Method::POST, path)
            .cred(cred.clone())
            .raw(body.to_string(), Some("application/x-www-form-urlencoded"))
            .send()
            .await
    }
    async fn users_of(&self, account: i64) -> Value {
        self.app
            .get(format!("/api/v1/accounts/{account}/users"), &self.p_tok)
            .await
            .expect(StatusCode::OK)
            .json
    }
}

/// The CSRF token of a page's first form.
fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + 20;
    html[i..i + 64].to_string()
}

fn value_of(html: &str, name: &str) -> String {
    let i = html.find(&format!("name=\"{name}\" value=\"")).expect(name) + name.len() + 15;
    html[i..].split('"').next().unwrap().to_string()
}

fn logins(users: &Value) -> Vec<String> {
    let mut v: Vec<String> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["login"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

cascade_testkit::both_backends! {
    async fn the_dashboard_shows_revenue_this_month_and_open_invoices(db) {
        let f = fixture(db).await;
        // The clock is at 2023-11-14: two November invoices, one from October.
        let i1 = f.invoice(f.a, f.ac, "2023-11-01", 1_050).await;
        f.invoice(f.a, f.ac, "2023-11-14", 2_001).await;
        f.invoice(f.a, f.ac, "2023-10-31", 70_000).await;
        // The provider's own invoice to its reseller is P's revenue, not A's.
        f.invoice(f.p, f.a, "2023-11-02", 99_999).await;

        let s = f.app.get(format!("/api/v1/accounts/{}/money-summary", f.a), &f.a_tok).await.expect(StatusCode::OK).json;
        assert_eq!(s["month"], "2023-11");
        assert_eq!(s["revenue"], json!([{"currency": "EUR", "count": 2, "amount_minor": 3_051}]));
        assert_eq!(s["open_invoices"], json!([{"currency": "EUR", "count": 3, "amount_minor": 73_051}]));
        // Another reseller cannot see A's figures; the provider can.
        let b = f.app.session("b-admin", PASSWORD).await;
        f.app.get(format!("/api/v1/accounts/{}/money-summary", f.a), b).await.expect(StatusCode::NOT_FOUND);
        f.app.get(format!("/api/v1/accounts/{}/money-summary", f.a), &f.p_tok).await.expect(StatusCode::OK);

        let s = f.app.session("a-admin", PASSWORD).await;
        let dash = f.app.get("/seller/dashboard", s.clone()).await.expect(StatusCode::OK);
        let rev = &dash.text[dash.text.find("id=\"revenue-month\"").expect("revenue card")..];
        assert!(rev.contains("30.51 EUR"), "{rev}");
        let open = &dash.text[dash.text.find("id=\"open-invoices\"").expect("open invoices card")..];
        assert!(open.contains("730.51 EUR") && open.contains("(3 invoices)"), "{open}");
        assert!(dash.text.contains("id=\"failed-tasks\""), "the other figures stay");

        // Paying an invoice moves the open figure, not the revenue.
        let pay = f.app.post(format!("/api/v1/accounts/{}/payments", f.ac), &f.a_tok,
            json!({"amount_minor": 1_050, "currency": "EUR", "method": "bank_transfer", "apply_to": [i1]})).await;
        pay.expect(StatusCode::CREATED);
        let dash = f.app.get("/seller/dashboard", s).await.expect(StatusCode::OK);
        assert!(dash.text.contains("720.01 EUR") && dash.text.contains("30.51 EUR"), "{}", dash.text);
    }

    async fn a_seller_records_and_applies_payments_and_bad_amounts_change_nothing(db) {
        let f = fixture(db).await;
        let i1 = f.invoice(f.a, f.ac, "2023-11-01", 1_050).await;
        let i2 = f.invoice(f.a, f.ac, "2023-11-02", 2_001).await;
        let s = f.app.session("a-admin", PASSWORD).await;

        let page = f.app.get(format!("/seller/accounts/{}/money", f.ac), s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("INV-000001") && page.text.contains("10.50 EUR") && page.text.contains("20.01 EUR"), "{}", page.text);
        assert!(page.text.contains(&format!("href=\"/api/v1/documents/{i1}/pdf\"")), "{}", page.text);
        let token = csrf_of(&page.text);
        let nonce = value_of(&page.text, "nonce");
        let pdf = f.app.get(format!("/api/v1/documents/{i1}/pdf"), s.clone()).await.expect(StatusCode::OK);
        assert_eq!(pdf.content_type(), Some("application/pdf"));
        let view = f.app.get(format!("/seller/documents/{i1}"), s.clone()).await.expect(StatusCode::OK);
        assert!(view.text.contains("Office Suite") && view.text.contains("10.50 EUR"), "{}", view.text);

        let path = format!("/seller/accounts/{}/payments", f.ac);
        // Bad amounts: the API's field error on a page, nothing written.
        for bad in ["abc", "0", "-5", "1.234"] {
            let r = f.form(&path, &s, &format!("_csrf={token}&nonce=x{bad}&amount={bad}&method=bank_transfer")).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {}", r.text);
            assert!(r.text.contains("amount"), "{}", r.text);
        }
        let r = f.form(&path, &s, &format!("_csrf={token}&nonce=y&amount=5&method=cash")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("method"), "{}", r.text);
        // An invoice of another account is refused, nothing written.
        let other = f.invoice(f.b, f.bc, "2023-11-02", 500).await;
        let r = f.form(&path, &s, &format!("_csrf={token}&nonce=z&amount=5&method=check&apply_to={other}")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(f.payments_of(f.ac).await.is_empty());

        // 15.00 by bank transfer, applied to the first invoice; the rest stays open.
        let body = format!("_csrf={token}&nonce={nonce}&amount=15.00&method=bank_transfer&external_ref=BANK-42&apply_to={i1}");
        let r = f.form(&path, &s, &body).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        // The same form sent twice records one payment.
        let r = f.form(&path, &s, &body).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let pays = f.payments_of(f.ac).await;
        assert_eq!(pays.len(), 1, "{pays:?}");
        let (pay, total, open) = pays[0];
        assert_eq!((total, open), (1_500, 450));
        assert_eq!(f.open(i1).await, 0);

        // A standalone check stays open.
        let r = f.form(&path, &s, &format!("_csrf={token}&nonce=n2&amount=3&method=check")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(f.payments_of(f.ac).await.len(), 2);

        let page = f.app.get(format!("/seller/accounts/{}/money", f.ac), s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("BANK-42") && page.text.contains("4.50 EUR") && page.text.contains("3.00 EUR"), "{}", page.text);

        // Apply the rest of the transfer to the second invoice; more than is open is refused.
        let apply = format!("/seller/documents/{pay}/apply");
        let r = f.form(&apply, &s, &format!("_csrf={token}&invoice_id={i2}&amount=4.51")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(f.open(i2).await, 2_001);
        let r = f.form(&apply, &s, &format!("_csrf={token}&invoice_id={i2}&amount=4.50")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(f.open(i2).await, 1_551);
        assert_eq!(f.open(pay).await, 0);

        // Not the seller's customer: nothing to see or record.
        let b = f.app.session("b-admin", PASSWORD).await;
        f.app.get(format!("/seller/accounts/{}/money", f.ac), b.clone()).await.expect(StatusCode::NOT_FOUND);
        let r = f.form(&path, &b, &format!("_csrf={}&nonce=q&amount=5&method=check", csrf_of(&f.app.get("/seller/dashboard", b.clone()).await.text))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert_eq!(f.payments_of(f.ac).await.len(), 2);
        // A customer has no seller panel.
        let c = f.app.session("ac-admin", PASSWORD).await;
        f.app.get(format!("/seller/accounts/{}/money", f.ac), c).await.expect(StatusCode::NOT_FOUND);
    }

    async fn users_and_roles_of_affiliated_accounts_only_with_the_privilege(db) {
        let f = fixture(db).await;
        let admin = f.app.builtin_role(BuiltinRole::AccountAdmin).await;
        let affiliated = f.app.create_role(&f.a_tok, f.a, "Affiliates", grants(&["MANAGE_AFFILIATED_ACCOUNTS", "ACCOUNTS_VIEW"])).await;
        let billing = f.app.builtin_role(BuiltinRole::BillingStaff).await;
        f.app.store_user(f.a, "a-aff", true, &[affiliated]).await;
        f.app.store_user(f.a, "a-bill", true, &[billing]).await;

        // The administrator of A: lists AC's users, creates one with a role, edits, detaches.
        let s = f.app.session("a-admin", PASSWORD).await;
        let page = f.app.get(format!("/seller/accounts/{}/users", f.ac), s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("ac-admin") && page.text.contains("Account administrator"), "{}", page.text);
        let token = csrf_of(&page.text);
        let r = f.form(&format!("/seller/accounts/{}/users", f.ac), &s,
            &format!("_csrf={token}&login=ac-clerk&display_name=Clerk&email=clerk%40example.com&password=&role_id={billing}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let users = f.users_of(f.ac).await;
        assert_eq!(logins(&users), vec!["ac-admin", "ac-clerk"]);
        let clerk = users["items"].as_array().unwrap().iter().find(|u| u["login"] == "ac-clerk").unwrap().clone();
        let clerk_id = clerk["id"].as_i64().unwrap();
        assert_eq!(clerk["roles"][0]["id"], billing);

        let r = f.form(&format!("/seller/users/{clerk_id}"), &s, &format!("_csrf={token}&display_name=Head+Clerk&email=head%40example.com")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let r = f.form(&format!("/seller/users/{clerk_id}/roles"), &s, &format!("_csrf={token}&role_id={admin}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let r = f.form(&format!("/seller/users/{clerk_id}/roles/{billing}/detach"), &s, &format!("_csrf={token}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let page = f.app.get(format!("/seller/accounts/{}/users", f.ac), s.clone()).await.expect(StatusCode::OK);
        let row = &page.text[page.text.find(&format!("data-user=\"{clerk_id}\"")).unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(row.contains("Head Clerk") && row.contains("head@example.com") && row.contains("Account administrator") && !row.contains("Billing staff</span>"), "{row}");

        // MANAGE_AFFILIATED_ACCOUNTS: the users of AC, never those of A itself.
        let aff = f.app.session("a-aff", PASSWORD).await;
        let page = f.app.get(format!("/seller/accounts/{}/users", f.ac), aff.clone()).await.expect(StatusCode::OK);
        let token = csrf_of(&page.text);
        let r = f.form(&format!("/seller/users/{clerk_id}/roles"), &aff, &format!("_csrf={token}&role_id={affiliated}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        // A role with more than the caller holds is refused, visibly, nothing changed.
        let r = f.form(&format!("/seller/users/{clerk_id}/roles"), &aff, &format!("_csrf={token}&role_id={billing}")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(r.text.contains("holds all of its privileges"), "{}", r.text);
        let own = f.app.get(format!("/seller/accounts/{}/users", f.a), aff.clone()).await;
        assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.text);
        assert!(own.text.contains("USERS_MANAGE"), "{}", own.text);
        let r = f.form(&format!("/seller/accounts/{}/users", f.a), &aff,
            &format!("_csrf={token}&login=a-sneaky&display_name=S&email=s%40example.com")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(!logins(&f.users_of(f.a).await).contains(&"a-sneaky".to_string()));

        // Without the privilege: refused for AC's users too, nothing created.
        let bill = f.app.session("a-bill", PASSWORD).await;
        let r = f.app.get(format!("/seller/accounts/{}/users", f.ac), bill.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(r.text.contains("MANAGE_AFFILIATED_ACCOUNTS"), "{}", r.text);
        let token = csrf_of(&f.app.get("/seller/dashboard", bill.clone()).await.text);
        let r = f.form(&format!("/seller/accounts/{}/users", f.ac), &bill,
            &format!("_csrf={token}&login=ac-sneaky&display_name=S&email=s%40example.com")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(logins(&f.users_of(f.ac).await), vec!["ac-admin", "ac-clerk"]);
        // Another reseller's customer does not exist for A.
        f.app.get(format!("/seller/accounts/{}/users", f.bc), s).await.expect(StatusCode::NOT_FOUND);
    }

    async fn billing_screens_are_inherited_until_a_reseller_overrides(db) {
        let f = fixture(db).await;
        let vis = |id: i64| format!("/api/v1/accounts/{id}/billing-visibility");
        let all = json!({"invoices": true, "payments": true, "balance": true});
        let no_invoices = json!({"invoices": false, "payments": true, "balance": true});

        // Nobody chose: all visible.
        let v = f.app.get(vis(f.ac), &f.a_tok).await.expect(StatusCode::OK).json;
        assert_eq!((v["effective"].clone(), v["own"].clone(), v["inherited_from"].clone()), (all.clone(), Value::Null, Value::Null));

        // The provider hides invoices: inherited by both branches.
        let v = f.app.req(Method::PUT, vis(f.p)).cred(f.p_tok.clone()).json(&no_invoices).send().await.expect(StatusCode::OK).json;
        assert_eq!(v["own"], no_invoices);
        for c in [f.ac, f.bc] {
            let v = f.app.get(vis(c), &f.p_tok).await.expect(StatusCode::OK).json;
            assert_eq!((v["effective"].clone(), v["inherited_from"].clone()), (no_invoices.clone(), json!(f.p)));
        }
        // Bad bodies and customers: refused, nothing written.
        f.app.req(Method::PUT, vis(f.a)).cred(f.a_tok.clone()).json(&json!({"invoices": true})).send().await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);
        f.app.req(Method::PUT, vis(f.ac)).cred(f.a_tok.clone()).json(&all).send().await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "not_a_seller");
        let b = f.app.session("b-admin", PASSWORD).await;
        f.app.req(Method::PUT, vis(f.a)).cred(b.clone()).json(&all).send().await.expect(StatusCode::NOT_FOUND);
        assert_eq!(f.app.get(vis(f.a), &f.a_tok).await.json["own"], Value::Null);

        // The customer panel of AC: no invoices section, and the rest.
        let c = f.app.session("ac-admin", PASSWORD).await;
        let billing = f.app.get("/panel/billing", c.clone()).await.expect(StatusCode::OK);
        assert!(!billing.text.contains("class=\"invoices\"") && billing.text.contains("class=\"balance\""), "{}", billing.text);

        // Reseller A overrides on its seller page: only invoices.
        let s = f.app.session("a-admin", PASSWORD).await;
        let r = f.app.get("/seller/billing-visibility", s.clone()).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let page = f.app.get(format!("/seller/accounts/{}/billing-visibility", f.a), s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("Inherited from Provider"), "{}", page.text);
        assert!(page.text.contains("name=\"s_payments\" value=\"1\" checked") && !page.text.contains("name=\"s_invoices\" value=\"1\" checked"), "{}", page.text);
        let token = csrf_of(&page.text);
        let r = f.form(&format!("/seller/accounts/{}/billing-visibility", f.a), &s, &format!("_csrf={token}&action=set&s_invoices=1")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let page = f.app.get(format!("/seller/accounts/{}/billing-visibility", f.a), s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("own choice applies"), "{}", page.text);

        // The provider's later change reaches B's customer, not A's.
        let only_balance = json!({"invoices": false, "payments": false, "balance": true});
        f.app.req(Method::PUT, vis(f.p)).cred(f.p_tok.clone()).json(&only_balance).send().await.expect(StatusCode::OK);
        let v = f.app.get(vis(f.ac), &f.p_tok).await.expect(StatusCode::OK).json;
        assert_eq!((v["effective"].clone(), v["inherited_from"].clone()), (json!({"invoices": true, "payments": false, "balance": false}), json!(f.a)));
        assert_eq!(f.app.get(vis(f.bc), &f.p_tok).await.json["effective"], only_balance);

        // AC sees invoices only: no balance, no top-up (404 on the form's URL too).
        let billing = f.app.get("/panel/billing", c.clone()).await.expect(StatusCode::OK);
        assert!(billing.text.contains("class=\"invoices\"") || billing.text.contains("Invoices"), "{}", billing.text);
        assert!(!billing.text.contains("class=\"balance\"") && !billing.text.contains("/panel/billing/topup"), "{}", billing.text);
        let token_c = csrf_of(&f.app.get("/panel/profile", c.clone()).await.text);
        let r = f.form("/panel/billing/topup", &c, &format!("_csrf={token_c}&amount=5&card=4242424242424242")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

        // A hides everything: the billing entry leaves AC's navigation, the URL is a 404.
        let r = f.form(&format!("/seller/accounts/{}/billing-visibility", f.a), &s, &format!("_csrf={token}&action=set")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let home = f.app.get("/panel", c.clone()).await.expect(StatusCode::OK);
        assert!(!home.text.contains("href=\"/panel/billing\""), "{}", home.text);
        f.app.get("/panel/billing", c.clone()).await.expect(StatusCode::NOT_FOUND);
        let bc = f.app.session("bc-admin", PASSWORD).await;
        let home = f.app.get("/panel", bc).await.expect(StatusCode::OK);
        assert!(home.text.contains("href=\"/panel/billing\""), "B's customer keeps it");

        // Reset: A inherits the provider's choice again.
        let r = f.form(&format!("/seller/accounts/{}/billing-visibility", f.a), &s, &format!("_csrf={token}&action=reset")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let v = f.app.get(vis(f.ac), &f.p_tok).await.expect(StatusCode::OK).json;
        assert_eq!((v["effective"].clone(), v["inherited_from"].clone()), (only_balance, json!(f.p)));
    }

    async fn the_customer_panel_serves_an_invoice_pdf_only_while_invoices_are_shown(db) {
        let f = fixture(db).await;
        let mine = f.invoice(f.a, f.ac, "2023-11-01", 1_234).await;
        let theirs = f.invoice(f.b, f.bc, "2023-11-01", 999).await;
        let c = f.app.session("ac-admin", PASSWORD).await;
        let pdf = |id: i64| format!("/panel/billing/invoices/{id}/pdf");

        // Shown: the panel links its own route (not the API), which serves the PDF.
        let billing = f.app.get("/panel/billing", c.clone()).await.expect(StatusCode::OK);
        assert!(billing.text.contains(&format!("href=\"{}\"", pdf(mine))), "{}", billing.text);
        assert!(!billing.text.contains("/api/v1/documents/"), "{}", billing.text);
        let r = f.app.get(pdf(mine), c.clone()).await.expect(StatusCode::OK);
        assert_eq!(r.headers["content-type"], "application/pdf");
        assert!(r.text.starts_with("%PDF"), "a PDF");
        // The API route, with the customer's own token: the same rule.
        let api = format!("/api/v1/documents/{mine}/pdf");
        let c_tok = Cred::Bearer(f.app.api_token(c.clone(), "pdf").await.1);
        assert_eq!(f.app.get(&api, &c_tok).await.expect(StatusCode::OK).content_type(), Some("application/pdf"));
        // Another account's invoice, or a document that does not exist: the 404 page.
        f.app.get(pdf(theirs), c.clone()).await.expect(StatusCode::NOT_FOUND);
        f.app.get(pdf(theirs + 1_000), c.clone()).await.expect(StatusCode::NOT_FOUND);

        // The provider hides invoices from the channel: the same URL is now a 404.
        let no_invoices = json!({"invoices": false, "payments": true, "balance": true});
        f.app.req(Method::PUT, format!("/api/v1/accounts/{}/billing-visibility", f.p)).cred(f.p_tok.clone())
            .json(&no_invoices).send().await.expect(StatusCode::OK);
        let r = f.app.get(pdf(mine), c.clone()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert!(!r.text.starts_with("%PDF"));
        // The API refuses it to the customer as well (a problem+json 404, no PDF); its
        // sellers still read it.
        let r = f.app.get(&api, &c_tok).await.expect_problem(StatusCode::NOT_FOUND, "not_found");
        assert!(!r.text.starts_with("%PDF"));
        f.app.get(&api, &f.a_tok).await.expect(StatusCode::OK);
        f.app.get(&api, &f.p_tok).await.expect(StatusCode::OK);
    }
}
