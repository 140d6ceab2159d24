//! The demo's catalog, seeded through the public API (in-process), so the demo only
//! contains what a real provider and resellers could have built: resource types and
//! categories, service templates with a reseller's provisioning override, store trees,
//! plans (a productivity suite per seat monthly/annual, pay-as-you-go cloud compute, web
//! hosting, domains by TLD), delegated down the channel with different retail prices at
//! every tier, a reseller whose prices are locked against synchronization, and one
//! synchronization already in the audit trail.

use anyhow::{Context, bail};
use axum::body::Body;
use axum::http::{Method, Request};
use cascade_domain::clock::{Clock, SystemClock};
use cascade_domain::ids::{AccountId, UserId};
use cascade_http::state::{AppState, HttpConfig};
use cascade_store::Db;
use cascade_store::auth::Auth;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

struct Api {
    app: axum::Router,
}

impl Api {
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )?;
        let res = self.app.clone().oneshot(req).await?;
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await?;
        if !status.is_success() {
            bail!(
                "{method} {path} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        })
    }
    async fn post(&self, token: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(token, Method::POST, path, Some(body)).await
    }
    async fn put(&self, token: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(token, Method::PUT, path, Some(body)).await
    }
    async fn get(&self, token: &str, path: &str) -> anyhow::Result<Value> {
        self.call(token, Method::GET, path, None).await
    }
}

fn id(v: &Value) -> anyhow::Result<i64> {
    v["id"].as_i64().context("response without id")
}

fn text(en: &str, fr: &str, ar: &str) -> Value {
    json!({"default": "en", "values": {"en": en, "fr": fr, "ar": ar}})
}

fn money(units_hundredths: i64) -> Value {
    // Hundredths of a unit → millionths.
    json!({"amount": units_hundredths * 10_000})
}

fn period(uid: &str, months: u32, recurring: i64, setup: i64) -> Value {
    json!({"uid": uid, "duration": months, "unit": "month", "active": true, "setup": money(setup), "recurring": money(recurring),
        "renewal": money(recurring), "transfer": money(0), "cancellation": money(0),
        "refund": {"full_refund_days": 30, "non_refundable": 0, "after": "prorated"}, "sort": months})
}

#[allow(clippy::too_many_arguments)]
fn rate(
    uid: &str,
    rt: i64,
    included: i64,
    min: i64,
    max: i64,
    recurring: i64,
    overuse: i64,
    measurable: bool,
    slider: bool,
) -> Value {
    let display = if slider {
        json!({"type": "slider", "min": min, "max": max, "step": 1})
    } else {
        json!({"type": "spinner"})
    };
    json!({"uid": uid, "resource_type_id": rt, "included": included, "min": min, "max": max, "setup_fee": 0,
        "recurring_fee": recurring * 10_000, "overuse_fee": overuse * 10_000, "per_unit": true, "measurable": measurable,
        "show_in_store": true, "show_in_panel": true, "display": display})
}

/// Scale every price of a plan's content by `percent` (retail mark-up of a reseller).
fn marked_up(content: &Value, percent: i64) -> Value {
    let mut c = content.clone();
    let up = |v: &mut Value| {
        if let Some(n) = v.as_i64() {
            *v = json!(n * percent / 100 / 10_000 * 10_000);
        }
    };
    if let Some(periods) = c["periods"].as_array_mut() {
        for p in periods {
            for fee in ["setup", "recurring", "renewal"] {
                up(&mut p[fee]["amount"]);
            }
        }
    }
    if let Some(rates) = c["rates"].as_array_mut() {
        for r in rates {
            for fee in ["recurring_fee", "overuse_fee"] {
                up(&mut r[fee]);
            }
        }
    }
    c
}

pub struct DemoChannel {
    pub provider: (AccountId, UserId),
    pub northwind: (AccountId, UserId),
    pub bluebird: (AccountId, UserId),
    pub alpine: (AccountId, UserId),
    /// Customers of Northwind, Alpine and Bluebird that place the demo's orders.
    pub contoso: AccountId,
    pub edelweiss: AccountId,
    pub fabrikam: AccountId,
}

