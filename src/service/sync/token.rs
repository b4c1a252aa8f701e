//! Sync tokens: the positions of every stream a client has seen, as one opaque string.

use crate::error::{Error, Result};

/// Positions in each stream. New streams are appended as further fields;
/// older tokens without them parse with those positions at 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncToken {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub typing: i64,
    pub to_device: i64,
    pub device_lists: i64,
    pub presence: i64,
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
        let to_device = parts.next().transpose()?.unwrap_or(0);
        let device_lists = parts.next().transpose()?.unwrap_or(0);
        let presence = parts.next().transpose()?.unwrap_or(0);
        let token = Self { events, account_data, receipts, typing, to_device, device_lists, presence };
        if token.positions().iter().any(|p| *p < 0) || parts.next().is_some() {
            return Err(invalid());
        }
        Ok(token)
    }

    fn positions(&self) -> [i64; 7] {
        [self.events, self.account_data, self.receipts, self.typing, self.to_device, self.device_lists, self.presence]
    }

    /// Whether anything is newer in `other`.
    pub fn is_behind(&self, other: &SyncToken) -> bool {
        self.positions().iter().zip(other.positions()).any(|(mine, theirs)| theirs > *mine)
    }

    /// The position of each stream never goes backwards, even for a token from
    /// the future (another server's data, a restored database).
    pub fn max(self, other: SyncToken) -> SyncToken {
        SyncToken {
            events: self.events.max(other.events),
            account_data: self.account_data.max(other.account_data),
            receipts: self.receipts.max(other.receipts),
            typing: self.typing.max(other.typing),
            to_device: self.to_device.max(other.to_device),
            device_lists: self.device_lists.max(other.device_lists),
            presence: self.presence.max(other.presence),
        }
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [first, rest @ ..] = self.positions();
        write!(f, "s{first}")?;
        for position in rest {
            write!(f, "_{position}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let token = SyncToken {
            events: 42,
            account_data: 7,
            receipts: 3,
            typing: 9,
            to_device: 4,
            device_lists: 2,
            presence: 5,
        };
        assert_eq!(SyncToken::parse(&token.to_string()).unwrap(), token);
        assert_eq!(SyncToken::parse("s5").unwrap(), SyncToken { events: 5, ..SyncToken::default() });
        for bad in ["", "s", "x1_2", "s1_x", "s-1_0", "t1_2", "s1__2", "s1_2_3_4_5_6_7_8", "s1_2_3_4_5_-6"] {
            assert_eq!(SyncToken::parse(bad).unwrap_err().errcode, "M_INVALID_PARAM", "{bad}");
        }
        assert!(SyncToken { events: 1, ..SyncToken::default() }.is_behind(&token));
        assert!(SyncToken { typing: 10, ..token }.max(token).typing == 10);
        assert!(!token.is_behind(&token));
        assert!(SyncToken { device_lists: 1, ..token }.is_behind(&token));
        // Tokens from before the to-device and device-list streams still parse.
        assert_eq!(SyncToken::parse("s1_2_3_4").unwrap().to_device, 0);
    }
}
