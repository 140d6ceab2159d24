//! Storage of resource categories and types, service templates with provisioning
//! overrides, and sales categories: every test on SQLite and on PostgreSQL.

use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::catalog::resources::{
    Code, ResourceCategoryData, ResourceCategoryId, ResourceKind, ResourceTypeData, ResourceTypeId,
    ServiceTemplateData, ServiceTemplateId, SettingValue, Settings, TemplateResource,
};
use cascade_domain::catalog::sales::{Move, NewSalesCategory, SalesCategoryId, check_parent};
use cascade_domain::catalog::text::Localized;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_store::accounts::Accounts;
use cascade_store::resources::{
    ResourceCategories, ResourceTypes, ServiceTemplates, effective_settings_for,
};
use cascade_store::sales_categories::SalesCategories;
use cascade_store::{StoreError, on_tx};
use cascade_testkit::{Db, both_backends};
use std::collections::BTreeSet;

const T0: Timestamp = Timestamp(1_700_000_000_000_000);

async fn add(db: &Db, vendor: Option<AccountId>, kind: AccountKind, name: &str) -> AccountId {
    let facts = match vendor {
        Some(v) => Some(db.accounts().get(v).await.unwrap().facts()),
        None => None,
    };
    let new = NewAccountInput {
        kind,
        name: name.into(),
        contact: ContactInput::default(),
        country: "DE".into(),
        language: "en".into(),
        currency: if vendor.is_none() {
            Some("EUR".into())
        } else {
            None
        },
        customer_class_id: None,
    }
    .validate(facts.as_ref())
    .unwrap();
    let mut tx = db.begin().await.unwrap();
    let a = Accounts::create(&mut tx, &new, T0).await.unwrap();
    tx.commit().await.unwrap();
    a.id
}

fn code(s: &str) -> Code {
    Code::parse(s).unwrap()
}

fn category(c: &str, parent: Option<ResourceTypeId>) -> ResourceCategoryData {
    ResourceCategoryData {
        code: code(c),
        name: Localized::new("en", c).with("ar", "فئة"),
        parent_resource_type_id: parent,
    }
}

fn rtype(c: &str, cat: Option<ResourceCategoryId>) -> ResourceTypeData {
    ResourceTypeData {
        code: code(c),
        service: code("mail"),
        unit: "mailbox".into(),
        kind: ResourceKind::Quantity,
        name: Localized::new("en", c),
        description: Some(Localized::new("en", "desc").with("fr", "descr")),
        category_id: cat,
    }
}

