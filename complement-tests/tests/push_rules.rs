//! Push rules: the spec's default ruleset, adding, removing, enabling and
//! setting the actions of rules with `before`/`after` ordering, every error,
//! and the ruleset as `m.push_rules` account data in /sync.

use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use serde_json::{Value, json};

const RULES: &str = "/_matrix/client/v3/pushrules/global";

fn rule_path(kind: &str, rule_id: &str) -> String {
    format!("{RULES}/{kind}/{}", enc(rule_id))
}

/// The ids of the rules of one kind, in priority order.
fn ids(ruleset: &Value, kind: &str) -> Vec<String> {
    ruleset[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} list in {ruleset}"))
        .iter()
        .map(|r| r["rule_id"].as_str().expect("rule_id").to_owned())
        .collect()
}

/// The user-defined rule ids of one kind (server-default ids start with '.').
async fn user_rules(client: &Client, kind: &str) -> Vec<String> {
    let ruleset = assert_ok(client.get(&format!("{RULES}/")).await);
    ids(&ruleset, kind).into_iter().filter(|id| !id.starts_with('.')).collect()
}

async fn put_rule(client: &Client, kind: &str, rule_id: &str, query: &str, body: Value) {
    assert_ok(client.put(&format!("{}{query}", rule_path(kind, rule_id)), body).await);
}

#[tokio::test]
async fn the_default_ruleset_has_the_spec_rules_of_each_kind() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let all = assert_ok(alice.get("/_matrix/client/v3/pushrules/").await);
    let global = &all["global"];
    assert_eq!(global, &assert_ok(alice.get(&format!("{RULES}/")).await), "both paths give the same ruleset");
    for kind in ["override", "content", "room", "sender", "underride"] {
        assert!(global[kind].is_array(), "{kind} missing from {global}");
    }
    let overrides = ids(global, "override");
    assert_eq!(overrides[0], ".m.rule.master", "the master rule comes first: {overrides:?}");
    for id in [".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event", ".m.rule.is_user_mention"] {
        assert!(overrides.contains(&id.to_owned()), "{id} missing: {overrides:?}");
    }
    let underrides = ids(global, "underride");
    for id in [".m.rule.call", ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"] {
        assert!(underrides.contains(&id.to_owned()), "{id} missing: {underrides:?}");
    }
    let master = &global["override"][0];
    assert_eq!((master["default"].clone(), master["enabled"].clone()), (json!(true), json!(false)), "{master}");
    let mention = assert_ok(alice.get(&rule_path("override", ".m.rule.is_user_mention")).await);
    assert_eq!(
        mention["conditions"][0],
        json!({ "kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": alice.user_id }),
        "the mention rule names the user: {mention}"
    );
    assert!(mention["actions"].as_array().unwrap().contains(&json!({ "set_tweak": "highlight" })), "{mention}");
}

#[tokio::test]
async fn rules_are_added_in_priority_order_with_before_and_after() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let notify = json!({ "actions": ["notify"], "conditions": [] });
    put_rule(&alice, "override", "a", "", notify.clone()).await;
    put_rule(&alice, "override", "b", "", notify.clone()).await;
    assert_eq!(user_rules(&alice, "override").await, ["b", "a"], "a new rule is the most important user rule");
    let global = assert_ok(alice.get(&format!("{RULES}/")).await);
    assert_eq!(ids(&global, "override")[..3], [".m.rule.master", "b", "a"], "below master, above other defaults");
    put_rule(&alice, "override", "c", "?after=b", notify.clone()).await;
    assert_eq!(user_rules(&alice, "override").await, ["b", "c", "a"]);
    put_rule(&alice, "override", "d", "?before=b", notify.clone()).await;
    assert_eq!(user_rules(&alice, "override").await, ["d", "b", "c", "a"]);
    // Updating keeps the place unless a new one is given.
    put_rule(&alice, "override", "c", "", json!({ "actions": [] })).await;
    assert_eq!(user_rules(&alice, "override").await, ["d", "b", "c", "a"]);
    put_rule(&alice, "override", "c", "?before=d", notify.clone()).await;
    assert_eq!(user_rules(&alice, "override").await, ["c", "d", "b", "a"]);

    put_rule(&alice, "content", "cake", "", json!({ "pattern": "cake*lie", "actions": ["notify"] })).await;
    let rule = assert_ok(alice.get(&rule_path("content", "cake")).await);
    assert_eq!(
        rule,
        json!({ "rule_id": "cake", "pattern": "cake*lie", "actions": ["notify"], "default": false, "enabled": true })
    );
    let room = "!room:localhost";
    put_rule(&alice, "room", room, "", json!({ "actions": [] })).await;
    assert_eq!(user_rules(&alice, "room").await, [room]);
    put_rule(&alice, "sender", "@spam:localhost", "", json!({ "actions": ["dont_notify"] })).await;
    let rule = assert_ok(alice.get(&rule_path("sender", "@spam:localhost")).await);
    assert_eq!(rule["actions"], json!(["dont_notify"]), "the deprecated action is kept: {rule}");

    assert_ok(alice.delete(&rule_path("override", "b"), None).await);
    assert_eq!(user_rules(&alice, "override").await, ["c", "d", "a"]);
    assert_err(&alice.get(&rule_path("override", "b")).await, 404, "M_NOT_FOUND");

    // Each user has their own rules.
    let bob = server.register("bob", "password-b").await;
    assert!(user_rules(&bob, "override").await.is_empty());
}

