//! The room versions this server understands.

/// Every room version of the spec, all stable.
pub const SUPPORTED: &[&str] = &["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];

pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}
