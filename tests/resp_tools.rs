//! Redis's own tools against the server binary: README's `redis-cli` session replayed
//! line by line, `redis-cli`'s `help` (built from `COMMAND DOCS`) for every command, its
//! `--scan` mode, `redis-benchmark` with nothing lost, and a session through `redis-py`.
//!
//! Needs `redis-cli` and `redis-benchmark` (Debian's `redis-tools`) and Python's `redis`
//! package; `.ci/run` installs them. Fails, saying so, when they are missing.
#![cfg(feature = "server")]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output};

use common::Proc;

fn server() -> (Proc, SocketAddr) {
    let p = Proc::start(None, &["--resp-addr", "127.0.0.1:0"]).expect("server starts");
    let resp = p.resp.expect("a RESP address in the banner");
    (p, resp)
}

/// Runs a Redis tool, or fails saying how to get it.
fn tool(name: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(name)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}: install Debian's redis-tools (.ci/run does)"));
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// What a tool printed, stdout then stderr.
fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Splits a shell command line at spaces, honouring single quotes (all README uses).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

/// README's redis-cli session, run command by command against a fresh server: every
/// line it shows is what redis-cli prints.
#[test]
fn readme_redis_cli_session_is_what_redis_cli_prints() {
    let readme = include_str!("../README.md");
    let marker = "<!-- redis-cli session: replayed by tests/resp_tools.rs -->";
    let at = readme
        .find(marker)
        .expect("README marks its redis-cli session");
    let block = readme[at..]
        .split("```console\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a console block after the marker");
    let (_p, addr) = server();
    let port = addr.port().to_string();
    let mut lines = block.lines().peekable();
    let mut commands = 0;
    while let Some(line) = lines.next() {
        let command = line
            .strip_prefix("$ redis-cli -p 16380 ")
            .unwrap_or_else(|| panic!("not a redis-cli command: {line:?}"));
        let mut expected = Vec::new();
        while let Some(next) = lines.next_if(|l| !l.starts_with("$ ")) {
            expected.push(next);
        }
        let words = shell_words(command);
        let mut args = vec!["-p", port.as_str()];
        args.extend(words.iter().map(String::as_str));
        let out = tool("redis-cli", &args, None);
        let got = printed(&out);
        // redis-cli ends an error with an empty line; README leaves it out, and the
        // spaces that end some lines (Redis's unknown-command error).
        let mut got: Vec<&str> = got.lines().map(str::trim_end).collect();
        while got.last() == Some(&"") {
            got.pop();
        }
        let expected: Vec<&str> = expected.iter().map(|l| l.trim_end()).collect();
        assert_eq!(got, expected, "$ redis-cli {command}");
        commands += 1;
    }
    assert!(commands >= 15, "{commands} commands in README's session");
    // README's command table names every command there is.
    let section = &readme[readme.find("## Redis protocol").unwrap()..at];
    for c in sortd::resp::COMMANDS {
        assert!(
            section.contains(&format!("`{}", c.name)),
            "README's RESP table misses {}",
            c.name
        );
    }
}

/// `redis-cli` builds its hints and `help` from `COMMAND DOCS` (asserting on the reply's
/// shape as it goes: a malformed entry aborts it): `help` shows every command with the
/// arguments the table documents, and the groups.
#[test]
fn redis_cli_help_shows_every_command_from_command_docs() {
    let (_p, addr) = server();
    let mut script = String::new();
    for c in sortd::resp::COMMANDS {
        script.push_str(&format!("help {}\n", c.name));
        for sub in c.subcommands {
            script.push_str(&format!("help {} {}\n", c.name, sub.name));
        }
    }
    script.push_str("help @multiset\n");
    let out = tool(
        "redis-cli",
        &["-p", &addr.port().to_string()],
        Some(script.as_bytes()),
    );
    assert!(out.status.success(), "{}", printed(&out));
    // Without the colours it prints around names and labels.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut plain = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else if c != '\r' {
            plain.push(c);
        }
    }
    let mut documented = 0;
    for c in sortd::resp::COMMANDS {
        let mut entries = vec![(c.name.to_string(), c)];
        entries.extend(
            c.subcommands
                .iter()
                .map(|s| (format!("{} {}", c.name, s.name), s)),
        );
        for (name, command) in entries {
            let heading = format!("  {name} {}", command.hint());
            assert!(
                plain.lines().any(|l| l.trim_end() == heading.trim_end()),
                "{heading:?} missing from redis-cli's help:\n{plain}"
            );
            assert!(
                plain.contains(&format!("summary: {}", command.summary)),
                "{name}'s summary"
            );
            documented += 1;
        }
    }
    assert!(documented > sortd::resp::COMMANDS.len());
    assert!(plain.contains("group: multiset"), "{plain}");
}