fn settings(pairs: &[(&str, SettingValue)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn string(s: &str) -> SettingValue {
    SettingValue::String(s.into())
}

async fn new_category(
    db: &Db,
    owner: AccountId,
    c: &str,
    parent: Option<ResourceTypeId>,
) -> ResourceCategoryId {
    let mut tx = db.begin().await.unwrap();
    let cat = ResourceCategories::create(&mut tx, owner, &category(c, parent), T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    cat.id
}

async fn new_type(
    db: &Db,
    owner: AccountId,
    c: &str,
    cat: Option<ResourceCategoryId>,
) -> ResourceTypeId {
    let mut tx = db.begin().await.unwrap();
    let t = ResourceTypes::create(&mut tx, owner, &rtype(c, cat), T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.id
}

async fn new_template(
    db: &Db,
    owner: AccountId,
    types: &[ResourceTypeId],
    s: Settings,
) -> ServiceTemplateId {
    let data = ServiceTemplateData {
        name: "Hosted mail".into(),
        resources: types
            .iter()
            .map(|t| TemplateResource {
                resource_type_id: *t,
                default_limit: -1,
            })
            .collect(),
        settings: s,
    };
    let mut tx = db.begin().await.unwrap();
    let t = ServiceTemplates::create(&mut tx, owner, &data, T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.id
}

async fn set_override(db: &Db, t: ServiceTemplateId, account: AccountId, s: Settings) {
    let mut tx = db.begin().await.unwrap();
    ServiceTemplates::set_override(&mut tx, t, account, &s, T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// A plan row with the given JSON content (the plans engine writes richer content; only
/// the references matter here).
async fn raw_plan(db: &Db, owner: AccountId, template: ServiceTemplateId, content: &str) -> i64 {
    let mut tx = db.begin().await.unwrap();
    let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO plans (owner_account_id, template_id, root_plan_id, parent_plan_id, currency, content, published, visible, withdrawn,
            upstream_changes, listing_priority, version, created_at, updated_at)
         VALUES ($1, $2, NULL, NULL, 'EUR', $3, TRUE, TRUE, FALSE, FALSE, 0, 1, $4, $4) RETURNING id")
        .bind(owner.0).bind(template.0).bind(content).bind(T0.0).fetch_one(c).await)
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn delete_plan(db: &Db, id: i64) {
    let mut tx = db.begin().await.unwrap();
    on_tx!(&mut tx, c => sqlx::query("DELETE FROM plans WHERE id = $1").bind(id).execute(c).await.map(|r| r.rows_affected())).unwrap();
    tx.commit().await.unwrap();
}

fn conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict { what }) => what,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

both_backends! {
    async fn resource_categories_and_types_round_trip(db) {
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let a = add(&db, Some(p), AccountKind::Reseller, "A").await;
        let b = add(&db, Some(p), AccountKind::Reseller, "B").await;

        let cat = new_category(&db, p, "mail", None).await;
        let mbox = new_type(&db, p, "mailbox", Some(cat)).await;
        let got = db.resource_types().get(mbox).await.unwrap();
        assert_eq!(got.category_id, Some(cat));
        assert_eq!(got.description.as_ref().unwrap().get("fr"), "descr");
        assert_eq!(db.resource_categories().get(cat).await.unwrap().name.get("ar"), "فئة");

        // Codes are unique per owner; another owner may reuse one.
        let mut tx = db.begin().await.unwrap();
        let what = conflict(ResourceTypes::create(&mut tx, p, &rtype("mailbox", None), T0).await);
        assert!(what.contains("mailbox"), "{what}");
        drop(tx);
        let a_mbox = new_type(&db, a, "mailbox", None).await;
        let mut tx = db.begin().await.unwrap();
        assert!(matches!(ResourceCategories::create(&mut tx, p, &category("mail", None), T0).await, Err(StoreError::Conflict { .. })));
        drop(tx);

        // Up-sell parent; update keeps the row and bumps updated_at.
        let addons = new_category(&db, p, "addons", Some(mbox)).await;
        let mut tx = db.begin().await.unwrap();
        let later = Timestamp(T0.0 + 1);
        let u = ResourceTypes::update(&mut tx, mbox, &ResourceTypeData { unit: "box".into(), ..rtype("mailbox", Some(cat)) }, later).await.unwrap();
        assert_eq!((u.unit.as_str(), u.updated_at, u.created_at), ("box", later, T0));
        // Renaming onto a taken code is a conflict.
        assert!(matches!(ResourceCategories::update(&mut tx, addons, &category("mail", Some(mbox)), later).await, Err(StoreError::Conflict { .. })));
        drop(tx);

        // Visibility: own and ancestors' types, never a sibling's.
        let b_type = new_type(&db, b, "b-only", None).await;
        let mut tx = db.begin().await.unwrap();
        let seen = ResourceTypes::visible_in(&mut tx, a, &[mbox, a_mbox, b_type, ResourceTypeId(999_999)]).await.unwrap();
        assert_eq!(seen, BTreeSet::from([mbox, a_mbox]));
        let seen = ResourceTypes::visible_in(&mut tx, p, &[mbox, a_mbox]).await.unwrap();
        assert_eq!(seen, BTreeSet::from([mbox]));
        assert_eq!(ResourceCategories::of_owner_in(&mut tx, a, &[cat]).await.unwrap(), BTreeSet::new());
        assert_eq!(ResourceCategories::of_owner_in(&mut tx, p, &[cat, addons]).await.unwrap(), BTreeSet::from([cat, addons]));
        drop(tx);

        // Lists are per owner and paginated by id.
        let first = db.resource_types().list(p, None, 1).await.unwrap();
        assert_eq!(first.items.iter().map(|t| t.id).collect::<Vec<_>>(), vec![mbox]);
        assert!(first.next.is_none());
        let cats = db.resource_categories().list(p, None, 1).await.unwrap();
        assert_eq!((cats.items[0].id, cats.next), (cat, Some(cat.0)));
        let rest = db.resource_categories().list(p, cats.next, 10).await.unwrap();
        assert_eq!(rest.items.iter().map(|c| c.id).collect::<Vec<_>>(), vec![addons]);

        // A category with types cannot go; a type used as an up-sell parent cannot go.
        let mut tx = db.begin().await.unwrap();
        assert!(conflict(ResourceCategories::delete(&mut tx, cat).await).contains("mailbox"));
        assert!(conflict(ResourceTypes::delete(&mut tx, mbox).await).contains("addons"));
        ResourceCategories::delete(&mut tx, addons).await.unwrap();
        tx.commit().await.unwrap();

        // Templates and plans pin resource types; plans pin resource categories.
        let t = new_template(&db, p, &[mbox], Settings::new()).await;
        let mut tx = db.begin().await.unwrap();
        assert!(conflict(ResourceTypes::delete(&mut tx, mbox).await).contains("template"));
        drop(tx);
        let other = new_type(&db, p, "disk", None).await;
        let plan = raw_plan(&db, p, t, &format!(
            r#"{{"rates":[{{"uid":"r1","resource_type_id":{},"resource_category_id":{}}}],"sales_categories":[]}}"#, other.0, cat.0)).await;
        let mut tx = db.begin().await.unwrap();
        assert!(conflict(ResourceTypes::delete(&mut tx, other).await).contains("plan"));
        drop(tx);
        // The LIKE is anchored on the delimiters: id 3 in a plan does not pin 30 or 31.
        let mut tx = db.begin().await.unwrap();
        for id in [other.0 * 10, other.0 * 10 + 1] {
            assert!(ResourceTypes::usage_in(&mut tx, ResourceTypeId(id)).await.unwrap().is_none());
        }
        drop(tx);
        delete_plan(&db, plan).await;
        let mut tx = db.begin().await.unwrap();
        ResourceTypes::delete(&mut tx, other).await.unwrap();
        assert!(matches!(ResourceTypes::delete(&mut tx, other).await, Err(StoreError::NotFound)));
        tx.commit().await.unwrap();
        assert!(matches!(db.resource_types().get(other).await, Err(StoreError::NotFound)));
    }

    async fn overrides_nearest_wins_down_a_three_level_chain(db) {
        // P ── L1 ── L2 ── C2
        //      │     └─── (L2 itself)
        //      └── C1
        // P ── C0;  P ── B ── CB  (another branch)
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let l1 = add(&db, Some(p), AccountKind::Reseller, "L1").await;
        let l2 = add(&db, Some(l1), AccountKind::Reseller, "L2").await;
        let c2 = add(&db, Some(l2), AccountKind::Customer, "C2").await;
        let c1 = add(&db, Some(l1), AccountKind::Customer, "C1").await;
        let c0 = add(&db, Some(p), AccountKind::Customer, "C0").await;
        let b = add(&db, Some(p), AccountKind::Reseller, "B").await;
        let cb = add(&db, Some(b), AccountKind::Customer, "CB").await;

        let mbox = new_type(&db, p, "mailbox", None).await;
        let base = settings(&[("region", string("eu")), ("quota", SettingValue::Integer(5)), ("ssl", SettingValue::Boolean(false))]);
        let t = new_template(&db, p, &[mbox], base.clone()).await;
        let stored = db.service_templates().get(t).await.unwrap();
        assert_eq!(stored.settings, base);
        assert_eq!(stored.resources, vec![TemplateResource { resource_type_id: mbox, default_limit: -1 }]);

        set_override(&db, t, l1, settings(&[("region", string("de")), ("quota", SettingValue::Integer(10))])).await;
        set_override(&db, t, l2, settings(&[("region", string("fr"))])).await;

        let eff = |acc| effective_settings_for(&db, t, acc);
        let e = eff(c2).await.unwrap();
        assert_eq!((&e["region"], &e["quota"], &e["ssl"]), (&string("fr"), &SettingValue::Integer(10), &SettingValue::Boolean(false)));
        let e = eff(c1).await.unwrap();
        assert_eq!((&e["region"], &e["quota"]), (&string("de"), &SettingValue::Integer(10)));
        assert_eq!(eff(c0).await.unwrap(), base);
        assert_eq!(eff(cb).await.unwrap(), base);
        // A seller: what its customers receive (its own override included).
        assert_eq!(eff(l2).await.unwrap()["region"], string("fr"));
        assert_eq!(eff(l1).await.unwrap()["region"], string("de"));
        assert_eq!(db.service_templates().effective_settings_for(t, p).await.unwrap(), base);

        // Replacing an override (upsert) and removing one.
        set_override(&db, t, l2, settings(&[("ssl", SettingValue::Boolean(true))])).await;
        let e = eff(c2).await.unwrap();
        assert_eq!((&e["region"], &e["ssl"]), (&string("de"), &SettingValue::Boolean(true)));
        let mut tx = db.begin().await.unwrap();
        assert!(ServiceTemplates::delete_override(&mut tx, t, l1).await.unwrap());
        assert!(!ServiceTemplates::delete_override(&mut tx, t, l1).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(eff(c1).await.unwrap(), base);

        // A template of L1 is not available in another branch.
        let lt = new_template(&db, l1, &[mbox], settings(&[("region", string("eu"))])).await;
        assert!(matches!(effective_settings_for(&db, lt, cb).await, Err(StoreError::NotFound)));
        assert!(matches!(effective_settings_for(&db, lt, p).await, Err(StoreError::NotFound)));
        assert!(matches!(effective_settings_for(&db, ServiceTemplateId(999_999), c1).await, Err(StoreError::NotFound)));
        assert_eq!(eff(c1).await.unwrap(), base);

        // Overrides within a subtree.
        set_override(&db, t, l1, settings(&[("quota", SettingValue::Integer(1))])).await;
        let all: Vec<_> = db.service_templates().overrides_within(t, p, i64::MAX).await.unwrap().into_iter().map(|o| o.account_id).collect();
        assert_eq!(all, vec![l1, l2]);
        let below_l2: Vec<_> = db.service_templates().overrides_within(t, l2, i64::MAX).await.unwrap().into_iter().map(|o| o.account_id).collect();
        assert_eq!(below_l2, vec![l2]);
        assert!(db.service_templates().overrides_within(t, l1, 0).await.unwrap().iter().all(|o| o.account_id == l1));
        assert!(db.service_templates().overrides_within(t, b, i64::MAX).await.unwrap().is_empty());

        // A template a plan is built on stays; otherwise it goes with its overrides.
        let plan = raw_plan(&db, p, t, r#"{"rates":[],"sales_categories":[]}"#).await;
        let mut tx = db.begin().await.unwrap();
        assert!(conflict(ServiceTemplates::delete(&mut tx, t).await).contains(&plan.to_string()));
        drop(tx);
        delete_plan(&db, plan).await;
        let mut tx = db.begin().await.unwrap();
        ServiceTemplates::delete(&mut tx, t).await.unwrap();
        tx.commit().await.unwrap();
        assert!(db.service_templates().overrides_within(t, p, i64::MAX).await.unwrap().is_empty());
        assert!(matches!(db.service_templates().get(t).await, Err(StoreError::NotFound)));
    }

    async fn sales_tree_order_moves_and_guards(db) {
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let a = add(&db, Some(p), AccountKind::Reseller, "A").await;
        let create = |parent: Option<SalesCategoryId>, c: &'static str, position: Option<u32>| {
            let db = db.clone();
            async move {
                let mut tx = db.begin().await.unwrap();
                let n = NewSalesCategory { parent_id: parent, code: code(c), name: Localized::new("en", c), position };
                let r = SalesCategories::create(&mut tx, p, &n, T0).await;
                if r.is_ok() {
                    tx.commit().await.unwrap();
                }
                r
            }
        };
        let office = create(None, "office", None).await.unwrap().id;
        let hosting = create(None, "hosting", None).await.unwrap().id;
        let security = create(None, "security", Some(0)).await.unwrap().id;
        let order = |parent: Option<SalesCategoryId>| {
            let db = db.clone();
            async move {
                db.sales_categories().list(p).await.unwrap().into_iter().filter(|c| c.parent_id == parent).map(|c| (c.id, c.sort)).collect::<Vec<_>>()
            }
        };
        assert_eq!(order(None).await, vec![(security, 0), (office, 1), (hosting, 2)]);
        let mail = create(Some(office), "mail", None).await.unwrap().id;
        let docs = create(Some(office), "docs", Some(0)).await.unwrap().id;
        assert_eq!(order(Some(office)).await, vec![(docs, 0), (mail, 1)]);
        assert!(matches!(create(None, "mail", None).await, Err(StoreError::Conflict { .. })));
        // Another owner has its own codes.
        let mut tx = db.begin().await.unwrap();
        SalesCategories::create(&mut tx, a, &NewSalesCategory { parent_id: None, code: code("office"), name: Localized::new("en", "x"), position: None }, T0)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // The tree: roots by sort, children by sort.
        let tree = db.sales_categories().tree(p).await.unwrap();
        let shape: Vec<(SalesCategoryId, Vec<SalesCategoryId>)> =
            tree.iter().map(|n| (n.category.id, n.children.iter().map(|c| c.category.id).collect())).collect();
        assert_eq!(shape, vec![(security, vec![]), (office, vec![docs, mail]), (hosting, vec![])]);

        // Cycles are refused against the stored tree.
        let mut tx = db.begin().await.unwrap();
        let parents = SalesCategories::parents_in(&mut tx, p).await.unwrap();
        assert_eq!(check_parent(Some(office), Some(mail), &parents).unwrap_err().code, "category_cycle");
        assert!(check_parent(Some(mail), Some(hosting), &parents).is_ok());
        drop(tx);

        // Move mail under hosting, then to the front of the root level; both groups renumbered.
        let mut tx = db.begin().await.unwrap();
        SalesCategories::move_to(&mut tx, mail, &Move { parent_id: Some(hosting), position: None }, T0).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(order(Some(office)).await, vec![(docs, 0)]);
        assert_eq!(order(Some(hosting)).await, vec![(mail, 0)]);
        let mut tx = db.begin().await.unwrap();
        let moved = SalesCategories::move_to(&mut tx, hosting, &Move { parent_id: None, position: Some(0) }, T0).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(moved.sort, 0);
        assert_eq!(order(None).await, vec![(hosting, 0), (security, 1), (office, 2)]);
        // Reordering within the same group.
        let mut tx = db.begin().await.unwrap();
        SalesCategories::move_to(&mut tx, hosting, &Move { parent_id: None, position: Some(99) }, T0).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(order(None).await, vec![(security, 0), (office, 1), (hosting, 2)]);

        // A plan lists `docs`: it holds plans (a mere mention elsewhere does not count).
        let t = new_template(&db, p, &[], Settings::new()).await;
        let plan = raw_plan(&db, p, t, r#"{"name":{"default":"en","values":{"en":"security"}},"sales_categories":["docs"]}"#).await;
        let mut tx = db.begin().await.unwrap();
        assert!(SalesCategories::holds_plans_in(&mut tx, p, &code("docs")).await.unwrap());
        assert!(!SalesCategories::holds_plans_in(&mut tx, p, &code("security")).await.unwrap());
        assert!(!SalesCategories::holds_plans_in(&mut tx, a, &code("docs")).await.unwrap());
        assert!(conflict(SalesCategories::delete(&mut tx, docs, T0).await).contains("plans"));
        // Its code cannot change while plans list it; its name can.
        let mut renamed = db.sales_categories().get(docs).await.unwrap();
        renamed.code = code("documents");
        assert!(matches!(SalesCategories::update(&mut tx, &renamed, T0).await, Err(StoreError::Conflict { .. })));
        let mut renamed = db.sales_categories().get(docs).await.unwrap();
        renamed.name = Localized::new("en", "Documents");
        assert_eq!(SalesCategories::update(&mut tx, &renamed, T0).await.unwrap().name.get("en"), "Documents");
        // A category with children cannot go.
        assert!(conflict(SalesCategories::delete(&mut tx, hosting, T0).await).contains("sub-categories"));
        drop(tx);
        assert!(db.sales_categories().holds_plans(p, &code("docs")).await.unwrap());
        delete_plan(&db, plan).await;

        // Deleting closes the gap.
        let mut tx = db.begin().await.unwrap();
        SalesCategories::delete(&mut tx, security, T0).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(order(None).await, vec![(office, 0), (hosting, 1)]);
    }
}
