//! Intake of records from outside sources (imports): repair of legacy Vietnamese text
//! encodings and per-field normalizers that turn raw import cells into domain values; name keys
//! and record linkage (duplicates within an import batch and against the registry).

pub mod blocking;
pub mod cluster;
pub mod em;
pub mod fields;
pub mod interner;
pub mod linkage;
pub mod par;
pub mod phonetic;
pub mod row;
pub mod vnenc;
