//! Schedules on one server (process runtime): a schedule every second fires each tick
//! once, with trigger `schedule` and its tick recorded; across a stop (SIGTERM) and a
//! crash (SIGKILL) no tick fires twice, without catch-up at most the latest missed tick
//! fires and with it every missed one does; a disabled function fires nothing and does
//! not catch up on re-enable; a deleted function's schedule starts afresh when created
//! again; bad schedules are a 400 naming the field.

mod cli_support;
mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use cli_support::cli;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{scheduled_function, ticks, ticks_between, without_gaps, Server, ServerOptions};

async fn pause(seconds: f64) {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
}

async fn deploy_status(server: &Server, manifest: &Value) -> (StatusCode, Value) {
    let request = server.request(Method::POST, "/v1/functions").json(manifest);
    let (status, _, body) = server.call(request).await;
    (status, body)
}

#[tokio::test]
async fn a_schedule_every_second_fires_each_tick_once() {
    let server = Server::start().await;
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    let deployed = server
        .deploy(scheduled_function("tick", &runs, "* * * * * *", json!({})))
        .await;
    let created: DateTime<Utc> = serde_json::from_value(deployed["createdAt"].clone()).unwrap();
    pause(4.5).await;
    let fired = ticks(&server, "tick").await;
    assert!(
        (3..=6).contains(&fired.len()),
        "about one fire a second: {fired:?}"
    );
    assert!(without_gaps(&fired), "every second once: {fired:?}");
    let first = fired.keys().next().expect("a tick");
    assert_eq!(
        first.timestamp(),
        created.timestamp() + 1,
        "the first whole second after the deploy fires first, and none before: {fired:?} (deployed {created})"
    );
    let ids: Vec<String> = fired.values().cloned().collect();
    let ended = server
        .wait_all_terminal(&ids, Duration::from_secs(30))
        .await;
    for (id, record) in &ended {
        assert_eq!(record["status"], "success", "{record}");
        assert_eq!(record["output"], json!({"from": "schedule"}), "{id}");
    }
    let counted = support::count_lines(&runs);
    for id in &ids {
        assert_eq!(counted.get(id), Some(&1), "{id} ran once: {counted:?}");
    }

    let (status, _, function) = server
        .call(server.request(Method::GET, "/v1/functions/tick"))
        .await;
    assert_eq!(status, StatusCode::OK, "{function}");
    let schedule = &function["schedules"][0];
    assert_eq!(schedule["cron"], "* * * * * *", "{function}");
    assert_eq!(schedule["timezone"], "UTC", "{function}");
    assert_eq!(schedule["catchUp"], false, "{function}");
    assert_eq!(
        schedule["next"].as_array().map(Vec::len),
        Some(3),
        "{function}"
    );
    assert!(schedule["lastTick"].is_string(), "{function}");

    let shown = cli(&server, ["fn", "get", "tick"]).ok().await;
    let row = shown
        .stdout
        .lines()
        .skip_while(|line| *line != "schedules:")
        .find(|line| line.starts_with("* * * * * *"))
        .unwrap_or_else(|| panic!("a schedules table: {shown}"));
    assert!(row.contains("UTC") && row.contains(" no "), "{row}");
    assert_eq!(
        row.matches('Z').count(),
        4,
        "the last tick and the next three: {row}"
    );

    let (_, _, metrics) = server.call(server.request(Method::GET, "/metrics")).await;
    let series = "gantry_schedule_fires_total{function=\"tick\"} ";
    let counted: f64 = metrics
        .as_str()
        .and_then(|text| text.lines().find_map(|line| line.strip_prefix(series)))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"));
    assert!(counted >= fired.len() as f64, "{counted} fires counted");
}

/// Stops (SIGTERM) or kills (SIGKILL) `server`, waits `seconds`, and starts it again;
/// answers the new server and the gap (after the old one was gone, before the new one
/// started).
async fn gap(
    server: &mut Server,
    kill: bool,
    seconds: f64,
) -> (Server, DateTime<Utc>, DateTime<Utc>) {
    if kill {
        server.kill9().await;
    } else {
        server.stop().await;
    }
    let gone = Utc::now();
    pause(seconds).await;
    let back = Utc::now();
    let restarted = server.restart(ServerOptions::default()).await;
    (restarted, gone, back)
}

