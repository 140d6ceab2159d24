//! `/api/v1/accounts/{id}/billing-visibility`: which billing screens (invoices,
//! payments, balance and top-up) customers see.
//!
//! A seller's choice is inherited down the tree; a reseller (or a seller above it, for
//! it) may set an own choice, after which changes further up no longer reach that
//! reseller nor its sub-resellers; `DELETE` drops the own choice (inherit again). The
//! rule is the domain's [`resolve`](cascade_domain::billing::visibility::resolve); this
//! module only checks who may ask and stores the choice.
//!
//! Reading: the account and the sellers above it with `BILLING_VIEW`/`BILLING_MANAGE`
//! (`Action::ViewBilling`) — a customer reads what applies to it. Changing: a user with
//! `BILLING_MANAGE` of the seller itself or of a seller above it (`Action::ManageBilling`);
//! customers have no own choice.

use super::{ProblemResponses, emit};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cascade_domain::account::AccountKind;
use cascade_domain::authz::Action;
use cascade_domain::billing::visibility::BillingScreens;
use cascade_domain::ids::AccountId;
use cascade_store::billing_visibility::BillingVisibility;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_visibility, put_visibility, reset_visibility))
}

/// The billing screens, each visible (`true`) or hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreensIo {
    /// The invoice list and invoice PDFs.
    pub invoices: bool,
    /// The payment list.
    pub payments: bool,
    /// The balance and the top-up form.
    pub balance: bool,
}

impl From<BillingScreens> for ScreensIo {
    fn from(s: BillingScreens) -> Self {
        ScreensIo {
            invoices: s.invoices,
            payments: s.payments,
            balance: s.balance,
        }
    }
}

impl From<ScreensIo> for BillingScreens {
    fn from(s: ScreensIo) -> Self {
        BillingScreens {
            invoices: s.invoices,
            payments: s.payments,
            balance: s.balance,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VisibilityOut {
    pub account_id: i64,
    /// What applies to the account and, below it, to every account that does not choose.
    pub effective: ScreensIo,
    /// The account's own choice; absent when it inherits.
    pub own: Option<ScreensIo>,
    /// The account whose choice applies (this one when it has its own); absent when
    /// nobody chose: then everything is visible.
    pub inherited_from: Option<i64>,
}

/// The effective setting of `account`, its own choice and where the effective one comes from.
pub(crate) async fn visibility_out(st: &AppState, account: AccountId) -> ApiResult<VisibilityOut> {
    let chain = st.db.billing_visibility().chain(account).await?;
    let own = chain
        .first()
        .filter(|(a, _)| *a == account)
        .and_then(|(_, s)| *s);
    let r = cascade_domain::billing::visibility::resolve(&chain);
    Ok(VisibilityOut {
        account_id: account.0,
        effective: r.screens.into(),
        own: own.map(Into::into),
        inherited_from: r.source.map(|a| a.0),
    })
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/billing-visibility", tag = "billing", params(("id" = i64, Path)),
    responses((status = 200, body = VisibilityOut), ProblemResponses))]
pub(crate) async fn get_visibility(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<VisibilityOut>> {
    auth.check(&st, AccountId(id), Action::ViewBilling).await?;
    Ok(Json(visibility_out(&st, AccountId(id)).await?))
}

/// Who may set the account's own choice: a seller, by itself or by a seller above it.
async fn settable(st: &AppState, auth: &Authed, id: AccountId) -> ApiResult<()> {
    auth.check(st, id, Action::ManageBilling).await?;
    if st.db.accounts().get(id).await?.kind == AccountKind::Customer {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_seller",
            "Not a seller",
        )
        .detail("billing screens are chosen by sellers; a customer sees what its vendor chose"));
    }
    Ok(())
}

#[utoipa::path(put, path = "/api/v1/accounts/{id}/billing-visibility", tag = "billing", params(("id" = i64, Path)), request_body = ScreensIo,
    responses((status = 200, body = VisibilityOut, description = "The account's own choice is set; it no longer follows changes above it"), ProblemResponses))]
pub(crate) async fn put_visibility(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<ScreensIo>,
) -> ApiResult<Json<VisibilityOut>> {
    let account = AccountId(id);
    settable(&st, &auth, account).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    BillingVisibility::set_own(&mut tx, account, Some(body.into()), now).await?;
    emit(
        &mut tx,
        now,
        "billing_visibility.changed",
        account,
        &auth,
        "account",
        id,
        json!({"own": body}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(visibility_out(&st, account).await?))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{id}/billing-visibility", tag = "billing", params(("id" = i64, Path)),
    responses((status = 200, body = VisibilityOut, description = "The own choice is dropped: the account inherits again"), ProblemResponses))]
pub(crate) async fn reset_visibility(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<VisibilityOut>> {
    let account = AccountId(id);
    settable(&st, &auth, account).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if BillingVisibility::set_own(&mut tx, account, None, now).await? {
        emit(
            &mut tx,
            now,
            "billing_visibility.changed",
            account,
            &auth,
            "account",
            id,
            json!({"own": null}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(visibility_out(&st, account).await?))
}
