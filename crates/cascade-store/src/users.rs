//! Users, roles and their grants.

use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::account::{Email, Language};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{AccountId, RoleId, UserId};
use cascade_domain::privilege::{BuiltinRole, DomainLevel, Grant, Privilege, PrivilegeSet};
use cascade_domain::user::{Login, NewUser, User};

const COLUMNS: &str = "u.id, u.account_id, u.login, u.display_name, u.email, u.language, u.disabled, u.created_at, u.updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    account_id: i64,
    login: String,
    display_name: String,
    email: String,
    language: Option<String>,
    disabled: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<Row> for User {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        let bad = |what: &str, e: cascade_domain::FieldError| {
            StoreError::Corrupt(format!("user {}: {what}: {e}", r.id))
        };
        Ok(User {
            id: UserId(r.id),
            account_id: AccountId(r.account_id),
            login: Login::parse(&r.login).map_err(|e| bad("login", e))?,
            display_name: r.display_name.clone(),
            email: Email::parse(&r.email).map_err(|e| bad("email", e))?,
            language: r
                .language
                .as_deref()
                .map(Language::parse)
                .transpose()
                .map_err(|e| bad("language", e))?,
            disabled: r.disabled,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

/// What login needs: the user, its password hash and the version of its credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: Option<String>,
    pub credentials_version: i64,
}

/// A role: built-in (`account_id` is `None`) or custom to one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub id: RoleId,
    pub account_id: Option<AccountId>,
    pub builtin_key: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub grants: Vec<Grant>,
}

impl Role {
    pub fn privileges(&self) -> PrivilegeSet {
        PrivilegeSet::from_grants(self.grants.iter().copied())
    }
}

pub struct Users<'a>(pub &'a Db);

impl Db {
    pub fn users(&self) -> Users<'_> {
        Users(self)
    }
}

fn login_conflict(e: sqlx::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict { .. } => StoreError::Conflict {
            what: "login already taken".into(),
        },
        other => other,
    }
}

