//! `/api/v1/…/documents`, payments, memos, refunds, balances and customer classes: the
//! money side of an account.
//!
//! # Who may do what
//!
//! * **See** an account's documents, balance and PDFs: the account itself and the sellers
//!   above it with `BILLING_VIEW` or `BILLING_MANAGE` (`Action::ViewBilling`). The issuer
//!   of a document is always the buyer's vendor, so it is among them. Anyone else: 404.
//! * **Issue** credit memos, debit memos and refunds, and **record** money that arrived
//!   outside Cascade (bank transfer, check): the seller side only — a user of an account
//!   *above* the buyer with `BILLING_MANAGE`. An account never issues documents to itself.
//! * **Pay by card** and **apply** its own payments and credit memos: the account itself
//!   (or a seller above it) with `BILLING_MANAGE`.
//!
//! # Payments
//!
//! A payment is a document (kind `payment`) issued by the buyer's vendor, `open_minor` =
//! what is not yet applied. With `apply_to` it is spread over the listed invoices in
//! order, each up to what it still owes ([`spread`]); whatever is left — or the whole
//! payment without `apply_to` — stays open as a **standalone payment** (a top-up) until
//! applied with `POST /payments/{id}/apply`, or taken by the order flow's payment gate.
//!
//! Card payments go through the [`PaymentGateway`] (today the built-in deterministic
//! [`TestGateway`]): declined → 402 and a `payment.declined` event, nothing that moves
//! money is written; pending → 202 with a reference and a pending attempt, the payment
//! document is written only by `POST /payments/pending/{ref}/confirm` once the gateway
//! reports the charge settled; approved → the payment document, 201.
//!
//! # Exactly once
//!
//! The `Idempotency-Key` middleware replays a repeated request's stored answer. Below it,
//! the key also travels to the gateway and into `documents.idem_key` (unique) and
//! `payment_attempts.idem_key`, as `pay:{user}:{key}`: a retry that reaches the handler
//! again (the first failed with a 5xx after the charge) finds the document or the
//! pending attempt instead of charging twice.
//!
//! Every rule is checked before the transaction opens, and again by the storage layer's
//! conditional updates inside it; a refused request writes nothing.

use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, PageOut, PageParams};
use crate::pdf::{PdfDocument, render};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cascade_domain::FieldError;
use cascade_domain::account::{Account, AccountKind};
use cascade_domain::authz::{Action, Relation};
use cascade_domain::billing::payments::{
    self, CreditTerms, CreditTermsInput, GatewayDecision, MemoInput, NewPayment, PaymentInput,
    PaymentMethod, check_allocation, check_refund, positive_amount, spread,
};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{AccountId, CustomerClassId};
use cascade_domain::money::Money;
use cascade_domain::validation::{ValidationErrors, bounded_text};
use cascade_store::credit::{CustomerClass, CustomerClasses};
use cascade_store::documents::{
    ChargeRequest, DocKind, Document, Documents, NewAttempt, NewDocument, PaymentAttempt,
    PaymentAttempts, PaymentGateway,
};
use cascade_store::{StoreError, Tx};
use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_documents))
        .routes(routes!(get_document))
        .routes(routes!(document_pdf))
        .routes(routes!(create_payment))
        .routes(routes!(confirm_pending))
        .routes(routes!(apply_payment))
        .routes(routes!(refund_payment))
        .routes(routes!(create_credit_memo))
        .routes(routes!(create_debit_memo))
        .routes(routes!(get_balance))
        .routes(routes!(list_classes, create_class))
        .routes(routes!(get_class, update_class))
}

/// The payment gateway card payments go through, as configured in the application state
/// (`http.card_gateway`); without one, card payments are refused.
pub(crate) fn gateway(st: &AppState) -> Result<&dyn PaymentGateway, ApiError> {
    st.gateway.as_deref().ok_or_else(|| {
        ApiError::field(
            "method",
            "no_card_gateway",
            "card payments are not enabled on this installation",
        )
    })
}

