//! `keys`: `/keys/claim` for many devices and `/keys/query` for many users,
//! one request at a time.
//!
//! Setup registers max(`--claim-devices`, `--query-users`) users (one device
//! each), and every device uploads its device keys, signed with its own
//! ed25519 key (a real signature over the canonical JSON, as the server checks
//! it). The first `--claim-devices` devices also upload `--requests` + 1
//! signed one-time keys, so that every claim gets a one-time key for every
//! device. The run makes `--requests` (100) claims, each for one key of each
//! of those devices, then `--requests` queries, each for every device of
//! `--query-users` users, checking that each answer is complete.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ed25519_dalek::{Signer, SigningKey};
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::phased::{Errors, Meter, PhasedOpts, PhasedReport, new_histogram, record};
use super::{Ctx, SETUP_PARALLELISM, Session, bounded, mix64};

const OTK_ALGORITHM: &str = "signed_curve25519";
/// The server takes at most this many one-time keys per upload.
const MAX_KEYS_PER_UPLOAD: usize = 1000;

pub fn run<'a>(ctx: &'a Ctx, opts: &'a PhasedOpts) -> BoxFuture<'a, Result<PhasedReport, String>> {
    run_inner(ctx, opts).boxed()
}

/// Canonical JSON (object keys sorted, no insignificant whitespace), written
/// out by hand so it does not depend on serde_json's `preserve_order`.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Adds `signatures[user_id][key_id]` by `key` over `object` (which has no
/// `signatures` or `unsigned` yet).
fn sign(object: &mut Value, user_id: &str, key_id: &str, key: &SigningKey) {
    let mut text = String::new();
    canonical_json(object, &mut text);
    let signature = B64.encode(key.sign(text.as_bytes()).to_bytes());
    object["signatures"] = json!({ user_id: { key_id: signature } });
}

/// 32 bytes derived from `seed` (test keys need not be secret).
fn key_bytes(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix64(seed ^ (i as u64) << 56).to_le_bytes());
    }
    bytes
}

/// Uploads `user`'s signed device keys and `otks` signed one-time keys.
async fn upload(ctx: &Ctx, user: &Session, seed: u64, otks: usize) -> Result<(), String> {
    let key = SigningKey::from_bytes(&key_bytes(seed));
    let ed_id = format!("ed25519:{}", user.device_id);
    let mut device_keys = json!({
        "user_id": user.user_id,
        "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", user.device_id): B64.encode(key_bytes(seed ^ 1)),
            ed_id.clone(): B64.encode(key.verifying_key().as_bytes()),
        },
    });
    sign(&mut device_keys, &user.user_id, &ed_id, &key);
    let mut body = json!({ "device_keys": device_keys });
    let mut uploaded = 0;
    loop {
        let batch = (otks - uploaded).min(MAX_KEYS_PER_UPLOAD);
        let mut one_time_keys = Map::new();
        for k in uploaded..uploaded + batch {
            let mut otk = json!({ "key": B64.encode(key_bytes(seed ^ mix64(k as u64 + 2))) });
            sign(&mut otk, &user.user_id, &ed_id, &key);
            one_time_keys.insert(format!("{OTK_ALGORITHM}:AAAA{k}"), otk);
        }
        body["one_time_keys"] = Value::Object(one_time_keys);
        let (status, resp) =
            ctx.send(Method::POST, "/_matrix/client/v3/keys/upload", Some(&user.access_token), Some(&body)).await?;
        if status != 200 {
            return Err(format!("keys/upload for {}: {status} {resp}", user.user_id));
        }
        uploaded += batch;
        if uploaded >= otks {
            return Ok(());
        }
        body = json!({});
    }
}

const CLAIM: &str = "/_matrix/client/v3/keys/claim";
const QUERY: &str = "/_matrix/client/v3/keys/query";

