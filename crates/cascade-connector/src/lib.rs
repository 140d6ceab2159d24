//! Cascade's HTTPS client for service connectors (protocol: `docs/connector-protocol.md`).
//!
//! Choices:
//! - **`reqwest` on rustls** (ring provider; no OpenSSL, no native-tls), one client per
//!   connector instance because the trust decision is per instance.
//! - **Certificate pinning** for self-signed connectors: when the instance has a pin
//!   (hex SHA-256 of the server certificate's DER), a custom rustls verifier accepts
//!   exactly that certificate and nothing else; hostname and CA are not consulted
//!   (the pin is the stronger statement). The TLS handshake signature is still
//!   verified with the presented certificate's key, so a stolen certificate without
//!   its key does not pass. Without a pin, the usual web PKI roots apply.
//! - **Every request is signed** and **every answer's signature is checked**
//!   ([`cascade_domain::connector`]); an answer with a bad signature or out of the skew
//!   window is an error like a garbage body, never trusted.
//! - **Errors say whether retrying can help** ([`ConnectorError::is_retryable`]):
//!   unreachable, timeout, 5xx, garbage and bad signatures are transient (the
//!   connector may come back or be fixed); a 4xx or an operation the connector reports
//!   `failed` is a refusal.
//! - The secret is kept in a type whose `Debug` prints `***`.

use cascade_domain::clock::{Clock, Timestamp};
use cascade_domain::connector::{
    self as proto, H_INSTANCE, H_SIGNATURE, H_TIMESTAMP, H_TRANSACTION, OperationResult,
    OperationStatus, SelfDescription, Signed, UsageReport,
};
use reqwest::Method;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A connector secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Hex SHA-256 of a certificate's DER: the pin format.
pub fn cert_pin(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Whether `s` looks like a pin (64 hex digits).
pub fn is_valid_pin(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where and how to reach one connector instance.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub instance_id: i64,
    /// Base URL, e.g. `https://127.0.0.1:8443`.
    pub base_url: String,
    pub secret: Secret,
    pub cert_pin: Option<String>,
    pub timeout: Duration,
    pub skew_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error("connector unreachable: {0}")]
    Unreachable(String),
    #[error("connector timed out")]
    Timeout,
    #[error("connector answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("connector answered garbage: {0}")]
    Garbage(String),
    #[error("connector answer has a bad signature: {0}")]
    BadSignature(String),
    #[error("connector refused: {0}")]
    Refused(String),
    #[error("still pending at the connector")]
    Pending,
    #[error("connector configuration: {0}")]
    Config(String),
}

impl ConnectorError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectorError::Status { status, .. } => *status >= 500 || *status == 429,
            ConnectorError::Refused(_) | ConnectorError::Config(_) => false,
            _ => true,
        }
    }
}

#[derive(Debug)]
struct PinVerifier {
    pin: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if cert_pin(end_entity.as_ref()).eq_ignore_ascii_case(&self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "certificate does not match the pinned one".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A signed, verifying client for one instance.
#[derive(Clone)]
pub struct ConnectorClient {
    http: reqwest::Client,
    ep: Endpoint,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ConnectorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorClient")
            .field("endpoint", &self.ep)
            .finish()
    }
}

/// An answer: status, body, `Retry-After`.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<i64>,
}