#[tokio::test]
async fn without_catch_up_a_restart_fires_no_tick_twice_and_only_the_latest_missed_one() {
    let mut server = Server::start().await;
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    server
        .deploy(scheduled_function(
            "nocatch",
            &runs,
            "* * * * * *",
            json!({}),
        ))
        .await;
    pause(2.5).await;
    let (mut server, stopped, started) = gap(&mut server, false, 4.0).await;
    pause(2.5).await;
    let (server, killed, restarted) = gap(&mut server, true, 4.0).await;
    pause(2.5).await;
    let fired = ticks(&server, "nocatch").await;
    assert!(
        ticks_between(&fired, stopped, started) <= 1,
        "at most one tick of the stop fired: {fired:?} (down {stopped} to {started})"
    );
    assert!(
        ticks_between(&fired, killed, restarted) <= 1,
        "at most one tick of the crash fired: {fired:?} (down {killed} to {restarted})"
    );
    let last = *fired.keys().last().expect("ticks");
    assert!(
        last > restarted,
        "it fires again after the restart: {fired:?}"
    );
    drop(server);
}

#[tokio::test]
async fn with_catch_up_each_tick_of_a_stop_and_a_crash_fires_exactly_once() {
    let mut server = Server::start().await;
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    server
        .deploy(scheduled_function(
            "catchup",
            &runs,
            "* * * * * *",
            json!({"catch_up": true}),
        ))
        .await;
    pause(2.5).await;
    let (mut server, stopped, started) = gap(&mut server, true, 4.0).await;
    pause(2.5).await;
    let (server, killed, restarted) = gap(&mut server, false, 4.0).await;
    pause(2.5).await;
    let fired = ticks(&server, "catchup").await;
    assert!(
        without_gaps(&fired),
        "every second of the run fired once, the downtimes' too: {fired:?}"
    );
    assert!(ticks_between(&fired, stopped, started) >= 3, "{fired:?}");
    assert!(ticks_between(&fired, killed, restarted) >= 3, "{fired:?}");
    assert!(
        *fired.keys().last().expect("ticks") > restarted,
        "{fired:?}"
    );
    let ids: Vec<String> = fired.values().cloned().collect();
    server
        .wait_all_terminal(&ids, Duration::from_secs(60))
        .await;
    let counted = support::count_lines(&runs);
    assert!(
        counted.values().all(|runs| *runs == 1),
        "no execution ran twice: {counted:?}"
    );
}

#[tokio::test]
async fn a_disabled_function_fires_nothing_and_a_deleted_one_starts_afresh() {
    let server = Server::start().await;
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    let mut manifest =
        scheduled_function("paused", &runs, "* * * * * *", json!({"catch_up": true}));
    manifest["enabled"] = json!(false);
    server.deploy(manifest.clone()).await;
    pause(3.0).await;
    assert!(
        ticks(&server, "paused").await.is_empty(),
        "disabled: no fire"
    );

    manifest["enabled"] = json!(true);
    let enabled = Utc::now();
    let replace = server
        .request(Method::PUT, "/v1/functions/paused")
        .json(&manifest);
    let (status, _, body) = server.call(replace).await;
    assert!(status.is_success(), "{body}");
    pause(2.5).await;
    let fired = ticks(&server, "paused").await;
    assert!(!fired.is_empty(), "enabled again: it fires");
    let first = *fired.keys().next().expect("a tick");
    assert!(
        first.timestamp() >= enabled.timestamp(),
        "the paused ticks are not caught up: {fired:?} (enabled at {enabled})"
    );

    let delete = server.request(Method::DELETE, "/v1/functions/paused");
    let (status, _, body) = server.call(delete).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let deleted = Utc::now();
    pause(3.0).await;
    let recreated = Utc::now();
    server.deploy(manifest).await;
    pause(2.5).await;
    let fired = ticks(&server, "paused").await;
    assert!(
        *fired.keys().last().expect("ticks") > recreated,
        "the new function fires: {fired:?}"
    );
    let quiet = deleted + chrono::TimeDelta::seconds(1);
    assert_eq!(
        ticks_between(&fired, quiet, recreated),
        0,
        "no catch-up from the deleted function's schedule: {fired:?} (deleted {deleted}, created again {recreated})"
    );
}