/// Today's date (UTC) on the application clock.
fn today(st: &AppState) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(st.clock.now().0)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Output types
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct LineOut {
    pub id: i64,
    pub subscription_id: Option<i64>,
    /// `recurring`, `resource`, `usage`, `payment`, `credit_memo`, …
    pub kind: String,
    pub description: String,
    pub quantity: i64,
    /// Unit price in millionths of the currency unit.
    pub unit_price_micro: i64,
    pub amount_minor: i64,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AllocationOut {
    pub id: i64,
    /// The payment or credit memo applied.
    pub from_document_id: i64,
    /// The invoice, debit memo or refund it settled.
    pub to_document_id: i64,
    pub amount_minor: i64,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentOut {
    pub id: i64,
    /// `invoice`, `payment`, `credit_memo`, `debit_memo` or `refund`.
    pub kind: String,
    /// Sequential per issuer and kind, e.g. `INV-000042`.
    pub number: Option<String>,
    /// The seller that issued the document (the account's vendor).
    pub issuer_account_id: i64,
    /// The buyer.
    pub account_id: i64,
    pub currency: String,
    pub status: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    /// Tax rate in basis points (1900 = 19 %), when recorded.
    pub tax_rate_bp: Option<i64>,
    pub total_minor: i64,
    /// Still to pay (invoices, debit memos) or to apply (payments, credit memos).
    pub open_minor: i64,
    pub issue_date: Option<String>,
    pub due_date: Option<String>,
    /// Net terms: the day the automatic charge is taken.
    pub charge_date: Option<String>,
    /// Payments: `bank_transfer`, `check` or `card`.
    pub method: Option<String>,
    /// The bank's, check's or gateway's reference.
    pub external_ref: Option<String>,
    pub created_at: String,
    /// Present on single documents, not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineOut>>,
    /// Present on single documents, not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocations: Option<Vec<AllocationOut>>,
}

fn doc_out(d: Document) -> DocumentOut {
    DocumentOut {
        id: d.id,
        kind: d.kind.as_str().into(),
        number: d.number,
        issuer_account_id: d.issuer_account_id.0,
        account_id: d.account_id.0,
        currency: d.currency,
        status: d.status,
        subtotal_minor: d.subtotal_minor,
        tax_minor: d.tax_minor,
        tax_rate_bp: d.tax_bp,
        total_minor: d.total_minor,
        open_minor: d.open_minor,
        issue_date: d.issue_date,
        due_date: d.due_date,
        charge_date: d.charge_date,
        method: d.method,
        external_ref: d.external_ref,
        created_at: iso(d.created_at),
        lines: None,
        allocations: None,
    }
}

async fn full_out(st: &AppState, d: Document) -> ApiResult<DocumentOut> {
    let lines = st.db.documents().lines(d.id).await?;
    let allocations = st.db.documents().allocations(d.id).await?;
    let mut out = doc_out(d);
    out.lines = Some(
        lines
            .into_iter()
            .map(|l| LineOut {
                id: l.id,
                subscription_id: l.subscription_id,
                kind: l.kind,
                description: l.description,
                quantity: l.quantity,
                unit_price_micro: l.unit_price_micro,
                amount_minor: l.amount_minor,
                period_start: l.period_start,
                period_end: l.period_end,
            })
            .collect(),
    );
    out.allocations = Some(
        allocations
            .into_iter()
            .map(|a| AllocationOut {
                id: a.id,
                from_document_id: a.from_document_id,
                to_document_id: a.to_document_id,
                amount_minor: a.amount_minor,
                created_at: iso(a.created_at),
            })
            .collect(),
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Gates
// ---------------------------------------------------------------------------------------

/// The account a document is issued to, and its vendor (the issuer), for a caller on
/// the seller side: above the account, with `BILLING_MANAGE`.
async fn seller_side(
    st: &AppState,
    auth: &Authed,
    account: AccountId,
) -> ApiResult<(Account, AccountId)> {
    let relation = auth.check(st, account, Action::ManageBilling).await?;
    if relation == Relation::Own {
        return Err(ApiError::forbidden(
            "documents are issued to an account by its seller, not by the account itself",
        ));
    }
    let a = st.db.accounts().get(account).await?;
    let vendor = a
        .vendor_id
        .ok_or_else(|| ApiError::forbidden("the provider has no seller"))?;
    Ok((a, vendor))
}

/// A document the caller may see, or 404.
async fn visible_document(
    st: &AppState,
    auth: &Authed,
    id: i64,
    action: Action,
) -> ApiResult<Document> {
    let d = st.db.documents().get(id).await?;
    auth.check(st, d.account_id, action).await?;
    Ok(d)
}

/// The documents `ids` may settle: issued invoices or debit memos of `account` in its
/// currency with something open. Every bad entry is named (`{field}[i]`); a document of
/// another account is reported exactly like one that does not exist.
async fn payable_targets(
    st: &AppState,
    account: &Account,
    currency: &str,
    ids: &[i64],
    field: &str,
) -> ApiResult<Vec<Document>> {
    let mut e = ValidationErrors::new();
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let name = format!("{field}[{i}]");
        let d = match st.db.documents().get(*id).await {
            Ok(d) if d.account_id == account.id => d,
            Ok(_) | Err(StoreError::NotFound) => {
                e.push(FieldError::new(
                    name,
                    "unknown_invoice",
                    "no such invoice of this account",
                ));
                continue;
            }
            Err(x) => return Err(x.into()),
        };
        if !matches!(d.kind, DocKind::Invoice | DocKind::DebitMemo) || d.status != "issued" {
            e.push(FieldError::new(
                name,
                "not_payable",
                "only issued invoices and debit memos are paid",
            ));
        } else if d.currency != currency {
            e.push(FieldError::new(
                name,
                "currency_mismatch",
                format!("the invoice is in {}", d.currency),
            ));
        } else if d.open_minor <= 0 {
            e.push(FieldError::new(
                name,
                "already_paid",
                "nothing is open on this invoice",
            ));
        } else {
            out.push(d);
        }
    }
    e.into_result()?;
    Ok(out)
}

/// Spread what is open on `from` over `targets` (in order, each up to what it owes now),
/// inside the caller's transaction. Targets that can no longer take anything are skipped.
/// Returns (target id, amount) of each allocation written.
async fn apply_in_order(
    tx: &mut Tx,
    from: &Document,
    targets: &[i64],
    now: Timestamp,
) -> ApiResult<Vec<(i64, i64)>> {
    let from = Documents::get_in(tx, from.id).await?;
    let mut current = Vec::with_capacity(targets.len());
    for id in targets {
        let t = Documents::get_in(tx, *id).await?;
        let open = if check_allocation(&from.open_view(), &t.open_view(), 1).is_ok() {
            t.open_minor
        } else {
            0
        };
        current.push((t, open));
    }
    let opens: Vec<i64> = current.iter().map(|c| c.1).collect();
    let (parts, _left) = spread(from.open_minor, &opens);
    let mut done = Vec::new();
    for ((t, _), amount) in current.iter().zip(parts) {
        if amount > 0 {
            Documents::allocate(tx, &from, t, amount, now).await?;
            done.push((t.id, amount));
        }
    }
    Ok(done)
}

fn applied_json(applied: &[(i64, i64)]) -> serde_json::Value {
    applied
        .iter()
        .map(|(id, amount)| json!({"document_id": id, "amount_minor": amount}))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DocumentListParams {
    /// Only documents of this kind: `invoice`, `payment`, `credit_memo`, `debit_memo`, `refund`.
    pub kind: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/documents", tag = "billing", params(("id" = i64, Path), DocumentListParams),
    responses((status = 200, body = PageOut<DocumentOut>, description = "The account's documents, newest first"), ProblemResponses))]
pub(crate) async fn list_documents(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<DocumentListParams>,
) -> ApiResult<Json<PageOut<DocumentOut>>> {
    auth.check(&st, AccountId(id), Action::ViewBilling).await?;
    let kind = match q.kind.as_deref() {
        Some(k) => Some(DocKind::parse(k).ok_or_else(|| {
            ApiError::field(
                "kind",
                "invalid_kind",
                "one of invoice, payment, credit_memo, debit_memo, refund",
            )
        })?),
        None => None,
    };
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let p = st
        .db
        .documents()
        .of_account(AccountId(id), kind, page.after()?, page.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(doc_out).collect(),
        p.next,
    )))
}

#[utoipa::path(get, path = "/api/v1/documents/{id}", tag = "billing", params(("id" = i64, Path)),
    responses((status = 200, body = DocumentOut, description = "The document with its lines and allocations"), ProblemResponses))]
