//! The pywa corpus (real client library fixtures): every case, signed, gets 200, and every
//! message and status in it is accounted for: stored, a duplicate, unrouted or kept raw.

use serde_json::Value;
use waos_web::testing::{Backend, fixtures_dir, spawn_app};

/// Messages, statuses and errors in the `messages` changes of a body: what must be accounted for.
fn items_in(body: &Value) -> u64 {
    let mut count = 0;
    for entry in body["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            if change["field"] != "messages" {
                continue;
            }
            for key in ["messages", "statuses", "errors"] {
                count += change["value"][key].as_array().map_or(0, Vec::len) as u64;
            }
        }
    }
    count
}

fn with_unique_ids(mut body: Value, case: &str) -> Value {
    let tag = format!("{:x}", sha2_like(case));
    for entry in body["entry"].as_array_mut().into_iter().flatten() {
        for change in entry["changes"].as_array_mut().into_iter().flatten() {
            for key in ["messages", "statuses"] {
                for item in change["value"][key].as_array_mut().into_iter().flatten() {
                    if let Some(id) = item["id"].as_str() {
                        item["id"] = Value::String(format!("{id}.{tag}"));
                    }
                }
            }
        }
    }
    body
}

/// A short stable number for a case name (FNV-1a).
fn sha2_like(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
    })
}

async fn every_pywa_case_is_accounted_for(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    let folder = fixtures_dir().join("pywa-updates");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 19, "the corpus is present");
    let mut cases = 0;
    let mut stored_messages = 0;
    for file in files {
        let corpus: serde_json::Map<String, Value> =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        for (case, body) in corpus {
            cases += 1;
            // The corpus reuses wamids across cases; make each case's ids its own, so that
            // every item must be stored (or kept raw), never passed off as a duplicate.
            let body = with_unique_ids(body, &format!("{}-{case}", file.display()));
            let bytes = serde_json::to_vec(&body).unwrap();
            let response = app.post_webhook(&bytes).await;
            let status = response.status().as_u16();
            let report: Value = response.json().await.unwrap();
            let name = format!("{}#{case}", file.file_name().unwrap().to_string_lossy());
            assert_eq!(status, 200, "{name}: {report}");
            let expected = items_in(&body);
            assert_eq!(
                report["received"].as_u64().unwrap(),
                expected,
                "{name}: items received"
            );
            if expected > 0 {
                let accounted: u64 = [
                    "messages_stored",
                    "statuses_stored",
                    "duplicates",
                    "unrouted",
                    "undecodable",
                ]
                .iter()
                .map(|key| report[*key].as_u64().unwrap())
                .sum();
                assert_eq!(
                    accounted, expected,
                    "{name}: every item accounted for: {report}"
                );
                assert_eq!(
                    report["duplicates"], 0,
                    "{name}: nothing passed off as a duplicate"
                );
            }
            stored_messages += report["messages_stored"].as_u64().unwrap_or(0);
            let snapshot = app.snapshot().await;
            assert_eq!(
                app.post_webhook(&bytes).await.status(),
                200,
                "{name}: replay"
            );
            assert_eq!(
                app.snapshot().await,
                snapshot,
                "{name}: replay changed storage"
            );
        }
    }
    assert!(cases > 60, "{cases} cases");
    assert!(
        stored_messages > 5,
        "real messages were stored, not only counted"
    );
    // Edits, revokes, system messages and flows are stored with their own kinds.
    for kind in [
        "text",
        "image",
        "video",
        "document",
        "audio",
        "sticker",
        "reaction",
        "location",
        "contacts",
        "order",
        "system",
        "interactive",
        "button",
        "unsupported",
        "edit",
    ] {
        assert!(
            app.count("messages", &format!("kind = '{kind}'")).await >= 1,
            "kind {kind}"
        );
    }
}

on_both_backends!(every_pywa_case_is_accounted_for);
