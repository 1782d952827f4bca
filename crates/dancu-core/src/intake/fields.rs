//! Per-field normalizers for import rows.
