//! Intake of records from outside sources: name keys and record linkage (duplicates within
//! an import batch and against the registry).

pub mod blocking;
pub mod cluster;
pub mod em;
pub mod linkage;
pub mod phonetic;