impl Users<'_> {
    pub async fn create(
        tx: &mut Tx,
        account: AccountId,
        u: &NewUser,
        password_hash: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<User> {
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO users (account_id, login, display_name, email, language, password_hash, disabled, created_at, updated_at, credentials_version)
             VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, $7, 1) RETURNING id")
            .bind(account.0).bind(u.login.as_str()).bind(&u.display_name).bind(u.email.as_str())
            .bind(u.language.as_ref().map(|l| l.as_str())).bind(password_hash).bind(now.0)
            .fetch_one(c).await)
        .map_err(login_conflict)?;
        Self::get_in(tx, UserId(id)).await
    }

    pub async fn get_in(tx: &mut Tx, id: UserId) -> StoreResult<User> {
        let sql = format!("SELECT {COLUMNS} FROM users u WHERE u.id = $1");
        let r: Row = on_tx!(tx, c => sqlx::query_as(&sql).bind(id.0).fetch_one(c).await)?;
        r.try_into()
    }

    pub async fn get(&self, id: UserId) -> StoreResult<User> {
        let sql = format!("SELECT {COLUMNS} FROM users u WHERE u.id = $1");
        let r: Row = on_db!(self.0, p => sqlx::query_as(&sql).bind(id.0).fetch_one(p).await)?;
        r.try_into()
    }

    pub async fn credentials_by_login(&self, login: &str) -> StoreResult<Option<Credentials>> {
        let sql = format!(
            "SELECT {COLUMNS}, u.password_hash, u.credentials_version FROM users u WHERE u.login = $1"
        );
        #[derive(sqlx::FromRow)]
        struct Full {
            #[sqlx(flatten)]
            row: Row,
            password_hash: Option<String>,
            credentials_version: i64,
        }
        let f: Option<Full> = on_db!(self.0, p => sqlx::query_as(&sql).bind(login.trim().to_lowercase()).fetch_optional(p).await)?;
        f.map(|f| {
            Ok(Credentials {
                user: f.row.try_into()?,
                password_hash: f.password_hash,
                credentials_version: f.credentials_version,
            })
        })
        .transpose()
    }

    pub async fn credentials_version(&self, id: UserId) -> StoreResult<i64> {
        let (v,): (i64,) = on_db!(self.0, p => sqlx::query_as("SELECT credentials_version FROM users WHERE id = $1").bind(id.0).fetch_one(p).await)?;
        Ok(v)
    }

    pub async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>> {
        let (h,): (Option<String>,) = on_db!(self.0, p => sqlx::query_as("SELECT password_hash FROM users WHERE id = $1").bind(id.0).fetch_one(p).await)?;
        Ok(h)
    }

    pub async fn list_for_account(
        &self,
        account: AccountId,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<User>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users u WHERE u.account_id = $1 AND u.id > $2 ORDER BY u.id LIMIT $3"
        );
        let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(&sql).bind(account.0).bind(after.unwrap_or(0)).bind(limit + 1).fetch_all(p).await)?;
        let users = rows
            .into_iter()
            .map(User::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(users, limit, |u| u.id.0))
    }

    pub async fn update(tx: &mut Tx, u: &User, now: Timestamp) -> StoreResult<User> {
        crate::auth::auth_changed();
        on_tx!(tx, c => sqlx::query("UPDATE users SET display_name = $2, email = $3, language = $4, updated_at = $5 WHERE id = $1")
            .bind(u.id.0).bind(&u.display_name).bind(u.email.as_str()).bind(u.language.as_ref().map(|l| l.as_str())).bind(now.0)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Self::get_in(tx, u.id).await
    }

    /// Disable or enable a user. Disabling voids its sessions at once (the credentials
    /// version is bumped and every request checks it).
    pub async fn set_disabled(
        tx: &mut Tx,
        id: UserId,
        disabled: bool,
        now: Timestamp,
    ) -> StoreResult<User> {
        crate::auth::auth_changed();
        on_tx!(tx, c => sqlx::query("UPDATE users SET disabled = $2, updated_at = $3, credentials_version = credentials_version + 1 WHERE id = $1")
            .bind(id.0).bind(disabled).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Self::get_in(tx, id).await
    }

    /// Set a new password hash; sessions issued before are void.
    pub async fn set_password(
        tx: &mut Tx,
        id: UserId,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<i64> {
        crate::auth::auth_changed();
        let (v,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "UPDATE users SET password_hash = $2, updated_at = $3, credentials_version = credentials_version + 1 WHERE id = $1 RETURNING credentials_version")
            .bind(id.0).bind(hash).bind(now.0).fetch_one(c).await)?;
        Ok(v)
    }

    /// Effective privileges: the union of the user's roles.
    pub async fn privileges(&self, id: UserId) -> StoreResult<PrivilegeSet> {
        let rows: Vec<(String, Option<i32>)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT g.privilege, g.level FROM user_roles ur JOIN role_grants g ON g.role_id = ur.role_id WHERE ur.user_id = $1")
            .bind(id.0).fetch_all(p).await)?;
        rows.into_iter()
            .map(|(p, l)| grant_from_row(&p, l))
            .collect::<StoreResult<Vec<_>>>()
            .map(PrivilegeSet::from_grants)
    }

    pub async fn roles_of(&self, id: UserId) -> StoreResult<Vec<Role>> {
        let ids: Vec<(i64,)> = on_db!(self.0, p => sqlx::query_as("SELECT role_id FROM user_roles WHERE user_id = $1 ORDER BY role_id")
            .bind(id.0).fetch_all(p).await)?;
        let roles = self.0.roles();
        let mut out = Vec::with_capacity(ids.len());
        for (r,) in ids {
            out.push(roles.get(RoleId(r)).await?);
        }
        Ok(out)
    }

    pub async fn attach_role(tx: &mut Tx, user: UserId, role: RoleId) -> StoreResult<bool> {
        crate::auth::auth_changed();
        let exists: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as("SELECT role_id FROM user_roles WHERE user_id = $1 AND role_id = $2")
            .bind(user.0).bind(role.0).fetch_optional(c).await)?;
        if exists.is_some() {
            return Ok(false);
        }
        on_tx!(tx, c => sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)").bind(user.0).bind(role.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(true)
    }

    pub async fn detach_role(tx: &mut Tx, user: UserId, role: RoleId) -> StoreResult<bool> {
        crate::auth::auth_changed();
        let n = on_tx!(tx, c => sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2").bind(user.0).bind(role.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}

fn grant_from_row(privilege: &str, level: Option<i32>) -> StoreResult<Grant> {
    let p: Privilege = privilege
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("role grant: {e}")))?;
    let level = match level {
        Some(l) => Some(
            DomainLevel::from_i64(i64::from(l))
                .ok_or_else(|| StoreError::Corrupt(format!("role grant level {l}")))?,
        ),
        None => None,
    };
    Ok(Grant {
        privilege: p,
        level,
    })
}

pub struct Roles<'a>(pub &'a Db);

