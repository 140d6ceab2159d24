//! Plans, delegation down the channel and synchronization, through the API, on both
//! backends: delegate → change → preview → sync, restrictions, withdraw-until-confirmed,
//! cascade stop, one-level sync, audit, isolation and bad input.

mod common;

use axum::http::{Method, StatusCode};
use cascade_domain::privilege::BuiltinRole;
use cascade_store::{Db, on_tx};
use cascade_testkit::both_backends;
use common::{Cred, TestApp};
use serde_json::{Value, json};

struct Channel {
    app: TestApp,
    p: i64,
    a: i64,
    b: i64,
    a2: i64,
    ac: i64,
    p_tok: Cred,
    a_tok: Cred,
    b_tok: Cred,
    a2_tok: Cred,
    ac_tok: Cred,
    template: i64,
    rt_seats: i64,
    rt_storage: i64,
}

async fn sql(db: &Db, q: &str) -> i64 {
    let mut tx = db.begin().await.unwrap();
    let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(q).fetch_one(c).await).unwrap();
    tx.commit().await.unwrap();
    id
}

async fn channel(db: Db) -> Channel {
    let app = TestApp::new(db.clone());
    let p = app.store_provider().await;
    let admin = app.builtin_role(BuiltinRole::AccountAdmin).await;
    let pu = app.store_user(p, "p-admin", false, &[admin]).await;
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
    let mut toks = vec![];
    for (acc, login) in [
        (a, "a-admin"),
        (b, "b-admin"),
        (a2, "a2-admin"),
        (ac, "ac-admin"),
    ] {
        let u = app.store_user(acc, login, false, &[admin]).await;
        toks.push(Cred::Bearer(app.mint_token(u).await));
    }
    let rt_seats = sql(&db, &format!("INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ({p}, 'seats', 'office', 'seat', '{{\"default\":\"en\",\"values\":{{\"en\":\"Seats\"}}}}', 0, 0) RETURNING id")).await;
    let rt_storage = sql(&db, &format!("INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ({p}, 'storage', 'office', 'GB', '{{\"default\":\"en\",\"values\":{{\"en\":\"Storage\"}}}}', 0, 0) RETURNING id")).await;
    let template = sql(&db, &format!("INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ({p}, 'Office', '[]', '{{}}', 0, 0) RETURNING id")).await;
    sql(&db, &format!("INSERT INTO sales_categories (owner_account_id, parent_id, code, name, sort, created_at, updated_at) VALUES ({p}, NULL, 'office', '{{\"default\":\"en\",\"values\":{{\"en\":\"Office\"}}}}', 1, 0, 0) RETURNING id")).await;
    let [a_tok, b_tok, a2_tok, ac_tok]: [Cred; 4] = toks.try_into().unwrap();
    Channel {
        app,
        p,
        a,
        b,
        a2,
        ac,
        p_tok,
        a_tok,
        b_tok,
        a2_tok,
        ac_tok,
        template,
        rt_seats,
        rt_storage,
    }
}

fn fee(units: i64) -> Value {
    json!({"amount": units * 1_000_000})
}

fn period(uid: &str, months: u32, price: i64) -> Value {
    json!({"uid": uid, "duration": months, "unit": "month", "active": true, "setup": fee(0), "recurring": fee(price), "renewal": fee(price),
        "transfer": fee(0), "cancellation": fee(0), "refund": {"full_refund_days": 30, "non_refundable": 0, "after": "prorated"}, "sort": 1})
}

fn rate(uid: &str, rt: i64, price: i64) -> Value {
    json!({"uid": uid, "resource_type_id": rt, "included": 1, "min": 1, "max": 50, "setup_fee": 0, "recurring_fee": price * 1_000_000,
        "overuse_fee": 0, "per_unit": true, "measurable": false, "show_in_store": true, "show_in_panel": true,
        "display": {"type": "slider", "min": 1, "max": 50, "step": 1}})
}

