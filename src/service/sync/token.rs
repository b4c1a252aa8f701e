//! Sync tokens: the positions of every stream a client has seen, as one opaque string.

use crate::error::{Error, Result};

/// Positions in each stream. Later issues add streams (receipts, typing,
/// to-device, device lists, presence) as further fields; tokens without them
/// parse with those positions at 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncToken {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub typing: i64,
}

impl SyncToken {
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || Error::invalid_param(format!("Invalid sync token {text:?}"));
        let rest = text.strip_prefix('s').ok_or_else(invalid)?;
        let mut parts = rest.split('_').map(|p| p.parse::<i64>().map_err(|_| invalid()));
        let events = parts.next().ok_or_else(invalid)??;
        let account_data = parts.next().transpose()?.unwrap_or(0);
        let receipts = parts.next().transpose()?.unwrap_or(0);
        let typing = parts.next().transpose()?.unwrap_or(0);
        if events < 0 || account_data < 0 || receipts < 0 || typing < 0 || parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Self { events, account_data, receipts, typing })
    }

    /// Whether anything is newer in `other`.
    pub fn is_behind(&self, other: &SyncToken) -> bool {
        other.events > self.events
            || other.account_data > self.account_data
            || other.receipts > self.receipts
            || other.typing > self.typing
    }

    /// The position of each stream never goes backwards, even for a token from
    /// the future (another server's data, a restored database).
    pub fn max(self, other: SyncToken) -> SyncToken {
        SyncToken {
            events: self.events.max(other.events),
            account_data: self.account_data.max(other.account_data),
            receipts: self.receipts.max(other.receipts),
            typing: self.typing.max(other.typing),
        }
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}_{}_{}_{}", self.events, self.account_data, self.receipts, self.typing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let token = SyncToken { events: 42, account_data: 7, receipts: 3, typing: 9 };
        assert_eq!(SyncToken::parse(&token.to_string()).unwrap(), token);
        assert_eq!(SyncToken::parse("s5").unwrap(), SyncToken { events: 5, ..SyncToken::default() });
        for bad in ["", "s", "x1_2", "s1_x", "s-1_0", "t1_2", "s1__2", "s1_2_3_4_5"] {
            assert_eq!(SyncToken::parse(bad).unwrap_err().errcode, "M_INVALID_PARAM", "{bad}");
        }
        assert!(SyncToken { events: 1, ..SyncToken::default() }.is_behind(&token));
        assert!(SyncToken { typing: 10, ..token }.max(token).typing == 10);
        assert!(!token.is_behind(&token));
    }
}
