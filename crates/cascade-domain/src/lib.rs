//! Cascade's pure domain core.
//!
//! Everything in here is deterministic and free of I/O: no database, no network, no
//! clock reads except through the [`clock::Clock`] seam. Input is parsed into the
//! validated types of this crate at the edge (HTTP, CLI, storage rows), so the rest of
//! the system never handles a raw string where an email, a country, a language or a
//! currency is meant ("parse, don't validate").

pub mod account;
pub mod authz;
pub mod billing;
pub mod catalog;
pub mod clock;
pub mod connector;
pub mod domains;
pub mod ids;
pub mod money;
pub mod notification;
pub mod privilege;
pub mod task;
pub mod user;
pub mod validation;

pub use validation::{FieldError, ValidationErrors};