pub(crate) async fn get_document(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<DocumentOut>> {
    let d = visible_document(&st, &auth, id, Action::ViewBilling).await?;
    Ok(Json(full_out(&st, d).await?))
}

#[utoipa::path(get, path = "/api/v1/documents/{id}/pdf", tag = "billing", params(("id" = i64, Path)),
    responses((status = 200, content_type = "application/pdf", description = "The document as the customer receives it: seller and buyer, dates, lines, subtotal, tax, total, open balance, the rounding rule"),
        ProblemResponses))]
pub(crate) async fn document_pdf(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let d = visible_document(&st, &auth, id, Action::ViewBilling).await?;
    let buyer = st.db.accounts().get(d.account_id).await?;
    // A customer reading its own document sees it only while its sellers show that
    // billing screen (as in the panel): a hidden one is not there at all (404).
    if auth.actor.account_id == buyer.id && buyer.kind == AccountKind::Customer {
        let screens = st
            .db
            .billing_visibility()
            .effective(buyer.id)
            .await?
            .screens;
        let shown = match d.kind {
            DocKind::Payment | DocKind::Refund => screens.payments,
            _ => screens.invoices,
        };
        if !shown {
            return Err(ApiError::not_found());
        }
    }
    let lines = st.db.documents().lines(d.id).await?;
    let seller = st.db.accounts().get(d.issuer_account_id).await?;
    let bytes = render(&PdfDocument::build(&d, &lines, &seller, &buyer));
    let filename = d
        .number
        .clone()
        .unwrap_or_else(|| format!("document-{}", d.id));
    let disposition = HeaderValue::from_str(&format!("inline; filename=\"{filename}.pdf\""))
        .unwrap_or(HeaderValue::from_static("inline"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentIn {
    /// Positive, in minor units (cents).
    pub amount_minor: i64,
    /// ISO 4217; the account's currency.
    pub currency: String,
    /// `bank_transfer` or `check` (recorded by the seller), or `card` (charged).
    pub method: String,
    /// Card payments only. Never stored or returned: only the last four digits are kept.
    pub card_number: Option<String>,
    /// Invoices or debit memos of the account to pay, in order; the rest stays open.
    pub apply_to: Option<Vec<i64>>,
    /// The bank's or check's reference.
    pub external_ref: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingPaymentOut {
    /// `pending`.
    pub status: String,
    /// The gateway's reference; confirm with `POST /api/v1/payments/pending/{reference}/confirm`.
    pub reference: String,
    pub account_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub confirm_url: String,
}

pub(crate) fn pending_out(a: &PaymentAttempt) -> PendingPaymentOut {
    PendingPaymentOut {
        status: a.status.clone(),
        reference: a.reference.clone(),
        account_id: a.account_id.0,
        amount_minor: a.amount_minor,
        currency: a.currency.clone(),
        confirm_url: format!("/api/v1/payments/pending/{}/confirm", a.reference),
    }
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(crate::middleware::IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
}

/// One payment document (and its allocations), inside the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_payment(
    tx: &mut Tx,
    auth: &Authed,
    account: &Account,
    issuer: AccountId,
    amount: Money,
    method: PaymentMethod,
    external_ref: Option<&str>,
    idem_key: Option<&str>,
    apply_to: &[i64],
    today: NaiveDate,
    now: Timestamp,
) -> ApiResult<(Document, Vec<(i64, i64)>)> {
    let issue_date = today.to_string();
    let head = NewDocument {
        kind: DocKind::Payment,
        issuer,
        account: account.id,
        currency: amount.currency.code(),
        issue_date: &issue_date,
        due_date: None,
        charge_date: None,
        tax_bp: 0,
        method: Some(method.as_str()),
        external_ref,
        idem_key,
    };
    let doc = Documents::issue_single(
        tx,
        &head,
        "payment",
        &format!("Payment by {}", method.label()),
        amount.minor,
        now,
    )
    .await?;
    let applied = apply_in_order(tx, &doc, apply_to, now).await?;
    // A payment that settles the last overdue debt lifts a credit hold at once.
    cascade_store::holds::release_if_settled(tx, account.id, &issue_date, now).await?;
    emit(
        tx,
        now,
        "payment.recorded",
        account.id,
        auth,
        "document",
        doc.id,
        json!({"number": doc.number, "amount_minor": amount.minor, "currency": amount.currency.code(), "method": method.as_str(), "applied": applied_json(&applied)}),
    )
    .await?;
    let doc = Documents::get_in(tx, doc.id).await?;
    Ok((doc, applied))
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/payments", tag = "billing", params(("id" = i64, Path)), request_body = PaymentIn,
    responses(
        (status = 201, body = DocumentOut, description = "The payment was recorded (manual methods) or approved by the gateway (card)"),
        (status = 202, body = PendingPaymentOut, description = "The gateway left the card charge pending: nothing is recorded until it is confirmed"),
        (status = 402, description = "The card was declined; nothing was recorded", content_type = "application/problem+json"),
        ProblemResponses))]
pub(crate) async fn create_payment(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PaymentIn>,
) -> ApiResult<Response> {
    let account_id = AccountId(id);
    let relation = auth.check(&st, account_id, Action::ManageBilling).await?;
    let account = st.db.accounts().get(account_id).await?;
    let p: NewPayment = PaymentInput {
        amount_minor: body.amount_minor,
        currency: body.currency,
        method: body.method,
        card_number: body.card_number,
        apply_to: body.apply_to.unwrap_or_default(),
        external_ref: body.external_ref,
    }
    .validate(account.currency)?;
    if p.method.is_manual() && relation == Relation::Own {
        return Err(ApiError::forbidden(
            "bank transfers and checks are recorded by the seller when the money arrives",
        ));
    }
    let issuer = account
        .vendor_id
        .ok_or_else(|| ApiError::forbidden("the provider has no seller to pay"))?;
    let idem = idempotency_key(&headers).map(|k| format!("pay:{}:{k}", auth.actor.user_id.0));
    if let Some(key) = &idem {
        // A retry that reached us again: answer with what the first attempt left.
        if let Some(d) = st.db.documents().by_idem_key(key).await? {
            return Ok((StatusCode::CREATED, Json(full_out(&st, d).await?)).into_response());
        }
        if let Some(a) = st.db.payment_attempts().by_idem_key(key).await? {
            return match a.document_id {
                Some(d) => Ok((
                    StatusCode::CREATED,
                    Json(full_out(&st, st.db.documents().get(d).await?).await?),
                )
                    .into_response()),
                None => Ok((StatusCode::ACCEPTED, Json(pending_out(&a))).into_response()),
            };
        }
    }
    // After the replay above: a retry of a payment that paid these invoices finds them
    // paid, and must get the first answer, not "nothing is open".
    payable_targets(
        &st,
        &account,
        p.amount.currency.code(),
        &p.apply_to,
        "apply_to",
    )
    .await?;
    let now = st.clock.now();
    let today = today(&st);

    let Some(card) = &p.card else {
        let mut tx = st.db.begin().await?;
        let (doc, _) = record_payment(
            &mut tx,
            &auth,
            &account,
            issuer,
            p.amount,
            p.method,
            p.external_ref.as_deref(),
            idem.as_deref(),
            &p.apply_to,
            today,
            now,
        )
        .await?;
        tx.commit().await?;
        return Ok((StatusCode::CREATED, Json(full_out(&st, doc).await?)).into_response());
    };

    let gw = gateway(&st)?;
    let key = idem
        .clone()
        .unwrap_or_else(|| format!("pay:{}", uuid::Uuid::new_v4()));
    let outcome = gw
        .charge(ChargeRequest {
            account: account.id,
            amount: p.amount,
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
            .detail("the card was not charged; try again later")
        })?;
    match outcome.decision {
        GatewayDecision::Declined => {
            let message = outcome
                .message
                .unwrap_or_else(|| "the card was declined".into());
            let mut tx = st.db.begin().await?;
            emit(&mut tx, now, "payment.declined", account.id, &auth, "account", account.id.0,
                json!({"amount_minor": p.amount.minor, "currency": p.amount.currency.code(), "method": "card", "card_last4": card.last4(),
                       "gateway": gw.name(), "reference": outcome.reference, "message": message})).await?;
            tx.commit().await?;
            let mut e = ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "card_declined",
                "Card declined",
            )
            .detail(format!("{message}; nothing was charged or recorded"));
            e.errors
                .push(FieldError::new("card_number", "card_declined", message));
            Err(e)
        }
        GatewayDecision::Pending => {
            let mut tx = st.db.begin().await?;
            let attempt = PaymentAttempts::create(
                &mut tx,
                &NewAttempt {
                    reference: &outcome.reference,
                    gateway: gw.name(),
                    issuer,
                    account: account.id,
                    amount: p.amount,
                    card_last4: Some(card.last4()),
                    apply_to: &p.apply_to,
                    external_ref: p.external_ref.as_deref(),
                    idem_key: Some(&key),
                    created_by: Some(auth.actor.user_id.0),
                },
                now,
            )
            .await?;
            emit(&mut tx, now, "payment.pending", account.id, &auth, "payment_attempt", attempt.id,
                json!({"reference": attempt.reference, "amount_minor": p.amount.minor, "currency": p.amount.currency.code(), "card_last4": card.last4()})).await?;
            tx.commit().await?;
            Ok((StatusCode::ACCEPTED, Json(pending_out(&attempt))).into_response())
        }
        GatewayDecision::Approved => {
            let mut tx = st.db.begin().await?;
            let (doc, _) = record_payment(
                &mut tx,
                &auth,
                &account,
                issuer,
                p.amount,
                PaymentMethod::Card,
                Some(&outcome.reference),
                Some(&key),
                &p.apply_to,
                today,
                now,
            )
            .await?;
            tx.commit().await?;
            Ok((StatusCode::CREATED, Json(full_out(&st, doc).await?)).into_response())
        }
    }
}

#[utoipa::path(post, path = "/api/v1/payments/pending/{reference}/confirm", tag = "billing", params(("reference" = String, Path)),
    responses(
        (status = 201, body = DocumentOut, description = "The gateway settled the charge: the payment is recorded (and applied as asked)"),
        (status = 200, body = DocumentOut, description = "Already confirmed: the payment recorded then"),
        (status = 402, description = "The gateway declined the charge after all", content_type = "application/problem+json"),
        ProblemResponses))]
