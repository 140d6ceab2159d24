//! Request extractors that turn every malformed input into a problem document naming
//! the field: bodies are parsed with `serde_path_to_error`, so a wrong type three levels
//! deep is reported as `contact.email`, not as "invalid JSON".

use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use base64::Engine;
use bytes::Bytes;
use cascade_domain::FieldError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|mt| mt == "application/json" || mt == "application/merge-patch+json");
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            )
            .detail("send the body as application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "Request body too large",
                )
                .detail(e.body_text())
            } else {
                ApiError::bad_request("unreadable_body", e.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." { String::new() } else { path };
        let (code, status) = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ("malformed_json", StatusCode::BAD_REQUEST)
            }
            _ => ("invalid_field", StatusCode::UNPROCESSABLE_ENTITY),
        };
        let message = strip_position(&inner.to_string());
        if status == StatusCode::BAD_REQUEST {
            return ApiError::bad_request(code, format!("the body is not valid JSON: {message}"));
        }
        // serde reports a missing field at its parent's path: name the field itself.
        let (field, code) = match missing_field(&message) {
            Some(name) if field.is_empty() => (name.to_string(), "required"),
            Some(name) => (format!("{field}.{name}"), "required"),
            None => (field, code),
        };
        let mut err: ApiError = FieldError::new(field, code, message).into();
        err.code = "validation_failed";
        err
    })?;
    // Anything after the JSON value makes the whole body invalid.
    de.end().map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!(
                "the body is not valid JSON: {}",
                strip_position(&e.to_string())
            ),
        )
    })?;
    Ok(value)
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Query string parameters, with errors as problems.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_compat(q).map(ApiQuery)
    }
}

fn serde_urlencoded_compat<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    // axum's Query uses serde_urlencoded; reuse it through axum to avoid another dependency.
    let uri: axum::http::Uri = format!("/?{q}")
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_query", "malformed query string"))?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| {
            let mut err: ApiError = FieldError::new("query", "invalid_query", e.body_text()).into();
            err.code = "validation_failed";
            err
        })
}

/// The socket address of the client, when the server was started with connect info.
pub struct PeerAddr(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// Cursor pagination parameters shared by every list.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct PageParams {
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::field(
                "limit",
                "out_of_range",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            )),
        }
    }
    pub fn after(&self) -> Result<Option<i64>, ApiError> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

pub fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("c1:{id}"))
}

pub fn decode_cursor(c: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::field(
            "cursor",
            "invalid_cursor",
            "the cursor is not one this API returned",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    s.strip_prefix("c1:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageOut<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> PageOut<T> {
    pub fn new(items: Vec<T>, next: Option<i64>) -> Self {
        Self {
            items,
            next_cursor: next.map(encode_cursor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("nope").is_err());
        assert!(
            decode_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("x:1")).is_err()
        );
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: i64,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Outer>(br#"{"inner": {"n": "x"}}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.errors[0].field, "inner.n");
        let e = parse_json::<Outer>(br#"{"inner": "#).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
        let e = parse_json::<Outer>(br#"{}"#).unwrap_err();
        assert_eq!(
            (e.errors[0].field.as_str(), e.errors[0].code),
            ("inner", "required")
        );
        let e = parse_json::<Outer>(br#"{"inner": {}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "inner.n");
        let e = parse_json::<Outer>(br#"{"inner": {"n": 1}} trailing"#).unwrap_err();
        assert_eq!(e.code, "malformed_json");
    }
}