#[tokio::test]
async fn bad_schedules_are_refused_naming_the_field() {
    let server = Server::start().await;
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    let base = scheduled_function("bad", &runs, "* * * * * *", json!({}));
    let with = |schedules: Value| {
        let mut manifest = base.clone();
        manifest["schedules"] = schedules;
        manifest
    };
    let cases = [
        (
            with(json!([{"cron": "* * * * * *"}, {"cron": "99 * * * * *"}])),
            "schedules[1].cron",
        ),
        (with(json!([{"cron": "every minute"}])), "schedules[0].cron"),
        (
            with(json!([{"cron": "0 0 * * *", "timezone": "Europe/Atlantis"}])),
            "schedules[0].timezone",
        ),
        (with(json!([{"cron": "0 0 0 31 2 *"}])), "schedules[0].cron"),
        (
            with(json!(vec![json!({"cron": "* * * * * *"}); 17])),
            "at most 16",
        ),
        (
            with(json!([{"cron": "* * * * * *", "when": 1}])),
            "schedules",
        ),
        (with(json!([{"cron": 5}])), "schedules"),
    ];
    for (manifest, field) in cases {
        let (status, body) = deploy_status(&server, &manifest).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{manifest}: {body}");
        assert!(body.to_string().contains(field), "{field} is named: {body}");
    }
    let mut typed = with(json!([{"cron": "* * * * * *", "input": {"n": "one"}}]));
    typed["input_schema"] = json!({
        "type": "object",
        "properties": {"n": {"type": "integer"}},
    });
    let (status, body) = deploy_status(&server, &typed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("schedules[0].input"), "{body}");
    let (status, body) = deploy_status(&server, &with(json!([{"cron": "0 9 * * MON-FRI"}]))).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "five fields are accepted: {body}"
    );
}

#[tokio::test]
async fn a_redeploy_keeps_an_unchanged_schedule_and_starts_a_changed_one_afresh() {
    let server = Server::start().await;
    let temp = support::function_tempdir();
    let runs = temp.path().join("runs");
    let first = scheduled_function("redeploy", &runs, "* * * * * *", json!({"catch_up": true}));
    server.deploy(first.clone()).await;
    pause(2.5).await;
    // Another command, the same schedule: its cursor goes on, no tick lost or repeated.
    let mut same = first.clone();
    same["env"]["OTHER"] = json!("1");
    let put = |manifest: &Value| {
        server
            .request(Method::PUT, "/v1/functions/redeploy")
            .json(manifest)
    };
    let (status, _, body) = server.call(put(&same)).await;
    assert!(status.is_success(), "{body}");
    pause(2.5).await;
    let kept = ticks(&server, "redeploy").await;
    assert!(without_gaps(&kept) && kept.len() >= 4, "{kept:?}");

    // The schedule removed for a while, then back as it was: it starts afresh from
    // its new deploy, with no catch-up of the time it was gone.
    let mut other = same.clone();
    other["schedules"] = json!([{"cron": "0 0 0 1 1 *"}]);
    let (status, _, body) = server.call(put(&other)).await;
    assert!(status.is_success(), "{body}");
    let removed = Utc::now();
    pause(3.0).await;
    let back = Utc::now();
    let (status, _, body) = server.call(put(&same)).await;
    assert!(status.is_success(), "{body}");
    pause(2.5).await;
    let fired = ticks(&server, "redeploy").await;
    let quiet = removed + chrono::TimeDelta::seconds(1);
    assert_eq!(
        ticks_between(&fired, quiet, back),
        0,
        "nothing of the time without the schedule fired: {fired:?} (removed {removed}, back {back})"
    );
    assert!(*fired.keys().last().expect("ticks") > back, "{fired:?}");
}
