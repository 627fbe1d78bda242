//! The dashboard in a real browser: Debian's chromium driven over WebDriver (chromedriver's
//! HTTP API, spoken here with a few lines of std + serde_json) against a server on port 0.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`.ci/run` installs them); fails
//! with a clear message where they are missing, rather than passing silently.
#![cfg(feature = "server")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{Running, small_config};
use sortd::persist::{Fsync, Options};
use sortd::server::Config;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One HTTP/1.1 request to chromedriver (`Connection: close`), returning the JSON body.
fn wd(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = TcpStream::connect(addr).expect("chromedriver reachable");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver may keep the connection open, so read exactly Content-Length bytes.
    let mut reply = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = resp.parse(&reply) {
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .expect("chromedriver sends Content-Length");
            if reply.len() >= head + len {
                let body = &reply[head..head + len];
                return serde_json::from_slice(body)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
            }
        }
        let mut chunk = [0; 65536];
        let n = s.read(&mut chunk).expect("chromedriver replies");
        assert!(n > 0, "chromedriver closed the connection mid-reply");
        reply.extend_from_slice(&chunk[..n]);
    }
}

/// chromedriver and its browser session, with a fresh profile directory; all three ended
/// on drop.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Starts a browser whose profile is named after `tag` (one per test: they run at once).
    fn start(tag: &str) -> Browser {
        let profile =
            std::env::temp_dir().join(format!("sortd-chromium-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that Drop can stop the browser it starts too, even when
        // the session was never fully created.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Readiness is chromedriver's own /status; retry connecting until it answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--disable-quic", "--window-size=1000,700",
                         format!("--user-data-dir={}", browser.profile.display())],
            },
        }}});
        let reply = wd(addr, "POST", "/session", Some(&caps));
        browser.session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium could not be started: {reply}"))
            .to_string();
        browser
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        wd(self.addr, method, &path, body.as_ref())["value"].clone()
    }

    fn open(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({ "url": url })));
    }

    /// Saves a screenshot of the page to `target/<file>`, checking it is a PNG.
    fn save_screenshot(&self, file: &str) {
        let png = base64_decode(
            self.cmd("GET", "screenshot", None)
                .as_str()
                .expect("base64"),
        );
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(file);
        std::fs::write(&path, &png).unwrap();
    }

    fn script(&self, js: &str) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    fn click(&self, css: &str) {
        let found = self.cmd(
            "POST",
            "element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string();
        self.cmd("POST", &format!("element/{id}/click"), Some(json!({})));
    }

    /// Moves the mouse over the chart's bar for `value`, presses it, drags to the bar for
    /// `to` (if any) and releases: real pointer events, at coordinates measured just before.
    fn pointer(&self, value: i64, to: Option<i64>) {
        let center = |v: i64| {
            let at = self.script(&format!(
                "const b = [...document.querySelectorAll('#chart .bar')].find(b => BigInt(b.dataset.lo) <= {v}n && {v}n <= BigInt(b.dataset.hi)); \
                 const r = b.getBoundingClientRect(); \
                 return [Math.round(r.left + r.width / 2), Math.round(r.bottom - 2)];"
            ));
            (at[0].as_i64().unwrap(), at[1].as_i64().unwrap())
        };
        let (x, y) = center(value);
        let mut steps = vec![
            json!({"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x, "y": y}),
        ];
        if let Some(to) = to {
            let (x2, y2) = center(to);
            steps.extend([
                json!({"type": "pointerDown", "button": 0}),
                json!({"type": "pointerMove", "duration": 50, "origin": "viewport", "x": (x + x2) / 2, "y": y2}),
                json!({"type": "pointerMove", "duration": 50, "origin": "viewport", "x": x2, "y": y2}),
                json!({"type": "pointerUp", "button": 0}),
            ]);
        }
        self.cmd(
            "POST",
            "actions",
            Some(json!({"actions": [{
                "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                "actions": steps,
            }]})),
        );
    }

    /// Polls `js` (which returns a boolean) until it is true, for at most `limit`.
    fn wait_for(&self, js: &str, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        loop {
            if self.script(js) == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "{what} within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = TcpStream::connect(self.addr).map(|_| {
                wd(
                    self.addr,
                    "DELETE",
                    &format!("/session/{}", self.session),
                    None,
                )
            });
        }
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Decodes standard base64 (the screenshot WebDriver returns).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |n, &d| n << 6 | u32::from(d)) << (6 * (4 - c.len()));
            let bytes = n.to_be_bytes();
            bytes[1..c.len()].to_vec()
        })
        .collect()
}

