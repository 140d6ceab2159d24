//! Counter readings of usage collection, on both backends: the latest earlier day's
//! reading per resource (what a counter's growth is measured from), the first reading
//! of a day winning, and statements of thousands of parameters (several chunks).

use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::clock::Timestamp;
use cascade_store::accounts::Accounts;
use cascade_store::connectors::{ConnectorInstances, NewInstance};
use cascade_testkit::{Db, both_backends};
use std::collections::HashMap;

const T0: Timestamp = Timestamp(1_700_000_000_000_000);

async fn instance(db: &Db) -> i64 {
    let new = NewAccountInput {
        kind: AccountKind::Provider,
        name: "Provider".into(),
        contact: ContactInput::default(),
        country: "DE".into(),
        language: "en".into(),
        currency: Some("EUR".into()),
        customer_class_id: None,
    }
    .validate(None)
    .unwrap();
    let mut tx = db.begin().await.unwrap();
    let p = Accounts::create(&mut tx, &new, T0).await.unwrap();
    let i = ConnectorInstances::create(
        &mut tx,
        p.id,
        &NewInstance {
            service: "mail".into(),
            name: "Mail".into(),
            endpoint: "https://127.0.0.1:1".into(),
            secret: "a-long-shared-secret".into(),
            cert_pin: None,
            timeout_ms: 1000,
        },
        T0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    i.id
}

async fn put(db: &Db, id: i64, date: &str, values: &[(&str, i64)]) {
    let v: Vec<(String, String, i64)> = values
        .iter()
        .map(|(r, v)| (r.to_string(), "messages_sent".to_string(), *v))
        .collect();
    let mut tx = db.begin().await.unwrap();
    ConnectorInstances::put_counters(&mut tx, id, date, &v)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn before(db: &Db, id: i64, date: &str) -> HashMap<String, i64> {
    let mut tx = db.begin().await.unwrap();
    let m = ConnectorInstances::counters_before(&mut tx, id, date)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    m.into_iter().map(|((r, _), v)| (r, v)).collect()
}

async fn on(db: &Db, id: i64, date: &str) -> HashMap<String, i64> {
    let mut tx = db.begin().await.unwrap();
    let m = ConnectorInstances::counters_on(&mut tx, id, date)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    m.into_iter().map(|((r, _), v)| (r, v)).collect()
}

both_backends! {
    async fn a_counter_grows_from_its_latest_earlier_reading(db) {
        let id = instance(&db).await;
        put(&db, id, "2030-01-01", &[("sub-1", 10), ("sub-2", 5)]).await;
        put(&db, id, "2030-01-02", &[("sub-1", 30)]).await;
        // The first reading of a day wins.
        put(&db, id, "2030-01-02", &[("sub-1", 99)]).await;
        put(&db, id, "2030-01-04", &[("sub-2", 50)]).await;

        assert!(before(&db, id, "2030-01-01").await.is_empty());
        assert_eq!(before(&db, id, "2030-01-02").await, HashMap::from([("sub-1".into(), 10), ("sub-2".into(), 5)]));
        // sub-2 was not read on the 2nd: its latest earlier reading is the 1st's.
        assert_eq!(before(&db, id, "2030-01-03").await, HashMap::from([("sub-1".into(), 30), ("sub-2".into(), 5)]));
        assert_eq!(before(&db, id, "2030-01-05").await, HashMap::from([("sub-1".into(), 30), ("sub-2".into(), 50)]));
        assert_eq!(on(&db, id, "2030-01-02").await, HashMap::from([("sub-1".into(), 30)]));
    }

    async fn thousands_of_readings_are_stored_in_chunks(db) {
        let id = instance(&db).await;
        let names: Vec<String> = (0..2500).map(|i| format!("sub-{i}")).collect();
        let values: Vec<(&str, i64)> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i as i64 * 3)).collect();
        put(&db, id, "2030-01-01", &values).await;
        let got = on(&db, id, "2030-01-01").await;
        assert_eq!(got.len(), 2500);
        assert!(values.iter().all(|(n, v)| got.get(*n) == Some(v)));
    }
}