async fn confirm_pending(
    State(st): State<AppState>,
    auth: Authed,
    Path(reference): Path<String>,
) -> ApiResult<Response> {
    let attempt = st.db.payment_attempts().get(&reference).await?;
    auth.check(&st, attempt.account_id, Action::ManageBilling)
        .await?;
    if let Some(d) = attempt.document_id {
        return Ok((
            StatusCode::OK,
            Json(full_out(&st, st.db.documents().get(d).await?).await?),
        )
            .into_response());
    }
    if attempt.status != "pending" {
        return Err(ApiError::conflict(format!(
            "the charge is {}",
            attempt.status
        )));
    }
    let gw = gateway(&st)?;
    let decision = gw.status(&reference).await.map_err(|e| {
        tracing::warn!(error = %e, "payment gateway failed");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "gateway_unavailable",
            "Payment gateway unavailable",
        )
        .detail("try again later")
    })?;
    let now = st.clock.now();
    match decision {
        GatewayDecision::Pending => Err(ApiError::conflict(
            "the gateway has not settled the charge yet",
        )),
        GatewayDecision::Declined => {
            let mut tx = st.db.begin().await?;
            if PaymentAttempts::claim(&mut tx, &reference, "failed", now)
                .await?
                .is_some()
            {
                emit(&mut tx, now, "payment.declined", attempt.account_id, &auth, "payment_attempt", attempt.id,
                    json!({"reference": reference, "amount_minor": attempt.amount_minor, "currency": attempt.currency, "card_last4": attempt.card_last4})).await?;
            }
            tx.commit().await?;
            Err(ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "card_declined",
                "Card declined",
            )
            .detail("the gateway declined the charge; nothing was recorded"))
        }
        GatewayDecision::Approved => {
            let account = st.db.accounts().get(attempt.account_id).await?;
            let currency = cascade_domain::money::Currency::parse(&attempt.currency)
                .map_err(|_| ApiError::internal())?;
            let mut tx = st.db.begin().await?;
            let Some(claimed) =
                PaymentAttempts::claim(&mut tx, &reference, "confirmed", now).await?
            else {
                // A concurrent confirmation won.
                tx.rollback().await?;
                let again = st.db.payment_attempts().get(&reference).await?;
                return match again.document_id {
                    Some(d) => Ok((
                        StatusCode::OK,
                        Json(full_out(&st, st.db.documents().get(d).await?).await?),
                    )
                        .into_response()),
                    None => Err(ApiError::conflict(format!(
                        "the charge is {}",
                        again.status
                    ))),
                };
            };
            let idem = claimed
                .idem_key
                .clone()
                .unwrap_or_else(|| format!("attempt:{reference}"));
            let (doc, _) = record_payment(
                &mut tx,
                &auth,
                &account,
                claimed.issuer_account_id,
                Money::new(claimed.amount_minor, currency),
                PaymentMethod::Card,
                Some(&reference),
                Some(&idem),
                &claimed.apply_to,
                today(&st),
                now,
            )
            .await?;
            PaymentAttempts::set_document(&mut tx, claimed.id, doc.id, now).await?;
            tx.commit().await?;
            Ok((StatusCode::CREATED, Json(full_out(&st, doc).await?)).into_response())
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyIn {
    /// An invoice or debit memo of the same account, in the same currency.
    pub invoice_id: i64,
    /// Positive, at most what is open on both documents.
    pub amount_minor: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyOut {
    pub amount_minor: i64,
    /// The payment (or credit memo), its open balance reduced.
    pub payment: DocumentOut,
    /// The invoice (or debit memo), its open balance reduced.
    pub invoice: DocumentOut,
}

#[utoipa::path(post, path = "/api/v1/payments/{id}/apply", tag = "billing", params(("id" = i64, Path, description = "A payment or credit memo")), request_body = ApplyIn,
    responses((status = 200, body = ApplyOut), ProblemResponses))]
