//! The Derm1M trainer lands with its own issue; this crate keeps the workspace shape.
