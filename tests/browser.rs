//! The HTML report in a real headless browser (Debian's Chromium, driven by chromedriver over
//! WebDriver on loopback): a real run with a failed failover scenario, a passed one, a skipped
//! and a not-applicable one is made into a report with `meshcert report`; the page must load
//! with no console error, its summary must fit a laptop screen (1366x768), and screenshots of
//! the summary and of a failover chart are written to `target/meshcert/browser/`.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WIDTH: u32 = 1366;
const HEIGHT: u32 = 768;

fn main() -> ExitCode {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        println!(
            "browser: skipped, {} not installed (apt-get install chromium chromium-driver)",
            missing.join(" and ")
        );
        println!("browser: 0 passed, 0 failed, 1 skipped");
        return ExitCode::SUCCESS;
    }
    if let Err(reason) = meshcert_local::preflight() {
        println!("browser: skipped, local meshes unavailable for the run it reports: {reason}");
        println!("browser: 0 passed, 0 failed, 1 skipped");
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(check()) {
        Ok(summary) => {
            println!("browser: {summary}");
            println!("browser: 1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("browser: FAILED: {e}");
            println!("browser: 0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

/// Kills chromedriver (and its browser) however the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn check() -> Result<String, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target/meshcert/browser");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let report = run_and_report(&work)?;

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let _driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start chromedriver: {e}"))?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let wd = WebDriver { http, base };
    wd.wait_ready().await?;
    let s = open_session(&wd, &work.join("chromium-profile")).await?;
    let result = check_report_page(&wd, &s, &report, &work).await;
    let _ = wd.delete(&s).await;
    result
}

/// A real run: never-restore fails the recovery scenario (a failover timeline with a fault
/// and failures); Solo's default is not applicable under istio; cross-network is skipped for
/// want of the capability. Makes its report with `meshcert report` and returns the report's
/// path.
fn run_and_report(work: &Path) -> Result<PathBuf, String> {
    let run = Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .args(["run", "--target", "reference", "--profile", "istio"])
        .args(["--reference-bin", env!("CARGO_BIN_EXE_meshcert-ztunnel")])
        .args(["--reference-defect", "never-restore"])
        .args([
            "--capabilities",
            "network-faults,app-faults,scale,ztunnel-logs,ztunnel-metrics,topology",
        ])
        .args([
            "--tags",
            "@L4-FO-2 or @L4-FO-4 or @TD-DEF-1 or @TD-MODE-XNET",
        ])
        .arg("--out")
        .arg(work)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run meshcert: {e}"))?;
    let results = work.join("results.json");
    if !results.is_file() {
        return Err(format!(
            "the run wrote no results ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let report = work.join("from-cli.html");
    let made = Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .arg("report")
        .arg(&results)
        .arg("-o")
        .arg(&report)
        .output()
        .map_err(|e| e.to_string())?;
    if !made.status.success() {
        return Err(format!(
            "meshcert report failed: {}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }
    let verdicts = std::fs::read_to_string(&results).map_err(|e| e.to_string())?;
    for verdict in [
        "\"passed\"",
        "\"failed\"",
        "\"skipped\"",
        "\"not_applicable\"",
    ] {
        if !verdicts.contains(&format!("\"verdict\": {verdict}")) {
            return Err(format!("the run has no {verdict} scenario to show"));
        }
    }
    Ok(report)
}

/// A headless Chromium session in a `WIDTH`x`HEIGHT` window; returns its path
/// (`/session/<id>`).
async fn open_session(wd: &WebDriver, profile: &Path) -> Result<String, String> {
    let session = wd
        .post(
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        format!("--window-size={WIDTH},{HEIGHT}"),
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--disable-quic", "--no-first-run",
                        format!("--user-data-dir={}", profile.display())]
                }
            }}}),
        )
        .await?;
    let id = session["sessionId"]
        .as_str()
        .ok_or_else(|| format!("no session: {session}"))?
        .to_string();
    Ok(format!("/session/{id}"))
}

/// Loads the report in session `s`: no console error, a summary that fits the window, and a
/// labelled failover chart; screenshots of both go to `work`.
async fn check_report_page(
    wd: &WebDriver,
    s: &str,
    report: &Path,
    work: &Path,
) -> Result<String, String> {
    wd.post(
        &format!("{s}/url"),
        json!({"url": format!("file://{}", report.display())}),
    )
    .await?;
    let title = wd.script(s, "return document.title").await?;
    check_no_page_errors(wd, s).await?;
    let bottom = check_summary_fits(wd, s).await?;
    let summary_png = work.join("summary.png");
    let shot = wd.get(&format!("{s}/screenshot")).await?;
    save_png(&shot, &summary_png)?;
    let chart_png = work.join("failover.png");
    check_failover_chart(wd, s, &chart_png).await?;
    Ok(format!(
        "{:?} loaded in Chromium at {WIDTH}x{HEIGHT} with no console error; summary ends at {bottom:.0}px; \
         screenshots {} and {}",
        title.as_str().unwrap_or(""),
        summary_png.display(),
        chart_png.display()
    ))
}

/// No SEVERE entry in the browser's console, and nothing caught by the page's own handler.
async fn check_no_page_errors(wd: &WebDriver, s: &str) -> Result<(), String> {
    let logs = wd
        .post(&format!("{s}/se/log"), json!({"type": "browser"}))
        .await?;
    let severe: Vec<&Value> = logs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["level"] == "SEVERE")
        .collect();
    if !severe.is_empty() {
        return Err(format!("console errors: {severe:?}"));
    }
    let js_errors = wd
        .script(s, "return document.getElementById('js-errors').textContent")
        .await?;
    if js_errors.as_str() != Some("") {
        return Err(format!("the page caught errors: {js_errors}"));
    }
    Ok(())
}

/// The summary fits the window, neither taller nor wider; returns where it ends (px).
async fn check_summary_fits(wd: &WebDriver, s: &str) -> Result<f64, String> {
    let size = wd
        .script(
            s,
            "var r=document.getElementById('summary').getBoundingClientRect();\
             return [r.bottom, document.documentElement.scrollWidth, window.innerWidth, window.innerHeight]",
        )
        .await?;
    let bottom = size[0].as_f64().unwrap_or(f64::MAX);
    let scroll_width = size[1].as_f64().unwrap_or(f64::MAX);
    let (inner_w, inner_h) = (
        size[2].as_f64().unwrap_or(0.0),
        size[3].as_f64().unwrap_or(0.0),
    );
    if bottom > inner_h || scroll_width > inner_w {
        return Err(format!(
            "the summary does not fit a {inner_w}x{inner_h} window: it ends at {bottom}px, the page is {scroll_width}px wide"
        ));
    }
    Ok(bottom)
}

/// The failover chart of the failed scenario is labelled with its units; its screenshot goes
/// to `png`.
async fn check_failover_chart(wd: &WebDriver, s: &str, png: &Path) -> Result<(), String> {
    let chart = wd
        .post(
            &format!("{s}/element"),
            json!({"using": "css selector", "value": "details[data-verdict=failed] figure[id^=timeline-]"}),
        )
        .await?;
    let element = chart
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no failover chart in the failed scenario: {chart}"))?
        .to_string();
    let text = wd
        .script(
            s,
            "return document.querySelector('details[data-verdict=failed] figure[id^=timeline-]').textContent",
        )
        .await?;
    let text = text.as_str().unwrap_or("");
    for label in ["time since the mesh was created (s)", "fault:", "failed"] {
        if !text.contains(label) {
            return Err(format!(
                "the failover chart does not say {label:?}: {text:?}"
            ));
        }
    }
    let shot = wd.get(&format!("{s}/element/{element}/screenshot")).await?;
    save_png(&shot, png)
}

struct WebDriver {
    http: reqwest::Client,
    base: String,
}

impl WebDriver {
    async fn wait_ready(&self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(v) = self.get("/status").await
                && v["ready"] == true
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("chromedriver was not ready within 20s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn answer(response: reqwest::Response) -> Result<Value, String> {
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("WebDriver answered {status}: {body}"));
        }
        Ok(body["value"].clone())
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        Self::answer(r).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        Self::answer(r).await
    }

    async fn delete(&self, path: &str) -> Result<Value, String> {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Self::answer(r).await
    }

    async fn script(&self, session: &str, script: &str) -> Result<Value, String> {
        self.post(
            &format!("{session}/execute/sync"),
            json!({"script": script, "args": []}),
        )
        .await
    }
}

/// Writes a WebDriver screenshot (base64 PNG) and checks it is a PNG.
fn save_png(value: &Value, path: &Path) -> Result<(), String> {
    let bytes = support::base64_decode(value.as_str().unwrap_or(""))?;
    if !bytes.starts_with(b"\x89PNG") {
        return Err("the screenshot is not a PNG".into());
    }
    std::fs::write(path, bytes).map_err(|e| e.to_string())
}