pub(crate) async fn apply_payment(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<ApplyIn>,
) -> ApiResult<Json<ApplyOut>> {
    let from = visible_document(&st, &auth, id, Action::ManageBilling).await?;
    if !matches!(from.kind, DocKind::Payment | DocKind::CreditMemo) {
        return Err(ApiError::not_found().detail("no such payment or credit memo"));
    }
    let amount =
        positive_amount(body.amount_minor).map_err(|e| ApiError::from(e.under("amount_minor")))?;
    let unknown = || {
        ApiError::field(
            "invoice_id",
            "unknown_invoice",
            "no such invoice of this account",
        )
    };
    match st.db.documents().get(body.invoice_id).await {
        Ok(to) if to.account_id == from.account_id => {}
        Ok(_) | Err(StoreError::NotFound) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    }
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let (f, t) = match Documents::apply(&mut tx, from.id, body.invoice_id, amount, now).await? {
        Ok(pair) => pair,
        Err(rule) => return Err(rule.to_field_error().into()),
    };
    cascade_store::holds::release_if_settled(&mut tx, f.account_id, &today(&st).to_string(), now)
        .await?;
    emit(
        &mut tx,
        now,
        "payment.applied",
        f.account_id,
        &auth,
        "document",
        f.id,
        json!({"to_document_id": t.id, "amount_minor": amount, "currency": f.currency}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(ApplyOut {
        amount_minor: amount,
        payment: full_out(&st, f).await?,
        invoice: full_out(&st, t).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundIn {
    /// Positive, at most what is still open (unapplied) on the payment.
    pub amount_minor: i64,
    pub reason: Option<String>,
    /// The bank's reference of the money sent back (manual payments).
    pub external_ref: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/payments/{id}/refund", tag = "billing", params(("id" = i64, Path)), request_body = RefundIn,
    responses((status = 201, body = DocumentOut, description = "The refund document, settled by the payment"), ProblemResponses))]
async fn refund_payment(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefundIn>,
) -> ApiResult<(StatusCode, Json<DocumentOut>)> {
    let payment = st.db.documents().get(id).await?;
    let (account, _) = seller_side(&st, &auth, payment.account_id).await?;
    if payment.kind != DocKind::Payment || payment.status != "issued" {
        return Err(ApiError::not_found().detail("no such payment"));
    }
    let mut e = ValidationErrors::new();
    let amount = e.check(
        "amount_minor",
        check_refund(body.amount_minor, payment.open_minor),
    );
    let reason = e
        .check(
            "reason",
            cascade_domain::validation::optional_text(body.reason.as_deref(), 500),
        )
        .flatten();
    let external_ref = e
        .check(
            "external_ref",
            cascade_domain::validation::optional_text(body.external_ref.as_deref(), 200),
        )
        .flatten();
    e.into_result()?;
    let amount = amount.unwrap_or_default();
    let currency = cascade_domain::money::Currency::parse(&payment.currency)
        .map_err(|_| ApiError::internal())?;
    let idem = idempotency_key(&headers).map(|k| format!("refund:{}:{k}", auth.actor.user_id.0));
    if let Some(key) = &idem
        && let Some(d) = st.db.documents().by_idem_key(key).await?
    {
        return Ok((StatusCode::CREATED, Json(full_out(&st, d).await?)));
    }
    // Card money goes back through the gateway; other money was sent back by the seller.
    let external_ref = match (payment.method.as_deref(), payment.external_ref.as_deref()) {
        (Some("card"), Some(charge)) => {
            let key = idem
                .clone()
                .unwrap_or_else(|| format!("refund:{}", uuid::Uuid::new_v4()));
            Some(
                gateway(&st)?
                    .refund(charge, Money::new(amount, currency), &key)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "payment gateway refund failed");
                        ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            "gateway_unavailable",
                            "Payment gateway unavailable",
                        )
                        .detail("nothing was refunded; try again later")
                    })?,
            )
        }
        _ => external_ref,
    };
    let now = st.clock.now();
    let issue_date = today(&st).to_string();
    let number = payment
        .number
        .clone()
        .unwrap_or_else(|| format!("#{}", payment.id));
    let description = match &reason {
        Some(r) => format!("Refund of payment {number}: {r}"),
        None => format!("Refund of payment {number}"),
    };
    let mut tx = st.db.begin().await?;
    let head = NewDocument {
        kind: DocKind::Refund,
        issuer: payment.issuer_account_id,
        account: account.id,
        currency: &payment.currency,
        issue_date: &issue_date,
        due_date: None,
        charge_date: None,
        tax_bp: 0,
        method: payment.method.as_deref(),
        external_ref: external_ref.as_deref(),
        idem_key: idem.as_deref(),
    };
    let refund =
        Documents::issue_single(&mut tx, &head, "refund", &description, amount, now).await?;
    if let Err(rule) = Documents::apply(&mut tx, payment.id, refund.id, amount, now).await? {
        // The payment was applied elsewhere meanwhile: nothing is written.
        return Err(rule.to_field_error().into());
    }
    emit(&mut tx, now, "refund.issued", account.id, &auth, "document", refund.id,
        json!({"number": refund.number, "payment_id": payment.id, "amount_minor": amount, "currency": payment.currency, "reason": reason})).await?;
    let refund = Documents::get_in(&mut tx, refund.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(full_out(&st, refund).await?)))
}

