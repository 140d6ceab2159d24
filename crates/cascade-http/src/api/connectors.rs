//! Connector instances: register, list, read, the two-way connectivity check, the
//! callback endpoint connectors call, and the deployment wizard.
//!
//! - **Register** stores the endpoint, the secret (never returned, never logged: the
//!   output type has no field for it) and the certificate pin.
//! - **Check** (`POST /connector-instances/{id}/check`) goes both ways: Cascade →
//!   connector (`GET /describe`, signed, answer's signature verified, over the pinned
//!   TLS), then connector → Cascade: Cascade stores a fresh nonce and asks the
//!   connector (`POST /callback-check`) to call `POST /api/v1/connector-callback` with
//!   it; the callback is signed with the instance's secret and marks the instance
//!   verified. The answer reports both directions.
//! - **Callback** authenticates by signature only (no session): unknown instance, bad
//!   signature, stale timestamp or a nonce seen before (replay) are refused with 401;
//!   nonces are remembered per instance and forgotten once older than the skew window
//!   (the timestamp check refuses anything older anyway).
//! - **Wizard** (`POST /accounts/{id}/connector-wizard`) reads the connector's
//!   self-description and creates, in one transaction, the instance, one resource type
//!   per offered type, and a service template with the offered settings' defaults —
//!   through the same validation and storage code as the catalog endpoints; anything
//!   invalid or taken rolls all of it back.

use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use cascade_connector::{ConnectorClient, Endpoint, Secret, is_valid_pin};
use cascade_domain::FieldError;
use cascade_domain::authz::Action;
use cascade_domain::catalog::resources::{
    ResourceTypeInput, ServiceTemplateInput, SettingInput, TemplateResourceInput,
};
use cascade_domain::clock::Timestamp;
use cascade_domain::connector::{
    self as proto, H_INSTANCE, H_SIGNATURE, H_TIMESTAMP, H_TRANSACTION, Signed,
};
use cascade_domain::ids::AccountId;
use cascade_domain::validation::ValidationErrors;
use cascade_store::connectors::{ConnectorInstance, ConnectorInstances, NewInstance};
use cascade_store::resources::{ResourceCategories, ResourceTypes, ServiceTemplates};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const CALLBACK_PATH: &str = "/api/v1/connector-callback";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(get_instance))
        .routes(routes!(check))
        .routes(routes!(callback))
        .routes(routes!(wizard))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterIn {
    /// The service resource types name (`resource_types.service`), e.g. `mail`.
    pub service: String,
    pub name: String,
    /// `https://host:port` of the connector.
    pub endpoint: String,
    /// Shared secret (16–256 characters) signing both directions.
    pub secret: String,
    /// Hex SHA-256 of the connector's certificate (DER), for self-signed connectors.
    pub cert_pin: Option<String>,
    /// Per-call timeout, ms (100–120000; default 10000).
    pub timeout_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceOut {
    pub id: i64,
    pub owner_account_id: i64,
    pub service: String,
    pub name: String,
    pub endpoint: String,
    pub cert_pin: Option<String>,
    pub timeout_ms: i64,
    /// Whether a secret is set (the secret itself is never returned).
    pub has_secret: bool,
    pub last_check_at: Option<String>,
    pub last_check_ok: Option<bool>,
    pub last_check_message: Option<String>,
    /// When the connector last called back with valid credentials.
    pub callback_verified_at: Option<String>,
    pub usage_collected_on: Option<String>,
}

impl From<ConnectorInstance> for InstanceOut {
    fn from(i: ConnectorInstance) -> Self {
        InstanceOut {
            id: i.id,
            owner_account_id: i.owner_account_id.0,
            service: i.service,
            name: i.name,
            endpoint: i.endpoint,
            cert_pin: i.cert_pin,
            timeout_ms: i.timeout_ms,
            has_secret: !i.secret.is_empty(),
            last_check_at: i.last_check_at.map(iso),
            last_check_ok: i.last_check_ok,
            last_check_message: i.last_check_message,
            callback_verified_at: i.callback_verified_at.map(iso),
            usage_collected_on: i.usage_collected_on,
        }
    }
}

fn validate(body: &RegisterIn, errs: &mut ValidationErrors) -> NewInstance {
    let code_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    if !code_ok(&body.service) {
        errs.push(FieldError::new(
            "service",
            "invalid_code",
            "1–64 of a–z, 0–9, _ and -",
        ));
    }
    if body.name.trim().is_empty() || body.name.len() > 200 {
        errs.push(FieldError::new(
            "name",
            "invalid_length",
            "1–200 characters",
        ));
    }
    match reqwest_url_ok(&body.endpoint) {
        Ok(()) => {}
        Err(m) => errs.push(FieldError::new("endpoint", "invalid_url", m)),
    }
    if body.secret.len() < 16
        || body.secret.len() > 256
        || !body.secret.bytes().all(|b| b.is_ascii_graphic())
    {
        errs.push(FieldError::new(
            "secret",
            "invalid_secret",
            "16–256 visible ASCII characters",
        ));
    }
    if let Some(p) = &body.cert_pin
        && !is_valid_pin(p)
    {
        errs.push(FieldError::new(
            "cert_pin",
            "invalid_pin",
            "64 hex digits: SHA-256 of the certificate's DER",
        ));
    }
    let timeout_ms = body.timeout_ms.unwrap_or(10_000);
    if !(100..=120_000).contains(&timeout_ms) {
        errs.push(FieldError::new(
            "timeout_ms",
            "out_of_range",
            "100 to 120000",
        ));
    }
    NewInstance {
        service: body.service.clone(),
        name: body.name.trim().to_string(),
        endpoint: body.endpoint.trim_end_matches('/').to_string(),
        secret: body.secret.clone(),
        cert_pin: body.cert_pin.as_ref().map(|p| p.to_ascii_lowercase()),
        timeout_ms,
    }
}

fn reqwest_url_ok(s: &str) -> Result<(), &'static str> {
    let rest = s
        .strip_prefix("https://")
        .ok_or("the endpoint must be an https:// URL")?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || s.len() > 500 || s.chars().any(|c| c.is_whitespace()) {
        return Err("an https:// URL with a host");
    }
    Ok(())
}

