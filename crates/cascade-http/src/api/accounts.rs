//! `/api/v1/accounts`: the account tree.

use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, PageOut, PageParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cascade_domain::account::{
    Account, AccountKind, AccountPatchInput, AccountStatus, ContactInput, NewAccountInput,
};
use cascade_domain::authz::{Action, Relation};
use cascade_domain::ids::{AccountId, CustomerClassId};
use cascade_store::accounts::{AccountFilter, Accounts};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_account))
        .routes(routes!(get_account, update_account))
        .routes(routes!(change_status))
        .routes(routes!(list_children))
        .routes(routes!(list_descendants))
        .routes(routes!(vendor_chain))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactOut {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub tax_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountOut {
    pub id: i64,
    /// `provider`, `reseller` or `customer`.
    pub kind: String,
    /// The vendor (parent) account; absent for the provider.
    pub vendor_id: Option<i64>,
    pub name: String,
    pub contact: ContactOut,
    pub country: String,
    pub language: String,
    pub currency: String,
    /// `active`, `credit_hold`, `admin_hold` or `cancelled`.
    pub status: String,
    pub customer_class_id: Option<i64>,
    /// 0 for the provider, 1 for an L1 reseller or a direct customer, …
    pub depth: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Account> for AccountOut {
    fn from(a: Account) -> Self {
        AccountOut {
            id: a.id.0,
            kind: a.kind.as_str().into(),
            vendor_id: a.vendor_id.map(|v| v.0),
            name: a.name,
            contact: ContactOut {
                email: a.contact.email.map(|e| e.as_str().to_string()),
                phone: a.contact.phone.map(|p| p.as_str().to_string()),
                address_line1: a.contact.address_line1,
                address_line2: a.contact.address_line2,
                city: a.contact.city,
                postal_code: a.contact.postal_code,
                tax_id: a.contact.tax_id,
            },
            country: a.country.as_str().into(),
            language: a.language.as_str().into(),
            currency: a.currency.code().into(),
            status: a.status.as_str().into(),
            customer_class_id: a.customer_class_id.map(|c| c.0),
            depth: a.depth,
            created_at: iso(a.created_at),
            updated_at: iso(a.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NewAccountKind {
    Reseller,
    Customer,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactIn {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub tax_id: Option<String>,
}

impl From<ContactIn> for ContactInput {
    fn from(c: ContactIn) -> Self {
        ContactInput {
            email: c.email,
            phone: c.phone,
            address_line1: c.address_line1,
            address_line2: c.address_line2,
            city: c.city,
            postal_code: c.postal_code,
            tax_id: c.tax_id,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountIn {
    /// The seller (provider or reseller) the new account is created under.
    pub vendor_id: i64,
    pub kind: NewAccountKind,
    pub name: String,
    #[serde(default)]
    pub contact: Option<ContactIn>,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
    /// BCP 47 tag, e.g. `en`, `fr-CA`, `ar`.
    pub language: String,
    /// ISO 4217; defaults to the vendor's currency (and must equal it).
    pub currency: Option<String>,
    pub customer_class_id: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = CreateAccountIn,
    responses((status = 201, body = AccountOut), ProblemResponses))]
pub(crate) async fn create_account(
    State(st): State<AppState>,
    auth: Authed,
    ApiJson(body): ApiJson<CreateAccountIn>,
) -> ApiResult<(StatusCode, Json<AccountOut>)> {
    let vendor_id = AccountId(body.vendor_id);
    auth.check(&st, vendor_id, Action::CreateAccountUnder)
        .await
        .map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                ApiError::field("vendor_id", "unknown_vendor", "no such vendor account")
            } else {
                e
            }
        })?;
    let vendor = st.db.accounts().get(vendor_id).await?;
    if let Some(cc) = body.customer_class_id {
        check_class(&st, CustomerClassId(cc), &vendor).await?;
    }
    let input = NewAccountInput {
        kind: match body.kind {
            NewAccountKind::Reseller => AccountKind::Reseller,
            NewAccountKind::Customer => AccountKind::Customer,
        },
        name: body.name,
        contact: body.contact.map(Into::into).unwrap_or_default(),
        country: body.country,
        language: body.language,
        currency: body.currency,
        customer_class_id: body.customer_class_id.map(CustomerClassId),
    };
    let new = input.validate(Some(&vendor.facts()))?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let account = Accounts::create(&mut tx, &new, now).await?;
    emit(
        &mut tx,
        now,
        "account.created",
        account.id,
        &auth,
        "account",
        account.id.0,
        json!({"kind": account.kind.as_str(), "vendor_id": vendor_id.0, "name": account.name}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

/// Customer classes are defined by the vendor (a seller) for the accounts under it.
pub(crate) async fn check_class(
    st: &AppState,
    class: CustomerClassId,
    vendor: &Account,
) -> ApiResult<()> {
    if st
        .db
        .accounts()
        .customer_class_owned_by(class, vendor.id)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::field(
            "customer_class_id",
            "unknown_customer_class",
            "no such customer class at this vendor",
        ))
    }
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts", params(("id" = i64, Path)),
    responses((status = 200, body = AccountOut), ProblemResponses))]
pub(crate) async fn get_account(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<AccountOut>> {
    auth.check(&st, AccountId(id), Action::ViewAccount).await?;
    Ok(Json(st.db.accounts().get(AccountId(id)).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountIn {
    pub name: Option<String>,
    /// Fields given replace the stored ones; an empty string clears a field.
    pub contact: Option<ContactIn>,
    pub country: Option<String>,
    pub language: Option<String>,
    pub customer_class_id: Option<i64>,
}

#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts", params(("id" = i64, Path)), request_body = UpdateAccountIn,
    responses((status = 200, body = AccountOut), ProblemResponses))]
async fn update_account(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UpdateAccountIn>,
) -> ApiResult<Json<AccountOut>> {
    let id = AccountId(id);
    let relation = auth.check(&st, id, Action::UpdateAccount).await?;
    let current = st.db.accounts().get(id).await?;
    if let Some(cc) = body.customer_class_id {
        // The class is set by the vendor, from the vendor's classes.
        let Some(vendor_id) = current.vendor_id.filter(|_| relation != Relation::Own) else {
            return Err(ApiError::field(
                "customer_class_id",
                "not_allowed",
                "an account's customer class is set by its vendor",
            ));
        };
        let vendor = st.db.accounts().get(vendor_id).await?;
        check_class(&st, CustomerClassId(cc), &vendor).await?;
    }
    let next = AccountPatchInput {
        name: body.name,
        contact: body.contact.map(Into::into),
        country: body.country,
        language: body.language,
        customer_class_id: body.customer_class_id.map(CustomerClassId),
    }
    .apply(&current)?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let updated = Accounts::update(&mut tx, &next, now).await?;
    emit(
        &mut tx,
        now,
        "account.updated",
        id,
        &auth,
        "account",
        id.0,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(updated.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusIn {
    Active,
    AdminHold,
    CreditHold,
    Cancelled,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeStatusIn {
    /// `admin_hold` or `credit_hold` to hold, `active` to release, `cancelled` to cancel.
    pub status: StatusIn,
    pub reason: Option<String>,
}

/// The account after a status change, and the subscriptions that followed it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChangeOut {
    #[serde(flatten)]
    pub account: AccountOut,
    /// Subscriptions the hold suspended (active or graced → on hold).
    pub subscriptions_suspended: Vec<i64>,
    /// Subscriptions the release resumed (only those this kind of hold had suspended).
    pub subscriptions_resumed: Vec<i64>,
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/status", tag = "accounts", params(("id" = i64, Path)), request_body = ChangeStatusIn,
    responses((status = 200, body = StatusChangeOut, description = "An account hold suspends its running subscriptions, a release resumes those it suspended (same transaction)"), ProblemResponses))]
pub(crate) async fn change_status(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<ChangeStatusIn>,
) -> ApiResult<Json<StatusChangeOut>> {
    let id = AccountId(id);
    auth.check(&st, id, Action::ChangeAccountStatus).await?;
    let current = st.db.accounts().get(id).await?;
    let to = match body.status {
        StatusIn::Active => AccountStatus::Active,
        StatusIn::AdminHold => AccountStatus::AdminHold,
        StatusIn::CreditHold => AccountStatus::CreditHold,
        StatusIn::Cancelled => AccountStatus::Cancelled,
    };
    let to = current.status.transition(to)?;
    let reason = match body.reason.as_deref() {
        Some(r) => cascade_domain::validation::optional_text(Some(r), 500)
            .map_err(|e| ApiError::from(e.under("reason")))?,
        None => None,
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let updated = Accounts::set_status(&mut tx, id, to, now).await?;
    let day = chrono::DateTime::from_timestamp_micros(now.0)
        .map(|d| d.date_naive().to_string())
        .unwrap_or_default();
    let moves = cascade_store::subscriptions::Subscriptions::follow_account_status(
        &mut tx,
        id,
        current.status,
        to,
        &day,
        now,
    )
    .await?;
    let mut payload = json!({"from": current.status.as_str(), "to": to.as_str(), "reason": reason});
    if moves.moved() > 0 {
        payload["subscriptions_suspended"] = json!(moves.suspended);
        payload["subscriptions_resumed"] = json!(moves.resumed);
    }
    emit(
        &mut tx,
        now,
        "account.status_changed",
        id,
        &auth,
        "account",
        id.0,
        payload,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(StatusChangeOut {
        account: updated.into(),
        subscriptions_suspended: moves.suspended,
        subscriptions_resumed: moves.resumed,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only accounts of this kind (`reseller`, `customer`).
    pub kind: Option<String>,
    /// Only accounts in this status.
    pub status: Option<String>,
    /// Case-insensitive part of the name.
    pub q: Option<String>,
    /// Descendants at most this many levels below.
    pub max_depth: Option<u32>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl ListParams {
    fn filter(&self) -> ApiResult<AccountFilter> {
        Ok(AccountFilter {
            kind: self
                .kind
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e: cascade_domain::FieldError| ApiError::from(e))?,
            status: self
                .status
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e: cascade_domain::FieldError| ApiError::from(e))?,
            name_contains: match self.q.as_deref() {
                Some(q) if q.chars().count() > 200 => {
                    return Err(ApiError::field("q", "too_long", "at most 200 characters"));
                }
                Some(q) if !q.trim().is_empty() => Some(q.trim().to_string()),
                _ => None,
            },
            max_depth: self.max_depth,
        })
    }
    fn page(&self) -> PageParams {
        PageParams {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/children", tag = "accounts", params(("id" = i64, Path), ListParams),
    responses((status = 200, body = PageOut<AccountOut>), ProblemResponses))]
pub(crate) async fn list_children(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<PageOut<AccountOut>>> {
    let id = AccountId(id);
    // Listing what is below an account needs the right to see below one's own.
    auth.check(&st, id, Action::ViewAccount).await?;
    require_view_below(&auth)?;
    let page = q.page();
    let p = st
        .db
        .accounts()
        .children(id, &q.filter()?, page.after()?, page.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(Into::into).collect(),
        p.next,
    )))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/descendants", tag = "accounts", params(("id" = i64, Path), ListParams),
    responses((status = 200, body = PageOut<AccountOut>), ProblemResponses))]
pub(crate) async fn list_descendants(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<PageOut<AccountOut>>> {
    let id = AccountId(id);
    auth.check(&st, id, Action::ViewAccount).await?;
    require_view_below(&auth)?;
    let page = q.page();
    let p = st
        .db
        .accounts()
        .descendants(id, &q.filter()?, page.after()?, page.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(Into::into).collect(),
        p.next,
    )))
}

fn require_view_below(auth: &Authed) -> ApiResult<()> {
    // Any descendant would need ACCOUNTS_VIEW (or ACCOUNTS_MANAGE) to be seen.
    cascade_domain::authz::authorize(
        &auth.actor,
        Relation::Descendant { depth: 1 },
        Action::ViewAccount,
    )
    .map_err(Into::into)
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/vendors", tag = "accounts", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<AccountOut>, description = "The vendor chain above the account, nearest first, up to the caller's own account"), ProblemResponses))]
async fn vendor_chain(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<AccountOut>>> {
    let id = AccountId(id);
    auth.check(&st, id, Action::ViewAccount).await?;
    let chain = st.db.accounts().vendor_chain(id).await?;
    // Never show the caller anything above its own account.
    let mut out = Vec::new();
    if id != auth.actor.account_id {
        for a in chain {
            let stop = a.id == auth.actor.account_id;
            out.push(a.into());
            if stop {
                break;
            }
        }
    }
    Ok(Json(out))
}
