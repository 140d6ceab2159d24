//! The catalog API: resource categories and types, service templates, provisioning
//! overrides and sales categories, black-box through the real router, each test on
//! SQLite and on PostgreSQL.

mod catalog_common;

use axum::http::StatusCode;
use catalog_common::*;
use serde_json::{Value, json};

const OK: StatusCode = StatusCode::OK;
const CREATED: StatusCode = StatusCode::CREATED;
const NO_CONTENT: StatusCode = StatusCode::NO_CONTENT;
const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
const NOT_FOUND: StatusCode = StatusCode::NOT_FOUND;
const CONFLICT: StatusCode = StatusCode::CONFLICT;

fn text(en: &str) -> Value {
    json!({"default": "en", "values": {"en": en}})
}

fn rtype(code: &str) -> Value {
    json!({"code": code, "service": "mail", "unit": "mailbox", "name": text(code)})
}

async fn new_type(app: &App, owner: &Party, code: &str) -> i64 {
    app.post(
        &format!("/api/v1/accounts/{}/resource-types", owner.id),
        &owner.token,
        rtype(code),
    )
    .await
    .expect(CREATED)
    .id()
}

async fn new_template(app: &App, owner: &Party, types: &[i64], settings: Value) -> i64 {
    let resources: Vec<Value> = types
        .iter()
        .map(|t| json!({"resource_type_id": t, "default_limit": -1}))
        .collect();
    app.post(
        &format!("/api/v1/accounts/{}/service-templates", owner.id),
        &owner.token,
        json!({"name": "Hosted mail", "resources": resources, "settings": settings}),
    )
    .await
    .expect(CREATED)
    .id()
}

fn ids(v: &Value) -> Vec<i64> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

