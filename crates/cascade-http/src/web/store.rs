//! The public online store, one per seller at `/store/{seller}`.

use crate::state::AppState;
use axum::Router;
use std::io::Write;
use std::sync::Mutex;

pub fn routes() -> Router<AppState> {
    Router::new()
}

/// Store logging settings (`panels.store_log.*`).
#[derive(Debug, Clone)]
pub struct StoreLogConfig {
    pub enabled: bool,
    /// `error`, `warn`, `info` or `debug`: the least severe level written.
    pub level: String,
    /// Append to this file (none: only the process log).
    pub file: Option<String>,
    /// `text` or `json`.
    pub format: String,
    /// Also send each record as an RFC 5424 syslog datagram over UDP to `host:port`.
    pub syslog: Option<String>,
}

impl Default for StoreLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            level: "info".into(),
            file: None,
            format: "text".into(),
            syslog: None,
        }
    }
}

fn rank(level: &str) -> u8 {
    match level {
        "error" => 0,
        "warn" => 1,
        "info" => 2,
        _ => 3,
    }
}

/// The store's activity log: visits that matter (sign-ups, orders, payments, searches),
/// written where the configuration says, in the configured format.
pub struct StoreLog {
    config: StoreLogConfig,
    file: Option<Mutex<std::fs::File>>,
    syslog: Option<std::net::UdpSocket>,
}

impl StoreLog {
    pub fn new(config: &StoreLogConfig) -> Self {
        let file = config
            .file
            .as_ref()
            .filter(|_| config.enabled)
            .and_then(|path| {
                match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    Ok(f) => Some(Mutex::new(f)),
                    Err(e) => {
                        tracing::warn!(error = %e, path, "cannot open the store log file");
                        None
                    }
                }
            });
        let syslog = config
            .syslog
            .as_ref()
            .filter(|_| config.enabled)
            .and_then(|addr| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
                s.connect(addr).ok()?;
                Some(s)
            });
        Self {
            config: config.clone(),
            file,
            syslog,
        }
    }

    /// One record: `event` with key/value fields, if `level` passes the threshold.
    pub fn log(
        &self,
        now: cascade_domain::clock::Timestamp,
        level: &str,
        seller: i64,
        event: &str,
        fields: &[(&str, String)],
    ) {
        if !self.config.enabled || rank(level) > rank(&self.config.level) {
            return;
        }
        let now = crate::api::iso(now);
        let line = if self.config.format == "json" {
            let mut m = serde_json::Map::new();
            m.insert("ts".into(), now.clone().into());
            m.insert("level".into(), level.into());
            m.insert("seller".into(), seller.into());
            m.insert("event".into(), event.into());
            for (k, v) in fields {
                m.insert((*k).into(), v.clone().into());
            }
            serde_json::Value::Object(m).to_string()
        } else {
            let mut s = format!("{now} {level} seller={seller} event={event}");
            for (k, v) in fields {
                s.push_str(&format!(" {k}={v:?}"));
            }
            s
        };
        tracing::info!(target: "cascade::store", seller, event, "{line}");
        if let Some(f) = &self.file
            && let Ok(mut f) = f.lock()
        {
            let _ = writeln!(f, "{line}");
        }
        if let Some(s) = &self.syslog {
            // RFC 5424: facility local0 (16), severity from the level.
            let sev = match level {
                "error" => 3,
                "warn" => 4,
                "info" => 6,
                _ => 7,
            };
            let msg = format!(
                "<{}>1 {now} - cascade-store - {event} - {line}",
                16 * 8 + sev
            );
            let _ = s.send(msg.as_bytes());
        }
    }
}
