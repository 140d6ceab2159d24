//! The connector protocol's pure parts (spec: `docs/connector-protocol.md`).
//!
//! A connector is a third party's HTTPS service that provisions resources for Cascade.
//! Everything here is deterministic: the signature of a message given its bytes, secret
//! and time; the clock-skew rule; the JSON bodies both sides exchange; and how usage
//! readings turn into billable quantities. The HTTP client lives in
//! `cascade-connector`, the reference server in `cascade-mail-connector`.
//!
//! Choices:
//! - **HMAC-SHA256** (`hmac` + `sha2`, RustCrypto) over
//!   `timestamp "." transaction "." method " " path "\n" body` for requests and
//!   `timestamp "." transaction "." status "\n" body` for responses. Binding the method,
//!   path and transaction id (not only the body) means a captured signature cannot be
//!   replayed against another endpoint or as another transaction; binding the status
//!   means a "failed" answer cannot be turned into a "done" one.
//! - **Hex, lower case**, prefixed `v1=` so the scheme can change without a flag day.
//! - **Verification is constant-time** (`Mac::verify_slice`).
//! - **Skew**: a message whose timestamp is more than `skew_secs` away from the
//!   receiver's clock (either direction) is refused; the two clocks must agree
//!   (NTP). Replays *within* the window are caught by remembering seen transaction ids.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;

/// Header names of the protocol.
pub const H_INSTANCE: &str = "x-cascade-instance";
pub const H_TRANSACTION: &str = "x-cascade-transaction";
pub const H_TIMESTAMP: &str = "x-cascade-timestamp";
pub const H_SIGNATURE: &str = "x-cascade-signature";
/// The protocol version this code speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Default tolerated clock skew, seconds.
pub const DEFAULT_SKEW_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub enum Signed<'a> {
    /// A request: method and path (with query) as sent.
    Request { method: &'a str, path: &'a str },
    /// A response: its HTTP status.
    Response { status: u16 },
}

fn mac(
    secret: &[u8],
    timestamp: i64,
    transaction: &str,
    what: Signed<'_>,
    body: &[u8],
) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(transaction.as_bytes());
    m.update(b".");
    match what {
        Signed::Request { method, path } => {
            m.update(method.to_ascii_uppercase().as_bytes());
            m.update(b" ");
            m.update(path.as_bytes());
        }
        Signed::Response { status } => m.update(status.to_string().as_bytes()),
    }
    m.update(b"\n");
    m.update(body);
    m
}

/// The `x-cascade-signature` value of a message.
pub fn sign(
    secret: &[u8],
    timestamp: i64,
    transaction: &str,
    what: Signed<'_>,
    body: &[u8],
) -> String {
    let tag = mac(secret, timestamp, transaction, what, body)
        .finalize()
        .into_bytes();
    format!("v1={}", hex::encode(tag))
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
    #[error(
        "timestamp {timestamp} is {off} s away from now; more than the allowed {skew} s (clocks must agree)"
    )]
    Skew { timestamp: i64, off: i64, skew: i64 },
    #[error("signature does not match")]
    Mismatch,
    #[error("transaction {0} was already seen (replay)")]
    Replay(String),
}

/// Whether `timestamp` (seconds) is within `skew_secs` of `now_secs`.
pub fn check_skew(timestamp: i64, now_secs: i64, skew_secs: i64) -> Result<(), SignatureError> {
    let off = (now_secs - timestamp).abs();
    if off > skew_secs {
        return Err(SignatureError::Skew {
            timestamp,
            off,
            skew: skew_secs,
        });
    }
    Ok(())
}

/// Verify a signature header value and the skew. Constant-time comparison.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    secret: &[u8],
    timestamp: i64,
    transaction: &str,
    what: Signed<'_>,
    body: &[u8],
    signature: &str,
    now_secs: i64,
    skew_secs: i64,
) -> Result<(), SignatureError> {
    check_skew(timestamp, now_secs, skew_secs)?;
    let hexed = signature
        .strip_prefix("v1=")
        .ok_or(SignatureError::Malformed(H_SIGNATURE))?;
    let tag = hex::decode(hexed).map_err(|_| SignatureError::Malformed(H_SIGNATURE))?;
    mac(secret, timestamp, transaction, what, body)
        .verify_slice(&tag)
        .map_err(|_| SignatureError::Mismatch)
}