// ---------------------------------------------------------------------------------------
// Credit and debit memos
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditMemoIn {
    pub amount_minor: i64,
    pub currency: String,
    /// Printed on the memo.
    pub reason: String,
    /// Invoices or debit memos to settle at once, in order; the rest stays open.
    pub apply_to: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DebitMemoIn {
    pub amount_minor: i64,
    pub currency: String,
    /// Printed on the memo.
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/credit-memos", tag = "billing", params(("id" = i64, Path)), request_body = CreditMemoIn,
    responses((status = 201, body = DocumentOut), ProblemResponses))]
async fn create_credit_memo(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreditMemoIn>,
) -> ApiResult<(StatusCode, Json<DocumentOut>)> {
    let (account, issuer) = seller_side(&st, &auth, AccountId(id)).await?;
    let m = MemoInput {
        amount_minor: body.amount_minor,
        currency: body.currency,
        reason: body.reason,
        apply_to: body.apply_to.unwrap_or_default(),
    }
    .validate(account.currency)?;
    payable_targets(
        &st,
        &account,
        m.amount.currency.code(),
        &m.apply_to,
        "apply_to",
    )
    .await?;
    let idem = idempotency_key(&headers).map(|k| format!("cm:{}:{k}", auth.actor.user_id.0));
    if let Some(key) = &idem
        && let Some(d) = st.db.documents().by_idem_key(key).await?
    {
        return Ok((StatusCode::CREATED, Json(full_out(&st, d).await?)));
    }
    let now = st.clock.now();
    let issue_date = today(&st).to_string();
    let mut tx = st.db.begin().await?;
    let head = NewDocument {
        kind: DocKind::CreditMemo,
        issuer,
        account: account.id,
        currency: m.amount.currency.code(),
        issue_date: &issue_date,
        due_date: None,
        charge_date: None,
        tax_bp: 0,
        method: None,
        external_ref: None,
        idem_key: idem.as_deref(),
    };
    let doc = Documents::issue_single(
        &mut tx,
        &head,
        "credit_memo",
        &m.reason,
        m.amount.minor,
        now,
    )
    .await?;
    let applied = apply_in_order(&mut tx, &doc, &m.apply_to, now).await?;
    emit(&mut tx, now, "credit_memo.issued", account.id, &auth, "document", doc.id,
        json!({"number": doc.number, "amount_minor": m.amount.minor, "currency": doc.currency, "reason": m.reason, "applied": applied_json(&applied)})).await?;
    let doc = Documents::get_in(&mut tx, doc.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(full_out(&st, doc).await?)))
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/debit-memos", tag = "billing", params(("id" = i64, Path)), request_body = DebitMemoIn,
    responses((status = 201, body = DocumentOut, description = "The debit memo, due under the account's credit terms"), ProblemResponses))]
