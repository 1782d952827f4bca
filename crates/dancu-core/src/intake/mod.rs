//! The import pipeline's per-row helpers: repair of legacy Vietnamese text encodings and
//! per-field normalizers that turn raw import cells into domain values.

pub mod fields;
pub mod vnenc;
