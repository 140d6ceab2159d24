//! The catalog: multilingual texts, resource types and templates, sales categories,
//! plans and their delegated copies, synchronization.

pub mod plan;
pub mod resources;
pub mod sales;
pub mod sync;
pub mod text;