async fn create_debit_memo(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DebitMemoIn>,
) -> ApiResult<(StatusCode, Json<DocumentOut>)> {
    let (account, issuer) = seller_side(&st, &auth, AccountId(id)).await?;
    let m = MemoInput {
        amount_minor: body.amount_minor,
        currency: body.currency,
        reason: body.reason,
        apply_to: vec![],
    }
    .validate(account.currency)?;
    let idem = idempotency_key(&headers).map(|k| format!("dm:{}:{k}", auth.actor.user_id.0));
    if let Some(key) = &idem
        && let Some(d) = st.db.documents().by_idem_key(key).await?
    {
        return Ok((StatusCode::CREATED, Json(full_out(&st, d).await?)));
    }
    let terms = st
        .db
        .customer_classes()
        .terms_of_account(account.id)
        .await?;
    let now = st.clock.now();
    let day = today(&st);
    let (issue_date, due, charge) = (
        day.to_string(),
        payments::due_date(day, &terms).to_string(),
        payments::charge_date(day, &terms).map(|d| d.to_string()),
    );
    let mut tx = st.db.begin().await?;
    let head = NewDocument {
        kind: DocKind::DebitMemo,
        issuer,
        account: account.id,
        currency: m.amount.currency.code(),
        issue_date: &issue_date,
        due_date: Some(&due),
        charge_date: charge.as_deref(),
        tax_bp: 0,
        method: None,
        external_ref: None,
        idem_key: idem.as_deref(),
    };
    let doc = Documents::issue_single(&mut tx, &head, "debit_memo", &m.reason, m.amount.minor, now)
        .await?;
    emit(&mut tx, now, "debit_memo.issued", account.id, &auth, "document", doc.id,
        json!({"number": doc.number, "amount_minor": m.amount.minor, "currency": doc.currency, "reason": m.reason, "due_date": due})).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(full_out(&st, doc).await?)))
}

// ---------------------------------------------------------------------------------------
// Balance
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceOut {
    pub account_id: i64,
    pub currency: String,
    /// What the account owes less what it has open to apply; negative = credit.
    pub balance_minor: i64,
    /// Issued invoices and debit memos with something still open.
    pub open_invoices: i64,
    /// What is open on them.
    pub open_invoices_minor: i64,
    /// The customer class's credit limit, when set.
    pub credit_limit_minor: Option<i64>,
    /// Credit limit − balance (negative when over the limit); absent without a limit.
    pub credit_available: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/balance", tag = "billing", params(("id" = i64, Path)),
    responses((status = 200, body = BalanceOut), ProblemResponses))]
