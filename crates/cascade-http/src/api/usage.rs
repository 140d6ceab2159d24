//! `POST /api/v1/subscriptions/{id}/usage`: usage import for pay-as-you-go and
//! measurable resources, by the subscription's vendor (or a seller above it).

use super::{ProblemResponses, emit};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use cascade_domain::FieldError;
use cascade_domain::authz::{Action, Relation};
use cascade_domain::catalog::plan::BillingModel;
use cascade_domain::validation::ValidationErrors;
use cascade_store::usage::{NewUsage, Usage};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import_usage))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageRecordIn {
    /// The sender's id of the record (1–128 visible characters): importing it twice is harmless.
    pub id: String,
    /// The resource rate of the subscription's plan.
    pub rate_uid: String,
    /// Units used (≥ 0).
    pub quantity: i64,
    /// The day the usage happened (YYYY-MM-DD, not in the future).
    pub date: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageIn {
    /// 1 to 10,000 records.
    pub records: Vec<UsageRecordIn>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageOut {
    pub inserted: usize,
    /// Records already imported with the same values.
    pub already_present: usize,
}

#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/usage", tag = "orders", params(("id" = i64, Path)), request_body = UsageIn,
    responses((status = 200, body = UsageOut), ProblemResponses))]
async fn import_usage(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UsageIn>,
) -> ApiResult<Json<UsageOut>> {
    let sub = st.db.subscriptions().get(id).await?;
    // Usage is reported by the seller side, never by the customer itself.
    if auth
        .check(&st, sub.account_id, Action::ManageBilling)
        .await?
        == Relation::Own
    {
        return Err(ApiError::forbidden(
            "usage is imported by the subscription's vendor",
        ));
    }
    let today = chrono::DateTime::from_timestamp_micros(st.clock.now().0)
        .map(|d| d.date_naive())
        .unwrap_or_default();
    // The rates the subscription holds (its own terms, not the plan's latest edit).
    let plan = st
        .db
        .plans()
        .for_subscription(&sub, &today.to_string())
        .await?;
    let mut errs = ValidationErrors::new();
    if body.records.is_empty() || body.records.len() > 10_000 {
        errs.push(FieldError::new(
            "records",
            "out_of_range",
            "send 1 to 10,000 records",
        ));
    }
    let mut seen = BTreeSet::new();
    let mut records = Vec::with_capacity(body.records.len());
    for (i, r) in body.records.iter().enumerate() {
        let f = |x: &str| format!("records[{i}].{x}");
        if r.id.is_empty() || r.id.len() > 128 || !r.id.bytes().all(|b| b.is_ascii_graphic()) {
            errs.push(FieldError::new(
                f("id"),
                "invalid_id",
                "1 to 128 visible ASCII characters",
            ));
        } else if !seen.insert(r.id.clone()) {
            errs.push(FieldError::new(
                f("id"),
                "duplicate_id",
                "this id appears twice in the batch",
            ));
        }
        match plan.content.rate(&r.rate_uid) {
            None => errs.push(FieldError::new(
                f("rate_uid"),
                "unknown_rate",
                "the plan has no such resource rate",
            )),
            Some(rate)
                if !rate.measurable
                    && plan.content.billing_model != BillingModel::ExternalRating =>
            {
                errs.push(FieldError::new(
                    f("rate_uid"),
                    "not_measurable",
                    "usage is recorded for measurable resources only",
                ))
            }
            Some(_) => {}
        }
        if !(0..=1_000_000_000_000).contains(&r.quantity) {
            errs.push(FieldError::new(
                f("quantity"),
                "out_of_range",
                "between 0 and 10^12",
            ));
        }
        match NaiveDate::parse_from_str(&r.date, "%Y-%m-%d") {
            Ok(d) if d > today => errs.push(FieldError::new(
                f("date"),
                "in_the_future",
                "usage cannot be recorded ahead of time",
            )),
            Ok(d) if d.to_string() < sub.start_date => errs.push(FieldError::new(
                f("date"),
                "before_start",
                "before the subscription started",
            )),
            Ok(_) => {}
            Err(_) => errs.push(FieldError::new(
                f("date"),
                "invalid_date",
                "a date as YYYY-MM-DD",
            )),
        }
        records.push(NewUsage {
            external_id: r.id.clone(),
            rate_uid: r.rate_uid.clone(),
            quantity: r.quantity,
            usage_date: r.date.clone(),
        });
    }
    errs.into_result()?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let report = Usage::import(&mut tx, sub.id, &records, now).await?;
    if report.inserted > 0 {
        emit(
            &mut tx,
            now,
            "usage.imported",
            sub.account_id,
            &auth,
            "subscription",
            sub.id,
            json!({"records": report.inserted}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(UsageOut {
        inserted: report.inserted,
        already_present: report.already_present,
    }))
}