impl ConnectorClient {
    pub fn new(ep: Endpoint, clock: Arc<dyn Clock>) -> Result<Self, ConnectorError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut b = reqwest::Client::builder()
            .timeout(ep.timeout)
            .connect_timeout(ep.timeout)
            .pool_max_idle_per_host(8);
        if let Some(pin) = &ep.cert_pin {
            if !is_valid_pin(pin) {
                return Err(ConnectorError::Config(
                    "certificate pin must be 64 hex digits (SHA-256 of the DER)".into(),
                ));
            }
            let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| ConnectorError::Config(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier {
                    pin: pin.clone(),
                    provider,
                }))
                .with_no_client_auth();
            b = b.use_preconfigured_tls(tls);
        }
        let http = b
            .build()
            .map_err(|e| ConnectorError::Config(e.to_string()))?;
        Ok(Self { http, ep, clock })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// Send one signed request and verify the signed answer. `transaction` is the
    /// idempotency key: the same id must have the same effect at the connector.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        transaction: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, ConnectorError> {
        let now = self.clock.now().0 / Timestamp::MICROS_PER_SEC;
        let body = body.unwrap_or_default();
        let sig = proto::sign(
            self.ep.secret.0.as_bytes(),
            now,
            transaction,
            Signed::Request {
                method: method.as_str(),
                path,
            },
            body,
        );
        let url = format!("{}{}", self.ep.base_url.trim_end_matches('/'), path);
        let res = self
            .http
            .request(method, &url)
            .header(H_INSTANCE, self.ep.instance_id.to_string())
            .header(H_TRANSACTION, transaction)
            .header(H_TIMESTAMP, now.to_string())
            .header(H_SIGNATURE, sig)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ConnectorError::Timeout
                } else {
                    ConnectorError::Unreachable(error_chain(&e))
                }
            })?;
        let status = res.status().as_u16();
        let header = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after").and_then(|v| v.parse().ok());
        let ts = header(H_TIMESTAMP);
        let sig = header(H_SIGNATURE);
        let body = res.bytes().await.map_err(|e| {
            if e.is_timeout() {
                ConnectorError::Timeout
            } else {
                ConnectorError::Unreachable(error_chain(&e))
            }
        })?;
        let (Some(ts), Some(sig)) = (ts, sig) else {
            return Err(ConnectorError::BadSignature(
                "answer is not signed".to_string(),
            ));
        };
        let ts: i64 = ts
            .parse()
            .map_err(|_| ConnectorError::BadSignature("malformed timestamp".into()))?;
        let now = self.clock.now().0 / Timestamp::MICROS_PER_SEC;
        proto::verify(
            self.ep.secret.0.as_bytes(),
            ts,
            transaction,
            Signed::Response { status },
            &body,
            &sig,
            now,
            self.ep.skew_secs,
        )
        .map_err(|e| ConnectorError::BadSignature(e.to_string()))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<proto::ErrorBody>(&body)
                .map(|b| b.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(ConnectorError::Status { status, message });
        }
        Ok(Answer {
            status,
            body: body.to_vec(),
            retry_after,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        transaction: &str,
        body: Option<&[u8]>,
    ) -> Result<(T, Answer), ConnectorError> {
        let a = self.call(method, path, transaction, body).await?;
        let v =
            serde_json::from_slice(&a.body).map_err(|e| ConnectorError::Garbage(e.to_string()))?;
        Ok((v, a))
    }

    /// `GET /describe`.
    pub async fn describe(&self) -> Result<SelfDescription, ConnectorError> {
        let tx = uuid::Uuid::new_v4().to_string();
        let (d, _) = self
            .json::<SelfDescription>(Method::GET, "/describe", &tx, None)
            .await?;
        Ok(d)
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<(), ConnectorError> {
        let tx = uuid::Uuid::new_v4().to_string();
        self.call(Method::GET, "/health", &tx, None)
            .await
            .map(|_| ())
    }

    /// `POST /callback-check`: ask the connector to call Cascade back.
    pub async fn request_callback(
        &self,
        callback_url: &str,
        nonce: &str,
    ) -> Result<(), ConnectorError> {
        let body = serde_json::json!({"callback_url": callback_url, "nonce": nonce});
        let body = serde_json::to_vec(&body).map_err(|e| ConnectorError::Config(e.to_string()))?;
        self.call(Method::POST, "/callback-check", nonce, Some(&body))
            .await
            .map(|_| ())
    }

    /// An operation (`POST /resources`, `PUT`/`DELETE /resources/{id}`), following the
    /// async path: on `pending`, poll `GET /transactions/{tx}` after `Retry-After`
    /// until done or failed, at most `max_wait`; then [`ConnectorError::Pending`]
    /// (the caller retries later with the same transaction id).
    pub async fn operate<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        transaction: &str,
        body: Option<&B>,
        max_wait: Duration,
    ) -> Result<OperationResult, ConnectorError> {
        let bytes = match body {
            Some(b) => {
                Some(serde_json::to_vec(b).map_err(|e| ConnectorError::Config(e.to_string()))?)
            }
            None => None,
        };
        let (mut r, mut a) = self
            .json::<OperationResult>(method, path, transaction, bytes.as_deref())
            .await?;
        let started = tokio::time::Instant::now();
        loop {
            match r.status {
                OperationStatus::Done => return Ok(r),
                OperationStatus::Failed => {
                    return Err(ConnectorError::Refused(
                        r.message
                            .unwrap_or_else(|| "failed without a message".into()),
                    ));
                }
                OperationStatus::Pending => {
                    let delay = Duration::from_secs(proto::poll_delay_secs(a.retry_after) as u64);
                    if started.elapsed() + delay > max_wait {
                        return Err(ConnectorError::Pending);
                    }
                    tokio::time::sleep(delay).await;
                    (r, a) = self
                        .json(
                            Method::GET,
                            &format!("/transactions/{transaction}"),
                            transaction,
                            None,
                        )
                        .await?;
                }
            }
        }
    }

    /// `GET /usage?date=…`.
    pub async fn usage(&self, date: &str) -> Result<UsageReport, ConnectorError> {
        let tx = uuid::Uuid::new_v4().to_string();
        let (u, _) = self
            .json::<UsageReport>(Method::GET, &format!("/usage?date={date}"), &tx, None)
            .await?;
        Ok(u)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub use reqwest::Method as HttpMethod;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let ep = Endpoint {
            instance_id: 1,
            base_url: "https://x".into(),
            secret: Secret("hunter2".into()),
            cert_pin: None,
            timeout: Duration::from_secs(1),
            skew_secs: 300,
        };
        assert!(!format!("{ep:?}").contains("hunter2"));
    }

    #[test]
    fn pins() {
        assert!(is_valid_pin(&cert_pin(b"abc")));
        assert!(!is_valid_pin("abc"));
    }

    #[test]
    fn retryable_classes() {
        assert!(ConnectorError::Timeout.is_retryable());
        assert!(
            ConnectorError::Status {
                status: 500,
                message: String::new()
            }
            .is_retryable()
        );
        assert!(
            !ConnectorError::Status {
                status: 400,
                message: String::new()
            }
            .is_retryable()
        );
        assert!(!ConnectorError::Refused("no".into()).is_retryable());
        assert!(ConnectorError::Garbage("x".into()).is_retryable());
        assert!(ConnectorError::BadSignature("x".into()).is_retryable());
    }
}