#[tokio::test]
async fn enabled_and_actions_can_be_read_and_set_on_user_and_default_rules() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    put_rule(&alice, "underride", "u", "", json!({ "actions": ["notify"] })).await;
    let enabled = |kind: &str, id: &str| format!("{}/enabled", rule_path(kind, id));
    let actions = |kind: &str, id: &str| format!("{}/actions", rule_path(kind, id));

    assert_eq!(assert_ok(alice.get(&enabled("underride", "u")).await), json!({ "enabled": true }));
    assert_ok(alice.put(&enabled("underride", "u"), json!({ "enabled": false })).await);
    assert_eq!(assert_ok(alice.get(&enabled("underride", "u")).await), json!({ "enabled": false }));
    let tweaked = json!(["notify", { "set_tweak": "sound", "value": "default" }]);
    assert_ok(alice.put(&actions("underride", "u"), json!({ "actions": tweaked })).await);
    assert_eq!(assert_ok(alice.get(&actions("underride", "u")).await), json!({ "actions": tweaked }));
    // Replacing the rule keeps it disabled (only its definition changes).
    put_rule(&alice, "underride", "u", "", json!({ "actions": ["notify"] })).await;
    assert_eq!(assert_ok(alice.get(&enabled("underride", "u")).await), json!({ "enabled": false }));

    assert_ok(alice.put(&enabled("override", ".m.rule.master"), json!({ "enabled": true })).await);
    assert_eq!(assert_ok(alice.get(&enabled("override", ".m.rule.master")).await), json!({ "enabled": true }));
    assert_ok(alice.put(&actions("underride", ".m.rule.message"), json!({ "actions": [] })).await);
    let rule = assert_ok(alice.get(&rule_path("underride", ".m.rule.message")).await);
    assert_eq!((rule["actions"].clone(), rule["default"].clone()), (json!([]), json!(true)), "{rule}");
}

