//! `/api/v1/accounts/{id}/payment-methods`: cards stored for automatic charges.
//!
//! The card is handed to the configured gateway, which keeps it and returns a token;
//! Cascade stores only the token and the last four digits. The daily run charges open
//! invoices of accounts with an active stored method on their charge day (the issue
//! day, or for net-terms classes the scheduled day between issue and due date; see
//! `cascade_worker::collections`).

use super::billing::gateway;
use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cascade_domain::authz::Action;
use cascade_domain::billing::payments::CardNumber;
use cascade_domain::ids::AccountId;
use cascade_store::collections::{PaymentMethod, PaymentMethods};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_methods, create_method))
        .routes(routes!(remove_method))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodIn {
    /// The card to keep at the gateway (13–19 digits).
    pub card_number: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodOut {
    pub id: i64,
    pub account_id: i64,
    pub gateway: String,
    pub card_last4: String,
    /// Only active methods are charged.
    pub active: bool,
    pub created_at: String,
}

fn out(m: PaymentMethod) -> PaymentMethodOut {
    PaymentMethodOut {
        id: m.id,
        account_id: m.account_id.0,
        gateway: m.gateway,
        card_last4: m.card_last4,
        active: m.active,
        created_at: iso(m.created_at),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodsOut {
    pub items: Vec<PaymentMethodOut>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/payment-methods", tag = "billing", params(("id" = i64, Path)),
    responses((status = 200, body = PaymentMethodsOut, description = "Stored cards, newest first (the newest active one is charged)"), ProblemResponses))]
async fn list_methods(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<PaymentMethodsOut>> {
    auth.check(&st, AccountId(id), Action::ViewBilling).await?;
    let items = st
        .db
        .payment_methods()
        .of_account(AccountId(id))
        .await?
        .into_iter()
        .map(out)
        .collect();
    Ok(Json(PaymentMethodsOut { items }))
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/payment-methods", tag = "billing", params(("id" = i64, Path)), request_body = PaymentMethodIn,
    responses((status = 201, body = PaymentMethodOut, description = "The card is kept at the gateway; open invoices are charged automatically on their charge day"), ProblemResponses))]
async fn create_method(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<PaymentMethodIn>,
) -> ApiResult<(StatusCode, Json<PaymentMethodOut>)> {
    let account = AccountId(id);
    auth.check(&st, account, Action::ManageBilling).await?;
    let card = CardNumber::parse(&body.card_number).map_err(|e| e.under("card_number"))?;
    let gw = gateway(&st).map_err(|mut e| {
        for f in &mut e.errors {
            f.field = "card_number".into();
        }
        e
    })?;
    let token = gw.tokenize(&card).await.map_err(|e| {
        tracing::warn!(error = %e, "payment gateway failed");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "gateway_unavailable",
            "Payment gateway unavailable",
        )
        .detail("the card was not stored; try again later")
    })?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let m = PaymentMethods::create(
        &mut tx,
        account,
        gw.name(),
        &token,
        card.last4(),
        Some(auth.actor.user_id.0),
        now,
    )
    .await?;
    emit(
        &mut tx,
        now,
        "payment_method.added",
        account,
        &auth,
        "payment_method",
        m.id,
        json!({"card_last4": m.card_last4, "gateway": m.gateway}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out(m))))
}

#[utoipa::path(delete, path = "/api/v1/payment-methods/{id}", tag = "billing", params(("id" = i64, Path)),
    responses((status = 204, description = "No longer charged"), ProblemResponses))]
async fn remove_method(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let m = st.db.payment_methods().get(id).await?;
    auth.check(&st, m.account_id, Action::ManageBilling).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if PaymentMethods::deactivate(&mut tx, id).await? {
        emit(
            &mut tx,
            now,
            "payment_method.removed",
            m.account_id,
            &auth,
            "payment_method",
            id,
            json!({"card_last4": m.card_last4}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
