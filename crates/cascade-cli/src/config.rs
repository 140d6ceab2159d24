//! Configuration: defaults, then a TOML file, then `CASCADE_…` environment variables,
//! then command-line flags (each overriding the one before). `figment` merges the
//! sources and reports which one a bad value came from.
//!
//! Nested keys use a double underscore in the environment:
//! `CASCADE_HTTP__BODY_LIMIT_BYTES=2097152` sets `http.body_limit_bytes`.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://path/to/file.db` or `postgres://user:password@host/db`. Kept as a secret:
    /// it may hold a password, so `Debug` and logs never show it.
    #[serde(serialize_with = "ser_secret")]
    pub database_url: SecretString,
    /// Address the HTTP server listens on.
    pub listen: String,
    /// Where the embedded SQLite database and other local data live.
    pub data_dir: PathBuf,
    /// `text` or `json`.
    pub log_format: String,
    /// A `tracing` filter, e.g. `info` or `cascade=debug,sqlx=warn`; `RUST_LOG` overrides it.
    pub log_level: String,
    pub http: HttpSection,
    pub worker: WorkerSection,
    pub smtp: SmtpSection,
    pub panels: PanelsSection,
}

fn ser_opt_secret<S: serde::Serializer>(
    s: &Option<SecretString>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

/// Outgoing mail. Without `host`, nothing is sent: messages stay in the outbox (visible
/// through `GET /api/v1/accounts/{id}/outbox`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSection {
    pub host: Option<String>,
    /// Default 25 (plain), 587 (`starttls`) or 465 (`tls`).
    pub port: Option<u16>,
    /// The sender, e.g. `Cascade <noreply@example.com>`.
    pub from: Option<String>,
    /// `none` (plain SMTP: localhost only), `starttls` or `tls`.
    pub tls: Option<String>,
    pub username: Option<String>,
    /// Kept as a secret: never in `Debug` output or logs.
    #[serde(serialize_with = "ser_opt_secret")]
    pub password: Option<SecretString>,
    pub timeout_secs: Option<u64>,
}

impl SmtpSection {
    /// The worker's SMTP settings, `None` when no host is configured.
    pub fn settings(&self) -> anyhow::Result<Option<cascade_worker::notify::SmtpSettings>> {
        use cascade_worker::notify::{SmtpSettings, SmtpTls};
        let Some(host) = self.host.clone().filter(|h| !h.trim().is_empty()) else {
            return Ok(None);
        };
        let tls = match self.tls.as_deref().unwrap_or("none") {
            "none" => SmtpTls::None,
            "starttls" => SmtpTls::Starttls,
            "tls" => SmtpTls::Tls,
            other => anyhow::bail!("smtp.tls must be none, starttls or tls, not `{other}`"),
        };
        let port = self.port.unwrap_or(match tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        });
        let from = self
            .from
            .clone()
            .ok_or_else(|| anyhow::anyhow!("smtp.from is required when smtp.host is set"))?;
        Ok(Some(SmtpSettings {
            host,
            port,
            from,
            tls,
            username: self.username.clone(),
            password: self.password.clone(),
            timeout_secs: self.timeout_secs.unwrap_or(10),
        }))
    }

    /// The mailer for the worker's notification handlers (`None`: keep in the outbox).
    pub fn mailer(&self) -> anyhow::Result<Option<std::sync::Arc<cascade_worker::notify::Mailer>>> {
        match self.settings()? {
            Some(s) => Ok(Some(std::sync::Arc::new(
                cascade_worker::notify::Mailer::new(&s).map_err(anyhow::Error::msg)?,
            ))),
            None => Ok(None),
        }
    }

    /// The built-in task handlers with this mail configuration.
    pub fn registry(&self) -> anyhow::Result<cascade_worker::Registry> {
        let mut r = cascade_worker::Registry::with_builtin();
        cascade_worker::notify::register(&mut r, self.mailer()?);
        Ok(r)
    }
}