#[tokio::test]
async fn bad_requests_get_the_spec_errors() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let notify = json!({ "actions": ["notify"] });
    put_rule(&alice, "override", "mine", "", notify.clone()).await;

    // Unknown kinds and rules.
    assert_err(&alice.get(&rule_path("sideways", "x")).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.put(&rule_path("sideways", "x"), notify.clone()).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.get(&rule_path("override", "nope")).await, 404, "M_NOT_FOUND");
    assert_err(&alice.get(&rule_path("content", "mine")).await, 404, "M_NOT_FOUND");
    assert_err(&alice.delete(&rule_path("override", "nope"), None).await, 404, "M_NOT_FOUND");
    assert_err(&alice.get(&format!("{}/enabled", rule_path("override", "nope"))).await, 404, "M_NOT_FOUND");
    let nope = rule_path("override", "nope");
    assert_err(&alice.put(&format!("{nope}/enabled"), json!({ "enabled": true })).await, 404, "M_NOT_FOUND");
    assert_err(&alice.put(&format!("{nope}/actions"), json!({ "actions": [] })).await, 404, "M_NOT_FOUND");

    // Server-default rules can be neither created nor deleted; ids are checked.
    assert_err(&alice.put(&rule_path("override", ".m.rule.mine"), notify.clone()).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.put(&rule_path("override", ".m.rule.master"), notify.clone()).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.delete(&rule_path("override", ".m.rule.master"), None).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.put(&rule_path("override", "a\\b"), notify.clone()).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.put(&rule_path("room", "not-a-room"), notify.clone()).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.put(&rule_path("sender", "not-a-user"), notify.clone()).await, 400, "M_INVALID_PARAM");

    // before/after: unknown rules (the spec's M_UNKNOWN), server-default rules, contradictions.
    let new = rule_path("override", "new");
    assert_err(&alice.put(&format!("{new}?before=nope"), notify.clone()).await, 400, "M_UNKNOWN");
    assert_err(&alice.put(&format!("{new}?after=nope"), notify.clone()).await, 400, "M_UNKNOWN");
    assert_err(&alice.put(&format!("{new}?after=.m.rule.master"), notify.clone()).await, 400, "M_INVALID_PARAM");
    put_rule(&alice, "override", "second", "?after=mine", notify.clone()).await;
    let contradiction = alice.put(&format!("{new}?after=second&before=mine"), notify.clone()).await;
    assert_err(&contradiction, 400, "M_INVALID_PARAM");
    assert_err(&alice.get(&rule_path("override", "new")).await, 404, "M_NOT_FOUND");

    // Bodies.
    assert_err(&alice.put(&rule_path("override", "x"), json!({})).await, 400, "M_BAD_JSON");
    assert_err(
        &alice.put(&rule_path("override", "x"), json!({ "actions": ["explode"] })).await,
        400,
        "M_INVALID_PARAM",
    );
    let bad_condition = json!({ "actions": [], "conditions": [{ "kind": "event_match" }] });
    assert_err(&alice.put(&rule_path("override", "x"), bad_condition).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.put(&rule_path("content", "x"), notify.clone()).await, 400, "M_INVALID_PARAM");
    let enabled = format!("{}/enabled", rule_path("override", "mine"));
    assert_err(&alice.put(&enabled, json!({ "enabled": "yes" })).await, 400, "M_BAD_JSON");
    let actions = format!("{}/actions", rule_path("override", "mine"));
    assert_err(&alice.put(&actions, json!({ "actions": "notify" })).await, 400, "M_BAD_JSON");
    assert_err(&alice.put(&actions, json!({ "actions": [42] })).await, 400, "M_INVALID_PARAM");

    // The ruleset is the server's: account data cannot overwrite it.
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.push_rules", enc(&alice.user_id));
    assert_err(&alice.put(&path, json!({ "global": {} })).await, 405, "M_BAD_JSON");
    assert_eq!(user_rules(&alice, "override").await, ["mine", "second"], "nothing changed");
    assert_err(&alice.with_token(None).get(&format!("{RULES}/")).await, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn changes_reach_sync_as_push_rules_account_data_and_wake_the_long_poll() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let first = assert_ok(alice.get("/_matrix/client/v3/sync?timeout=0").await);
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let poller = alice.clone();
    let poll = tokio::spawn(async move {
        poller.get(&format!("/_matrix/client/v3/sync?timeout=10000&since={}", enc(&since))).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!poll.is_finished(), "the long-poll returned before any change");
    put_rule(&alice, "override", "woken", "", json!({ "actions": ["notify"] })).await;
    let started = std::time::Instant::now();
    let body = assert_ok(poll.await.unwrap());
    assert!(started.elapsed().as_secs() < 5, "the change did not wake the long-poll");
    let events = body["account_data"]["events"].as_array().cloned().unwrap_or_default();
    let rules =
        events.iter().find(|e| e["type"] == "m.push_rules").unwrap_or_else(|| panic!("no m.push_rules: {body}"));
    let overrides = ids(&rules["content"]["global"], "override");
    assert_eq!(overrides[..2], [".m.rule.master", "woken"], "the whole ruleset: {rules}");
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.push_rules", enc(&alice.user_id));
    assert_eq!(assert_ok(alice.get(&path).await)["global"]["override"][1]["rule_id"], "woken");
}