fn assert_no_console_errors(browser: &Browser) {
    let logs = browser.cmd("POST", "se/log", Some(json!({"type": "browser"})));
    let entries = logs
        .as_array()
        .unwrap_or_else(|| panic!("the browser log was not readable: {logs}"));
    let errors: Vec<&Value> = entries.iter().filter(|l| l["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// The page loads without console errors; "add random" makes a bar in 1000..=10000 appear;
/// values inserted over the frame protocol appear within two seconds; clear empties it;
/// server errors are shown on the page. Saves a screenshot to `target/dashboard.png`.
#[test]
fn dashboard_in_chromium() {
    // A persistent server: the page's writes go through the log like any client's.
    let data = tempfile::tempdir().unwrap();
    let server = Running::start(Config {
        persistence: Some(Options {
            fsync: Fsync::Always,
            ..Options::new(data.path())
        }),
        ..small_config()
    });
    let browser = Browser::start("main");
    browser.open(&format!("http://{}/", server.http));
    assert_eq!(browser.script("return document.title"), json!("sortd"));
    browser.wait_for(
        "return document.getElementById('len').textContent === '0'",
        Duration::from_secs(5),
        "the page shows an empty multiset",
    );
    browser.wait_for(
        "return document.getElementById('storage').textContent === 'disk, fsync always'",
        Duration::from_secs(5),
        "the page shows where the data is kept",
    );
    assert_no_console_errors(&browser);

    browser.click("#add-random");
    browser.wait_for(
        "return [...document.querySelectorAll('#chart .bar')].some(b => \
         +b.dataset.lo >= 1000 && +b.dataset.hi <= 10000 && +b.dataset.count > 0)",
        Duration::from_secs(2),
        "a bar in 1000..=10000 appears after 'add random'",
    );
    assert_eq!(server.set.len(), 1);

    let mut frames = sortd::client::Client::connect(server.addr).unwrap();
    frames.insert_ack(&[7, 7, 42]).unwrap();
    browser.wait_for(
        "return [...document.querySelectorAll('#chart .bar')].some(b => \
         b.dataset.lo === '7' && b.dataset.count === '2') && \
         document.getElementById('len').textContent === '4'",
        Duration::from_secs(2),
        "values inserted over the frame protocol appear",
    );

    browser.save_screenshot("dashboard.png");

    browser.click("#clear");
    browser.cmd("POST", "alert/accept", Some(json!({})));
    browser.wait_for(
        "return document.querySelectorAll('#chart .bar').length === 0 && \
         document.getElementById('len').textContent === '0'",
        Duration::from_secs(2),
        "clear empties the page",
    );
    assert!(server.set.is_empty());

    // No errors in the console, from the page's load to now.
    assert_no_console_errors(&browser);

    // A server error is shown on the page, not swallowed (the failed request is, rightly,
    // a console entry, so this comes after the console check).
    browser.script("document.getElementById('values').value = '1.5'; return true");
    browser.click("#insert");
    browser.wait_for(
        "return document.getElementById('error').textContent.includes('not a 64-bit integer')",
        Duration::from_secs(2),
        "the server's error is shown on the page",
    );
}

/// Order statistics on the page: the count axis, p50/p90/p99 markers where the server's
/// quantiles are, hovering a bar, and dragging across bars to select a range whose count and
/// values (a page at a time, through the server's cursor) are shown.
#[test]
fn dashboard_order_statistics_in_chromium() {
    let server = Running::start(small_config());
    // 1..=100 once each, and 50 four more times: 104 values, the tallest bar 5.
    server.set.extend(1..=100);
    server.set.insert_n(50, 4);
    let browser = Browser::start("order");
    browser.open(&format!("http://{}/", server.http));
    browser.wait_for(
        "return document.querySelectorAll('#chart .bar').length === 100 && \
         document.querySelectorAll('.marker').length === 3",
        Duration::from_secs(5),
        "the bars and three quantile markers are drawn",
    );

    // The y axis: ticks from 0 up to at least the tallest bar.
    let ticks = browser
        .script("return [...document.querySelectorAll('#yaxis span')].map(s => +s.dataset.count)");
    let ticks: Vec<i64> = serde_json::from_value(ticks).unwrap();
    assert_eq!(ticks.first(), Some(&0), "{ticks:?}");
    assert!(*ticks.last().unwrap() >= 5 && ticks.len() >= 3, "{ticks:?}");

    // Each marker names the server's quantile and stands over that value's bar.
    let want = server.set.quantiles(&[0.5, 0.9, 0.99]);
    let markers = browser.script(
        "return [...document.querySelectorAll('.marker')].map(m => { \
           const r = m.getBoundingClientRect(); \
           const bar = [...document.querySelectorAll('#chart .bar')] \
             .find(b => b.dataset.lo === m.dataset.lo).getBoundingClientRect(); \
           return [+m.dataset.lo, r.left >= bar.left - 1 && r.left <= bar.right + 1]; })",
    );
    let markers: Vec<(i64, bool)> = serde_json::from_value(markers).unwrap();
    assert_eq!(markers.iter().map(|m| m.0).collect::<Vec<_>>(), want);
    assert!(
        markers.iter().all(|m| m.1),
        "a marker off its bar: {markers:?}"
    );

    // Hovering a bar shows its value and count.
    browser.pointer(50, None);
    browser.wait_for(
        "return document.getElementById('info').textContent === '50: 5 values'",
        Duration::from_secs(2),
        "hovering the bar of 50 shows its count",
    );

    // Dragging from 1 to 60 selects 64 values; they come 50 to a page.
    browser.pointer(1, Some(60));
    browser.wait_for(
        "return document.getElementById('sel-count').textContent === '64 values' && \
         document.getElementById('page').dataset.values !== undefined",
        Duration::from_secs(2),
        "the selection's count and first page",
    );
    let page = |b: &Browser| -> Vec<i64> {
        let text = b.script("return document.getElementById('page').dataset.values");
        serde_json::from_str(text.as_str().unwrap()).unwrap()
    };
    let mut first: Vec<i64> = (1..=49).collect();
    first.push(50);
    assert_eq!(page(&browser), first);
    let selected = browser
        .script("return document.querySelectorAll('#chart .bar.sel').length")
        .as_i64();
    assert_eq!(selected, Some(60));
    browser.click("#next-page");
    let mut second = vec![50; 4];
    second.extend(51..=60);
    let want = serde_json::to_string(&second).unwrap();
    browser.wait_for(
        &format!("return document.getElementById('page').dataset.values === '{want}'"),
        Duration::from_secs(2),
        "the next page continues where the first stopped",
    );
    assert_eq!(
        browser.script("return document.getElementById('next-page').disabled"),
        json!(true),
        "the scan is complete"
    );
    browser.save_screenshot("dashboard-order.png");

    // Past 10,000 distinct values the markers come from the histogram's counts: each stands
    // over the bar that holds the server's quantile.
    server.set.extend(101..=20_100);
    browser.wait_for(
        "return document.getElementById('distinct').textContent === '20100' && \
         [...document.querySelectorAll('.marker')].some(m => m.dataset.lo !== m.dataset.hi)",
        Duration::from_secs(3),
        "bucketed markers after the multiset grows",
    );
    let want = server.set.quantiles(&[0.5, 0.9, 0.99]);
    let bars = browser.script(
        "return [...document.querySelectorAll('.marker')].map(m => [+m.dataset.lo, +m.dataset.hi])",
    );
    let bars: Vec<(i64, i64)> = serde_json::from_value(bars).unwrap();
    assert_eq!(bars.len(), 3, "{bars:?}");
    for (v, (lo, hi)) in want.iter().zip(&bars) {
        assert!(
            lo <= v && v <= hi,
            "quantile {v} outside its marker's bar {lo}..={hi}"
        );
    }

    // Values at the ends of i64 (beyond a double's 2^53) keep every digit: selecting the
    // first two bars counts and lists exactly i64::MIN and i64::MIN + 1.
    server.set.clear();
    server
        .set
        .extend([i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX]);
    browser.wait_for(
        "return document.querySelectorAll('#chart .bar').length === 6",
        Duration::from_secs(3),
        "one bar per value at the extremes",
    );
    browser.click("#clear-sel");
    browser.pointer(i64::MIN, Some(i64::MIN + 1));
    browser.wait_for(
        "return document.getElementById('sel-count').textContent === '2 values' && \
         document.getElementById('page').textContent === \
           '-9223372036854775808 -9223372036854775807'",
        Duration::from_secs(2),
        "the extreme values selected and listed exactly",
    );
    assert_eq!(
        browser.script("return document.getElementById('error').textContent"),
        json!("")
    );
    assert_no_console_errors(&browser);
}

/// Named sets on the page: the list of sets with their sizes, choosing one to show (its
/// bars, its order statistics), the page's writes going into the set shown, and a set
/// named in the box that does not exist yet, created by the page's insert.
#[test]
fn dashboard_named_sets_in_chromium() {
    let server = Running::start(small_config());
    server.set.insert_n(1, 3);
    let mut c = sortd::client::Client::connect(server.addr).unwrap();
    c.use_set(Some("scores/β")).unwrap(); // a name that needs percent-encoding
    c.insert_ack(&[500, 500, 700]).unwrap();
    let browser = Browser::start("sets");
    browser.open(&format!("http://{}/", server.http));
    browser.wait_for(
        "return [...document.querySelectorAll('#set-list li')].map(l => l.textContent).join('|') \
         === 'default: 3|scores/β: 3'",
        Duration::from_secs(5),
        "the list shows every set with its size",
    );
    browser.wait_for(
        "return document.querySelectorAll('#chart .bar').length === 1 && \
         document.querySelector('#chart .bar').dataset.lo === '1'",
        Duration::from_secs(5),
        "default is shown first",
    );
    assert_no_console_errors(&browser);

    // Choose the other set: its bars, and writes from the page go into it.
    browser.script(
        "const s = document.getElementById('set-choice'); s.value = 'scores/β'; \
         s.dispatchEvent(new Event('change')); return true",
    );
    browser.wait_for(
        "return [...document.querySelectorAll('#chart .bar')].map(b => b.dataset.lo + ':' + \
         b.dataset.count).join(' ') === '500:2 700:1' && \
         document.getElementById('len').textContent === '3' && \
         document.querySelectorAll('.marker').length === 3",
        Duration::from_secs(5),
        "the chosen set's bars, total and quantile markers",
    );
    browser.script("document.getElementById('values').value = '600 600'; return true");
    browser.click("#insert");
    browser.wait_for(
        "return document.getElementById('len').textContent === '5'",
        Duration::from_secs(5),
        "the insert went into the set shown",
    );
    assert_eq!(c.count(600).unwrap(), 2);
    assert_eq!(server.set.len(), 3, "default untouched");
    assert_no_console_errors(&browser);

    // A set that does not exist yet: shown empty, created by the page's insert.
    browser.script("document.getElementById('set-name').value = 'fresh'; return true");
    browser.click("#set-use");
    browser.wait_for(
        "return document.getElementById('set-missing').textContent.includes('fresh') && \
         document.getElementById('len').textContent === '0'",
        Duration::from_secs(5),
        "an absent set is shown empty, saying an insert creates it",
    );
    browser.click("#add-random");
    browser.wait_for(
        "return document.getElementById('len').textContent === '1' && \
         document.getElementById('set-missing').textContent === '' && \
         [...document.querySelectorAll('#set-list li')].some(l => l.textContent === 'fresh: 1')",
        Duration::from_secs(5),
        "the page's insert created the set, and the list shows it",
    );
    assert_eq!(server.sets.get("fresh").map(|s| s.data().len()), Some(1));
    browser.save_screenshot("dashboard-sets.png");
}