/// The web panels and the online store.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PanelsSection {
    /// Help menu links (a link is hidden while empty).
    pub help_tickets_url: String,
    pub help_qa_url: String,
    pub help_docs_url: String,
    /// Help menu: support contact shown as text (address, phone).
    pub support_contact: String,
    /// Key of the CSRF token HMAC; random per process when empty. Set it when several
    /// `serve` processes share users.
    pub csrf_key: String,
    pub store_log: StoreLogSection,
}

/// Store logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreLogSection {
    pub enabled: bool,
    /// `error`, `warn`, `info` or `debug`.
    pub level: String,
    /// Append records to this file; empty: the process log only.
    pub file: String,
    /// `text` or `json`.
    pub format: String,
    /// `host:port` of a remote syslog (RFC 5424 over UDP); empty: none.
    pub syslog: String,
}

impl Default for StoreLogSection {
    fn default() -> Self {
        Self {
            enabled: true,
            level: "info".into(),
            file: String::new(),
            format: "text".into(),
            syslog: String::new(),
        }
    }
}

fn ser_secret<S: serde::Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    pub body_limit_bytes: usize,
    /// Mark session cookies `Secure` (set when served over TLS, e.g. behind a proxy).
    pub secure_cookies: bool,
    pub session_ttl_secs: i64,
    pub login_max_failures: u32,
    pub login_window_secs: i64,
    /// `none` (card payments refused) or `test` (the deterministic test gateway:
    /// never for real money). The demo uses `test`.
    pub card_gateway: String,
    /// How long a resolved session may be served from the in-process cache (ms; 0 = off).
    pub auth_cache_ttl_ms: u64,
    /// How long the panels' catalog reads may be cached in-process (ms; 0 = off).
    pub catalog_cache_ttl_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSection {
    /// Run the task worker inside `cascade serve`.
    pub in_process: bool,
    pub batch: i64,
    pub poll_interval_ms: u64,
    /// Events and tasks that finished more than this many days ago are deleted daily.
    pub cleanup_retention_days: i64,
    /// Rows deleted per cleanup transaction.
    pub cleanup_batch: i64,
    /// Run the daily billing run inside the worker, once per UTC day.
    pub daily_billing: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: SecretString::from("sqlite://cascade-data/cascade.db"),
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("cascade-data"),
            log_format: "text".into(),
            log_level: "info".into(),
            http: HttpSection::default(),
            worker: WorkerSection::default(),
            smtp: SmtpSection::default(),
            panels: PanelsSection::default(),
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        let d = cascade_http::HttpConfig::default();
        Self {
            body_limit_bytes: d.body_limit,
            secure_cookies: d.secure_cookies,
            session_ttl_secs: d.session_ttl_secs,
            login_max_failures: d.login_max_failures,
            login_window_secs: d.login_window_secs,
            card_gateway: "none".into(),
            auth_cache_ttl_ms: d.auth_cache_ttl_ms,
            catalog_cache_ttl_ms: d.catalog_cache_ttl_ms,
        }
    }
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self {
            in_process: true,
            batch: 32,
            poll_interval_ms: 500,
            cleanup_retention_days: 90,
            cleanup_batch: 1000,
            daily_billing: true,
        }
    }
}