async fn get_balance(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<BalanceOut>> {
    let id = AccountId(id);
    auth.check(&st, id, Action::ViewBilling).await?;
    let account = st.db.accounts().get(id).await?;
    let currency = account.currency.code();
    let balance = st.db.documents().balance(id, currency).await?;
    let open = st.db.documents().open_debits(id, currency).await?;
    let terms = st.db.customer_classes().terms_of_account(id).await?;
    Ok(Json(BalanceOut {
        account_id: id.0,
        currency: currency.into(),
        balance_minor: balance,
        open_invoices: open.count,
        open_invoices_minor: open.total_minor,
        credit_limit_minor: terms.credit_limit_minor,
        credit_available: payments::credit_available(&terms, balance),
    }))
}

// ---------------------------------------------------------------------------------------
// Customer classes and credit terms
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerClassOut {
    pub id: i64,
    /// The seller that defines the class for its customers.
    pub owner_account_id: i64,
    pub name: String,
    /// Days from issue to due date.
    pub due_days: u32,
    /// Days after the due date before anything happens.
    pub grace_days: u32,
    /// Days after the grace period before an automatic credit hold.
    pub hold_days: u32,
    pub credit_limit_minor: Option<i64>,
    pub auto_credit_hold: bool,
    /// Net terms: automatic charges are taken this many days after issue (1..=due_days).
    pub payment_delay_days: Option<u32>,
    /// Pay-as-you-go: days between a short balance and suspension.
    pub payg_grace_days: u32,
    pub created_at: String,
}

fn class_out(c: CustomerClass) -> CustomerClassOut {
    let t = c.terms;
    CustomerClassOut {
        id: c.id.0,
        owner_account_id: c.owner_account_id.0,
        name: c.name,
        due_days: t.due_days,
        grace_days: t.grace_days,
        hold_days: t.hold_days,
        credit_limit_minor: t.credit_limit_minor,
        auto_credit_hold: t.auto_credit_hold,
        payment_delay_days: t.payment_delay_days,
        payg_grace_days: t.payg_grace_days,
        created_at: iso(c.created_at),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClassIn {
    pub name: String,
    /// Default 14.
    pub due_days: Option<i64>,
    /// Default 7.
    pub grace_days: Option<i64>,
    /// Default 30.
    pub hold_days: Option<i64>,
    /// Default: no limit.
    pub credit_limit_minor: Option<i64>,
    /// Default true.
    pub auto_credit_hold: Option<bool>,
    /// Net terms (1..=due_days); default: none.
    pub payment_delay_days: Option<i64>,
    /// Default 5.
    pub payg_grace_days: Option<i64>,
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClassIn {
    pub name: Option<String>,
    pub due_days: Option<i64>,
    pub grace_days: Option<i64>,
    pub hold_days: Option<i64>,
    /// `null` removes the limit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub credit_limit_minor: Option<Option<i64>>,
    pub auto_credit_hold: Option<bool>,
    /// `null` removes the net terms.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub payment_delay_days: Option<Option<i64>>,
    pub payg_grace_days: Option<i64>,
}

fn class_name(name: &str, e: &mut ValidationErrors) -> Option<String> {
    e.check("name", bounded_text(name, 100))
}

fn terms_or_errors(
    input: &CreditTermsInput,
    current: &CreditTerms,
    e: &mut ValidationErrors,
) -> Option<CreditTerms> {
    match input.apply(current) {
        Ok(t) => Some(t),
        Err(x) => {
            e.0.extend(x.0);
            None
        }
    }
}

fn name_taken(e: ApiError) -> ApiError {
    if e.status == StatusCode::CONFLICT {
        ApiError::field(
            "name",
            "name_taken",
            "this seller already has a customer class with this name",
        )
    } else {
        e
    }
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/customer-classes", tag = "billing", params(("id" = i64, Path, description = "The seller")), request_body = CreateClassIn,
    responses((status = 201, body = CustomerClassOut), ProblemResponses))]
async fn create_class(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CreateClassIn>,
) -> ApiResult<(StatusCode, Json<CustomerClassOut>)> {
    let owner = AccountId(id);
    auth.check(&st, owner, Action::ManageBilling).await?;
    if st.db.accounts().get(owner).await?.kind == AccountKind::Customer {
        return Err(ApiError::field(
            "account_id",
            "not_a_seller",
            "customer classes are defined by the provider and resellers",
        ));
    }
    let mut e = ValidationErrors::new();
    let name = class_name(&body.name, &mut e);
    let input = CreditTermsInput {
        due_days: body.due_days,
        grace_days: body.grace_days,
        hold_days: body.hold_days,
        credit_limit_minor: body.credit_limit_minor.map(Some),
        auto_credit_hold: body.auto_credit_hold,
        payment_delay_days: body.payment_delay_days.map(Some),
        payg_grace_days: body.payg_grace_days,
    };
    let terms = terms_or_errors(&input, &CreditTerms::default(), &mut e);
    e.into_result()?;
    let (Some(name), Some(terms)) = (name, terms) else {
        return Err(ApiError::internal());
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let class = CustomerClasses::create(&mut tx, owner, &name, &terms, now)
        .await
        .map_err(|e| name_taken(e.into()))?;
    emit(
        &mut tx,
        now,
        "customer_class.created",
        owner,
        &auth,
        "customer_class",
        class.id.0,
        json!({"name": class.name, "terms": class.terms}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(class_out(class))))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ClassListParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/customer-classes", tag = "billing", params(("id" = i64, Path, description = "The seller"), ClassListParams),
    responses((status = 200, body = PageOut<CustomerClassOut>), ProblemResponses))]
async fn list_classes(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<ClassListParams>,
) -> ApiResult<Json<PageOut<CustomerClassOut>>> {
    auth.check(&st, AccountId(id), Action::ViewBilling).await?;
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    let p = st
        .db
        .customer_classes()
        .of_owner(AccountId(id), page.after()?, page.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(class_out).collect(),
        p.next,
    )))
}

async fn visible_class(
    st: &AppState,
    auth: &Authed,
    id: i64,
    action: Action,
) -> ApiResult<CustomerClass> {
    let c = st.db.customer_classes().get(CustomerClassId(id)).await?;
    auth.check(st, c.owner_account_id, action).await?;
    Ok(c)
}

#[utoipa::path(get, path = "/api/v1/customer-classes/{id}", tag = "billing", params(("id" = i64, Path)),
    responses((status = 200, body = CustomerClassOut), ProblemResponses))]
async fn get_class(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<CustomerClassOut>> {
    Ok(Json(class_out(
        visible_class(&st, &auth, id, Action::ViewBilling).await?,
    )))
}

#[utoipa::path(patch, path = "/api/v1/customer-classes/{id}", tag = "billing", params(("id" = i64, Path)), request_body = UpdateClassIn,
    responses((status = 200, body = CustomerClassOut), ProblemResponses))]
async fn update_class(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UpdateClassIn>,
) -> ApiResult<Json<CustomerClassOut>> {
    let current = visible_class(&st, &auth, id, Action::ManageBilling).await?;
    let mut e = ValidationErrors::new();
    let name = match &body.name {
        Some(n) => class_name(n, &mut e),
        None => Some(current.name.clone()),
    };
    let input = CreditTermsInput {
        due_days: body.due_days,
        grace_days: body.grace_days,
        hold_days: body.hold_days,
        credit_limit_minor: body.credit_limit_minor,
        auto_credit_hold: body.auto_credit_hold,
        payment_delay_days: body.payment_delay_days,
        payg_grace_days: body.payg_grace_days,
    };
    let terms = terms_or_errors(&input, &current.terms, &mut e);
    e.into_result()?;
    let (Some(name), Some(terms)) = (name, terms) else {
        return Err(ApiError::internal());
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let class = CustomerClasses::update(&mut tx, current.id, &name, &terms)
        .await
        .map_err(|e| name_taken(e.into()))?;
    emit(
        &mut tx,
        now,
        "customer_class.updated",
        class.owner_account_id,
        &auth,
        "customer_class",
        class.id.0,
        json!({"name": class.name, "before": current.terms, "after": class.terms}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(class_out(class)))
}
