//! Cross-cutting request handling: idempotency keys and metrics.

use crate::auth::authenticate;
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cascade_store::idempotency::Reservation;
use sha2::{Digest, Sha256};
use std::time::Instant;

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// `Idempotency-Key` on POST: the first request with a key runs and its response is
/// stored; a repeat with the same body gets the stored response (marked
/// `Idempotency-Replayed: true`), with a different body a 422, and while the first is
/// still running a 409. Keys are per user and kept 24 hours. Server errors are not
/// stored, so a request that failed that way can be retried with the same key.
pub async fn idempotency(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(IDEMPOTENCY_HEADER) {
        return next.run(req).await;
    }
    match idempotent(st, req, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn idempotent(st: AppState, req: Request, next: Next) -> Result<Response, ApiError> {
    let key = req
        .headers()
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?;
    let Some(auth) = authenticate(&st, req.headers()).await? else {
        // Unauthenticated requests are refused by the handler anyway.
        return Ok(next.run(req).await);
    };
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, st.config.body_limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Request body too large",
            )
            .detail(format!("the limit is {} bytes", st.config.body_limit))
        })?;
    let path = parts.uri.path().to_string();
    let mut h = Sha256::new();
    h.update(parts.method.as_str());
    h.update([0]);
    h.update(&path);
    h.update([0]);
    h.update(&bytes);
    let hash = hex::encode(h.finalize());
    let now = st.clock.now();
    match st
        .db
        .idempotency()
        .reserve(
            auth.actor.user_id,
            &key,
            parts.method.as_str(),
            &path,
            &hash,
            now,
        )
        .await?
    {
        Reservation::Existing(rec) => {
            if rec.request_hash != hash {
                return Err(ApiError::field(
                    "Idempotency-Key",
                    "idempotency_key_reused",
                    "this key was used with a different request",
                ));
            }
            let (Some(status), Some(body)) = (rec.status_code, rec.response_body) else {
                return Err(ApiError::conflict(
                    "a request with this Idempotency-Key is still being processed",
                ));
            };
            let mut res = Response::new(Body::from(body));
            *res.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
            if let Some(ct) = rec
                .response_content_type
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                res.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            res.headers_mut()
                .insert("idempotency-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
        Reservation::Reserved(id) => {
            let mut req = Request::from_parts(parts, Body::from(bytes));
            req.extensions_mut().insert(auth);
            let res = next.run(req).await;
            if res.status().is_server_error() {
                st.db.idempotency().release(id).await?;
                return Ok(res);
            }
            let (parts, body) = res.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(|_| ApiError::internal())?;
            let ct = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            st.db
                .idempotency()
                .complete(
                    id,
                    i32::from(parts.status.as_u16()),
                    &String::from_utf8_lossy(&bytes),
                    ct,
                )
                .await?;
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
    }
}

/// Prometheus metrics per route template and status.
pub async fn metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    // Every request counts in the load the daily billing run paces itself by; mutating
    // ones also make it wait before its next write.
    let _load = cascade_store::billing_batch::request();
    let _gate = (!req.method().is_safe()).then(cascade_store::billing_batch::interactive);
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("cascade_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("cascade_http_request_duration_seconds", "method" => method, "route" => route).record(start.elapsed().as_secs_f64());
    res
}
