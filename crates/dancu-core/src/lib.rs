//! dancu domain core.
//!
//! Pure domain types and rules of the national population registry: the personal
//! identification number, the person record and its validation, Vietnamese text
//! handling (NFC, accent folding), partial dates and the embedded reference data.
//!
//! Architecture invariant: this crate does no I/O, spawns nothing, reads no clock
//! and no random source. Callers pass "today" and random numbers in.

pub mod access;
pub mod audit;
pub mod auth;
pub mod calendar;
pub mod citizen;
pub mod date;
pub mod error;
pub mod id;
pub mod intake;
pub mod person;
pub mod reference;
pub mod residence;
pub mod sharing;
pub mod text;

pub use date::PartialDate;
pub use error::{FieldError, ValidationErrors};
pub use id::{IdError, LegacyIdNumber, PersonalId, Sex};
pub use person::{Person, PersonInput, PersonStatus};