/// A client for an instance.
pub fn client_for(st: &AppState, i: &ConnectorInstance) -> ApiResult<ConnectorClient> {
    ConnectorClient::new(
        Endpoint {
            instance_id: i.id,
            base_url: i.endpoint.clone(),
            secret: Secret(i.secret.clone()),
            cert_pin: i.cert_pin.clone(),
            timeout: Duration::from_millis(i.timeout_ms as u64),
            skew_secs: st.config.connector_skew_secs,
        },
        Arc::clone(&st.clock),
    )
    .map_err(|e| ApiError::field("cert_pin", "invalid_pin", e.to_string()))
}

async fn owner_checked(st: &AppState, auth: &Authed, owner: AccountId) -> ApiResult<()> {
    super::resources::check_new_owner(st, auth, owner).await
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/connector-instances", tag = "connectors", params(("id" = i64, Path)),
    request_body = RegisterIn, responses((status = 201, body = InstanceOut), ProblemResponses))]
async fn register(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<RegisterIn>,
) -> ApiResult<(StatusCode, Json<InstanceOut>)> {
    let owner = AccountId(id);
    owner_checked(&st, &auth, owner).await?;
    let mut errs = ValidationErrors::new();
    let n = validate(&body, &mut errs);
    errs.into_result()?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let i = ConnectorInstances::create(&mut tx, owner, &n, now).await?;
    emit(
        &mut tx,
        now,
        "connector_instance.created",
        owner,
        &auth,
        "connector_instance",
        i.id,
        json!({"service": i.service, "endpoint": i.endpoint}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(i.into())))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/connector-instances", tag = "connectors", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<InstanceOut>), ProblemResponses))]
pub(crate) async fn list(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<InstanceOut>>> {
    let owner = AccountId(id);
    auth.check(&st, owner, Action::ManageCatalog).await?;
    let items = st.db.connector_instances().list(Some(owner)).await?;
    Ok(Json(items.into_iter().map(Into::into).collect()))
}

async fn visible(st: &AppState, auth: &Authed, id: i64) -> ApiResult<ConnectorInstance> {
    let i = st.db.connector_instances().get(id).await?;
    // Not the caller's to manage: as if it did not exist.
    auth.check(st, i.owner_account_id, Action::ManageCatalog)
        .await
        .map_err(|_| ApiError::not_found())?;
    Ok(i)
}

#[utoipa::path(get, path = "/api/v1/connector-instances/{id}", tag = "connectors", params(("id" = i64, Path)),
    responses((status = 200, body = InstanceOut), ProblemResponses))]