pub async fn seed(db: &Db, ch: &DemoChannel) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let mut tokens = Vec::new();
    let mut tx = db.begin().await?;
    for (_, user) in [ch.provider, ch.northwind, ch.bluebird, ch.alpine] {
        let secret = cascade_http::auth::new_secret("cat_");
        Auth::create_token(
            &mut tx,
            user,
            "demo seed",
            &secret,
            now,
            Some(now.plus_secs(3600)),
        )
        .await?;
        tokens.push(secret);
    }
    tx.commit().await?;
    let (p, n, b, a) = (&tokens[0], &tokens[1], &tokens[2], &tokens[3]);
    let (pid, nid, bid, aid) = (
        ch.provider.0.0,
        ch.northwind.0.0,
        ch.bluebird.0.0,
        ch.alpine.0.0,
    );
    let api = Api {
        app: cascade_http::router(AppState::new(
            db.clone(),
            Arc::new(SystemClock),
            HttpConfig::default(),
            None,
        )),
    };

    // Resource categories and types.
    let mut cat = std::collections::HashMap::new();
    for (code, en, fr, ar) in [
        ("productivity", "Productivity", "Productivité", "الإنتاجية"),
        ("compute", "Compute", "Calcul", "الحوسبة"),
        ("hosting", "Hosting", "Hébergement", "الاستضافة"),
        ("domains", "Domains", "Domaines", "النطاقات"),
    ] {
        let v = api
            .post(
                p,
                &format!("/api/v1/accounts/{pid}/resource-categories"),
                json!({"code": code, "name": text(en, fr, ar)}),
            )
            .await?;
        cat.insert(code, id(&v)?);
    }
    let mut rt = std::collections::HashMap::new();
    for (code, service, unit, en, fr, ar, c) in [
        (
            "office-seat",
            "office",
            "seat",
            "Office seat",
            "Poste Office",
            "مقعد مكتبي",
            "productivity",
        ),
        (
            "mail-storage",
            "office",
            "GB",
            "Mailbox storage",
            "Stockage de messagerie",
            "تخزين البريد",
            "productivity",
        ),
        (
            "vcpu",
            "compute",
            "vCPU-hour",
            "vCPU hours",
            "Heures vCPU",
            "ساعات المعالج",
            "compute",
        ),
        (
            "ram",
            "compute",
            "GB-hour",
            "Memory (GB-hours)",
            "Mémoire (Go-heures)",
            "الذاكرة",
            "compute",
        ),
        (
            "disk",
            "compute",
            "GB",
            "Disk space",
            "Espace disque",
            "مساحة القرص",
            "compute",
        ),
        (
            "website",
            "hosting",
            "site",
            "Websites",
            "Sites web",
            "مواقع الويب",
            "hosting",
        ),
        (
            "domain-year",
            "domains",
            "year",
            "Domain registration",
            "Enregistrement de domaine",
            "تسجيل النطاق",
            "domains",
        ),
    ] {
        let v = api
            .post(p, &format!("/api/v1/accounts/{pid}/resource-types"), json!({"code": code, "service": service, "unit": unit, "name": text(en, fr, ar), "category_id": cat[c]}))
            .await?;
        rt.insert(code, id(&v)?);
    }

    // Service templates, with provisioning settings a reseller may override.
    let t_office = id(&api
        .post(p, &format!("/api/v1/accounts/{pid}/service-templates"), json!({"name": "Office suite", "resources": [
            {"resource_type_id": rt["office-seat"], "default_limit": 1}, {"resource_type_id": rt["mail-storage"], "default_limit": 50}],
            "settings": {"region": {"type": "string", "value": "eu-central"}, "mailbox_quota_gb": {"type": "integer", "value": 50}}}))
        .await?)?;
    let t_compute = id(&api
        .post(p, &format!("/api/v1/accounts/{pid}/service-templates"), json!({"name": "Cloud compute", "resources": [
            {"resource_type_id": rt["vcpu"], "default_limit": -1}, {"resource_type_id": rt["ram"], "default_limit": -1}, {"resource_type_id": rt["disk"], "default_limit": 100}],
            "settings": {"region": {"type": "string", "value": "eu-central"}, "backups": {"type": "boolean", "value": true}}}))
        .await?)?;
    let t_hosting = id(&api
        .post(p, &format!("/api/v1/accounts/{pid}/service-templates"), json!({"name": "Web hosting", "resources": [{"resource_type_id": rt["website"], "default_limit": 1}],
            "settings": {"php_version": {"type": "string", "value": "8.3"}}}))
        .await?)?;
    let t_domains = id(&api
        .post(p, &format!("/api/v1/accounts/{pid}/service-templates"), json!({"name": "Domain registration", "resources": [{"resource_type_id": rt["domain-year"], "default_limit": 1}],
            "settings": {"registrar": {"type": "string", "value": "provider-registrar"}}}))
        .await?)?;
    // Bluebird runs its customers in France: a country-specific configuration.
    api.put(
        b,
        &format!("/api/v1/service-templates/{t_office}/overrides/{bid}"),
        json!({"settings": {"region": {"type": "string", "value": "fr-paris"}}}),
    )
    .await?;

    // Store trees: the same codes in every seller's store, each seller its own names/order.
    for (token, owner) in [(p, pid), (n, nid), (b, bid), (a, aid)] {
        let prod = api.post(token, &format!("/api/v1/accounts/{owner}/sales-categories"), json!({"code": "productivity", "name": text("Productivity", "Productivité", "الإنتاجية")})).await?;
        let infra = api.post(token, &format!("/api/v1/accounts/{owner}/sales-categories"), json!({"code": "infrastructure", "name": text("Infrastructure", "Infrastructure", "البنية التحتية")})).await?;
        api.post(token, &format!("/api/v1/accounts/{owner}/sales-categories"), json!({"code": "compute", "name": text("Cloud compute", "Calcul cloud", "الحوسبة السحابية"), "parent_id": id(&infra)?})).await?;
        api.post(token, &format!("/api/v1/accounts/{owner}/sales-categories"), json!({"code": "hosting", "name": text("Web hosting", "Hébergement web", "استضافة المواقع"), "parent_id": id(&infra)?})).await?;
        api.post(
            token,
            &format!("/api/v1/accounts/{owner}/sales-categories"),
            json!({"code": "domains", "name": text("Domains", "Domaines", "النطاقات")}),
        )
        .await?;
        let _ = prod;
    }

    // Plans.
    let base = |name: Value, cat: &str, model: &str, periods: Value, rates: Value, prio: i64| {
        json!({"name": name, "short_description": text("Ready in minutes", "Prêt en quelques minutes", "جاهز خلال دقائق"),
            "plan_category": cat, "sales_categories": [cat], "published": true, "visible": true, "listing_priority": prio,
            "billing_model": model, "period_type": {"type": "monthly_on_statement_day"}, "recurring_basis": "billing_period",
            "periods": periods, "rates": rates})
    };
    let mut office = base(
        text(
            "Office Suite Business",
            "Suite Office Business",
            "حزمة المكتب للأعمال",
        ),
        "productivity",
        "charge_before_billing_period",
        json!([period("m1", 1, 1000, 0), period("y1", 12, 10000, 0)]),
        json!([
            rate("seats", rt["office-seat"], 1, 1, 300, 600, 0, false, true),
            rate(
                "storage",
                rt["mail-storage"],
                50,
                50,
                1000,
                10,
                0,
                false,
                false
            )
        ]),
        10,
    );
    office["unique_group"] = json!("office-suite");
    office["service_parameters"] = json!([{"key": "admin_login", "label": text("Administrator login", "Identifiant administrateur", "اسم المسؤول"), "kind": "text", "required": true, "max_length": 64}]);
    let compute = base(
        text(
            "Cloud Compute Pay-as-you-go",
            "Calcul cloud à l'usage",
            "حوسبة سحابية حسب الاستخدام",
        ),
        "compute",
        "external_rating",
        json!([period("m1", 1, 0, 0)]),
        json!([
            rate("vcpu", rt["vcpu"], 0, 0, -1, 0, 2, true, false),
            rate("ram", rt["ram"], 0, 0, -1, 0, 1, true, false),
            rate("disk", rt["disk"], 0, 0, -1, 0, 4, true, false)
        ]),
        20,
    );
    let mut hosting = base(
        text(
            "Web Hosting Starter",
            "Hébergement Starter",
            "استضافة المبتدئين",
        ),
        "hosting",
        "charge_before_billing_period",
        json!([period("m1", 1, 500, 0), period("y1", 12, 5000, 0)]),
        json!([rate("sites", rt["website"], 1, 1, 10, 300, 0, false, true)]),
        30,
    );
    hosting["order_attributes"] = json!([{"key": "domain", "label": text("Domain name", "Nom de domaine", "اسم النطاق"), "kind": "text", "required": true, "max_length": 253}]);
    // The upgrade of the office suite: same service and unique group, so a customer on
    // Business can switch to it (and back) from the panel.
    let mut premium = office.clone();
    premium["name"] = text(
        "Office Suite Premium",
        "Suite Office Premium",
        "حزمة المكتب المميزة",
    );
    premium["listing_priority"] = json!(11);
    premium["periods"] = json!([period("m1", 1, 2000, 0), period("y1", 12, 20000, 0)]);
    premium["rates"][0]["recurring_fee"] = json!(900 * 10_000);
    let mut plans = vec![
        (t_office, office),
        (t_office, premium),
        (t_compute, compute),
        (t_hosting, hosting),
    ];
    for (tld, price, prio) in [(".com", 1200, 40), (".net", 1400, 41), (".de", 800, 42)] {
        plans.push((
            t_domains,
            base(
                text(
                    &format!("Domain {tld}"),
                    &format!("Domaine {tld}"),
                    &format!("نطاق {tld}"),
                ),
                "domains",
                "charge_before_subscription_period",
                json!([period("y1", 12, price, 0)]),
                json!([rate(
                    "years",
                    rt["domain-year"],
                    1,
                    1,
                    10,
                    0,
                    0,
                    false,
                    false
                )]),
                prio,
            ),
        ));
    }
    let mut first = None;
    for (template, content) in plans {
        let plan = api
            .post(
                p,
                &format!("/api/v1/accounts/{pid}/plans"),
                json!({"template_id": template, "content": content}),
            )
            .await?;
        let plan_id = id(&plan)?;
        first.get_or_insert(plan_id);
        // Down the channel, each tier with its own retail prices.
        for (token, reseller, markup) in [(n, nid, 120), (b, bid, 115)] {
            let copy = api
                .post(
                    p,
                    &format!("/api/v1/plans/{plan_id}/copies"),
                    json!({"reseller_id": reseller}),
                )
                .await?;
            let copy_id = id(&copy)?;
            api.put(
                token,
                &format!("/api/v1/plans/{copy_id}"),
                json!({"content": marked_up(&copy["content"], markup)}),
            )
            .await?;
            if reseller == nid {
                let sub = api
                    .post(
                        n,
                        &format!("/api/v1/plans/{copy_id}/copies"),
                        json!({"reseller_id": aid}),
                    )
                    .await?;
                let sub_id = id(&sub)?;
                api.put(
                    a,
                    &format!("/api/v1/plans/{sub_id}"),
                    json!({"content": marked_up(&sub["content"], 135)}),
                )
                .await?;
            }
        }
    }
    // Bluebird's prices are locked against synchronization; one sync is in the audit trail.
    api.put(
        p,
        &format!("/api/v1/accounts/{bid}/sync-settings"),
        json!({"restrictions": {"prices": true}, "cascade_stop": false}),
    )
    .await?;
    if let Some(plan_id) = first {
        let plan = api.get(p, &format!("/api/v1/plans/{plan_id}")).await?;
        let mut content = plan["content"].clone();
        content["long_description"] = text(
            "Mail, calendars and documents for teams, managed by your provider.",
            "Messagerie, agendas et documents pour les équipes, gérés par votre fournisseur.",
            "البريد والتقويمات والمستندات للفرق، يديرها مزودك.",
        );
        api.put(
            p,
            &format!("/api/v1/plans/{plan_id}"),
            json!({"content": content}),
        )
        .await?;
        api.post(
            p,
            &format!("/api/v1/plans/{plan_id}/sync"),
            json!({"options": {"names_descriptions": true}, "scope": {"type": "all_resellers"}}),
        )
        .await?;
    }
    orders(&api, ch, n, a, b).await?;

    // The seed tokens are not needed any more.
    let mut tx = db.begin().await?;
    for user in [ch.provider.1, ch.northwind.1, ch.bluebird.1, ch.alpine.1] {
        for t in db.auth().tokens_of(user).await? {
            if t.name == "demo seed" {
                Auth::revoke_token(&mut tx, user, t.id, now).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The vendor's copy of a plan, by its English name.
async fn plan_named(api: &Api, token: &str, owner: i64, name: &str) -> anyhow::Result<i64> {
    let list = api
        .get(token, &format!("/api/v1/accounts/{owner}/plans?limit=200"))
        .await?;
    list["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|p| p["content"]["name"]["values"]["en"] == name)
        })
        .and_then(|p| p["id"].as_i64())
        .with_context(|| format!("no plan `{name}` at account {owner}"))
}

/// Orders in every state a person should see: a paid office suite (provisioned by the
/// worker once the demo serves), a hosting order waiting for payment, and a
/// pay-as-you-go compute subscription with usage imported by its vendor.
async fn orders(api: &Api, ch: &DemoChannel, n: &str, a: &str, b: &str) -> anyhow::Result<()> {
    let (nid, aid, bid) = (ch.northwind.0.0, ch.alpine.0.0, ch.bluebird.0.0);
    let (contoso, edelweiss, fabrikam) = (ch.contoso.0, ch.edelweiss.0, ch.fabrikam.0);
    // Contoso pays by bank transfer up front, then orders 5 seats: paid at once.
    api.post(n, &format!("/api/v1/accounts/{contoso}/payments"), json!({"amount_minor": 50_000, "currency": "EUR", "method": "bank_transfer", "external_ref": "SEPA-2026-0001"}))
        .await?;
    let office = plan_named(api, n, nid, "Office Suite Business").await?;
    api.post(
        n,
        &format!("/api/v1/accounts/{contoso}/orders"),
        json!({"plan_id": office, "period_uid": "m1", "quantities": {"seats": 5, "storage": 50}, "parameters": {"admin_login": "it-admin"},
            "auto_renew": {"mode": "on_expiry"}}),
    )
    .await?;
    // Edelweiss orders hosting and has not paid yet.
    let hosting = plan_named(api, a, aid, "Web Hosting Starter").await?;
    api.post(a, &format!("/api/v1/accounts/{edelweiss}/orders"), json!({"plan_id": hosting, "period_uid": "y1", "attributes": {"domain": "edelweiss.example"}}))
        .await?;
    // Fabrikam runs pay-as-you-go compute; Bluebird imports its usage.
    let compute = plan_named(api, b, bid, "Cloud Compute Pay-as-you-go").await?;
    let order = api
        .post(
            b,
            &format!("/api/v1/accounts/{fabrikam}/orders"),
            json!({"plan_id": compute, "period_uid": "m1"}),
        )
        .await?;
    if let Some(sub) = order["subscription_id"].as_i64() {
        let today = chrono::DateTime::from_timestamp_micros(SystemClock.now().0)
            .map(|d| d.date_naive().to_string())
            .unwrap_or_default();
        api.post(
            b,
            &format!("/api/v1/subscriptions/{sub}/usage"),
            json!({"records": [
                {"id": "vm-1-cpu", "rate_uid": "vcpu", "quantity": 720, "date": today},
                {"id": "vm-1-ram", "rate_uid": "ram", "quantity": 2880, "date": today},
                {"id": "vm-1-disk", "rate_uid": "disk", "quantity": 80, "date": today}]}),
        )
        .await?;
    }
    // Northwind sells to Globex on net terms (due in 30 days, cards charged on day 10),
    // signing it up in one step: the account, its first user, an office order and the
    // card authorized at once; the card is then kept for the daily run's automatic charges.
    let net30 = api
        .post(
            n,
            &format!("/api/v1/accounts/{nid}/customer-classes"),
            json!({"name": "Net 30, charged on day 10", "due_days": 30, "payment_delay_days": 10}),
        )
        .await?;
    let signup = api
        .post(
            n,
            "/api/v1/place-order-and-authorize",
            json!({"vendor_id": nid,
                "account": {"name": "Globex Corporation", "country": "US", "language": "en", "customer_class_id": net30["id"]},
                "user": {"login": "globex-admin", "display_name": "Hank Scorpio", "email": "hank@globex.example", "password": "cascade-demo"},
                "items": [{"plan_id": office, "period_uid": "m1", "quantities": {"seats": 3, "storage": 50}, "parameters": {"admin_login": "hank"}}],
                "payment": {"method": "card", "card_number": "4242 4242 4242 4242"}}),
        )
        .await?;
    if let Some(globex) = signup["account"]["id"].as_i64() {
        api.post(
            n,
            &format!("/api/v1/accounts/{globex}/payment-methods"),
            json!({"card_number": "4242 4242 4242 4242"}),
        )
        .await?;
    }
    Ok(())
}
