//! Bootstrap: the provider and its first administrator on an empty database, and the
//! helpers the demo uses to build a channel through the same validated paths as the API.

use anyhow::{Context, bail};
use cascade_domain::account::{Account, AccountKind, ContactInput, NewAccountInput};
use cascade_domain::clock::Timestamp;
use cascade_domain::privilege::BuiltinRole;
use cascade_domain::user::{NewUserInput, User, check_password};
use cascade_store::Db;
use cascade_store::accounts::Accounts;
use cascade_store::events::{Events, NewEvent};
use cascade_store::users::Users;
use serde_json::json;

pub struct AccountSpec<'a> {
    pub kind: AccountKind,
    pub name: &'a str,
    pub email: &'a str,
    pub country: &'a str,
    pub language: &'a str,
    pub currency: Option<&'a str>,
}

pub async fn create_account(
    db: &Db,
    vendor: Option<&Account>,
    spec: &AccountSpec<'_>,
    now: Timestamp,
) -> anyhow::Result<Account> {
    let input = NewAccountInput {
        kind: spec.kind,
        name: spec.name.into(),
        contact: ContactInput {
            email: Some(spec.email.into()),
            ..Default::default()
        },
        country: spec.country.into(),
        language: spec.language.into(),
        currency: spec.currency.map(Into::into),
        customer_class_id: None,
    };
    let new = input
        .validate(vendor.map(|v| v.facts()).as_ref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tx = db.begin().await?;
    let a = Accounts::create(&mut tx, &new, now).await?;
    Events::emit(
        &mut tx,
        NewEvent {
            kind: "account.created",
            account_id: Some(a.id),
            actor_user_id: None,
            subject_type: "account",
            subject_id: a.id.0,
            payload: json!({"kind": a.kind.as_str(), "vendor_id": vendor.map(|v| v.id.0), "name": a.name}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(a)
}

/// A user to create with a password and built-in roles.
#[derive(Clone, Copy)]
pub struct UserSpec<'a> {
    pub login: &'a str,
    pub name: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    pub roles: &'a [BuiltinRole],
}

pub async fn create_user(
    db: &Db,
    account: &Account,
    spec: &UserSpec<'_>,
    now: Timestamp,
) -> anyhow::Result<User> {
    let UserSpec {
        login,
        name,
        email,
        password,
        roles,
    } = *spec;
    let new = NewUserInput {
        login: login.into(),
        display_name: name.into(),
        email: email.into(),
        language: None,
        password: Some(password.into()),
    }
    .validate()
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = cascade_http::password::hash_password(password);
    let mut role_ids = Vec::new();
    for r in roles {
        role_ids.push(db.roles().builtin(*r).await?.id);
    }
    let mut tx = db.begin().await?;
    let u = Users::create(&mut tx, account.id, &new, Some(&hash), now)
        .await
        .with_context(|| format!("creating user {login}"))?;
    for r in role_ids {
        Users::attach_role(&mut tx, u.id, r).await?;
    }
    Events::emit(
        &mut tx,
        NewEvent {
            kind: "user.created",
            account_id: Some(account.id),
            actor_user_id: None,
            subject_type: "user",
            subject_id: u.id.0,
            payload: json!({"user_id": u.id.0, "login": u.login.as_str(), "email": u.email.as_str(), "display_name": u.display_name, "language": u.language.as_ref().map(|l| l.as_str())}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(u)
}

pub struct ProviderSpec {
    pub name: String,
    pub email: String,
    pub country: String,
    pub language: String,
    pub currency: String,
    pub admin_login: String,
    pub admin_name: String,
    pub admin_email: String,
    pub admin_password: String,
}

/// Create the provider and its first account administrator. Refuses when a provider exists.
pub async fn create_provider(
    db: &Db,
    s: &ProviderSpec,
    now: Timestamp,
) -> anyhow::Result<(Account, User)> {
    if let Some(p) = db.accounts().provider().await? {
        bail!(
            "this installation already has its provider: {} (id {})",
            p.name,
            p.id
        );
    }
    check_password(&s.admin_password)
        .map_err(|e| anyhow::anyhow!("admin password: {}", e.message))?;
    let spec = AccountSpec {
        kind: AccountKind::Provider,
        name: &s.name,
        email: &s.email,
        country: &s.country,
        language: &s.language,
        currency: Some(&s.currency),
    };
    let p = create_account(db, None, &spec, now).await?;
    let admin = UserSpec {
        login: &s.admin_login,
        name: &s.admin_name,
        email: &s.admin_email,
        password: &s.admin_password,
        roles: &[BuiltinRole::AccountAdmin],
    };
    let u = create_user(db, &p, &admin, now).await?;
    Ok((p, u))
}