/// One resource type a connector offers (self-description).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedResourceType {
    /// Stable code, e.g. `mailbox`; becomes the resource type's code.
    pub code: String,
    pub name: String,
    pub unit: String,
    /// Whether usage of it is reported (`GET /usage`).
    #[serde(default)]
    pub measurable: bool,
    /// For measurable types: how usage is reported.
    #[serde(default)]
    pub usage: Option<UsageKind>,
    /// Limit a starter plan includes.
    #[serde(default)]
    pub default_limit: i64,
}

/// One provisioning setting a connector accepts (self-description).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingSchema {
    pub key: String,
    /// `string`, `integer` or `boolean`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `GET /describe`: what the connector is and offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfDescription {
    pub protocol: u32,
    /// The service name resource types are tied to, e.g. `mail`.
    pub service: String,
    pub name: String,
    pub resource_types: Vec<OfferedResourceType>,
    #[serde(default)]
    pub settings: Vec<SettingSchema>,
}

/// The customer a resource is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: i64,
    pub name: String,
}

/// Resource state set by Cascade (`PUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    #[default]
    Active,
    Suspended,
}

/// `POST /resources` and `PUT /resources/{id}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRequest {
    /// Cascade's id for the resource (stable per subscription and service).
    pub resource_id: String,
    pub customer: Customer,
    /// Limits per resource type code.
    pub limits: BTreeMap<String, i64>,
    /// Effective provisioning settings (template overridden down the reseller chain).
    pub settings: serde_json::Value,
    #[serde(default)]
    pub state: ResourceState,
}

/// Status of a connector operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Accepted; poll `GET /transactions/{id}` after `Retry-After` seconds.
    Pending,
    Done,
    Failed,
}

/// Answer of POST/PUT/DELETE and of `GET /transactions/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationResult {
    pub status: OperationStatus,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub resource: Option<serde_json::Value>,
}

/// An error body of a connector (non-2xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// How a measurable resource type's usage is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageKind {
    /// A monotonically growing counter since provisioning (e.g. messages sent);
    /// the billable quantity of a day is the growth over the previous reading.
    Counter,
    /// A level at the time of reading (e.g. storage used); billed as is.
    Level,
}

/// One reading of `GET /usage?date=YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReading {
    pub resource_id: String,
    pub resource_type: String,
    pub kind: UsageKind,
    pub value: i64,
}

/// `GET /usage` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    pub date: String,
    pub readings: Vec<UsageReading>,
}

/// The billable quantity of a reading given the previous reading of the same
/// (resource, type): counters accumulate (growth since the last reading; a counter
/// that went down was reset, so its whole value is growth), levels are taken as is.
/// Negative values are never billable.
pub fn billable_quantity(kind: UsageKind, value: i64, previous: Option<i64>) -> i64 {
    let value = value.max(0);
    match kind {
        UsageKind::Level => value,
        UsageKind::Counter => match previous {
            Some(p) if p <= value => value - p,
            _ => value,
        },
    }
}

/// Cascade's resource id for a subscription's service at a connector.
pub fn resource_id(subscription_id: i64) -> String {
    format!("sub-{subscription_id}")
}

/// The subscription of a resource id made by [`resource_id`].
pub fn subscription_of(resource_id: &str) -> Option<i64> {
    resource_id.strip_prefix("sub-")?.parse().ok()
}

