//! `POST /api/v1/place-order-and-authorize`: the one-step checkout of the commercial
//! platforms' "place order and authorize" call.
//!
//! One call creates a customer account under a seller with its first user, places one
//! or more SOs for it and authorizes the payment: a card goes through the configured
//! gateway; without a payment the orders wait for payment as usual. It is
//! **all-or-nothing**: everything is written in one transaction, committed only when
//! every part succeeded — a bad field anywhere (named `account.…`, `user.…`,
//! `items[i].…`, `payment.…`), a taken login, a clash of unique groups or a declined card
//! leave nothing behind.
//!
//! The public store's sign-up (`web::store`) is this same checkout ([`checkout`]) with no
//! seller's user: the new customer's first user (account administrator) acts for itself.
//!
//! Nothing here is a second copy of a rule: the account is validated by the domain's
//! `NewAccountInput` and written by `Accounts::create`, the user by `NewUserInput` and
//! `Users::create` (roles checked by `users::assignable_role`), each order by the same
//! `orders::prepare_so` / `orders::write_so` as `POST /accounts/{id}/orders` (catalog
//! view, quantities, attributes, parameters, name servers, payment gate, wholesale
//! chain), and the card payment by `billing::record_payment`.
//!
//! **The card** is charged inside the transaction, after everything else was written
//! and before the commit, for what the new invoices leave open. Approved: the payment
//! is recorded and applied to the invoices, and the orders move to `paid` and on to
//! provisioning. Pending: the attempt is kept (confirm it with
//! `POST /payments/pending/{reference}/confirm`, then `POST /orders/{id}/pay`).
//! Declined (402) or gateway down (502): rolled back, nothing written. The gateway gets
//! an idempotency key derived from the request's `Idempotency-Key` (the middleware
//! replays a repeated request with its first answer), so a retry after a lost answer is
//! never charged twice. Cost of charging inside the transaction: on SQLite the single
//! writer waits for the gateway's answer; a gateway that is slow should answer
//! "pending".

