//! The JSON API at `/api/v1`.
//!
//! Conventions, uniform across endpoints: request and response types live here (apart
//! from domain types and storage rows); bodies are parsed by [`crate::extract::ApiJson`]
//! so every bad field is named; errors are problem documents; lists are cursor-paginated
//! ([`crate::extract::PageOut`]); every state change writes an event in the same
//! transaction; authorization goes through [`crate::auth::Authed::check`]. The OpenAPI
//! 3.1 document is generated from the handlers' annotations (`utoipa`), so it cannot
//! drift from the code.

pub mod accounts;
pub mod billing;
pub mod billing_visibility;
pub mod checkout;
pub mod connectors;
pub mod notifications;
pub mod orders;
pub mod payment_methods;
pub mod plans;
pub mod resources;
pub mod sales_categories;
pub mod seller_lists;
pub mod seller_money;
pub mod session;
pub mod tasks;
pub mod usage;
pub mod users;
pub mod wholesale;

use crate::auth::Authed;
use crate::error::{ApiResult, Problem};
use crate::state::AppState;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_store::Tx;
use cascade_store::events::{Events, NewEvent};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(title = "Cascade API", description = "The public API of Cascade, a multi-tier cloud marketplace: accounts, users, roles, tokens, tasks."),
    tags(
        (name = "session", description = "Login, logout, the current user"),
        (name = "accounts", description = "The account tree: provider, resellers, customers"),
        (name = "users", description = "Users (staff logins) of an account"),
        (name = "roles", description = "Built-in and custom roles"),
        (name = "tokens", description = "Personal API tokens"),
        (name = "tasks", description = "Background tasks"),
        (name = "catalog", description = "Resource types, resource categories, service templates, provisioning overrides"),
        (name = "sales-categories", description = "A seller's store tree"),
        (name = "plans", description = "Service plans, delegation down the channel, synchronization"),
        (name = "billing", description = "Money: invoices, payments, credit and debit memos, refunds, balances, PDFs, customer classes and credit terms"),
        (name = "connectors", description = "Connector instances of services: register, two-way check, callback, deployment wizard"),
        (name = "notifications", description = "Notification templates per event and language (own or inherited down the channel), previews, the outbox"),
        (name = "orders", description = "Orders and subscriptions: buy, pay, provision, change, renew, cancel, restore; invoice preview"),
    )
)]
struct ApiDoc;

/// Error responses every endpoint may give.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ProblemResponses {
    #[response(
        status = 400,
        description = "Malformed request",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "Not authenticated",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "Missing privilege",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "Not found, or not visible to the caller",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 409,
        description = "Conflict with the current state",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(
        status = 422,
        description = "Validation failed; `errors` names each field",
        content_type = "application/problem+json"
    )]
    Unprocessable(Problem),
}

/// The API routes and the OpenAPI document describing them.
pub fn api() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(session::router())
        .merge(accounts::router())
        .merge(users::router())
        .merge(tasks::router())
        .merge(resources::router())
        .merge(sales_categories::router())
        .merge(plans::router())
        .merge(billing::router())
        .merge(orders::router())
        .merge(checkout::router())
        .merge(payment_methods::router())
        .merge(usage::router())
        .merge(connectors::router())
        .merge(notifications::router())
        .merge(billing_visibility::router())
        .merge(seller_money::router())
        .merge(wholesale::router())
        .merge(seller_lists::router())
        .split_for_parts()
}

/// Record an event in the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub async fn emit(
    tx: &mut Tx,
    now: Timestamp,
    kind: &'static str,
    account: AccountId,
    auth: &Authed,
    subject_type: &'static str,
    subject_id: i64,
    payload: serde_json::Value,
) -> ApiResult<()> {
    Events::emit(
        tx,
        NewEvent {
            kind,
            account_id: Some(account),
            actor_user_id: Some(auth.actor.user_id),
            subject_type,
            subject_id,
            payload,
        },
        now,
    )
    .await?;
    Ok(())
}

/// RFC 3339 in UTC with millisecond precision.
pub fn iso(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_micros(t.0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