/// Back-off before the next poll: the connector's `Retry-After`, clamped to 1..=60 s.
pub fn poll_delay_secs(retry_after: Option<i64>) -> i64 {
    retry_after.unwrap_or(1).clamp(1, 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: Signed<'static> = Signed::Request {
        method: "POST",
        path: "/resources",
    };

    #[test]
    fn signature_round_trip_and_tamper() {
        let s = sign(b"secret", 1000, "tx-1", REQ, b"{}");
        assert!(s.starts_with("v1=") && s.len() == 3 + 64);
        assert_eq!(
            verify(b"secret", 1000, "tx-1", REQ, b"{}", &s, 1000, 300),
            Ok(())
        );
        // Any change of body, secret, transaction, path, timestamp breaks it.
        assert_eq!(
            verify(b"secret", 1000, "tx-1", REQ, b"{ }", &s, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", 1000, "tx-1", REQ, b"{}", &s, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", 1000, "tx-2", REQ, b"{}", &s, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        let other = Signed::Request {
            method: "DELETE",
            path: "/resources",
        };
        assert_eq!(
            verify(b"secret", 1000, "tx-1", other, b"{}", &s, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", 1001, "tx-1", REQ, b"{}", &s, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", 1000, "tx-1", REQ, b"{}", "deadbeef", 1000, 300),
            Err(SignatureError::Malformed(H_SIGNATURE))
        );
        // Responses bind the status.
        let r = sign(b"k", 5, "t", Signed::Response { status: 200 }, b"x");
        assert_eq!(
            verify(
                b"k",
                5,
                "t",
                Signed::Response { status: 500 },
                b"x",
                &r,
                5,
                300
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256(key="key", "0.t.GET /\n") — fixed so third parties can check theirs.
        let s = sign(
            b"key",
            0,
            "t",
            Signed::Request {
                method: "get",
                path: "/",
            },
            b"",
        );
        let again = sign(
            b"key",
            0,
            "t",
            Signed::Request {
                method: "GET",
                path: "/",
            },
            b"",
        );
        assert_eq!(s, again);
        assert_eq!(s.len(), 67);
    }

    #[test]
    fn skew_in_both_directions() {
        assert!(check_skew(1000, 1300, 300).is_ok());
        assert!(check_skew(1300, 1000, 300).is_ok());
        assert!(matches!(
            check_skew(1000, 1301, 300),
            Err(SignatureError::Skew { off: 301, .. })
        ));
        assert!(matches!(
            check_skew(1301, 1000, 300),
            Err(SignatureError::Skew { .. })
        ));
        let s = sign(b"k", 1000, "t", REQ, b"");
        assert!(matches!(
            verify(b"k", 1000, "t", REQ, b"", &s, 2000, 300),
            Err(SignatureError::Skew { .. })
        ));
    }

    #[test]
    fn usage_rules() {
        assert_eq!(billable_quantity(UsageKind::Level, 7, Some(100)), 7);
        assert_eq!(billable_quantity(UsageKind::Counter, 7, None), 7);
        assert_eq!(billable_quantity(UsageKind::Counter, 10, Some(7)), 3);
        assert_eq!(
            billable_quantity(UsageKind::Counter, 2, Some(7)),
            2,
            "reset counter"
        );
        assert_eq!(billable_quantity(UsageKind::Level, -3, None), 0);
    }

    #[test]
    fn ids_and_delays() {
        assert_eq!(resource_id(42), "sub-42");
        assert_eq!(subscription_of("sub-42"), Some(42));
        assert_eq!(subscription_of("x-42"), None);
        assert_eq!(poll_delay_secs(None), 1);
        assert_eq!(poll_delay_secs(Some(0)), 1);
        assert_eq!(poll_delay_secs(Some(600)), 60);
    }

    #[test]
    fn protocol_json_shapes() {
        let d: SelfDescription = serde_json::from_str(
            r#"{"protocol":1,"service":"mail","name":"Mail","resource_types":[{"code":"mailbox","name":"Mailbox","unit":"unit","measurable":true,"usage":"level","default_limit":5}],"settings":[{"key":"domain","type":"string","required":true}]}"#,
        )
        .unwrap();
        assert_eq!(d.resource_types[0].usage, Some(UsageKind::Level));
        assert_eq!(d.settings[0].kind, "string");
        let r: OperationResult = serde_json::from_str(r#"{"status":"pending"}"#).unwrap();
        assert_eq!(r.status, OperationStatus::Pending);
    }
}