fn content(c: &Channel) -> Value {
    json!({
        "name": {"default": "en", "values": {"en": "Office Suite", "ar": "حزمة المكتب"}},
        "plan_category": "productivity", "sales_categories": ["office"],
        "published": true, "visible": true, "listing_priority": 10,
        "billing_model": "charge_before_billing_period", "period_type": {"type": "monthly_on_statement_day"},
        "recurring_basis": "billing_period",
        "periods": [period("m1", 1, 10), period("y1", 12, 100)],
        "rates": [rate("seats", c.rt_seats, 5)],
    })
}

impl Channel {
    async fn plan(&self) -> Value {
        let r = self
            .app
            .post(
                format!("/api/v1/accounts/{}/plans", self.p),
                &self.p_tok,
                json!({"template_id": self.template, "content": content(self)}),
            )
            .await;
        r.expect(StatusCode::CREATED).json
    }
    async fn delegate(&self, plan: i64, reseller: i64, cred: &Cred) -> i64 {
        self.app
            .post(
                format!("/api/v1/plans/{plan}/copies"),
                cred,
                json!({"reseller_id": reseller}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id()
    }
    async fn get(&self, plan: i64) -> Value {
        self.app
            .get(format!("/api/v1/plans/{plan}"), &self.p_tok)
            .await
            .expect(StatusCode::OK)
            .json
    }
    async fn put(&self, plan: i64, cred: &Cred, content: Value) -> common::Resp {
        self.app
            .req(Method::PUT, format!("/api/v1/plans/{plan}"))
            .cred(cred)
            .json(&json!({"content": content}))
            .send()
            .await
    }
    async fn sync(
        &self,
        plan: i64,
        cred: &Cred,
        options: Value,
        scope: Value,
        preview: bool,
    ) -> common::Resp {
        let path = if preview {
            format!("/api/v1/plans/{plan}/sync/preview")
        } else {
            format!("/api/v1/plans/{plan}/sync")
        };
        self.app
            .post(path, cred, json!({"options": options, "scope": scope}))
            .await
    }
    async fn settings(&self, account: i64, restrictions: Value, cascade_stop: bool) {
        self.app
            .req(
                Method::PUT,
                format!("/api/v1/accounts/{account}/sync-settings"),
            )
            .cred(&self.p_tok)
            .json(&json!({"restrictions": restrictions, "cascade_stop": cascade_stop}))
            .send()
            .await
            .expect(StatusCode::OK);
    }
}

fn recurring(plan: &Value, uid: &str) -> i64 {
    plan["content"]["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["uid"] == uid)
        .unwrap()["recurring"]["amount"]
        .as_i64()
        .unwrap()
}

both_backends! {
    async fn delegate_change_preview_sync(db) {
        let c = channel(db).await;
        let plan = c.plan().await;
        let pid = plan["id"].as_i64().unwrap();
        let a_copy = c.delegate(pid, c.a, &c.p_tok).await;
        let a2_copy = c.delegate(a_copy, c.a2, &c.a_tok).await;

        // A sets its own retail price on its copy; A2 sees its own copy of A's.
        let mut mine = c.get(a_copy).await["content"].clone();
        mine["periods"][0]["recurring"]["amount"] = json!(12_000_000);
        c.put(a_copy, &c.a_tok, mine.clone()).await.expect(StatusCode::OK);
        assert_eq!(recurring(&c.get(a_copy).await, "m1"), 12_000_000);
        assert_eq!(recurring(&c.get(a2_copy).await, "m1"), 10_000_000);

        // A may not change the structure of its copy.
        let before = c.get(a_copy).await["version"].clone();
        let mut structural = mine.clone();
        structural["periods"].as_array_mut().unwrap().pop();
        c.put(a_copy, &c.a_tok, structural).await.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").expect_field("content.periods", Some("structure_locked"));
        let mut billing = mine.clone();
        billing["billing_model"] = json!("charge_after_billing_period");
        c.put(a_copy, &c.a_tok, billing).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(c.get(a_copy).await["version"], before, "nothing written");

        // The provider raises its price and adds a quarterly period.
        let mut orig = plan["content"].clone();
        orig["periods"][0]["recurring"]["amount"] = json!(11_000_000);
        orig["periods"].as_array_mut().unwrap().push(period("q3", 3, 28));
        c.put(pid, &c.p_tok, orig).await.expect(StatusCode::OK);

        let opts = json!({"plan_fees": true, "new_plans_periods": true});
        let preview = c.sync(pid, &c.p_tok, opts.clone(), json!({"type": "all_resellers"}), true).await.expect(StatusCode::OK).json;
        assert_eq!(preview["copies_reached"], 2);
        let copies = preview["copies"].as_array().unwrap();
        let a_changes: Vec<&str> = copies[0]["changes"].as_array().unwrap().iter().map(|x| x["field"].as_str().unwrap()).collect();
        assert_eq!(copies[0]["plan_id"], a_copy);
        assert!(a_changes.contains(&"periods[m1].recurring") && a_changes.contains(&"periods[q3]"), "{a_changes:?}");
        // Nothing changed yet.
        assert_eq!(recurring(&c.get(a_copy).await, "m1"), 12_000_000);

        let digest = preview["digest"].as_str().unwrap();
        let run = c.app.post(format!("/api/v1/plans/{pid}/sync"), &c.p_tok, json!({"options": opts, "scope": {"type": "all_resellers"}, "expected_digest": digest})).await.expect(StatusCode::OK).json;
        assert_eq!(run["copies_changed"], 2);
        assert_eq!(recurring(&c.get(a_copy).await, "m1"), 11_000_000);
        assert_eq!(recurring(&c.get(a2_copy).await, "q3"), 28_000_000);

        // A second identical sync changes nothing.
        let again = c.sync(pid, &c.p_tok, json!({"plan_fees": true, "new_plans_periods": true}), json!({"type": "all_resellers"}), true).await.json;
        assert!(again["copies"].as_array().unwrap().iter().all(|x| x["changes"].as_array().unwrap().is_empty()));

        // Audit trail: who, options, per-copy results.
        let runs = c.app.get(format!("/api/v1/plans/{pid}/sync-runs"), &c.p_tok).await.expect(StatusCode::OK).json;
        assert_eq!(runs["items"].as_array().unwrap().len(), 1);
        let detail = c.app.get(format!("/api/v1/sync-runs/{}", run["id"]), &c.p_tok).await.expect(StatusCode::OK).json;
        assert_eq!(detail["run"]["options"]["plan_fees"], true);
        let statuses: Vec<&str> = detail["items"]["items"].as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, vec!["changed", "changed"]);
    }

    async fn restrictions_withdraw_and_confirm(db) {
        let c = channel(db).await;
        let plan = c.plan().await;
        let pid = plan["id"].as_i64().unwrap();
        let a_copy = c.delegate(pid, c.a, &c.p_tok).await;
        let a2_copy = c.delegate(a_copy, c.a2, &c.a_tok).await;
        // A cannot lift its own restrictions; its vendor sets them.
        c.app.req(Method::PUT, format!("/api/v1/accounts/{}/sync-settings", c.a)).cred(&c.a_tok)
            .json(&json!({"restrictions": {}, "cascade_stop": false})).send().await.expect(StatusCode::FORBIDDEN);
        c.settings(c.a, json!({"prices": true, "publication": true}), false).await;

        let mut orig = plan["content"].clone();
        orig["periods"][0]["recurring"]["amount"] = json!(15_000_000);
        orig["published"] = json!(false);
        orig["periods"].as_array_mut().unwrap().push(period("q3", 3, 28));
        c.put(pid, &c.p_tok, orig).await.expect(StatusCode::OK);

        let opts = json!({"plan_fees": true, "new_plans_periods": true, "publication": true});
        let preview = c.sync(pid, &c.p_tok, opts.clone(), json!({"type": "all_resellers"}), true).await.expect(StatusCode::OK).json;
        let a = &preview["copies"][0];
        let blocked: Vec<(&str, &str)> = a["blocked"].as_array().unwrap().iter().map(|b| (b["field"].as_str().unwrap(), b["restriction"].as_str().unwrap())).collect();
        assert!(blocked.contains(&("periods[m1].recurring", "prices")) && blocked.contains(&("published", "publication")), "{blocked:?}");
        assert_eq!(a["withdrawn"], true);
        c.sync(pid, &c.p_tok, opts, json!({"type": "all_resellers"}), false).await.expect(StatusCode::OK);

        let a_plan = c.get(a_copy).await;
        assert_eq!(recurring(&a_plan, "m1"), 10_000_000, "locked price kept");
        assert_eq!(a_plan["content"]["published"], true, "locked publication kept");
        assert_eq!(a_plan["withdrawn"], true);
        assert_eq!(a_plan["on_sale"], false);
        assert_eq!(recurring(&c.get(a2_copy).await, "m1"), 10_000_000, "below a locked copy nothing new arrives");
        // The customer of A no longer finds it in A's store.
        let offers = c.app.get(format!("/api/v1/accounts/{}/offers", c.ac), &c.ac_tok).await.expect(StatusCode::OK).json;
        assert!(offers["items"].as_array().unwrap().is_empty());
        // A sets its price for the new period and confirms: back in the store.
        let mut mine = a_plan["content"].clone();
        mine["periods"][2]["recurring"]["amount"] = json!(30_000_000);
        c.put(a_copy, &c.a_tok, mine).await.expect(StatusCode::OK);
        assert_eq!(c.get(a_copy).await["withdrawn"], true, "editing alone does not confirm");
        let confirmed = c.app.post_empty(format!("/api/v1/plans/{a_copy}/confirm-prices"), &c.a_tok).await.expect(StatusCode::OK).json;
        assert_eq!(confirmed["on_sale"], true);
        let offers = c.app.get(format!("/api/v1/accounts/{}/offers", c.ac), &c.ac_tok).await.expect(StatusCode::OK).json;
        assert_eq!(offers["items"][0]["id"], a_copy);
    }

    async fn cascade_stop_and_one_level(db) {
        let c = channel(db).await;
        let plan = c.plan().await;
        let pid = plan["id"].as_i64().unwrap();
        let a_copy = c.delegate(pid, c.a, &c.p_tok).await;
        let b_copy = c.delegate(pid, c.b, &c.p_tok).await;
        let a2_copy = c.delegate(a_copy, c.a2, &c.a_tok).await;
        let mut orig = plan["content"].clone();
        orig["name"] = json!({"default": "en", "values": {"en": "Office Suite 2"}});
        c.put(pid, &c.p_tok, orig).await.expect(StatusCode::OK);
        let names = json!({"names_descriptions": true});

        // One level: A and B change, A2 does not; A's copy shows pending upstream changes.
        let run = c.sync(pid, &c.p_tok, names.clone(), json!({"type": "one_level"}), false).await.expect(StatusCode::OK).json;
        assert_eq!(run["copies_total"], 2);
        let a_plan = c.get(a_copy).await;
        assert_eq!(a_plan["content"]["name"]["values"]["en"], "Office Suite 2");
        assert_eq!(a_plan["upstream_changes"], true);
        assert_eq!(c.get(b_copy).await["upstream_changes"], false, "B has no copies below");
        assert_eq!(c.get(a2_copy).await["content"]["name"]["values"]["en"], "Office Suite");
        // A passes it on to its own sub-reseller; the flag clears.
        c.sync(a_copy, &c.a_tok, names.clone(), json!({"type": "all_resellers"}), false).await.expect(StatusCode::OK);
        assert_eq!(c.get(a2_copy).await["content"]["name"]["values"]["en"], "Office Suite 2");
        assert_eq!(c.get(a_copy).await["upstream_changes"], false);

        // Cascade stop on A: A's copy changes, A2's does not; B as usual.
        c.settings(c.a, json!({}), true).await;
        let mut orig = c.get(pid).await["content"].clone();
        orig["name"] = json!({"default": "en", "values": {"en": "Office Suite 3"}});
        c.put(pid, &c.p_tok, orig).await.expect(StatusCode::OK);
        c.sync(pid, &c.p_tok, names.clone(), json!({"type": "all_resellers"}), false).await.expect(StatusCode::OK);
        assert_eq!(c.get(a_copy).await["content"]["name"]["values"]["en"], "Office Suite 3");
        assert_eq!(c.get(b_copy).await["content"]["name"]["values"]["en"], "Office Suite 3");
        assert_eq!(c.get(a2_copy).await["content"]["name"]["values"]["en"], "Office Suite 2");

        // One reseller without its subtree.
        let preview = c.sync(pid, &c.p_tok, names, json!({"type": "reseller", "account_id": c.b, "with_subtree": false}), true).await.expect(StatusCode::OK).json;
        assert_eq!(preview["copies_reached"], 1);
        assert_eq!(preview["copies"][0]["plan_id"], b_copy);
    }

    async fn sync_moves_subscriptions_limits_now_prices_later_except_below_a_cascade_stop(db) {
        use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
        use cascade_domain::ids::AccountId;
        use cascade_store::subscriptions::{NewSubscription, Subscriptions};
        let c = channel(db).await;
        let plan = c.plan().await;
        let pid = plan["id"].as_i64().unwrap();
        let a_copy = c.delegate(pid, c.a, &c.p_tok).await;
        let b_copy = c.delegate(pid, c.b, &c.p_tok).await;
        let a2_copy = c.delegate(a_copy, c.a2, &c.a_tok).await;
        let pc = c.app.create_account(&c.p_tok, c.p, "customer", "Customer of P").await;
        let bc = c.app.create_account(&c.p_tok, c.b, "customer", "Customer of B").await;
        let a2c = c.app.create_account(&c.p_tok, c.a2, "customer", "Customer of A2").await;
        let mut subs = vec![];
        for (account, vendor, plan) in [(pc, c.p, pid), (c.ac, c.a, a_copy), (bc, c.b, b_copy), (a2c, c.a2, a2_copy)] {
            let mut tx = c.app.db.begin().await.unwrap();
            let s = Subscriptions::create(&mut tx, &NewSubscription {
                account_id: AccountId(account), vendor_id: AccountId(vendor), plan_id: plan, period_uid: "m1".into(),
                status: SubscriptionStatus::Active, start_date: "2099-12-01".into(), expires_on: "2100-12-01".into(),
                next_bill_date: "2100-01-01".into(), auto_renew: AutoRenew::OnExpiry,
                quantities: [("seats".to_string(), 10)].into(), attributes: json!({}),
            }, c.app.clock_now()).await.unwrap();
            tx.commit().await.unwrap();
            subs.push(s.id);
        }
        let [p_sub, a_sub, b_sub, a2_sub]: [i64; 4] = subs.try_into().unwrap();
        let db = c.app.db.clone();
        let held = |id: i64| {
            let db = db.clone();
            async move { db.subscriptions().get(id).await.unwrap() }
        };
        // The provider doubles the monthly fee and lowers the seat limit below the usage.
        let mut orig = c.get(pid).await["content"].clone();
        orig["periods"][0]["recurring"] = fee(20);
        orig["rates"][0]["max"] = json!(5);
        orig["rates"][0]["display"] = json!({"type": "slider", "min": 1, "max": 5, "step": 1});
        c.put(pid, &c.p_tok, orig).await.expect(StatusCode::OK);
        // An edit alone changes nothing sold: the subscription keeps the terms of its sale.
        let t = held(p_sub).await.terms.unwrap();
        assert_eq!((t.current.rates[0].max, t.current.periods[0].recurring.amount.0, t.next.is_none()), (50, 10_000_000, true));
        // Cascade stop on A: A's copy is synced, A's customers' subscriptions are not.
        c.settings(c.a, json!({}), true).await;
        let opts = json!({"plan_fees": true, "resource_limits": true, "subscriptions": true});
        let all = json!({"type": "all_resellers"});
        let pv = c.sync(pid, &c.p_tok, opts.clone(), all.clone(), true).await.expect(StatusCode::OK).json;
        assert_eq!(pv["subscriptions_changed"], 2, "{pv}: P's own customer and B's customer");
        let of = |copy: i64| pv["copies"].as_array().unwrap().iter().find(|x| x["plan_id"] == copy).unwrap()["subscriptions_changed"].clone();
        assert_eq!((of(a_copy), of(b_copy)), (json!(0), json!(1)));
        let without = c.sync(pid, &c.p_tok, json!({"plan_fees": true, "resource_limits": true}), all.clone(), true).await.expect(StatusCode::OK).json;
        assert_eq!(without["subscriptions_changed"], 0, "off by default");
        let run = c.sync(pid, &c.p_tok, opts.clone(), all.clone(), false).await.expect(StatusCode::OK).json;
        assert_eq!((run["copies_changed"].as_i64(), run["subscriptions_changed"].as_i64()), (Some(2), Some(2)), "{run}");
        let audit = c.app.get(format!("/api/v1/plans/{pid}/sync-runs"), &c.p_tok).await.expect(StatusCode::OK).json;
        assert_eq!(audit["items"][0]["subscriptions_changed"], 2);
        for id in [p_sub, b_sub] {
            let s = held(id).await;
            let t = s.terms.clone().unwrap();
            // The lower limit holds now; the 10 seats in use stay (nothing is deleted).
            assert_eq!(t.current.rates[0].max, 5);
            assert_eq!(s.quantities["seats"], 10);
            assert_eq!(s.status, SubscriptionStatus::Active);
            // The current period keeps its price; the new one starts on the next billing date.
            assert_eq!(t.current.periods[0].recurring.amount.0, 10_000_000);
            let (from, next) = t.next.unwrap();
            assert_eq!((from.as_str(), next.periods[0].recurring.amount.0), ("2100-01-01", 20_000_000));
        }
        // A's copy followed, A's and A2's customers did not.
        assert_eq!(c.get(a_copy).await["content"]["rates"][0]["max"], 5);
        for id in [a_sub, a2_sub] {
            let t = held(id).await.terms.unwrap();
            assert_eq!((t.current.rates[0].max, t.next.is_none()), (50, true), "subscription {id}");
        }
        // Syncing again moves nothing more.
        let again = c.sync(pid, &c.p_tok, opts, all, true).await.expect(StatusCode::OK).json;
        assert_eq!(again["subscriptions_changed"], 0);
    }

    async fn outdated_preview_is_refused(db) {
        let c = channel(db).await;
        let plan = c.plan().await;
        let pid = plan["id"].as_i64().unwrap();
        let a_copy = c.delegate(pid, c.a, &c.p_tok).await;
        let mut orig = plan["content"].clone();
        orig["periods"][0]["recurring"]["amount"] = json!(11_000_000);
        c.put(pid, &c.p_tok, orig).await.expect(StatusCode::OK);
        let opts = json!({"plan_fees": true});
        let preview = c.sync(pid, &c.p_tok, opts.clone(), json!({"type": "all_resellers"}), true).await.json;
        // A edits its copy meanwhile.
        let mut mine = c.get(a_copy).await["content"].clone();
        mine["periods"][1]["recurring"]["amount"] = json!(90_000_000);
        c.put(a_copy, &c.a_tok, mine).await.expect(StatusCode::OK);
        c.app.post(format!("/api/v1/plans/{pid}/sync"), &c.p_tok, json!({"options": opts, "scope": {"type": "all_resellers"}, "expected_digest": preview["digest"]}))
            .await.expect_problem(StatusCode::CONFLICT, "preview_outdated");
        assert_eq!(recurring(&c.get(a_copy).await, "m1"), 10_000_000, "nothing applied");
    }

    async fn isolation_and_bad_input(db) {
        let c = channel(db).await;
        let plan = c.plan().await;
        let pid = plan["id"].as_i64().unwrap();
        let a_copy = c.delegate(pid, c.a, &c.p_tok).await;
        // B sees neither P's plan nor A's copy; the customer cannot read catalogs.
        for (cred, id) in [(&c.b_tok, pid), (&c.b_tok, a_copy), (&c.a2_tok, a_copy), (&c.ac_tok, a_copy)] {
            c.app.get(format!("/api/v1/plans/{id}"), cred).await.expect(StatusCode::NOT_FOUND);
        }
        c.app.get(format!("/api/v1/accounts/{}/plans", c.a), &c.b_tok).await.expect(StatusCode::NOT_FOUND);
        c.app.post(format!("/api/v1/plans/{a_copy}/copies"), &c.b_tok, json!({"reseller_id": c.b})).await.expect(StatusCode::NOT_FOUND);
        // Delegation rules.
        c.app.post(format!("/api/v1/plans/{pid}/copies"), &c.p_tok, json!({"reseller_id": c.a})).await.expect(StatusCode::CONFLICT);
        c.app.post(format!("/api/v1/plans/{pid}/copies"), &c.p_tok, json!({"reseller_id": c.a2})).await.expect_field("reseller_id", Some("not_a_direct_reseller"));
        c.app.post(format!("/api/v1/plans/{a_copy}/copies"), &c.a_tok, json!({"reseller_id": c.ac})).await.expect_field("reseller_id", Some("not_a_direct_reseller"));
        c.app.post(format!("/api/v1/plans/{a_copy}/copies"), &c.a_tok, json!({"reseller_id": c.b})).await.expect_field("reseller_id", Some("not_a_direct_reseller"));
        // Deleting a delegated plan, removing a period copies use.
        c.app.delete(format!("/api/v1/plans/{pid}"), &c.p_tok).await.expect(StatusCode::CONFLICT);
        let mut orig = plan["content"].clone();
        orig["periods"].as_array_mut().unwrap().remove(0);
        c.put(pid, &c.p_tok, orig).await.expect_field("content.periods[m1]", Some("period_in_use"));
        // Invalid values name the rule and write nothing.
        let count = |v: &Value| v["items"].as_array().unwrap().len();
        let before = count(&c.app.get(format!("/api/v1/accounts/{}/plans", c.p), &c.p_tok).await.json);
        let post = |content: Value| c.app.post(format!("/api/v1/accounts/{}/plans", c.p), &c.p_tok, json!({"template_id": c.template, "content": content}));
        let mut bad = content(&c);
        bad["periods"][0]["recurring"]["amount"] = json!(-1);
        post(bad).await.expect_field("content.periods[0].recurring.amount", Some("negative_fee"));
        let mut bad = content(&c);
        bad["rates"][0]["min"] = json!(60);
        post(bad).await.expect_field("content.rates[0].max", Some("min_above_max"));
        let mut bad = content(&c);
        bad["rates"][0]["included"] = json!(99);
        post(bad).await.expect_field("content.rates[0].included", Some("included_out_of_range"));
        let mut bad = content(&c);
        bad["name"]["values"]["not a tag"] = json!("x");
        post(bad).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
        let mut bad = content(&c);
        bad["billing_model"] = json!("free_lunch");
        post(bad).await.expect_field("content.billing_model", None);
        let mut bad = content(&c);
        bad["sales_categories"] = json!(["nonexistent"]);
        post(bad).await.expect_field("content.sales_categories[0]", Some("unknown_sales_category"));
        let mut bad = content(&c);
        bad["rates"][0]["resource_type_id"] = json!(999_999);
        post(bad).await.expect_field("content.rates[0].resource_type_id", Some("unknown_resource_type"));
        c.app.post(format!("/api/v1/accounts/{}/plans", c.p), &c.p_tok, json!({"template_id": 999_999, "content": content(&c)})).await.expect_field("template_id", Some("unknown_template"));
        c.app.post(format!("/api/v1/accounts/{}/plans", c.ac), &c.ac_tok, json!({"template_id": c.template, "content": content(&c)})).await.expect_field("account_id", Some("not_a_seller"));
        assert_eq!(count(&c.app.get(format!("/api/v1/accounts/{}/plans", c.p), &c.p_tok).await.json), before, "nothing written");
        c.sync(pid, &c.p_tok, json!({}), json!({"type": "all_resellers"}), true).await.expect_field("options", Some("no_options"));
        c.sync(pid, &c.p_tok, json!({"plan_fees": true}), json!({"type": "sideways"}), true).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
        c.sync(pid, &c.p_tok, json!({"plan_fees": true}), json!({"type": "reseller", "account_id": c.a2, "with_subtree": true}), true).await
            .expect_field("scope.account_id", Some("not_a_copy_holder"));
        // The seller's catalog view and the second resource type stay usable.
        let _ = c.rt_storage;
        assert_eq!(count(&c.app.get(format!("/api/v1/accounts/{}/plans", c.a), &c.a_tok).await.json), 1);
    }
}