impl Config {
    /// Load from `file` (if given, it must exist; else `cascade.toml` if present) and the
    /// environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) => {
                anyhow::ensure!(
                    f.exists(),
                    "configuration file {} does not exist",
                    f.display()
                );
                fig = fig.merge(Toml::file(f));
            }
            None if Path::new("cascade.toml").exists() => {
                fig = fig.merge(Toml::file("cascade.toml"))
            }
            None => {}
        }
        // Only the configuration's own keys: other `CASCADE_…` variables (the admin
        // password, test and bench URLs) belong to commands, not to this file.
        const KEYS: [&str; 8] = [
            "database_url",
            "listen",
            "data_dir",
            "log_format",
            "log_level",
            "http__",
            "worker__",
            "smtp__",
        ];
        fig = fig.merge(
            Env::prefixed("CASCADE_")
                .filter(|k| {
                    KEYS.iter()
                        .any(|p| k.as_str().to_ascii_lowercase().starts_with(p))
                })
                .split("__"),
        );
        Ok(fig.extract()?)
    }

    pub fn http(&self) -> cascade_http::HttpConfig {
        cascade_http::HttpConfig {
            body_limit: self.http.body_limit_bytes,
            secure_cookies: self.http.secure_cookies,
            session_ttl_secs: self.http.session_ttl_secs,
            login_max_failures: self.http.login_max_failures,
            login_window_secs: self.http.login_window_secs,
            card_gateway: self.http.card_gateway.clone(),
            auth_cache_ttl_ms: self.http.auth_cache_ttl_ms,
            catalog_cache_ttl_ms: self.http.catalog_cache_ttl_ms,
            ..Default::default()
        }
    }

    pub fn panels(&self) -> cascade_http::web::PanelConfig {
        let p = &self.panels;
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        cascade_http::web::PanelConfig {
            help_tickets_url: p.help_tickets_url.clone(),
            help_qa_url: p.help_qa_url.clone(),
            help_docs_url: p.help_docs_url.clone(),
            support_contact: p.support_contact.clone(),
            csrf_key: some(&p.csrf_key),
            store_log: cascade_http::web::store::StoreLogConfig {
                enabled: p.store_log.enabled,
                level: p.store_log.level.clone(),
                file: some(&p.store_log.file),
                format: p.store_log.format.clone(),
                syslog: some(&p.store_log.syslog),
            },
        }
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)]
    fn file_then_environment_and_secrets_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "database_url = \"postgres://u:hunter2@db/x\"\nlisten = \"0.0.0.0:9000\"\n[http]\nbody_limit_bytes = 1234\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("CASCADE_LISTEN", "127.0.0.1:7000");
            jail.set_env("CASCADE_WORKER__CLEANUP_RETENTION_DAYS", "30");
            let c = Config::load(Some(&f)).map_err(|e| e.to_string())?;
            assert_eq!(c.listen, "127.0.0.1:7000", "environment overrides the file");
            assert_eq!(c.http.body_limit_bytes, 1234);
            assert_eq!(c.worker.cleanup_retention_days, 30);
            assert_eq!(c.database_url(), "postgres://u:hunter2@db/x");
            assert!(
                !format!("{c:?}").contains("hunter2"),
                "Debug output must not show the password"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn smtp_settings_from_the_environment_hide_the_password() {
        figment::Jail::expect_with(|jail| {
            assert!(
                Config::load(None)
                    .map_err(|e| e.to_string())?
                    .smtp
                    .settings()
                    .unwrap()
                    .is_none()
            );
            jail.set_env("CASCADE_SMTP__HOST", "mail.example.com");
            jail.set_env("CASCADE_SMTP__TLS", "starttls");
            jail.set_env("CASCADE_SMTP__FROM", "Cascade <noreply@example.com>");
            jail.set_env("CASCADE_SMTP__USERNAME", "cascade");
            jail.set_env("CASCADE_SMTP__PASSWORD", "s3cr3t-smtp");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let s = c.smtp.settings().unwrap().unwrap();
            assert_eq!((s.host.as_str(), s.port), ("mail.example.com", 587));
            assert!(!format!("{c:?}").contains("s3cr3t-smtp"));
            assert!(!format!("{s:?}").contains("s3cr3t-smtp"));
            c.smtp.mailer().unwrap().unwrap();
            jail.set_env("CASCADE_SMTP__TLS", "maybe");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert!(c.smtp.settings().is_err());
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listne = \"x\"\n").unwrap();
        assert!(Config::load(Some(&f)).is_err());
    }
}
