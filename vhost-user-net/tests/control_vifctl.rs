//! `vifctl` end to end against the real daemon binary: tables, `--json` that parses, every
//! command, and exit codes that mean something.

mod control_support;
mod daemon_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use control_support::{start_daemon, vif_table};
use daemon_support::Scratch;

const VIFCTL: &str = env!("CARGO_BIN_EXE_vifctl");

fn vifctl(control: &Path, args: &[&str]) -> Output {
    Command::new(VIFCTL)
        .arg("--socket")
        .arg(control)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vifctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `vifctl --json`, expects success, returns the parsed `result`.
fn json(control: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = vifctl(control, &all);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1, "one JSON line: {text}");
    let response: serde_json::Value = serde_json::from_str(&text).expect("--json parses");
    assert_eq!(response["ok"], true);
    response["result"].clone()
}

#[test]
fn every_command_against_the_daemon() {
    let scratch = Scratch::new();
    let daemon = start_daemon(
        &scratch,
        &vif_table("web-1", 1, "labels = { tenant = \"acme\" }"),
        &["web-1"],
    );
    let control = daemon.control.as_path();

    let list = vifctl(control, &["list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let table = stdout(&list);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("VIF ") && header.contains("STATE") && header.contains("SOCKET"),
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("web-1 ") && row.contains("acme") && row.contains("lab"),
        "{table}"
    );

    let status = json(control, &["status"]);
    assert_eq!(status["vifs"], 1);
    assert!(status["metrics_listen"].is_string());

    let web2 = scratch.write("web-2.toml", &vif_table("web-2", 2, ""));
    let created = json(control, &["create", "--config", web2.to_str().unwrap()]);
    assert_eq!(created["added"], serde_json::json!(["web-2"]));
    assert!(
        scratch.join("web-2.sock").exists(),
        "relative socket resolved beside the file"
    );

    let listed = json(control, &["list"]);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["web-1", "web-2"]);

    let stats = json(control, &["stats", "web-1"]);
    assert_eq!(stats[0]["id"], "web-1");
    assert_eq!(stats[0]["tx"]["packets"], 0);
    let shown = stdout(&vifctl(control, &["show", "web-2"]));
    assert!(
        shown.contains("vif:") && shown.contains("web-2") && shown.contains("\"mtu\": 1500"),
        "{shown}"
    );
    let segments = stdout(&vifctl(control, &["segments"]));
    assert!(
        segments.contains("lab") && segments.contains("web-1,web-2"),
        "{segments}"
    );

    // apply: keep web-2 with a new MTU, drop web-1.
    let desired = scratch.write("desired.toml", &vif_table("web-2", 2, "mtu = 4000"));
    let dry = vifctl(control, &["apply", desired.to_str().unwrap(), "--dry-run"]);
    let dry_text = stdout(&dry);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        dry_text.starts_with("dry run: nothing changed\n"),
        "{dry_text}"
    );
    assert!(
        dry_text.contains("~ web-2  restarted (mtu)") && dry_text.contains("- web-1  removed"),
        "{dry_text}"
    );
    assert!(scratch.join("web-1.sock").exists());
    let applied = json(control, &["apply", desired.to_str().unwrap()]);
    assert_eq!(applied["removed"], serde_json::json!(["web-1"]));
    assert!(!scratch.join("web-1.sock").exists());

    let removed = vifctl(control, &["remove", "web-2"]);
    assert!(removed.status.success());
    assert_eq!(stdout(&removed), "- web-2  removed\n");
    assert!(!scratch.join("web-2.sock").exists());

    // Exit codes.
    let missing = vifctl(control, &["show", "web-2"]);
    assert_eq!(missing.status.code(), Some(3), "no such VIF");
    assert!(stderr(&missing).contains("no vif \"web-2\""));
    let invalid = scratch.write("bad.toml", &vif_table("x", 9, "mtu = 1"));
    let refused = vifctl(control, &["apply", invalid.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "refused by the daemon");
    assert!(stderr(&refused).contains("mtu 1"), "{}", stderr(&refused));
    let unreadable = vifctl(control, &["create", "--config", "/nonexistent/vif.toml"]);
    assert_eq!(unreadable.status.code(), Some(5));
    // Policies are validated by the real engines, then refused as not applied yet.
    let acl = scratch.write(
        "acl.toml",
        "name = \"web\"\nrules = [{ action = \"allow\", protocol = \"tcp\", dst_ports = \"80\" }]\n",
    );
    let set = vifctl(
        control,
        &[
            "set-acl",
            "web-2",
            "ingress",
            "--file",
            acl.to_str().unwrap(),
        ],
    );
    assert_eq!(set.status.code(), Some(3), "web-2 is gone");
    let create_again = vifctl(control, &["create", "--config", web2.to_str().unwrap()]);
    assert!(create_again.status.success(), "{}", stderr(&create_again));
    let set = vifctl(
        control,
        &[
            "--json",
            "set-acl",
            "web-2",
            "ingress",
            "--file",
            acl.to_str().unwrap(),
        ],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let response: serde_json::Value = serde_json::from_str(&stdout(&set)).unwrap();
    assert_eq!(response["result"]["field"], "acl.ingress", "{response}");
    assert_eq!(response["result"]["rules"], 1, "{response}");
    let bad_acl = scratch.write(
        "bad-acl.toml",
        "name = \"web\"\nrules = [{ action = \"allow\", src = \"10.0.0.0/8\", dst = \"::/0\" }]\n",
    );
    let refused_acl = vifctl(
        control,
        &[
            "--json",
            "set-acl",
            "web-2",
            "egress",
            "--file",
            bad_acl.to_str().unwrap(),
        ],
    );
    let response: serde_json::Value = serde_json::from_str(&stdout(&refused_acl)).unwrap();
    assert_eq!(response["error"]["code"], "invalid_config", "{response}");
    let qos = vifctl(control, &["set-qos", "web-2", "--clear"]);
    assert!(qos.status.success(), "{}", stderr(&qos));
    assert_eq!(stdout(&qos), "web-2: qos cleared\n");
    let usage = vifctl(control, &["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(daemon.handle.stop().unwrap().is_some_and(|s| s.success()));

    let down = vifctl(control, &["list"]);
    assert_eq!(down.status.code(), Some(4), "daemon gone");
    let message = stderr(&down);
    assert!(
        message.contains("cannot connect to the control socket at")
            && message.contains("is the daemon running?"),
        "{message}"
    );
}

#[test]
fn help_has_examples() {
    let output = Command::new(VIFCTL).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = stdout(&output);
    assert!(
        help.contains("Examples:") && help.contains("vifctl apply desired.toml --dry-run"),
        "{help}"
    );
    assert!(help.contains("Exit codes:"));
}