cascade_testkit::both_backends! {
    async fn resource_catalog_crud(db) {
        let app = App::new(db);
        let ch = Channel::build(&app).await;
        let (p, tok) = (ch.p.id, ch.p.token.as_str());

        // Category with a multilingual name (right-to-left included).
        let cat = app.post(&format!("/api/v1/accounts/{p}/resource-categories"), tok, json!({
            "code": "mail", "name": {"default": "en", "values": {"en": "Mail", "ar": "بريد", "fr-ca": "Courriel"}}})).await.expect(CREATED);
        assert_eq!(cat.json["name"]["values"]["fr-CA"], "Courriel", "language tags are canonicalised");
        assert_eq!(cat.json["name"]["values"]["ar"], "بريد");
        let cat = cat.id();

        let t = app.post(&format!("/api/v1/accounts/{p}/resource-types"), tok, json!({
            "code": "mailbox", "service": "exchange", "unit": "mailbox", "name": text("Mailbox"),
            "description": {"default": "en", "values": {"en": "A mailbox", "he": "תיבת דואר"}}, "category_id": cat})).await.expect(CREATED);
        assert_eq!((t.json["category_id"].as_i64(), t.json["owner_account_id"].as_i64()), (Some(cat), Some(p)));
        let t = t.id();
        let got = app.get(&format!("/api/v1/resource-types/{t}"), tok).await.expect(OK);
        assert_eq!(got.json["description"]["values"]["he"], "תיבת דואר");

        // Duplicate code: 422 naming `code`, nothing written.
        app.post(&format!("/api/v1/accounts/{p}/resource-types"), tok, rtype("mailbox")).await.field("code", "code_taken");
        app.post(&format!("/api/v1/accounts/{p}/resource-categories"), tok, json!({"code": "mail", "name": text("x")})).await.field("code", "code_taken");

        // Up-sell category; patch; clearing with null.
        let addons = app.post(&format!("/api/v1/accounts/{p}/resource-categories"), tok,
            json!({"code": "addons", "name": text("Add-ons"), "parent_resource_type_id": t})).await.expect(CREATED);
        assert_eq!(addons.json["parent_resource_type_id"], t);
        let addons = addons.id();
        let patched = app.patch(&format!("/api/v1/resource-types/{t}"), tok, json!({"unit": "box", "description": null})).await.expect(OK);
        assert_eq!((patched.json["unit"].as_str(), patched.json["description"].is_null(), patched.json["category_id"].as_i64()), (Some("box"), true, Some(cat)));
        app.patch(&format!("/api/v1/resource-categories/{addons}"), tok, json!({"code": "mail"})).await.field("code", "code_taken");
        let c = app.patch(&format!("/api/v1/resource-categories/{addons}"), tok, json!({"parent_resource_type_id": null})).await.expect(OK);
        assert!(c.json["parent_resource_type_id"].is_null());
        assert_eq!(c.json["code"], "addons");

        // Lists are paginated.
        let page = app.get(&format!("/api/v1/accounts/{p}/resource-categories?limit=1"), tok).await.expect(OK);
        assert_eq!(ids(&page.json), vec![cat]);
        let cursor = page.json["next_cursor"].as_str().unwrap().to_string();
        let page = app.get(&format!("/api/v1/accounts/{p}/resource-categories?limit=1&cursor={cursor}"), tok).await.expect(OK);
        assert_eq!(ids(&page.json), vec![addons]);
        assert_eq!(ids(&app.get(&format!("/api/v1/accounts/{p}/resource-types"), tok).await.expect(OK).json), vec![t]);

        // Templates.
        let tpl = app.post(&format!("/api/v1/accounts/{p}/service-templates"), tok, json!({
            "name": "Hosted Exchange", "resources": [{"resource_type_id": t, "default_limit": 10}],
            "settings": {"region": {"type": "string", "value": "eu"}, "quota": {"type": "integer", "value": 5}, "ssl": {"type": "boolean", "value": true}}}))
            .await.expect(CREATED);
        assert_eq!(tpl.json["settings"]["quota"], json!({"type": "integer", "value": 5}));
        assert_eq!(tpl.json["resources"], json!([{"resource_type_id": t, "default_limit": 10}]));
        let tpl = tpl.id();
        let up = app.patch(&format!("/api/v1/service-templates/{tpl}"), tok, json!({"name": "Exchange"})).await.expect(OK);
        assert_eq!((up.json["name"].as_str(), up.json["settings"]["ssl"]["value"].as_bool()), (Some("Exchange"), Some(true)));
        assert_eq!(ids(&app.get(&format!("/api/v1/accounts/{p}/service-templates"), tok).await.expect(OK).json), vec![tpl]);

        // In use: 409, and the object stays.
        app.delete(&format!("/api/v1/resource-categories/{cat}"), tok).await.problem(CONFLICT, "in_use");
        let r = app.delete(&format!("/api/v1/resource-types/{t}"), tok).await.problem(CONFLICT, "in_use");
        assert!(r.json["detail"].as_str().unwrap().contains("template"), "{}", r.json);
        app.raw_plan(p, tpl, r#"{"rates":[],"sales_categories":[]}"#).await;
        let r = app.delete(&format!("/api/v1/service-templates/{tpl}"), tok).await.problem(CONFLICT, "in_use");
        assert!(r.json["detail"].as_str().unwrap().contains("plan"), "{}", r.json);
        let tpl2 = new_template(&app, &ch.p, &[], json!({})).await;
        app.delete(&format!("/api/v1/service-templates/{tpl2}"), tok).await.expect(NO_CONTENT);
        app.get(&format!("/api/v1/service-templates/{tpl2}"), tok).await.problem(NOT_FOUND, "not_found");
        // The template no longer provisions the type: a plan rate still pins it.
        app.patch(&format!("/api/v1/service-templates/{tpl}"), tok, json!({"resources": []})).await.expect(OK);
        let t2 = new_type(&app, &ch.p, "disk").await;
        app.raw_plan(p, tpl, &format!(r#"{{"rates":[{{"uid":"r","resource_type_id":{t2},"resource_category_id":null}}],"sales_categories":[]}}"#)).await;
        app.delete(&format!("/api/v1/resource-types/{t2}"), tok).await.problem(CONFLICT, "in_use");
        // Freed: the type goes, then its category.
        app.delete(&format!("/api/v1/resource-types/{t}"), tok).await.expect(NO_CONTENT);
        app.delete(&format!("/api/v1/resource-categories/{cat}"), tok).await.expect(NO_CONTENT);
        app.get(&format!("/api/v1/resource-types/{t}"), tok).await.problem(NOT_FOUND, "not_found");

        // Every change left an event on the owner.
        let kinds = app.event_kinds(p).await;
        for k in ["resource_category.created", "resource_type.created", "resource_type.updated", "resource_category.updated",
                  "service_template.created", "service_template.updated", "service_template.deleted", "resource_type.deleted", "resource_category.deleted"] {
            assert!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
        }
    }

    async fn bad_input_names_the_field_and_writes_nothing(db) {
        let app = App::new(db);
        let ch = Channel::build(&app).await;
        let (a, tok) = (ch.a.id, ch.a.token.as_str());
        let b_type = new_type(&app, &ch.b, "b-only").await;
        let b_cat = app.post(&format!("/api/v1/accounts/{}/resource-categories", ch.b.id), &ch.b.token, json!({"code": "bc", "name": text("B")}))
            .await.expect(CREATED).id();
        let events = app.event_count().await;

        let types = format!("/api/v1/accounts/{a}/resource-types");
        app.post(&types, tok, json!({"code": "x", "service": "mail", "unit": "u", "name": {"default": "en", "values": {"en": "x", "xx-!!": "y"}}}))
            .await.field("name.values.xx-!!", "invalid_language");
        app.post(&types, tok, json!({"code": "x", "service": "mail", "unit": "u", "name": text(&"n".repeat(201))})).await.field("name.values.en", "too_long");
        app.post(&types, tok, json!({"code": "x", "service": "mail", "unit": "u", "name": {"default": "de", "values": {"en": "x"}}}))
            .await.field("name.values", "default_missing");
        app.post(&types, tok, json!({"code": "bad code", "service": "mail", "unit": "u", "name": text("x")})).await.field("code", "invalid_code");
        app.post(&types, tok, json!({"code": "x", "service": "", "unit": "u", "name": text("x")})).await.field("service", "required");
        app.post(&types, tok, json!({"code": "x", "service": "mail", "unit": "u".repeat(33), "name": text("x")})).await.field("unit", "too_long");
        app.post(&types, tok, json!({"code": "x".repeat(65), "service": "mail", "unit": "u", "name": text("x")})).await.field("code", "too_long");
        app.post(&types, tok, json!({"code": "x", "service": "mail", "unit": "u", "name": text("x"), "category_id": b_cat}))
            .await.field("category_id", "unknown_resource_category");
        app.post(&types, tok, json!({"code": "x", "service": "mail", "unit": "u", "name": text("x"), "colour": "red"}))
            .await.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        // Several bad fields at once.
        let r = app.post(&types, tok, json!({"code": "", "service": "a b", "unit": "", "name": text("")})).await
            .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(r.json["errors"].as_array().unwrap().len(), 4, "{}", r.json);

        let cats = format!("/api/v1/accounts/{a}/resource-categories");
        app.post(&cats, tok, json!({"code": "x", "name": text("x"), "parent_resource_type_id": b_type})).await
            .field("parent_resource_type_id", "unknown_resource_type");

        let tpls = format!("/api/v1/accounts/{a}/service-templates");
        let own = new_type(&app, &ch.a, "own").await;
        let events = events + 1;
        app.post(&tpls, tok, json!({"name": "T", "resources": [{"resource_type_id": own, "default_limit": -2}]})).await
            .field("resources[0].default_limit", "invalid_limit");
        app.post(&tpls, tok, json!({"name": "T", "resources": [{"resource_type_id": b_type, "default_limit": 1}]})).await
            .field("resources[0].resource_type_id", "unknown_resource_type");
        app.post(&tpls, tok, json!({"name": "T", "resources": [{"resource_type_id": own, "default_limit": 1}, {"resource_type_id": own, "default_limit": 2}]}))
            .await.field("resources[1].resource_type_id", "duplicate_resource");
        app.post(&tpls, tok, json!({"name": "T", "settings": {"x": {"type": "float", "value": 1.5}}})).await.field("settings.x.type", "unknown_setting_type");
        app.post(&tpls, tok, json!({"name": "T", "settings": {"x": {"type": "integer", "value": "7"}}})).await.field("settings.x.value", "type_mismatch");
        app.post(&tpls, tok, json!({"name": "T", "settings": {"Bad Key": {"type": "string", "value": "v"}}})).await.field("settings.Bad Key", "invalid_setting_key");
        app.post(&tpls, tok, json!({"name": "T", "settings": {"s": {"type": "string", "value": "v".repeat(1001)}}})).await.field("settings.s.value", "too_long");
        app.post(&tpls, tok, json!({"name": "x".repeat(201)})).await.field("name", "too_long");

        // A customer owns no catalog.
        app.post(&format!("/api/v1/accounts/{}/resource-types", ch.ac.id), tok, rtype("x")).await.field("account_id", "owner_not_seller");
        app.post(&format!("/api/v1/accounts/{}/sales-categories", ch.ac.id), tok, json!({"code": "x", "name": text("x")})).await
            .field("account_id", "owner_not_seller");

        // Sales categories.
        let sales = format!("/api/v1/accounts/{a}/sales-categories");
        app.post(&sales, tok, json!({"code": "x y", "name": text("x")})).await.field("code", "invalid_code");
        app.post(&sales, tok, json!({"code": "x", "name": text("x"), "sort": -1})).await.field("sort", "out_of_range");
        app.post(&sales, tok, json!({"code": "x", "name": {"default": "en", "values": {"en": "x", "??": "y"}}})).await.field("name.values.??", "invalid_language");

        assert_eq!(app.event_count().await, events, "a refused request writes no event");
        assert_eq!(ids(&app.get(&types, tok).await.expect(OK).json), vec![own]);
        assert!(ids(&app.get(&tpls, tok).await.expect(OK).json).is_empty());
        assert!(ids(&app.get(&cats, tok).await.expect(OK).json).is_empty());
        assert!(app.get(&sales, tok).await.expect(OK).json["items"].as_array().unwrap().is_empty());
    }

    async fn tenant_isolation(db) {
        let app = App::new(db);
        let ch = Channel::build(&app).await;
        let p_type = new_type(&app, &ch.p, "p-type").await;
        let p_tpl = new_template(&app, &ch.p, &[p_type], json!({})).await;
        let a_type = new_type(&app, &ch.a, "a-type").await;
        let a_tpl = new_template(&app, &ch.a, &[a_type, p_type], json!({})).await;
        let a_cat = app.post(&format!("/api/v1/accounts/{}/resource-categories", ch.a.id), &ch.a.token, json!({"code": "c", "name": text("c")}))
            .await.expect(CREATED).id();
        let a_sales = app.post(&format!("/api/v1/accounts/{}/sales-categories", ch.a.id), &ch.a.token, json!({"code": "s", "name": text("s")}))
            .await.expect(CREATED).id();
        let a2_type = new_type(&app, &ch.a2, "a2-type").await;

        // B sees nothing of A: every path 404.
        let b = ch.b.token.as_str();
        for path in [format!("/api/v1/resource-types/{a_type}"), format!("/api/v1/service-templates/{a_tpl}"), format!("/api/v1/resource-categories/{a_cat}"),
                     format!("/api/v1/sales-categories/{a_sales}"), format!("/api/v1/accounts/{}/resource-types", ch.a.id),
                     format!("/api/v1/accounts/{}/service-templates", ch.a.id), format!("/api/v1/accounts/{}/resource-categories", ch.a.id),
                     format!("/api/v1/accounts/{}/sales-categories", ch.a.id), format!("/api/v1/service-templates/{a_tpl}/overrides"),
                     format!("/api/v1/resource-types/{a2_type}")] {
            app.get(&path, b).await.problem(NOT_FOUND, "not_found");
        }
        app.patch(&format!("/api/v1/resource-types/{a_type}"), b, json!({"unit": "x"})).await.problem(NOT_FOUND, "not_found");
        app.delete(&format!("/api/v1/resource-types/{a_type}"), b).await.problem(NOT_FOUND, "not_found");
        app.patch(&format!("/api/v1/service-templates/{a_tpl}"), b, json!({"name": "x"})).await.problem(NOT_FOUND, "not_found");
        app.delete(&format!("/api/v1/service-templates/{a_tpl}"), b).await.problem(NOT_FOUND, "not_found");
        app.delete(&format!("/api/v1/resource-categories/{a_cat}"), b).await.problem(NOT_FOUND, "not_found");
        app.patch(&format!("/api/v1/sales-categories/{a_sales}"), b, json!({"name": text("x")})).await.problem(NOT_FOUND, "not_found");
        app.post(&format!("/api/v1/sales-categories/{a_sales}/move"), b, json!({"sort": 0})).await.problem(NOT_FOUND, "not_found");
        app.delete(&format!("/api/v1/sales-categories/{a_sales}"), b).await.problem(NOT_FOUND, "not_found");
        app.post(&format!("/api/v1/accounts/{}/resource-types", ch.a.id), b, rtype("z")).await.problem(NOT_FOUND, "not_found");
        app.post(&format!("/api/v1/accounts/{}/sales-categories", ch.a.id), b, json!({"code": "z", "name": text("z")})).await.problem(NOT_FOUND, "not_found");
        app.put(&format!("/api/v1/service-templates/{p_tpl}/overrides/{}", ch.a.id), b, json!({"settings": {}})).await.problem(NOT_FOUND, "not_found");
        app.get(&format!("/api/v1/service-templates/{p_tpl}/effective-settings?account_id={}", ch.ac.id), b).await.problem(NOT_FOUND, "not_found");
        // Nor may B build on A's types.
        app.post(&format!("/api/v1/accounts/{}/service-templates", ch.b.id), b,
            json!({"name": "T", "resources": [{"resource_type_id": a_type, "default_limit": 1}]})).await
            .field("resources[0].resource_type_id", "unknown_resource_type");

        // Delegated objects are readable from below (sellers only), never writable.
        let a = ch.a.token.as_str();
        app.get(&format!("/api/v1/resource-types/{p_type}"), a).await.expect(OK);
        app.get(&format!("/api/v1/service-templates/{p_tpl}"), &ch.a2.token).await.expect(OK);
        app.get(&format!("/api/v1/service-templates/{a_tpl}"), &ch.a2.token).await.expect(OK);
        assert_eq!(ids(&app.get(&format!("/api/v1/accounts/{}/resource-types", ch.p.id), a).await.expect(OK).json), vec![p_type]);
        app.patch(&format!("/api/v1/resource-types/{p_type}"), a, json!({"unit": "x"})).await.problem(FORBIDDEN, "forbidden");
        app.delete(&format!("/api/v1/service-templates/{p_tpl}"), a).await.problem(FORBIDDEN, "forbidden");
        app.post(&format!("/api/v1/accounts/{}/resource-types", ch.p.id), a, rtype("z")).await.problem(NOT_FOUND, "not_found");
        // Customers do not read their vendors' catalog objects here; sales trees are not read from below.
        app.get(&format!("/api/v1/resource-types/{p_type}"), &ch.ac.token).await.problem(NOT_FOUND, "not_found");
        app.get(&format!("/api/v1/sales-categories/{a_sales}"), &ch.a2.token).await.problem(NOT_FOUND, "not_found");
        app.get(&format!("/api/v1/accounts/{}/sales-categories", ch.a.id), &ch.a2.token).await.problem(NOT_FOUND, "not_found");

        // Above: the provider reads and manages A's objects.
        let p = ch.p.token.as_str();
        app.get(&format!("/api/v1/resource-types/{a_type}"), p).await.expect(OK);
        app.get(&format!("/api/v1/resource-types/{a2_type}"), p).await.expect(OK);
        app.patch(&format!("/api/v1/resource-types/{a2_type}"), p, json!({"unit": "GB"})).await.expect(OK);
        app.get(&format!("/api/v1/sales-categories/{a_sales}"), p).await.expect(OK);

        // Without CATALOG_MANAGE: reads of one's own catalog, no changes.
        let billing = ch.a_billing.as_str();
        app.get(&format!("/api/v1/resource-types/{a_type}"), billing).await.expect(OK);
        app.get(&format!("/api/v1/accounts/{}/sales-categories", ch.a.id), billing).await.expect(OK);
        app.post(&format!("/api/v1/accounts/{}/resource-types", ch.a.id), billing, rtype("z")).await.problem(FORBIDDEN, "forbidden");
        app.patch(&format!("/api/v1/resource-types/{a_type}"), billing, json!({"unit": "x"})).await.problem(FORBIDDEN, "forbidden");
        app.delete(&format!("/api/v1/sales-categories/{a_sales}"), billing).await.problem(FORBIDDEN, "forbidden");
    }

    async fn overrides_nearest_wins_through_the_api(db) {
        let app = App::new(db);
        let ch = Channel::build(&app).await;
        let mbox = new_type(&app, &ch.p, "mailbox").await;
        let tpl = new_template(&app, &ch.p, &[mbox], json!({
            "region": {"type": "string", "value": "eu"}, "quota": {"type": "integer", "value": 5}, "ssl": {"type": "boolean", "value": false}})).await;
        let put = |acc: i64| format!("/api/v1/service-templates/{tpl}/overrides/{acc}");
        let effective = |acc: i64| format!("/api/v1/service-templates/{tpl}/effective-settings?account_id={acc}");

        // L1 (A) overrides for its customers, L2 (A2) for its own.
        let o = app.put(&put(ch.a.id), &ch.a.token, json!({"settings": {"region": {"type": "string", "value": "de"}, "quota": {"type": "integer", "value": 10}}}))
            .await.expect(OK);
        assert_eq!((o.json["account_id"].as_i64(), o.json["template_id"].as_i64()), (Some(ch.a.id), Some(tpl)));
        app.put(&put(ch.a2.id), &ch.a2.token, json!({"settings": {"region": {"type": "string", "value": "fr"}}})).await.expect(OK);

        let e = app.get(&effective(ch.a2c.id), &ch.a2.token).await.expect(OK);
        assert_eq!(e.json["settings"], json!({
            "region": {"type": "string", "value": "fr"}, "quota": {"type": "integer", "value": 10}, "ssl": {"type": "boolean", "value": false}}));
        // Where each value comes from: the nearest override, or the template (null).
        assert_eq!(e.json["sources"], json!({"region": ch.a2.id, "quota": ch.a.id, "ssl": null}));
        let e = app.get(&effective(ch.ac.id), &ch.a.token).await.expect(OK);
        assert_eq!((&e.json["settings"]["region"]["value"], &e.json["settings"]["quota"]["value"]), (&json!("de"), &json!(10)));
        let e = app.get(&effective(ch.pc.id), &ch.p.token).await.expect(OK);
        assert_eq!((&e.json["settings"]["region"]["value"], &e.json["settings"]["quota"]["value"]), (&json!("eu"), &json!(5)));
        // The provider sees what each customer's connector receives.
        let e = app.get(&effective(ch.a2c.id), &ch.p.token).await.expect(OK);
        assert_eq!(e.json["settings"]["region"]["value"], "fr");
        let e = app.get(&effective(ch.bc.id), &ch.p.token).await.expect(OK);
        assert_eq!(e.json["settings"]["region"]["value"], "eu");

        // A vendor may set its sub-reseller's override; replacing is idempotent.
        app.put(&put(ch.a2.id), &ch.a.token, json!({"settings": {"ssl": {"type": "boolean", "value": true}}})).await.expect(OK);
        let e = app.get(&effective(ch.a2c.id), &ch.a2.token).await.expect(OK);
        assert_eq!((&e.json["settings"]["region"]["value"], &e.json["settings"]["ssl"]["value"]), (&json!("de"), &json!(true)));

        // Lists show the caller's subtree only.
        let list = |tok: String| {
            let app = &app;
            async move {
                let r = app.get(&format!("/api/v1/service-templates/{tpl}/overrides"), &tok).await.expect(OK);
                r.json.as_array().unwrap().iter().map(|o| o["account_id"].as_i64().unwrap()).collect::<Vec<_>>()
            }
        };
        assert_eq!(list(ch.p.token.clone()).await, vec![ch.a.id, ch.a2.id]);
        assert_eq!(list(ch.a.token.clone()).await, vec![ch.a.id, ch.a2.id]);
        assert_eq!(list(ch.a2.token.clone()).await, vec![ch.a2.id]);
        assert!(list(ch.b.token.clone()).await.is_empty());

        // Bad overrides name the key.
        app.put(&put(ch.a.id), &ch.a.token, json!({"settings": {"nope": {"type": "string", "value": "x"}}})).await.field("settings.nope", "unknown_setting");
        app.put(&put(ch.a.id), &ch.a.token, json!({"settings": {"quota": {"type": "string", "value": "7"}}})).await
            .field("settings.quota", "setting_type_mismatch");
        app.put(&put(ch.a.id), &ch.a.token, json!({"settings": {"quota": {"type": "decimal", "value": 7}}})).await
            .field("settings.quota.type", "unknown_setting_type");
        // Only resellers, at or below the caller, on a template delegated to them.
        app.put(&put(ch.ac.id), &ch.a.token, json!({"settings": {}})).await.field("account_id", "not_a_reseller");
        app.put(&put(ch.p.id), &ch.p.token, json!({"settings": {}})).await.field("account_id", "not_a_reseller");
        app.put(&put(ch.a.id), &ch.a2.token, json!({"settings": {}})).await.problem(NOT_FOUND, "not_found");
        app.put(&put(ch.a.id), &ch.a_billing, json!({"settings": {}})).await.problem(FORBIDDEN, "forbidden");
        let a2_tpl = new_template(&app, &ch.a2, &[mbox], json!({"region": {"type": "string", "value": "x"}})).await;
        app.put(&format!("/api/v1/service-templates/{a2_tpl}/overrides/{}", ch.a.id), &ch.a.token, json!({"settings": {}})).await
            .field("account_id", "template_not_available");
        app.get(&format!("/api/v1/service-templates/{a2_tpl}/effective-settings?account_id={}", ch.ac.id), &ch.a.token).await
            .field("account_id", "template_not_available");
        // Effective settings only for accounts in the caller's subtree.
        app.get(&effective(ch.bc.id), &ch.a.token).await.problem(NOT_FOUND, "not_found");
        app.get(&effective(ch.ac.id), &ch.a2.token).await.problem(NOT_FOUND, "not_found");

        // Removing L2's override: its customers get L1's values.
        app.delete(&put(ch.a2.id), &ch.a2.token).await.expect(NO_CONTENT);
        app.delete(&put(ch.a2.id), &ch.a2.token).await.problem(NOT_FOUND, "not_found");
        let e = app.get(&effective(ch.a2c.id), &ch.a2.token).await.expect(OK);
        assert_eq!((&e.json["settings"]["region"]["value"], &e.json["settings"]["ssl"]["value"]), (&json!("de"), &json!(false)));
        // The template drops `quota`: stale override values no longer apply.
        app.patch(&format!("/api/v1/service-templates/{tpl}"), &ch.p.token, json!({"settings": {"region": {"type": "string", "value": "eu"}}})).await.expect(OK);
        let e = app.get(&effective(ch.ac.id), &ch.a.token).await.expect(OK);
        assert_eq!(e.json["settings"], json!({"region": {"type": "string", "value": "de"}}));

        let kinds = app.event_kinds(ch.a2.id).await;
        assert!(kinds.contains(&"template_override.set".to_string()) && kinds.contains(&"template_override.deleted".to_string()), "{kinds:?}");
    }

    async fn sales_tree_order_move_and_cycles(db) {
        let app = App::new(db);
        let ch = Channel::build(&app).await;
        let (a, tok) = (ch.a.id, ch.a.token.as_str());
        let root = format!("/api/v1/accounts/{a}/sales-categories");
        let create = |code: &'static str, parent: Option<i64>, sort: Option<i64>| {
            let app = &app;
            let root = root.clone();
            async move {
                let mut body = json!({"code": code, "name": text(code)});
                if let Some(p) = parent { body["parent_id"] = json!(p); }
                if let Some(s) = sort { body["sort"] = json!(s); }
                app.post(&root, tok, body).await
            }
        };
        let office = create("office", None, None).await.expect(CREATED).id();
        let hosting = create("hosting", None, None).await.expect(CREATED).id();
        let security = create("security", None, Some(0)).await.expect(CREATED);
        assert_eq!(security.json["sort"], 0);
        let security = security.id();
        let mail = create("mail", Some(office), None).await.expect(CREATED).id();
        let docs = create("docs", Some(office), Some(0)).await.expect(CREATED).id();
        let web = create("web", Some(hosting), None).await.expect(CREATED).id();
        create("mail", None, None).await.field("code", "code_taken");

        let shape = |tree: &Value| -> Vec<(i64, i64, Vec<i64>)> {
            tree["items"].as_array().unwrap().iter().map(|n| (
                n["id"].as_i64().unwrap(), n["sort"].as_i64().unwrap(),
                n["children"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect())).collect()
        };
        let tree = app.get(&root, tok).await.expect(OK).json;
        assert_eq!(shape(&tree), vec![(security, 0, vec![]), (office, 1, vec![docs, mail]), (hosting, 2, vec![web])]);
        assert_eq!(tree["items"][1]["children"][0]["name"]["values"]["en"], "docs");

        // Cycles, foreign parents, unknown parents.
        let mv = |id: i64| format!("/api/v1/sales-categories/{id}/move");
        app.post(&mv(office), tok, json!({"parent_id": office})).await.field("parent_id", "category_cycle");
        app.post(&mv(office), tok, json!({"parent_id": mail})).await.field("parent_id", "category_cycle");
        let b_cat = app.post(&format!("/api/v1/accounts/{}/sales-categories", ch.b.id), &ch.b.token, json!({"code": "b", "name": text("b")}))
            .await.expect(CREATED).id();
        app.post(&mv(mail), tok, json!({"parent_id": b_cat})).await.field("parent_id", "unknown_parent");
        create("x", Some(b_cat), None).await.field("parent_id", "unknown_parent");

        // Move mail to hosting at the front; move hosting first among the roots; reorder only.
        let m = app.post(&mv(mail), tok, json!({"parent_id": hosting, "sort": 0})).await.expect(OK);
        assert_eq!((m.json["parent_id"].as_i64(), m.json["sort"].as_i64()), (Some(hosting), Some(0)));
        app.post(&mv(hosting), tok, json!({"parent_id": null, "sort": 0})).await.expect(OK);
        let tree = app.get(&root, tok).await.expect(OK).json;
        assert_eq!(shape(&tree), vec![(hosting, 0, vec![mail, web]), (security, 1, vec![]), (office, 2, vec![docs])]);
        app.post(&mv(security), tok, json!({"sort": 99})).await.expect(OK);
        app.post(&mv(web), tok, json!({"sort": 0})).await.expect(OK);
        let tree = app.get(&root, tok).await.expect(OK).json;
        assert_eq!(shape(&tree), vec![(hosting, 0, vec![web, mail]), (office, 1, vec![docs]), (security, 2, vec![])]);

        // A category that holds plans takes no children, and keeps its code.
        let tpl = new_template(&app, &ch.a, &[], json!({})).await;
        app.raw_plan(a, tpl, r#"{"name":{"default":"en","values":{"en":"Office 365"}},"sales_categories":["docs"]}"#).await;
        create("sub", Some(docs), None).await.problem(CONFLICT, "category_holds_plans");
        app.post(&mv(security), tok, json!({"parent_id": docs})).await.problem(CONFLICT, "category_holds_plans");
        app.patch(&format!("/api/v1/sales-categories/{docs}"), tok, json!({"code": "documents"})).await.problem(CONFLICT, "category_holds_plans");
        let r = app.patch(&format!("/api/v1/sales-categories/{docs}"), tok, json!({"name": {"default": "en", "values": {"en": "Documents", "ar": "وثائق"}}}))
            .await.expect(OK);
        assert_eq!(r.json["name"]["values"]["ar"], "وثائق");
        app.patch(&format!("/api/v1/sales-categories/{security}"), tok, json!({"code": "office"})).await.field("code", "code_taken");
        app.patch(&format!("/api/v1/sales-categories/{security}"), tok, json!({"code": "safety"})).await.expect(OK);
        // The domain rule for the plans engine: a category with children cannot hold plans.
        assert!(!cascade_domain::catalog::sales::can_hold_plans(true));

        // Deletes: not with children, not with plans; a leaf goes and the rest close up.
        app.delete(&format!("/api/v1/sales-categories/{hosting}"), tok).await.problem(CONFLICT, "in_use");
        app.delete(&format!("/api/v1/sales-categories/{docs}"), tok).await.problem(CONFLICT, "in_use");
        app.delete(&format!("/api/v1/sales-categories/{web}"), tok).await.expect(NO_CONTENT);
        let m = app.get(&format!("/api/v1/sales-categories/{mail}"), tok).await.expect(OK);
        assert_eq!(m.json["sort"], 0);
        app.get(&format!("/api/v1/sales-categories/{web}"), tok).await.problem(NOT_FOUND, "not_found");

        let kinds = app.event_kinds(a).await;
        for k in ["sales_category.created", "sales_category.moved", "sales_category.updated", "sales_category.deleted"] {
            assert!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
        }
    }
}
