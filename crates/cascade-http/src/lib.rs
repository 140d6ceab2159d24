//! Cascade's HTTP layer.
pub mod password;