impl Db {
    pub fn roles(&self) -> Roles<'_> {
        Roles(self)
    }
}

impl Roles<'_> {
    /// Create or refresh the built-in roles so their grants match the code.
    pub async fn sync_builtin(&self, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.0.begin().await?;
        for b in BuiltinRole::ALL {
            let existing: Option<(i64,)> = on_tx!(&mut tx, c => sqlx::query_as("SELECT id FROM roles WHERE builtin_key = $1")
                .bind(b.key()).fetch_optional(c).await)?;
            let id = match existing {
                Some((id,)) => id,
                None => {
                    let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
                        "INSERT INTO roles (account_id, builtin_key, name, description, created_at) VALUES (NULL, $1, $2, NULL, $3) RETURNING id")
                        .bind(b.key()).bind(b.name()).bind(now.0).fetch_one(c).await)?;
                    id
                }
            };
            Self::replace_grants(&mut tx, RoleId(id), &b.grants()).await?;
        }
        tx.commit().await
    }

    async fn replace_grants(tx: &mut Tx, role: RoleId, grants: &[Grant]) -> StoreResult<()> {
        crate::auth::auth_changed();
        on_tx!(tx, c => sqlx::query("DELETE FROM role_grants WHERE role_id = $1").bind(role.0).execute(c).await.map(|r| r.rows_affected()))?;
        for g in grants {
            on_tx!(tx, c => sqlx::query("INSERT INTO role_grants (role_id, privilege, level) VALUES ($1, $2, $3)")
                .bind(role.0).bind(g.privilege.as_str()).bind(g.level.map(|l| l as i32)).execute(c).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    pub async fn builtin(&self, b: BuiltinRole) -> StoreResult<Role> {
        let (id,): (i64,) = on_db!(self.0, p => sqlx::query_as("SELECT id FROM roles WHERE builtin_key = $1").bind(b.key()).fetch_one(p).await)?;
        self.get(RoleId(id)).await
    }

    pub async fn get(&self, id: RoleId) -> StoreResult<Role> {
        let (rid, account_id, builtin_key, name, description): (
            i64,
            Option<i64>,
            Option<String>,
            String,
            Option<String>,
        ) = on_db!(self.0, p => sqlx::query_as("SELECT id, account_id, builtin_key, name, description FROM roles WHERE id = $1")
                .bind(id.0).fetch_one(p).await)?;
        let grants: Vec<(String, Option<i32>)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT privilege, level FROM role_grants WHERE role_id = $1 ORDER BY privilege").bind(id.0).fetch_all(p).await)?;
        Ok(Role {
            id: RoleId(rid),
            account_id: account_id.map(AccountId),
            builtin_key,
            name,
            description,
            grants: grants
                .into_iter()
                .map(|(p, l)| grant_from_row(&p, l))
                .collect::<StoreResult<_>>()?,
        })
    }

    /// Built-in roles plus the custom roles of `account`.
    pub async fn list_for_account(&self, account: AccountId) -> StoreResult<Vec<Role>> {
        let ids: Vec<(i64,)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT id FROM roles WHERE account_id IS NULL OR account_id = $1 ORDER BY account_id IS NOT NULL, id").bind(account.0).fetch_all(p).await)?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            out.push(self.get(RoleId(id)).await?);
        }
        Ok(out)
    }

    pub async fn create_custom(
        tx: &mut Tx,
        account: AccountId,
        name: &str,
        description: Option<&str>,
        grants: &[Grant],
        now: Timestamp,
    ) -> StoreResult<RoleId> {
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO roles (account_id, builtin_key, name, description, created_at) VALUES ($1, NULL, $2, $3, $4) RETURNING id")
            .bind(account.0).bind(name).bind(description).bind(now.0).fetch_one(c).await)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => StoreError::Conflict { what: "a role with this name already exists".into() },
            o => o,
        })?;
        Self::replace_grants(tx, RoleId(id), grants).await?;
        Ok(RoleId(id))
    }

    pub async fn update_custom(
        tx: &mut Tx,
        id: RoleId,
        name: &str,
        description: Option<&str>,
        grants: &[Grant],
    ) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query("UPDATE roles SET name = $2, description = $3 WHERE id = $1 AND builtin_key IS NULL")
            .bind(id.0).bind(name).bind(description).execute(c).await.map(|r| r.rows_affected()))
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => StoreError::Conflict { what: "a role with this name already exists".into() },
            o => o,
        })?;
        Self::replace_grants(tx, id, grants).await
    }
}