use super::accounts::{AccountOut, ContactIn, check_class};
use super::billing::{PendingPaymentOut, gateway, idempotency_key, pending_out, record_payment};
use super::orders::{
    OrderOut, PlaceOrderIn, PrepareError, order_view, prepare_so, promote_if_covered, write_so,
};
use super::users::{UserOut, assignable_role, user_out};
use super::{ProblemResponses, emit};
use crate::auth::{Authed, Via};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::password::hash_password_off_runtime;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cascade_domain::FieldError;
use cascade_domain::account::{Account, AccountKind, NewAccountInput};
use cascade_domain::authz::{Action, Actor, Relation, authorize};
use cascade_domain::billing::lifecycle::OrderStatus;
use cascade_domain::billing::payments::{CardNumber, GatewayDecision, PaymentMethod};
use cascade_domain::ids::{AccountId, CustomerClassId, RoleId};
use cascade_domain::money::Money;
use cascade_domain::privilege::{BuiltinRole, PrivilegeSet};
use cascade_domain::user::NewUserInput;
use cascade_domain::validation::ValidationErrors;
use cascade_store::accounts::Accounts;
use cascade_store::documents::{ChargeRequest, Documents, NewAttempt, PaymentAttempts};
use cascade_store::users::Users;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most orders one checkout may place.
pub const MAX_ITEMS: usize = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(place_order_and_authorize))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutAccountIn {
    pub name: String,
    #[serde(default)]
    pub contact: Option<ContactIn>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// BCP 47 tag.
    pub language: String,
    /// ISO 4217; defaults to the seller's currency (and must equal it).
    pub currency: Option<String>,
    /// A customer class of the seller (credit terms, net terms).
    pub customer_class_id: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutUserIn {
    pub login: String,
    pub display_name: String,
    pub email: String,
    pub language: Option<String>,
    pub password: Option<String>,
    /// Roles of the first user; the built-in account administrator role when not given.
    pub role_ids: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutPaymentIn {
    /// `card` (through the configured gateway). Leave `payment` out to let the orders
    /// wait for payment (bank transfer, check).
    pub method: String,
    pub card_number: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutIn {
    /// The seller (provider or reseller) the customer is created under.
    pub vendor_id: i64,
    pub account: CheckoutAccountIn,
    pub user: CheckoutUserIn,
    /// 1–20 orders, each as for `POST /accounts/{id}/orders` (domain items may carry `name_servers`).
    pub items: Vec<PlaceOrderIn>,
    pub payment: Option<CheckoutPaymentIn>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutPaymentOut {
    /// `approved` (recorded and applied), `pending` (confirm later), `none` (no payment
    /// given: the orders wait for payment) or `not_needed` (nothing to pay).
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The payment document, when approved.
    pub document_id: Option<i64>,
    /// The pending charge, when pending.
    pub pending: Option<PendingPaymentOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutOut {
    pub account: AccountOut,
    pub user: UserOut,
    pub orders: Vec<OrderOut>,
    pub payment: CheckoutPaymentOut,
}

fn under(e: ValidationErrors, parent: &str) -> ValidationErrors {
    ValidationErrors(e.0.into_iter().map(|f| f.under(parent)).collect())
}

/// The relation of a new account created under `vendor` to the caller.
fn below(r: Relation) -> Relation {
    match r {
        Relation::Own => Relation::Descendant { depth: 1 },
        Relation::Descendant { depth } => Relation::Descendant { depth: depth + 1 },
        Relation::Unrelated => Relation::Unrelated,
    }
}

#[utoipa::path(post, path = "/api/v1/place-order-and-authorize", tag = "orders", request_body = CheckoutIn,
    responses(
        (status = 201, body = CheckoutOut, description = "The customer, its first user and its orders were created; the card was charged (orders `paid`), left pending, or no payment was given (orders `waiting_for_payment`)"),
        (status = 402, description = "The card was declined: nothing was written", content_type = "application/problem+json"),
        ProblemResponses))]
async fn place_order_and_authorize(
    State(st): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutIn>,
) -> ApiResult<(StatusCode, Json<CheckoutOut>)> {
    let vendor_id = AccountId(body.vendor_id);
    let rel = auth
        .check(&st, vendor_id, Action::CreateAccountUnder)
        .await
        .map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                ApiError::field("vendor_id", "unknown_vendor", "no such vendor account")
            } else {
                e
            }
        })?;
    authorize(&auth.actor, below(rel), Action::CreateUser)?;
    authorize(&auth.actor, below(rel), Action::PlaceOrder)?;
    let vendor = st.db.accounts().get(vendor_id).await?;
    let out = checkout(&st, Some(&auth), &vendor, body, &headers).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// The checkout itself, for the API (a seller's user, `seller` = `Some`, authorized by
/// the caller above) and for the public store (`seller` = `None`: a visitor signing up,
/// so the new customer's first user acts for itself, with the built-in account
/// administrator role and no other). All-or-nothing: one transaction.
pub(crate) async fn checkout(
    st: &AppState,
    seller: Option<&Authed>,
    vendor: &Account,
    body: CheckoutIn,
    headers: &HeaderMap,
) -> ApiResult<CheckoutOut> {
    let vendor_id = vendor.id;
    let via = if seller.is_some() {
        "place_order_and_authorize"
    } else {
        "store"
    };
    // Everything is checked before anything is written; every bad field is named.
    let mut e = ValidationErrors::new();
    if let Some(cc) = body.account.customer_class_id
        && let Err(x) = check_class(st, CustomerClassId(cc), vendor).await
    {
        e.0.extend(x.errors.into_iter().map(|f| f.under("account")));
    }
    let new_account = NewAccountInput {
        kind: AccountKind::Customer,
        name: body.account.name,
        contact: body.account.contact.map(Into::into).unwrap_or_default(),
        country: body.account.country,
        language: body.account.language,
        currency: body.account.currency,
        customer_class_id: body.account.customer_class_id.map(CustomerClassId),
    }
    .validate(Some(&vendor.facts()))
    .map_err(|x| e.0.extend(under(x, "account").0))
    .ok();
    let new_user = NewUserInput {
        login: body.user.login,
        display_name: body.user.display_name,
        email: body.user.email,
        language: body.user.language,
        password: body.user.password.clone(),
    }
    .validate()
    .map_err(|x| e.0.extend(under(x, "user").0))
    .ok();
    let mut roles = Vec::new();
    match &body.user.role_ids {
        None => roles.push(st.db.roles().builtin(BuiltinRole::AccountAdmin).await?),
        Some(_) if seller.is_none() => e.push(FieldError::new(
            "user.role_ids",
            "not_allowed",
            "a customer signing up in a store gets the account administrator role",
        )),
        Some(ids) => {
            let Some(auth) = seller else {
                return Err(ApiError::internal());
            };
            for (i, r) in ids.iter().enumerate() {
                match assignable_role(st, auth, RoleId(*r), vendor_id).await {
                    Ok(role) => roles.push(role),
                    Err(x) if x.status == StatusCode::NOT_FOUND => e.push(FieldError::new(
                        format!("user.role_ids[{i}]"),
                        "unknown_role",
                        "no such role",
                    )),
                    Err(x) => return Err(x),
                }
            }
        }
    }
    if body.items.is_empty() || body.items.len() > MAX_ITEMS {
        e.push(FieldError::new(
            "items",
            "out_of_range",
            format!("between 1 and {MAX_ITEMS} orders"),
        ));
    }
    let mut chain = vec![vendor.clone()];
    chain.extend(st.db.accounts().vendor_chain(vendor_id).await?);
    let mut prepared = Vec::with_capacity(body.items.len());
    for (i, item) in body.items.iter().enumerate() {
        match prepare_so(st, vendor_id, &chain, item).await {
            Ok(p) => prepared.push(p),
            Err(PrepareError::Fields(x)) => e.0.extend(under(x, &format!("items[{i}]")).0),
            Err(PrepareError::Other(x)) => return Err(x),
        }
    }
    let card = match &body.payment {
        None => None,
        Some(p) => match PaymentMethod::parse(&p.method) {
            Ok(PaymentMethod::Card) => match p.card_number.as_deref().map(CardNumber::parse) {
                Some(Ok(c)) => Some(c),
                Some(Err(x)) => {
                    e.push(x.under("payment.card_number"));
                    None
                }
                None => {
                    e.push(FieldError::new(
                        "payment.card_number",
                        "required",
                        "a card payment needs the card number",
                    ));
                    None
                }
            },
            Ok(_) => {
                e.push(FieldError::new(
                    "payment.method",
                    "unsupported",
                    "only cards are authorized here; leave `payment` out to wait for a bank transfer or check",
                ));
                None
            }
            Err(x) => {
                e.push(x.under("payment.method"));
                None
            }
        },
    };
    let gw = match card {
        Some(_) => Some(gateway(st).map_err(|x| {
            let mut x = x;
            for f in &mut x.errors {
                f.field = "payment.method".into();
            }
            x
        })?),
        None => None,
    };
    e.into_result()?;
    let (Some(new_account), Some(new_user)) = (new_account, new_user) else {
        return Err(ApiError::internal());
    };

    let now = st.clock.now();
    let today = chrono::DateTime::from_timestamp_micros(now.0)
        .map(|d| d.date_naive())
        .unwrap_or_default();
    let hash = match body.user.password.clone() {
        Some(p) => Some(hash_password_off_runtime(p).await?),
        None => None,
    };
    let mut tx = st.db.begin().await?;
    let account = Accounts::create(&mut tx, &new_account, now).await?;
    let user = Users::create(&mut tx, account.id, &new_user, hash.as_deref(), now)
        .await
        .map_err(|e| match e {
            cascade_store::StoreError::Conflict { .. } => {
                ApiError::field("user.login", "login_taken", "this login is already taken")
            }
            o => o.into(),
        })?;
    for r in &roles {
        Users::attach_role(&mut tx, user.id, r.id).await?;
    }
    // Who the rest is done by: the seller's user, or the new customer's first user.
    let auth = match seller {
        Some(a) => a.clone(),
        None => Authed {
            actor: Actor {
                user_id: user.id,
                account_id: account.id,
                privileges: PrivilegeSet::from_grants(
                    roles.iter().flat_map(|r| r.grants.iter().copied()),
                ),
            },
            user: user.clone(),
            via: Via::Session(String::new()),
        },
    };
    let auth = &auth;
    emit(&mut tx, now, "account.created", account.id, auth, "account", account.id.0,
        json!({"kind": account.kind.as_str(), "vendor_id": vendor_id.0, "name": account.name, "via": via})).await?;
    emit(&mut tx, now, "user.created", account.id, auth, "user", user.id.0, json!({
        "user_id": user.id.0, "login": user.login.as_str(), "email": user.email.as_str(),
        "display_name": user.display_name, "language": user.language.as_ref().map(|l| l.as_str()), "via": via,
    })).await?;
    let mut orders = Vec::with_capacity(prepared.len());
    for (i, so) in prepared.iter().enumerate() {
        let o = write_so(st, &mut tx, auth, &account, so, now)
            .await
            .map_err(|mut x| {
                for f in &mut x.errors {
                    *f = f.clone().under(&format!("items[{i}]"));
                }
                x
            })?;
        orders.push(o);
    }
    // What the new invoices leave open (nothing when the orders are free).
    let mut invoices = Vec::new();
    let mut open = 0i64;
    for o in &orders {
        if let Some(i) = o.details["invoice_id"].as_i64() {
            let d = Documents::get_in(&mut tx, i).await?;
            if d.open_minor > 0 {
                open += d.open_minor;
                invoices.push(d.id);
            }
        }
    }
    let currency = account.currency;
    let mut payment = CheckoutPaymentOut {
        status: "none".into(),
        amount_minor: open,
        currency: currency.code().to_string(),
        document_id: None,
        pending: None,
    };
    if open == 0 {
        payment.status = "not_needed".into();
    } else if let (Some(card), Some(gw)) = (&card, gw) {
        let key = match idempotency_key(headers) {
            Some(k) => format!("checkout:{}:{k}", auth.actor.user_id.0),
            None => format!("checkout:{}", uuid::Uuid::new_v4()),
        };
        let amount = Money::new(open, currency);
        let outcome = gw
            .charge(ChargeRequest {
                account: account.id,
                amount,
                card,
                idem_key: &key,
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "payment gateway failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "gateway_unavailable",
                    "Payment gateway unavailable",
                )
                .detail("the card was not charged and nothing was created; try again later")
            })?;
        match outcome.decision {
            GatewayDecision::Declined => {
                tx.rollback().await?;
                let message = outcome
                    .message
                    .unwrap_or_else(|| "the card was declined".into());
                let mut e = ApiError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "card_declined",
                    "Card declined",
                )
                .detail(format!("{message}; nothing was charged or created"));
                e.errors.push(FieldError::new(
                    "payment.card_number",
                    "card_declined",
                    message,
                ));
                return Err(e);
            }
            GatewayDecision::Pending => {
                let attempt = PaymentAttempts::create(
                    &mut tx,
                    &NewAttempt {
                        reference: &outcome.reference,
                        gateway: gw.name(),
                        issuer: vendor_id,
                        account: account.id,
                        amount,
                        card_last4: Some(card.last4()),
                        apply_to: &invoices,
                        external_ref: None,
                        idem_key: Some(&key),
                        created_by: Some(auth.actor.user_id.0),
                    },
                    now,
                )
                .await?;
                emit(&mut tx, now, "payment.pending", account.id, auth, "payment_attempt", attempt.id,
                    json!({"reference": attempt.reference, "amount_minor": open, "currency": currency.code(), "card_last4": card.last4()})).await?;
                payment.status = "pending".into();
                payment.pending = Some(pending_out(&attempt));
            }
            GatewayDecision::Approved => {
                let (doc, _) = record_payment(
                    &mut tx,
                    auth,
                    &account,
                    vendor_id,
                    amount,
                    PaymentMethod::Card,
                    Some(&outcome.reference),
                    Some(&key),
                    &invoices,
                    today,
                    now,
                )
                .await?;
                for o in &mut orders {
                    if o.status != OrderStatus::Paid {
                        *o = promote_if_covered(&mut tx, auth, &account, o, now).await?;
                    }
                }
                payment.status = "approved".into();
                payment.document_id = Some(doc.id);
            }
        }
    }
    tx.commit().await?;
    let mut out = Vec::with_capacity(orders.len());
    for o in orders {
        out.push(order_view(st, auth, o).await?);
    }
    Ok(CheckoutOut {
        account: account.into(),
        user: user_out(st, user).await?,
        orders: out,
        payment,
    })
}
