//! The push rules API on a user's ruleset: reading rules as the spec's JSON,
//! adding, removing, enabling and setting actions, with the spec's errors.

use ruma::push::{
    Action, AnyPushRuleRef, InsertPushRuleError, NewConditionalPushRule, NewPatternedPushRule, NewPushRule,
    NewSimplePushRule, PushCondition, RemovePushRuleError, RuleKind, Ruleset,
};
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::{Map, Value, json};

use super::Push;
use crate::error::{Error, Result};
use crate::service::account_data::AccountData;

/// Where `PUT` places a rule: next-most important than `before`, next-less than `after`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement<'a> {
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
}

/// The rule kinds in the spec's order of priority.
const KINDS: [&str; 5] = ["override", "content", "room", "sender", "underride"];

fn kind(kind: &str) -> Result<RuleKind> {
    if !KINDS.contains(&kind) {
        return Err(Error::invalid_param(format!("Unknown push rule kind {kind:?}")));
    }
    Ok(RuleKind::from(kind))
}

fn rule_not_found() -> Error {
    Error::not_found("The push rule was not found")
}

fn rule_json(rule: AnyPushRuleRef<'_>) -> Result<Value> {
    let value = match rule {
        AnyPushRuleRef::Override(r) | AnyPushRuleRef::Underride(r) => serde_json::to_value(r),
        AnyPushRuleRef::Content(r) => serde_json::to_value(r),
        AnyPushRuleRef::Room(r) => serde_json::to_value(r),
        AnyPushRuleRef::Sender(r) => serde_json::to_value(r),
        _ => return Err(Error::internal("unexpected push rule kind")),
    };
    value.map_err(Error::internal)
}

/// The ruleset as the spec's JSON, with every kind present (an empty list when it has no rules).
pub fn ruleset_json(ruleset: &Ruleset) -> Result<Value> {
    let mut value = serde_json::to_value(ruleset).map_err(Error::internal)?;
    let object = value.as_object_mut().ok_or_else(|| Error::internal("ruleset is not an object"))?;
    for kind in KINDS {
        object.entry(kind).or_insert_with(|| json!([]));
    }
    Ok(value)
}

/// Actions as the spec allows them: "notify", the deprecated no-ops
/// "dont_notify" and "coalesce", or a `set_tweak` object.
fn parse_actions(value: Option<&Value>) -> Result<Vec<Action>> {
    let list = value.and_then(Value::as_array).ok_or_else(|| Error::bad_json("'actions' must be a list of actions"))?;
    for action in list {
        let known = match action {
            Value::String(s) => matches!(s.as_str(), "notify" | "dont_notify" | "coalesce"),
            Value::Object(o) => o.get("set_tweak").is_some_and(Value::is_string),
            _ => false,
        };
        if !known {
            return Err(Error::invalid_param(format!("Unrecognised action {action}")));
        }
    }
    serde_json::from_value(Value::Array(list.clone()))
        .map_err(|e| Error::invalid_param(format!("Invalid actions: {e}")))
}

/// The rule a `PUT /pushrules/global/{kind}/{ruleId}` body describes.
fn new_rule(kind: &RuleKind, rule_id: &str, body: &Value) -> Result<NewPushRule> {
    if !body.is_object() {
        return Err(Error::bad_json("The push rule must be a JSON object"));
    }
    let actions = parse_actions(body.get("actions"))?;
    let conditions = || -> Result<Vec<PushCondition>> {
        match body.get("conditions") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(c) => {
                serde_json::from_value(c.clone()).map_err(|e| Error::invalid_param(format!("Invalid conditions: {e}")))
            }
        }
    };
    Ok(match kind {
        RuleKind::Override => {
            NewPushRule::Override(NewConditionalPushRule::new(rule_id.into(), conditions()?, actions))
        }
        RuleKind::Underride => {
            NewPushRule::Underride(NewConditionalPushRule::new(rule_id.into(), conditions()?, actions))
        }
        RuleKind::Content => {
            let pattern = body
                .get("pattern")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::invalid_param("A content rule needs a 'pattern'"))?;
            NewPushRule::Content(NewPatternedPushRule::new(rule_id.into(), pattern.into(), actions))
        }
        RuleKind::Room => {
            let room = OwnedRoomId::try_from(rule_id)
                .map_err(|_| Error::invalid_param("The id of a room rule must be a room id"))?;
            NewPushRule::Room(NewSimplePushRule::new(room, actions))
        }
        RuleKind::Sender => {
            let user = OwnedUserId::try_from(rule_id)
                .map_err(|_| Error::invalid_param("The id of a sender rule must be a user id"))?;
            NewPushRule::Sender(NewSimplePushRule::new(user, actions))
        }
        _ => return Err(Error::invalid_param("Unknown push rule kind")),
    })
}