async fn get_instance(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<InstanceOut>> {
    Ok(Json(visible(&st, &auth, id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckIn {
    /// Where the connector should call back; default: this server's
    /// `/api/v1/connector-callback` at the Host the request came to.
    pub callback_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckOut {
    /// Cascade → connector: the self-description was fetched and verified.
    pub outbound_ok: bool,
    pub outbound_message: String,
    /// Connector → Cascade: its signed callback arrived and verified.
    pub callback_ok: bool,
    pub callback_message: String,
    pub instance: InstanceOut,
}

#[utoipa::path(post, path = "/api/v1/connector-instances/{id}/check", tag = "connectors", params(("id" = i64, Path)),
    request_body = CheckIn, responses((status = 200, body = CheckOut), ProblemResponses))]
pub(crate) async fn check(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<CheckOut>> {
    let i = visible(&st, &auth, id).await?;
    let body: CheckIn = if body.is_empty() {
        CheckIn::default()
    } else {
        crate::extract::parse_json(&body)?
    };
    let client = client_for(&st, &i)?;
    let (outbound_ok, outbound_message) = match client.describe().await {
        Ok(d) if d.service == i.service => (
            true,
            format!("{} answered (protocol {})", d.name, d.protocol),
        ),
        Ok(d) => (
            false,
            format!("the connector serves `{}`, not `{}`", d.service, i.service),
        ),
        Err(e) => (false, e.to_string()),
    };
    let callback_url = match body.callback_url {
        Some(u) => u,
        None => {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            let scheme = if st.config.secure_cookies {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}{CALLBACK_PATH}")
        }
    };
    let nonce = uuid::Uuid::new_v4().to_string();
    st.db
        .connector_instances()
        .expect_callback(i.id, &nonce, st.clock.now())
        .await?;
    let (callback_ok, callback_message) = if outbound_ok {
        match client.request_callback(&callback_url, &nonce).await {
            Ok(()) => {
                let after = st.db.connector_instances().get(i.id).await?;
                if after.callback_verified_at.is_some() {
                    (
                        true,
                        "the connector called back with valid credentials".to_string(),
                    )
                } else {
                    (
                        false,
                        "the connector did not call back with valid credentials".to_string(),
                    )
                }
            }
            Err(e) => (false, e.to_string()),
        }
    } else {
        (
            false,
            "not tried: the connector is not reachable".to_string(),
        )
    };
    let ok = outbound_ok && callback_ok;
    let message = format!("outbound: {outbound_message}; callback: {callback_message}");
    st.db
        .connector_instances()
        .record_check(i.id, ok, &message, st.clock.now())
        .await?;
    let instance = st.db.connector_instances().get(i.id).await?;
    Ok(Json(CheckOut {
        outbound_ok,
        outbound_message,
        callback_ok,
        callback_message,
        instance: instance.into(),
    }))
}

fn refused(why: impl std::fmt::Display) -> ApiError {
    tracing::warn!(reason = %why, "connector callback refused");
    ApiError::unauthorized().detail(why.to_string())
}

/// Body of a connector's callback (signed: `x-cascade-instance`, `-transaction`,
/// `-timestamp`, `-signature` headers as in the connector protocol).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CallbackIn {
    /// The nonce Cascade sent with `POST /callback-check`.
    pub nonce: String,
}

/// A connector's signed call: the reverse connectivity check.
#[utoipa::path(post, path = "/api/v1/connector-callback", tag = "connectors", request_body = CallbackIn,
    responses((status = 204, description = "Signature verified, callback recorded"), ProblemResponses))]
async fn callback(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let h = |n: &'static str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refused(format!("missing header {n}")))
    };
    let instance: i64 = h(H_INSTANCE)?
        .parse()
        .map_err(|_| refused("malformed instance id"))?;
    let tx_id = h(H_TRANSACTION)?.to_string();
    let ts: i64 = h(H_TIMESTAMP)?
        .parse()
        .map_err(|_| refused("malformed timestamp"))?;
    let sig = h(H_SIGNATURE)?;
    let i = match st.db.connector_instances().get(instance).await {
        Ok(i) => i,
        Err(cascade_store::StoreError::NotFound) => return Err(refused("unknown instance")),
        Err(e) => return Err(e.into()),
    };
    let now = st.clock.now();
    proto::verify(
        i.secret.as_bytes(),
        ts,
        &tx_id,
        Signed::Request {
            method: "POST",
            path: CALLBACK_PATH,
        },
        &body,
        sig,
        now.0 / Timestamp::MICROS_PER_SEC,
        st.config.connector_skew_secs,
    )
    .map_err(refused)?;
    let nonce = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("nonce").and_then(|n| n.as_str()).map(str::to_string))
        .ok_or_else(|| ApiError::field("nonce", "required", "the body must be {\"nonce\": …}"))?;
    let mut tx = st.db.begin().await?;
    if !ConnectorInstances::remember_nonce(&mut tx, i.id, &tx_id, now).await? {
        return Err(refused(proto::SignatureError::Replay(tx_id)));
    }
    let expected = ConnectorInstances::mark_callback(&mut tx, i.id, &nonce, now).await?;
    tx.commit().await?;
    // Old nonces can no longer pass the timestamp check; keep the table small.
    let _ = st
        .db
        .connector_instances()
        .forget_nonces_before(now.plus_secs(-2 * st.config.connector_skew_secs))
        .await;
    if !expected {
        return Err(ApiError::conflict(
            "no callback with this nonce was asked for",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WizardIn {
    pub name: String,
    pub endpoint: String,
    pub secret: String,
    pub cert_pin: Option<String>,
    pub timeout_ms: Option<i64>,
    /// Name of the service template (default: the connector's name).
    pub template_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WizardOut {
    pub instance: InstanceOut,
    pub resource_type_ids: BTreeMap<String, i64>,
    pub service_template_id: i64,
    /// The starter plan on the template: one monthly period, the template's default
    /// limits included, every price zero, unpublished until the seller sets prices.
    pub starter_plan_id: i64,
}

/// The wizard's first step, without writing anything: check the caller may add to
/// `owner`'s catalog, validate the connection data, and read the connector's
/// self-description (over the pinned TLS, signature verified, protocol checked). The
/// panel shows this before the seller confirms.
pub(crate) async fn wizard_describe(
    st: &AppState,
    auth: &Authed,
    owner: AccountId,
    body: &WizardIn,
) -> ApiResult<(NewInstance, proto::SelfDescription)> {
    owner_checked(st, auth, owner).await?;
    // Validate the connection data first, with a placeholder service.
    let probe = RegisterIn {
        service: "probe".into(),
        name: body.name.clone(),
        endpoint: body.endpoint.clone(),
        secret: body.secret.clone(),
        cert_pin: body.cert_pin.clone(),
        timeout_ms: body.timeout_ms,
    };
    let mut errs = ValidationErrors::new();
    let n = validate(&probe, &mut errs);
    errs.into_result()?;
    let temp = ConnectorInstance {
        id: 0,
        owner_account_id: owner,
        service: String::new(),
        name: n.name.clone(),
        endpoint: n.endpoint.clone(),
        secret: n.secret.clone(),
        cert_pin: n.cert_pin.clone(),
        timeout_ms: n.timeout_ms,
        last_check_at: None,
        last_check_ok: None,
        last_check_message: None,
        callback_nonce: None,
        callback_verified_at: None,
        usage_collected_on: None,
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
    };
    let d = client_for(st, &temp)?.describe().await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "connector_unreachable",
            "The connector could not be read",
        )
        .detail(e.to_string())
    })?;
    if d.protocol != proto::PROTOCOL_VERSION {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "connector_protocol",
            "Unsupported connector protocol",
        )
        .detail(format!(
            "the connector speaks protocol {}, Cascade {}",
            d.protocol,
            proto::PROTOCOL_VERSION
        )));
    }
    Ok((n, d))
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/connector-wizard", tag = "connectors", params(("id" = i64, Path)),
    request_body = WizardIn, responses((status = 201, body = WizardOut), ProblemResponses))]
