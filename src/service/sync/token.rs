//! Sync tokens: the positions of every stream a client has seen, as one opaque string.

use crate::error::{Error, Result};

/// Positions in each stream. Later issues add streams (receipts, typing,
/// to-device, device lists, presence) as further fields; tokens without them
/// parse with those positions at 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncToken {
    pub events: i64,
    pub account_data: i64,
}

impl SyncToken {
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || Error::invalid_param(format!("Invalid sync token {text:?}"));
        let rest = text.strip_prefix('s').ok_or_else(invalid)?;
        let mut parts = rest.split('_').map(|p| p.parse::<i64>().map_err(|_| invalid()));
        let events = parts.next().ok_or_else(invalid)??;
        let account_data = parts.next().transpose()?.unwrap_or(0);
        if events < 0 || account_data < 0 {
            return Err(invalid());
        }
        Ok(Self { events, account_data })
    }

    /// Whether anything is newer in `other`.
    pub fn is_behind(&self, other: &SyncToken) -> bool {
        other.events > self.events || other.account_data > self.account_data
    }

    /// The position of each stream never goes backwards, even for a token from
    /// the future (another server's data, a restored database).
    pub fn max(self, other: SyncToken) -> SyncToken {
        SyncToken { events: self.events.max(other.events), account_data: self.account_data.max(other.account_data) }
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}_{}", self.events, self.account_data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let token = SyncToken { events: 42, account_data: 7 };
        assert_eq!(SyncToken::parse(&token.to_string()).unwrap(), token);
        assert_eq!(SyncToken::parse("s5").unwrap(), SyncToken { events: 5, account_data: 0 });
        for bad in ["", "s", "x1_2", "s1_x", "s-1_0", "t1_2", "s1__2"] {
            assert_eq!(SyncToken::parse(bad).unwrap_err().errcode, "M_INVALID_PARAM", "{bad}");
        }
        assert!(SyncToken { events: 1, account_data: 0 }.is_behind(&token));
        assert!(!token.is_behind(&token));
    }
}
