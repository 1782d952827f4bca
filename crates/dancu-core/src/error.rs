//! Field-level validation errors: every rejection names the field, the value and the reason.

use serde::Serialize;

/// One problem with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field in the input, e.g. `name.given` or `relatives[1].personal_id`.
    pub field: String,
    /// Stable machine-readable code of the problem, e.g. `unknown_code`.
    pub code: &'static str,
    /// Human-readable reason (English).
    pub reason: String,
    /// The offending value, when showing it is useful (never for secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, reason: impl Into<String>) -> Self {
        Self { field: field.into(), code, reason: reason.into(), value: None }
    }

    pub fn with_value(mut self, value: impl Into<String>) -> Self {
        let mut v: String = value.into();
        if v.chars().count() > 80 {
            v = v.chars().take(80).collect::<String>() + "…";
        }
        self.value = Some(v);
        self
    }
}

/// A non-empty list of field errors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `Ok(())` when no error was collected.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
    pub fn single(e: FieldError) -> Self {
        Self(vec![e])
    }
}

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.reason)?;
            if let Some(v) = &e.value {
                write!(f, " (value {v:?})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}
