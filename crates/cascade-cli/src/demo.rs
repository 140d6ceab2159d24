//! `cascade demo`: an embedded installation on SQLite, seeded on first run with a demo
//! channel — a provider, two L1 resellers, an L2 reseller under one of them, customers
//! under each, and users with logins.

use crate::admin::{
    AccountSpec, ProviderSpec, UserSpec, create_account, create_provider, create_user,
};
use cascade_domain::account::AccountKind;
use cascade_domain::clock::Timestamp;
use cascade_domain::privilege::BuiltinRole;
use cascade_store::Db;

/// The password of every demo login. Demo data only: never use it elsewhere.
pub const DEMO_PASSWORD: &str = "cascade-demo";

pub struct DemoLogin {
    pub login: &'static str,
    pub account: String,
    pub role: &'static str,
}

/// Seed the demo channel if the database has no provider yet. Returns the logins.
pub async fn seed(db: &Db, now: Timestamp) -> anyhow::Result<(bool, Vec<DemoLogin>)> {
    let fresh = db.accounts().provider().await?.is_none();
    if fresh {
        let (provider, provider_admin) = create_provider(
            db,
            &ProviderSpec {
                name: "Cascade Cloud Distribution".into(),
                email: "ops@cascade-distribution.example".into(),
                country: "DE".into(),
                language: "en".into(),
                currency: "EUR".into(),
                admin_login: "provider-admin".into(),
                admin_name: "Petra Provider".into(),
                admin_email: "petra@cascade-distribution.example".into(),
                admin_password: DEMO_PASSWORD.into(),
            },
            now,
        )
        .await?;
        create_user(
            db,
            &provider,
            &UserSpec {
                login: "provider-billing",
                name: "Bernd Billing",
                email: "billing@cascade-distribution.example",
                password: DEMO_PASSWORD,
                roles: &[BuiltinRole::BillingStaff],
            },
            now,
        )
        .await?;

        let spec = |kind, name, email, country, language| AccountSpec {
            kind,
            name,
            email,
            country,
            language,
            currency: None,
        };
        let northwind = create_account(
            db,
            Some(&provider),
            &spec(
                AccountKind::Reseller,
                "Northwind Resellers",
                "sales@northwind.example",
                "GB",
                "en",
            ),
            now,
        )
        .await?;
        let bluebird = create_account(
            db,
            Some(&provider),
            &spec(
                AccountKind::Reseller,
                "Bluebird IT",
                "contact@bluebird.example",
                "FR",
                "fr",
            ),
            now,
        )
        .await?;
        let alpine = create_account(
            db,
            Some(&northwind),
            &spec(
                AccountKind::Reseller,
                "Alpine VAR",
                "hello@alpine-var.example",
                "AT",
                "de",
            ),
            now,
        )
        .await?;
        let direct = create_account(
            db,
            Some(&provider),
            &spec(
                AccountKind::Customer,
                "Direct Industries",
                "it@direct.example",
                "DE",
                "de",
            ),
            now,
        )
        .await?;
        let contoso = create_account(
            db,
            Some(&northwind),
            &spec(
                AccountKind::Customer,
                "Contoso Ltd",
                "it@contoso.example",
                "GB",
                "en",
            ),
            now,
        )
        .await?;
        let fabrikam = create_account(
            db,
            Some(&bluebird),
            &spec(
                AccountKind::Customer,
                "Fabrikam SA",
                "it@fabrikam.example",
                "FR",
                "fr",
            ),
            now,
        )
        .await?;
        let nile = create_account(
            db,
            Some(&bluebird),
            &spec(
                AccountKind::Customer,
                "Nile Trading",
                "it@nile-trading.example",
                "EG",
                "ar",
            ),
            now,
        )
        .await?;
        let edelweiss = create_account(
            db,
            Some(&alpine),
            &spec(
                AccountKind::Customer,
                "Edelweiss AG",
                "it@edelweiss.example",
                "AT",
                "de",
            ),
            now,
        )
        .await?;

        let admin = &[BuiltinRole::AccountAdmin];
        let northwind_admin = create_user(
            db,
            &northwind,
            &UserSpec {
                login: "northwind-admin",
                name: "Nora Northwind",
                email: "nora@northwind.example",
                password: DEMO_PASSWORD,
                roles: admin,
            },
            now,
        )
        .await?;
        let bluebird_admin = create_user(
            db,
            &bluebird,
            &UserSpec {
                login: "bluebird-admin",
                name: "Bastien Bluebird",
                email: "bastien@bluebird.example",
                password: DEMO_PASSWORD,
                roles: admin,
            },
            now,
        )
        .await?;
        let alpine_admin = create_user(
            db,
            &alpine,
            &UserSpec {
                login: "alpine-admin",
                name: "Alois Alpine",
                email: "alois@alpine-var.example",
                password: DEMO_PASSWORD,
                roles: admin,
            },
            now,
        )
        .await?;
        create_user(
            db,
            &direct,
            &UserSpec {
                login: "direct-admin",
                name: "Dana Direct",
                email: "dana@direct.example",
                password: DEMO_PASSWORD,
                roles: admin,
            },
            now,
        )
        .await?;
        create_user(
            db,
            &contoso,
            &UserSpec {
                login: "contoso-admin",
                name: "Carl Contoso",
                email: "carl@contoso.example",
                password: DEMO_PASSWORD,
                roles: admin,
            },
            now,
        )
        .await?;
        create_user(
            db,
            &fabrikam,
            &UserSpec {
                login: "fabrikam-admin",
                name: "Fanny Fabrikam",
                email: "fanny@fabrikam.example",
                password: DEMO_PASSWORD,
                roles: admin,
            },
            now,
        )
        .await?;
        create_user(
            db,
            &nile,
            &UserSpec {
                login: "nile-admin",
                name: "Nadia Nile",
                email: "nadia@nile-trading.example",
                password: DEMO_PASSWORD,
                roles: admin,
            },
            now,
        )
        .await?;
        create_user(
            db,
            &edelweiss,
            &UserSpec {
                login: "edelweiss-admin",
                name: "Erika Edelweiss",
                email: "erika@edelweiss.example",
                password: DEMO_PASSWORD,
                roles: admin,
            },
            now,
        )
        .await?;
        let channel = crate::demo_catalog::DemoChannel {
            provider: (provider.id, provider_admin.id),
            northwind: (northwind.id, northwind_admin.id),
            bluebird: (bluebird.id, bluebird_admin.id),
            alpine: (alpine.id, alpine_admin.id),
            contoso: contoso.id,
            edelweiss: edelweiss.id,
            fabrikam: fabrikam.id,
        };
        crate::demo_catalog::seed(db, &channel).await?;
        crate::demo_tierbill::seed(db, alpine.id, northwind.id, edelweiss.id, now).await?;
        crate::demo_notify::seed(db, provider.id, bluebird.id, now).await?;
        crate::demo_holds::seed(db, &provider, now).await?;
    }
    let logins = vec![
        DemoLogin {
            login: "provider-admin",
            account: "Cascade Cloud Distribution (provider)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: "provider-billing",
            account: "Cascade Cloud Distribution (provider)".into(),
            role: "billing staff",
        },
        DemoLogin {
            login: "northwind-admin",
            account: "Northwind Resellers (L1 reseller)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: "bluebird-admin",
            account: "Bluebird IT (L1 reseller)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: "alpine-admin",
            account: "Alpine VAR (L2 reseller under Northwind)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: "direct-admin",
            account: "Direct Industries (customer of the provider)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: "contoso-admin",
            account: "Contoso Ltd (customer of Northwind)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: "fabrikam-admin",
            account: "Fabrikam SA (customer of Bluebird)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: "nile-admin",
            account: "Nile Trading (customer of Bluebird, Arabic)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: "edelweiss-admin",
            account: "Edelweiss AG (customer of Alpine VAR)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: crate::demo_holds::LOGIN,
            account: "Halted Systems (customer of the provider, on credit hold: one site suspended, one terminated and restorable)".into(),
            role: "account administrator",
        },
        DemoLogin {
            login: "globex-admin",
            account: "Globex Corporation (Northwind customer on net terms, signed up in one step)"
                .into(),
            role: "account administrator",
        },
    ];
    Ok((fresh, logins))
}