/// `redis-cli --scan` pages through `SCAN` with its numeric cursor to the end.
#[test]
fn redis_cli_scan_mode_lists_every_matching_set() {
    let (_p, addr) = server();
    let port = addr.port().to_string();
    let mut wire = Vec::new();
    for i in 0..500 {
        wire.extend_from_slice(
            redis::cmd("MS.ADD")
                .arg(format!("scan:{i:03}"))
                .arg(i)
                .get_packed_command()
                .as_slice(),
        );
    }
    let out = tool("redis-cli", &["-p", &port, "--pipe"], Some(&wire));
    assert!(
        printed(&out).contains("errors: 0, replies: 500"),
        "{}",
        printed(&out)
    );
    for (pattern, count) in [("scan:*", 500), ("scan:1?[05]", 20), ("nomatch*", 0)] {
        let out = tool(
            "redis-cli",
            &["-p", &port, "--scan", "--pattern", pattern],
            None,
        );
        let mut names: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{pattern}: {names:?}");
        assert!(
            names
                .iter()
                .all(|n| sortd::resp::glob_match(pattern.as_bytes(), n.as_bytes()))
        );
    }
}

/// `redis-benchmark` runs `MS.ADD key __rand_int__` (zero-padded numbers) plain and
/// pipelined, without warnings, and every insert is there afterwards.
#[test]
fn redis_benchmark_runs_and_loses_nothing() {
    let (_p, addr) = server();
    let port = addr.port().to_string();
    for (key, pipeline, n) in [("bench:plain", "1", 3000), ("bench:pipe", "16", 20_000)] {
        let total = n.to_string();
        let out = tool(
            "redis-benchmark",
            &[
                "-p",
                &port,
                "-c",
                "8",
                "-n",
                &total,
                "-r",
                "100000",
                "-P",
                pipeline,
                "-q",
                "MS.ADD",
                key,
                "__rand_int__",
            ],
            None,
        );
        let text = printed(&out);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("requests per second"), "{text}");
        assert!(
            !text.contains("WARNING") && !text.contains("rror"),
            "{text}"
        );
        let out = tool("redis-cli", &["-p", &port, "MS.CARD", key], None);
        assert_eq!(printed(&out).trim(), total, "{key}");
    }
}

/// A session through redis-py, in RESP2 and RESP3: its generic `execute_command`, its
/// `scan_iter`, a pipeline, `info`, `type`, and an error raised as `ResponseError`.
#[test]
fn redis_py_session() {
    let (_p, addr) = server();
    let script = r#"
import json, sys
try:
    import redis
except ImportError:
    sys.exit("python3 -m pip install redis (.ci/run does)")
out = {}
for proto in (2, 3):
    r = redis.Redis(port=int(sys.argv[1]), protocol=proto, decode_responses=True)
    key = f"py{proto}"
    got = {"add": r.execute_command("MS.ADD", key, 3, 1, 2, 2)}
    got["range"] = r.execute_command("MS.RANGE", key, "-inf", "+inf", "WITHCOUNTS")
    got["quantile"] = r.execute_command("MS.QUANTILE", key, 0.5, 1)
    got["scan"] = sorted(r.scan_iter(match="py*", count=2))
    got["type"] = r.type(key)
    p = r.pipeline(transaction=False)
    for i in range(5):
        p.execute_command("MS.ADD", key, 100 + i)
    got["pipeline"] = p.execute()
    got["version"] = r.info()["redis_version"]
    try:
        r.execute_command("MS.ADD", key, "x")
    except redis.ResponseError as e:
        got["error"] = str(e)
    out[proto] = got
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &addr.port().to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", printed(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for proto in ["2", "3"] {
        let g = &got[proto];
        assert_eq!(g["add"], 4, "{proto}: {g}");
        let range = if proto == "2" {
            serde_json::json!([1, 1, 2, 2, 3, 1])
        } else {
            serde_json::json!([[1, 1], [2, 2], [3, 1]])
        };
        assert_eq!(g["range"], range, "{proto}");
        assert_eq!(g["quantile"], serde_json::json!([2, 3]), "{proto}");
        assert_eq!(g["type"], "multiset");
        assert_eq!(g["pipeline"], serde_json::json!([5, 6, 7, 8, 9]));
        assert_eq!(g["error"], "value is not an integer or out of range");
    }
    assert_eq!(got["3"]["scan"], serde_json::json!(["py2", "py3"]));
    assert_eq!(got["2"]["version"], "7.2.0");
}
