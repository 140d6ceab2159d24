//! Shared state of the HTTP layer.

use crate::throttle::LoginThrottle;
use cascade_domain::clock::Clock;
use cascade_store::Db;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

/// Settings of the HTTP layer (a section of the binary's configuration).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Mark session cookies `Secure`: set when Cascade is served over TLS (directly or
    /// behind a TLS-terminating proxy).
    pub secure_cookies: bool,
    pub session_ttl_secs: i64,
    /// Failed logins allowed per user and per source address within the window.
    pub login_max_failures: u32,
    pub login_window_secs: i64,
    /// Which gateway takes card payments: `test` (the built-in deterministic test
    /// gateway: demos and tests) or `none` (card payments refused).
    pub card_gateway: String,
    /// Tolerated clock skew of signed connector messages, seconds (clocks must agree).
    pub connector_skew_secs: i64,
    /// Longest life of a cached session resolution, milliseconds; 0 turns the cache
    /// off (see `auth`'s module documentation for the staleness bound).
    pub auth_cache_ttl_ms: u64,
    /// Longest life of a cached catalog read of the panels (plans on sale, sales tree,
    /// plan names), milliseconds; 0 turns the cache off (see `web::catalog_cache`).
    pub catalog_cache_ttl_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            secure_cookies: false,
            session_ttl_secs: 12 * 3600,
            login_max_failures: 5,
            login_window_secs: 900,
            card_gateway: "test".into(),
            connector_skew_secs: cascade_domain::connector::DEFAULT_SKEW_SECS,
            auth_cache_ttl_ms: 5_000,
            catalog_cache_ttl_ms: 5_000,
        }
    }
}

/// Password-reset requests allowed per login in one login
/// window (`login_window_secs`).
pub const RESET_REQUESTS_PER_WINDOW: u32 = 5;
/// Password-reset requests allowed per source address (several people may share one).
pub const RESET_REQUESTS_PER_ADDRESS: u32 = 30;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<HttpConfig>,
    pub throttle: Arc<LoginThrottle>,
    /// Password-reset requests per login and per source address (every request counts,
    /// whether the login exists or not, so the limit reveals nothing).
    pub reset_throttle: Arc<LoginThrottle>,
    pub reset_addr_throttle: Arc<LoginThrottle>,
    pub metrics: Option<PrometheusHandle>,
    /// The card payment gateway, if any (see [`HttpConfig::card_gateway`]).
    pub gateway: Option<Arc<dyn cascade_store::documents::PaymentGateway>>,
    /// The panels' and store's settings and process state (CSRF key, store log).
    pub panels: Arc<crate::web::PanelState>,
    /// Resolved sessions (see [`crate::auth::AuthCache`]).
    pub auth_cache: Arc<crate::auth::AuthCache>,
    /// Catalog reads of the panels (see [`crate::web::catalog_cache`]).
    pub catalog: Arc<crate::web::catalog_cache::CatalogCache>,
}

impl AppState {
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        config: HttpConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let throttle = Arc::new(LoginThrottle::new(
            config.login_max_failures,
            config.login_window_secs,
            100_000,
        ));
        let reset_throttle = Arc::new(LoginThrottle::new(
            RESET_REQUESTS_PER_WINDOW,
            config.login_window_secs,
            100_000,
        ));
        let reset_addr_throttle = Arc::new(LoginThrottle::new(
            RESET_REQUESTS_PER_ADDRESS,
            config.login_window_secs,
            100_000,
        ));
        let gateway = card_gateway(&config.card_gateway);
        let auth_cache = Arc::new(crate::auth::AuthCache::new(
            std::time::Duration::from_millis(config.auth_cache_ttl_ms),
            100_000,
        ));
        let catalog = Arc::new(crate::web::catalog_cache::CatalogCache::new(
            std::time::Duration::from_millis(config.catalog_cache_ttl_ms),
        ));
        Self {
            auth_cache,
            catalog,
            db,
            clock,
            config: Arc::new(config),
            throttle,
            reset_throttle,
            reset_addr_throttle,
            metrics,
            gateway,
            panels: Arc::new(crate::web::PanelState::default()),
        }
    }

    /// Use these panel settings (help links, CSRF key, store logging).
    pub fn with_panels(mut self, config: crate::web::PanelConfig) -> Self {
        self.panels = Arc::new(crate::web::PanelState::new(config));
        self
    }
}

/// The card gateway named by `http.card_gateway` (`test`; anything else: none). The
/// worker's daily run takes automatic charges through the same one.
pub fn card_gateway(name: &str) -> Option<Arc<dyn cascade_store::documents::PaymentGateway>> {
    match name {
        "test" => Some(Arc::new(cascade_store::documents::TestGateway)),
        _ => None,
    }
}