/// Checks that a claim answered a key for each of `expected` devices, or a
/// query the devices of each of `expected` users.
fn complete(path: &str, resp: &Value, expected: usize) -> Result<(), String> {
    let got = if path == CLAIM {
        resp["one_time_keys"].as_object().map_or(0, |m| m.values().filter_map(Value::as_object).map(Map::len).sum())
    } else {
        resp["device_keys"]
            .as_object()
            .map_or(0, |m| m.values().filter(|d| d.as_object().is_some_and(|d| !d.is_empty())).count())
    };
    if got != expected {
        return Err(format!("{path}: answered for {got} of {expected} devices or users"));
    }
    Ok(())
}

/// POST `body` to `path`; the status and the body as read, unparsed.
async fn post_raw(ctx: &Ctx, path: &str, token: &str, body: &str) -> Result<(u16, Vec<u8>), String> {
    let req = ctx.http.post(ctx.url(path)).bearer_auth(token).header("content-type", "application/json");
    let resp = req.body(body.to_owned()).send().await.map_err(|e| format!("{path}: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| format!("{path}: {e}"))?;
    Ok((status, bytes.to_vec()))
}

async fn run_inner(ctx: &Ctx, opts: &PhasedOpts) -> Result<PhasedReport, String> {
    let claim_devices = opts.claim_devices.unwrap_or(100);
    let query_users = opts.query_users.unwrap_or(1000);
    let requests = opts.requests.unwrap_or(100) as usize;
    if claim_devices == 0 || query_users == 0 || requests == 0 {
        return Err("--claim-devices, --query-users and --requests must be at least 1".to_owned());
    }
    let users = ctx.register_many("k", claim_devices.max(query_users)).await?;
    let seed = mix64(ctx.run_id.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    let users_ref = &users;
    bounded("uploading keys", users.len(), SETUP_PARALLELISM, |i| async move {
        let otks = if i < claim_devices { requests + 1 } else { 0 };
        upload(ctx, &users_ref[i], seed ^ mix64(i as u64), otks).await
    })
    .await?;
    eprintln!("  {} users with signed device keys; {claim_devices} devices with one-time keys", users.len());

    let mut wanted = Map::new();
    for user in &users[..claim_devices] {
        wanted.insert(user.user_id.clone(), json!({ user.device_id.clone(): OTK_ALGORITHM }));
    }
    let claim_body = json!({ "one_time_keys": wanted });
    let query_body = json!({
        "device_keys": users[..query_users].iter().map(|u| (u.user_id.clone(), json!([]))).collect::<Map<_, _>>(),
    });
    let token = &users[0].access_token;
    // One unmeasured request of each kind (the claim uses up the extra key).
    for (path, body, expected) in [(CLAIM, &claim_body, claim_devices), (QUERY, &query_body, query_users)] {
        let (status, resp) = ctx.send(Method::POST, path, Some(token), Some(body)).await?;
        if status != 200 {
            return Err(format!("{path}: {status} {resp}"));
        }
        complete(path, &resp, expected)?;
    }

    let mut report = PhasedReport::new("keys", ctx);
    for (name, path, body, expected) in [
        (format!("keys/claim, {claim_devices} devices per request"), CLAIM, &claim_body, claim_devices),
        (format!("keys/query, {query_users} users per request"), QUERY, &query_body, query_users),
    ] {
        let body = body.to_string();
        let mut hist = new_histogram();
        let mut errors = Errors::default();
        let mut meter = Meter::start(opts);
        let mut answers = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let outcome = post_raw(ctx, path, token, &body).await;
            answers.push((t.elapsed(), outcome));
        }
        // Answers of 1,000 users' keys are ~0.5 MB: parsing one took the tool
        // about as long as the server took to answer, so it is done after the
        // measured time.
        meter.stop();
        for (took, outcome) in answers {
            let checked = outcome.and_then(|(status, bytes)| {
                let resp: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if status != 200 {
                    return Err(format!("{path}: {status} {resp}"));
                }
                complete(path, &resp, expected)
            });
            match checked {
                Ok(()) => record(&mut hist, took),
                Err(e) => errors.add(e),
            }
        }
        report.push(meter.finish(ctx, &name, 1, &hist, errors.count, errors.samples));
    }
    report.notes.push(
        "one request at a time; latency until the answer's body is read; every answer is parsed and checked complete after the measured time".to_owned(),
    );
    Ok(report)
}