impl Push {
    /// `GET /pushrules/global/`.
    pub async fn global_rules(&self, user_id: &UserId) -> Result<Value> {
        ruleset_json(&*self.rulesets.get(user_id).await?)
    }

    /// `GET /pushrules/global/{kind}/{ruleId}`.
    pub async fn rule(&self, user_id: &UserId, kind_name: &str, rule_id: &str) -> Result<Value> {
        let kind = kind(kind_name)?;
        let ruleset = self.rulesets.get(user_id).await?;
        rule_json(ruleset.get(kind, rule_id).ok_or_else(rule_not_found)?)
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}`.
    pub async fn put_rule(
        &self,
        account_data: &AccountData,
        user_id: &UserId,
        kind_name: &str,
        rule_id: &str,
        placement: Placement<'_>,
        body: &Value,
    ) -> Result<()> {
        let Placement { before, after } = placement;
        let kind = kind(kind_name)?;
        if rule_id.starts_with('.') {
            return Err(Error::invalid_param("Rule ids starting with '.' are reserved for server-default rules"));
        }
        let rule = new_rule(&kind, rule_id, body)?;
        self.rulesets
            .modify(account_data, user_id, |ruleset| {
                ruleset.insert(rule, after, before).map_err(|e| match e {
                    // The spec's example error for a missing before/after rule.
                    InsertPushRuleError::UnknownRuleId => Error::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "M_UNKNOWN",
                        format!("before/after rule not found: {}", before.or(after).unwrap_or_default()),
                    ),
                    other => Error::invalid_param(other.to_string()),
                })
            })
            .await
    }

    /// `DELETE /pushrules/global/{kind}/{ruleId}`.
    pub async fn delete_rule(
        &self,
        account_data: &AccountData,
        user_id: &UserId,
        kind_name: &str,
        rule_id: &str,
    ) -> Result<()> {
        let kind = kind(kind_name)?;
        self.rulesets
            .modify(account_data, user_id, |ruleset| {
                ruleset.remove(kind, rule_id).map_err(|e| match e {
                    RemovePushRuleError::ServerDefault => {
                        Error::invalid_param("Server-default push rules cannot be deleted")
                    }
                    _ => rule_not_found(),
                })
            })
            .await
    }

    /// `GET .../{ruleId}/enabled` or `.../actions`.
    pub async fn rule_attribute(&self, user_id: &UserId, kind_name: &str, rule_id: &str, attr: &str) -> Result<Value> {
        let kind = kind(kind_name)?;
        let ruleset = self.rulesets.get(user_id).await?;
        let rule = ruleset.get(kind, rule_id).ok_or_else(rule_not_found)?;
        let mut out = Map::new();
        match attr {
            "enabled" => out.insert("enabled".into(), json!(rule.enabled())),
            "actions" => out.insert("actions".into(), serde_json::to_value(rule.actions()).map_err(Error::internal)?),
            _ => return Err(Error::not_found("Unknown push rule attribute")),
        };
        Ok(Value::Object(out))
    }

    /// `PUT .../{ruleId}/enabled` or `.../actions`.
    pub async fn set_rule_attribute(
        &self,
        account_data: &AccountData,
        user_id: &UserId,
        kind_name: &str,
        rule_id: &str,
        attr: &str,
        body: &Value,
    ) -> Result<()> {
        let kind = kind(kind_name)?;
        enum Change {
            Enabled(bool),
            Actions(Vec<Action>),
        }
        let change = match attr {
            "enabled" => Change::Enabled(
                body.get("enabled")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| Error::bad_json("'enabled' must be a boolean"))?,
            ),
            "actions" => Change::Actions(parse_actions(body.get("actions"))?),
            _ => return Err(Error::not_found("Unknown push rule attribute")),
        };
        self.rulesets
            .modify(account_data, user_id, |ruleset| {
                match change {
                    Change::Enabled(enabled) => ruleset.set_enabled(kind, rule_id, enabled),
                    Change::Actions(actions) => ruleset.set_actions(kind, rule_id, actions),
                }
                .map_err(|_| rule_not_found())
            })
            .await
    }
}