pub(crate) async fn wizard(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<WizardIn>,
) -> ApiResult<(StatusCode, Json<WizardOut>)> {
    let owner = AccountId(id);
    let (mut n, d) = wizard_describe(&st, &auth, owner, &body).await?;
    n.service = d.service.clone();
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let i = ConnectorInstances::create(&mut tx, owner, &n, now).await?;
    let mut type_ids = BTreeMap::new();
    let mut template_resources = Vec::new();
    for rt in &d.resource_types {
        let input = ResourceTypeInput {
            code: rt.code.clone(),
            service: d.service.clone(),
            unit: rt.unit.clone(),
            kind: Default::default(),
            name: cascade_domain::catalog::text::LocalizedInput {
                default: "en".into(),
                values: BTreeMap::from([("en".to_string(), rt.name.clone())]),
            },
            description: None,
            category_id: None,
        };
        let own = ResourceCategories::of_owner_in(&mut tx, owner, &[]).await?;
        let data = input.validate(&own)?;
        let t = ResourceTypes::create(&mut tx, owner, &data, now).await?;
        type_ids.insert(rt.code.clone(), t.id.0);
        template_resources.push(TemplateResourceInput {
            resource_type_id: t.id.0,
            default_limit: rt.default_limit,
        });
    }
    let settings: BTreeMap<String, SettingInput> = d
        .settings
        .iter()
        .filter_map(|s| {
            s.default.clone().map(|v| {
                (
                    s.key.clone(),
                    SettingInput {
                        kind: s.kind.clone(),
                        value: v,
                    },
                )
            })
        })
        .collect();
    let tin = ServiceTemplateInput {
        name: body.template_name.clone().unwrap_or_else(|| d.name.clone()),
        resources: template_resources,
        settings,
    };
    let visible = ResourceTypes::visible_in(&mut tx, owner, &tin.referenced_types()).await?;
    let tdata = tin.validate(&visible)?;
    let template = ServiceTemplates::create(&mut tx, owner, &tdata, now).await?;
    let starter = cascade_domain::catalog::plan::PlanContent::starter(
        cascade_domain::catalog::text::Localized::new("en", &tin.name),
        &d.resource_types
            .iter()
            .map(|rt| cascade_domain::catalog::plan::StarterResource {
                uid: rt.code.clone(),
                resource_type_id: type_ids[&rt.code],
                included: rt.default_limit,
            })
            .collect::<Vec<_>>(),
    );
    starter.validate()?;
    let currency = st.db.accounts().get(owner).await?.currency;
    let plan = cascade_store::plans::Plans::create(
        &mut tx,
        owner,
        template.id.0,
        currency.code(),
        &starter,
        now,
    )
    .await?;
    emit(
        &mut tx,
        now,
        "plan.created",
        owner,
        &auth,
        "plan",
        plan.id,
        json!({"name": tin.name, "wizard": true}),
    )
    .await?;
    emit(&mut tx, now, "connector_instance.created", owner, &auth, "connector_instance", i.id,
        json!({"service": i.service, "endpoint": i.endpoint, "wizard": true, "service_template_id": template.id.0})).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(WizardOut {
            instance: i.into(),
            resource_type_ids: type_ids,
            service_template_id: template.id.0,
            starter_plan_id: plan.id,
        }),
    ))
}
