//! End to end, as a customer: the portal on `pve-sim`, driven through headless Chromium with
//! WebDriver. Needs Debian's `chromium` and `chromium-driver` (the test fails, with that message,
//! when they are missing) and the noVNC npm package (fetched by the portal's first start, as
//! `cargo run -p examples --bin portal` does; needs `npm`).
//!
//! Screenshots go to `$CARGO_TARGET_TMPDIR/screenshots`, and to `docs/screenshots/` when
//! `PORTAL_SCREENSHOTS=docs`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use examples::portal::{self, StartOptions, config::PortalConfig};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use pve_vps_sim::{RequestMatch, SimConfig};
use std::panic::AssertUnwindSafe;

/// chromedriver, ended when dropped (the browser itself is closed through WebDriver first,
/// also when a step fails).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(bin))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&tmp).expect("screenshot dir");
    std::fs::write(tmp.join(format!("{name}.png")), &png).expect("write screenshot");
    if std::env::var("PORTAL_SCREENSHOTS").as_deref() == Ok("docs") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        std::fs::create_dir_all(&docs).expect("docs/screenshots");
        std::fs::write(docs.join(format!("{name}.png")), &png).expect("write screenshot");
    }
}

/// Polls `f` until it returns `Some`, or fails with `what` after `secs`.
async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn wait_text(c: &Client, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = text(c, css).await.filter(|t| pred(t)) {
            return t;
        }
        if Instant::now() > end {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let page = text(c, "main").await.unwrap_or_default();
            panic!("timed out waiting for {what} at {url}:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Clicks a button once it is enabled: a dimmed button (a lock still holds, e.g. right after a
/// task) becomes usable after a refresh, as a customer would see.
async fn click_enabled(c: &Client, css: &str) {
    wait_enabled(c, css).await;
    click(c, css).await;
}

/// Waits (refreshing) until a button is enabled.
async fn wait_enabled(c: &Client, css: &str) {
    wait_for(30, &format!("{css} to be enabled"), || async {
        let b = c.find(Locator::Css(css)).await.ok()?;
        if b.attr("disabled").await.ok()?.is_none() {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.ok()?;
        None
    })
    .await;
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("type");
}

/// Clicks `button` in the first `rows` row whose text contains `contains` (`what` names the
/// button); whether there was one.
async fn click_in_row(c: &Client, rows: &str, contains: &str, button: &str, what: &str) -> bool {
    for row in c.find_all(Locator::Css(rows)).await.expect("rows") {
        if row.text().await.unwrap_or_default().contains(contains) {
            row.find(Locator::Css(button))
                .await
                .expect(what)
                .click()
                .await
                .expect("click");
            return true;
        }
    }
    false
}

/// Mounts the Ubuntu ISO from the ISO page and waits until the page shows it mounted.
async fn mount_ubuntu(c: &Client, base: &str) {
    c.goto(&format!("{base}/s/100/iso")).await.expect("iso");
    wait_enabled(c, "button.mount").await;
    let mounted_one = click_in_row(c, "tr", "Ubuntu-24.04", "button.mount", "mount button").await;
    assert!(mounted_one, "the Ubuntu ISO is listed");
    wait_text(c, "#mounted", "the mounted ISO", |t| {
        t.contains("Ubuntu-24.04")
    })
    .await;
}

/// Waits for a task box (if any) to finish and the page to reload without `task=`.
async fn wait_task_done(c: &Client) {
    wait_for(30, "the task to finish", || async {
        let url = c.current_url().await.ok()?;
        (!url.query().unwrap_or("").contains("task=")).then_some(())
    })
    .await;
}

/// The browser tests take turns: each drives its own Chromium, and two at once on a small
/// machine only make both slower.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A portal on the simulator, chromedriver and a headless Chromium of `width` x `height`.
struct Session {
    running: portal::Running,
    client: Client,
    profile: PathBuf,
    _driver: Driver,
}

impl Session {
    async fn start(width: u32, height: u32) -> Self {
        let chromium = which("chromium").or_else(|| which("chromium-browser"));
        let driver_bin = which("chromedriver");
        let (Some(chromium), Some(driver_bin)) = (chromium, driver_bin) else {
            panic!(
                "the browser test needs Debian's `chromium` and `chromium-driver` packages: \
                 apt-get install -y --no-install-recommends chromium chromium-driver"
            );
        };

        let novnc_cached = PortalConfig::default()
            .cache_dir()
            .join("novnc-1/package/core/rfb.js")
            .is_file();
        assert!(
            novnc_cached || which("npm").is_some(),
            "the console part needs the noVNC npm package: install Debian's `npm` \
             (apt-get install -y --no-install-recommends npm) so the portal can fetch it"
        );

        let cfg = PortalConfig {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..Default::default()
        };
        let opts = StartOptions {
            sim: Some(SimConfig::for_tests()),
            fetch_novnc: true,
            ..Default::default()
        };
        let running = portal::start(cfg, opts).await.expect("portal starts");

        let port = free_port();
        let driver = Driver(
            Command::new(&driver_bin)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let profile =
            std::env::temp_dir().join(format!("portal-browser-{}-{port}", std::process::id()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--disable-breakpad", "--disable-crash-reporter",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let wd = format!("http://127.0.0.1:{port}");
        let client: Client = wait_for(20, "chromedriver to accept a session", || {
            let mut b = ClientBuilder::new(connector.clone());
            b.capabilities(caps.clone());
            let wd = wd.clone();
            async move { b.connect(&wd).await.ok() }
        })
        .await;
        Self {
            running,
            client,
            profile,
            _driver: driver,
        }
    }

    /// Runs `steps` under `secs`; the browser, the portal and the profile go whatever happens.
    async fn run<F>(self, secs: u64, steps: F)
    where
        F: AsyncFnOnce(&Client, &str, &portal::Running),
    {
        let base = format!("http://{}", self.running.addr);
        let outcome = AssertUnwindSafe(tokio::time::timeout(
            Duration::from_secs(secs),
            steps(&self.client, &base, &self.running),
        ))
        .catch_unwind()
        .await;
        let _ = self.client.close().await;
        self.running.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.profile);
        match outcome {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(Err(_)) => panic!("the browser test took longer than {secs} s"),
            Ok(Ok(())) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_walks_through_the_client_area() {
    let _turn = ONE_BROWSER.lock().await;
    Session::start(1280, 900)
        .await
        .run(
            170,
            async |c: &Client, base: &str, running: &portal::Running| steps(c, base, running).await,
        )
        .await;
}

async fn steps(c: &Client, base: &str, running: &portal::Running) {
    // Log in.
    c.goto(&format!("{base}/login")).await.expect("login page");
    shot(c, "login").await;
    fill(c, "#username", "alice").await;
    fill(c, "#password", "alice-demo-pass").await;
    click(c, "#login").await;
    wait_text(c, "h1", "the services list", |t| t == "My services").await;

    // Overview: IPs and a status that changes after Stop.
    c.goto(&format!("{base}/s/100")).await.expect("overview");
    wait_text(c, "#status", "status running", |t| t.starts_with("running")).await;
    let ips = text(c, "#ips").await.expect("ips");
    assert!(
        ips.contains("203.0.113.10/24") && ips.contains("2001:db8:10::10/64"),
        "{ips}"
    );
    shot(c, "overview").await;
    click_enabled(c, "#btn-stop").await;
    wait_task_done(c).await;
    wait_text(c, "#status", "status stopped", |t| t.starts_with("stopped")).await;
    let start_enabled = c
        .find(Locator::Css("#btn-start"))
        .await
        .expect("start")
        .attr("disabled")
        .await
        .expect("attr");
    assert_eq!(start_enabled, None, "Start is usable when stopped");
    // Reboot and Reset are dimmed while the VM is stopped.
    for id in ["#btn-reboot", "#btn-reset"] {
        let b = c.find(Locator::Css(id)).await.expect(id);
        let disabled = b.attr("disabled").await.expect("attr");
        assert!(disabled.is_some(), "{id} is disabled when stopped");
        let opacity = b.css_value("opacity").await.expect("opacity");
        assert_eq!(opacity, "0.4", "{id} is dimmed");
    }
    click_enabled(c, "#btn-start").await;
    wait_task_done(c).await;
    wait_text(c, "#status", "status running again", |t| {
        t.starts_with("running")
    })
    .await;
    // Reset asks first: declining starts nothing.
    click_enabled(c, "#btn-reset").await;
    c.dismiss_alert().await.expect("decline the reset");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = c.current_url().await.expect("url");
    assert!(
        !url.as_str().contains("task="),
        "no task after declining: {url}"
    );
    // Reboot: the task box follows it to OK, and the VM runs.
    click_enabled(c, "#btn-reboot").await;
    let finished = wait_text(c, "#task .t", "the reboot task to end", |t| {
        t.starts_with("Finished")
    })
    .await;
    assert!(
        finished.contains("qmreboot") && finished.contains("(OK)"),
        "{finished}"
    );
    shot(c, "reboot").await;
    wait_task_done(c).await;
    wait_text(c, "#status", "status running after the reboot", |t| {
        t.starts_with("running")
    })
    .await;

    // Snapshots: take one, see it with its lifetime.
    c.goto(&format!("{base}/s/100/snapshots"))
        .await
        .expect("snapshots");
    click_enabled(c, "#take-snapshot").await;
    wait_task_done(c).await;
    let row = wait_text(c, "#snapshots", "the new snapshot", |t| t.contains("snap_")).await;
    let new = row
        .lines()
        .find(|l| l.contains("snap_"))
        .unwrap_or_default();
    assert!(
        new.contains(" days ") && !new.contains(" 0 days 00:00:00"),
        "lifetime countdown shown: {row}"
    );
    shot(c, "snapshots").await;
    // Kept for the rollback after the ISO step (it has nothing mounted).

    // Backups: schedule Monday 02:30, then back up now.
    c.goto(&format!("{base}/s/100/backups"))
        .await
        .expect("backups");
    click(c, "#day1").await;
    click(c, "#save-schedule").await;
    wait_text(c, "#flash", "schedule saved", |t| {
        t.contains("Schedule saved")
    })
    .await;
    let checked = c
        .find(Locator::Css("#day1"))
        .await
        .expect("day1")
        .prop("checked")
        .await
        .expect("prop");
    assert_eq!(checked.as_deref(), Some("true"), "Monday stays scheduled");
    let quota_before = text(c, "#backup-quota").await.expect("quota");
    wait_enabled(c, "#run-backup").await;
    fill(c, "#backup-notes", "from the browser test").await;
    click_enabled(c, "#run-backup").await;
    wait_task_done(c).await;
    let table = wait_text(c, "#backups", "the new backup", |t| {
        t.contains("from the browser test")
    })
    .await;
    let after = text(c, "#backup-quota").await.expect("quota");
    assert_ne!(quota_before, after, "quota counts the new backup: {table}");
    shot(c, "backups").await;

    // Access Denied: mail-01's product has no firewall.
    c.goto(&format!("{base}/s/102/firewall"))
        .await
        .expect("denied page");
    wait_text(c, "#denied", "Access Denied", |t| {
        t.contains("Access Denied")
    })
    .await;
    shot(c, "access-denied").await;

    // Temporarily unavailable: the whole cluster answers errors, so the page names the
    // cluster and the reason instead of a generic failure.
    let sim = running
        .sim
        .as_ref()
        .expect("the portal runs on the simulator");
    sim.fail_requests(RequestMatch::path("/cluster/resources"), 500, 1000);
    tokio::time::sleep(Duration::from_millis(2100)).await; // the shared read cache expires
    c.goto(&format!("{base}/s/100")).await.expect("overview");
    wait_text(c, "h1", "Temporarily unavailable", |t| {
        t == "Temporarily unavailable"
    })
    .await;
    let why = text(c, "#unavailable").await.unwrap_or_default();
    assert!(why.contains("(default)"), "names the cluster: {why}");
    assert!(why.contains("HTTP 500"), "gives the reason: {why}");
    shot(c, "cluster-unavailable").await;
    sim.clear_faults();

    // Something went wrong: the cluster is up but this VM's snapshot list cannot be read.
    sim.fail_requests(RequestMatch::path("/qemu/100/snapshot"), 500, 1000);
    c.goto(&format!("{base}/s/100/snapshots"))
        .await
        .expect("snapshots");
    wait_text(c, "h1", "Something went wrong", |t| {
        t == "Something went wrong"
    })
    .await;
    shot(c, "something-went-wrong").await;
    sim.clear_faults();

    // Reverse DNS: set the PTR of the main IPv4.
    c.goto(&format!("{base}/s/100/rdns")).await.expect("rdns");
    let mut set = false;
    for row in c.find_all(Locator::Css("#rdns tr")).await.expect("rows") {
        if row
            .text()
            .await
            .unwrap_or_default()
            .starts_with("203.0.113.10")
        {
            let input = row
                .find(Locator::Css("input[name=hostname]"))
                .await
                .expect("input");
            input.clear().await.expect("clear");
            input.send_keys("web-01.example.com").await.expect("type");
            row.find(Locator::Css("button"))
                .await
                .expect("save")
                .click()
                .await
                .expect("click");
            set = true;
            break;
        }
    }
    assert!(set, "the main IPv4 is listed");
    wait_text(c, "#flash", "PTR saved", |t| t.contains("PTR saved")).await;
    let v = c
        .execute("return [...document.querySelectorAll('#rdns input[name=hostname]')].map(i=>i.value).join(',')", vec![])
        .await
        .expect("values");
    assert!(
        v.as_str().unwrap_or("").contains("web-01.example.com"),
        "{v}"
    );
    shot(c, "rdns").await;

    // Reset password: shown once.
    c.goto(&format!("{base}/s/100/password"))
        .await
        .expect("password");
    click_enabled(c, "#reset-password").await;
    let pw = wait_text(c, "#new-password", "the new password", |t| t.len() >= 16).await;
    assert!(!pw.contains(' '), "{pw}");
    shot(c, "reset-password").await;

    // Firewall: add a rule at position 1 and see it there.
    c.goto(&format!("{base}/s/100/firewall"))
        .await
        .expect("firewall");
    fill(c, "#dport", "8443").await;
    fill(c, "#comment", "browser-test").await;
    fill(c, "#position", "1").await;
    click(c, "#add").await;
    wait_text(c, "#flash", "rule added", |t| t.contains("Rule added")).await;
    let pos = wait_for(10, "the new rule's row", || async {
        for row in c.find_all(Locator::Css("tr.rule")).await.ok()? {
            if row.text().await.ok()?.contains("browser-test") {
                return row.find(Locator::Css(".pos")).await.ok()?.text().await.ok();
            }
        }
        None
    })
    .await;
    assert_eq!(pos, "1", "the rule sits where it was asked");
    shot(c, "firewall").await;

    // Drag the new rule (position 1) onto the first row: it moves to position 0.
    c.execute(
        "const rows=[...document.querySelectorAll('tr.rule')];\
         const from=rows.find(r=>r.textContent.includes('browser-test'));\
         from.dispatchEvent(new DragEvent('dragstart',{bubbles:true}));\
         rows[0].dispatchEvent(new DragEvent('drop',{bubbles:true,cancelable:true}));",
        vec![],
    )
    .await
    .expect("drag and drop");
    wait_text(c, "#flash", "rule moved", |t| t.contains("Rule moved")).await;
    let first = text(c, "tr.rule").await.expect("first rule");
    assert!(
        first.contains("browser-test"),
        "dragged to the top: {first}"
    );
    // Delete it: the table is back to the rules it had.
    let row = c.find(Locator::Css("tr.rule")).await.expect("first rule");
    row.find(Locator::Css("button.danger"))
        .await
        .expect("delete button")
        .click()
        .await
        .expect("click");
    wait_text(c, "#flash", "rule deleted", |t| t.contains("Rule deleted")).await;
    let rules = text(c, "#rules").await.expect("rules");
    assert!(!rules.contains("browser-test"), "{rules}");
    // Test a connection: a rule for 8080 from 203.0.113.0/24 decides a matching connection;
    // another port falls to the IN policy; with the rule switched off the policy decides.
    fill(c, "#dport", "8080").await;
    fill(c, "#source", "203.0.113.0/24").await;
    fill(c, "#comment", "conn-test").await;
    fill(c, "#position", "0").await;
    click(c, "#add").await;
    wait_text(c, "#flash", "rule added", |t| t.contains("Rule added")).await;
    let ask = async |port: &str| {
        fill(c, "#t-port", port).await;
        fill(c, "#t-source", "203.0.113.9").await;
        click(c, "#test-run").await;
        wait_for(10, "the test's answer", || async {
            let url = c.current_url().await.ok()?;
            let asked = url
                .query()
                .unwrap_or("")
                .contains(&format!("t_port={port}"));
            let verdict = text(c, "#test-verdict").await?;
            let decided = text(c, "#test-result").await?;
            let rule = c.find(Locator::Css("#test-rule")).await.ok().map(|_| ());
            asked.then_some((verdict, decided, rule.is_some()))
        })
        .await
    };
    let (verdict, decided, by_rule) = ask("8080").await;
    assert_eq!(verdict, "ACCEPT", "{decided}");
    assert!(
        by_rule && decided.contains("rule #0") && decided.contains("conn-test"),
        "{decided}"
    );
    shot(c, "firewall-test").await;
    let (verdict, decided, by_rule) = ask("8081").await;
    assert_eq!(verdict, "DROP", "{decided}");
    assert!(
        !by_rule && decided.contains("incoming policy (DROP)"),
        "{decided}"
    );
    // Switch the rule off: the table says so, and the policy decides 8080 too.
    let toggled = click_in_row(c, "tr.rule", "conn-test", "button.toggle", "toggle button").await;
    assert!(toggled, "the rule has an enable toggle");
    wait_text(c, "#flash", "rule disabled", |t| {
        t.contains("Rule disabled")
    })
    .await;
    let row = wait_for(10, "the disabled rule's row", || async {
        for row in c.find_all(Locator::Css("tr.rule.off")).await.ok()? {
            let t = row.text().await.ok()?;
            if t.contains("conn-test") {
                return Some(t);
            }
        }
        None
    })
    .await;
    assert!(row.contains("off") && row.contains("Enable"), "{row}");
    let (verdict, decided, by_rule) = ask("8080").await;
    assert_eq!(verdict, "DROP", "{decided}");
    assert!(
        !by_rule && decided.contains("incoming policy (DROP)"),
        "{decided}"
    );
    // And on again: the rule decides again.
    assert!(click_in_row(c, "tr.rule", "conn-test", "button.toggle", "toggle button").await);
    wait_text(c, "#flash", "rule enabled", |t| t.contains("Rule enabled")).await;
    let (verdict, decided, _) = ask("8080").await;
    assert_eq!(verdict, "ACCEPT", "{decided}");
    assert!(click_in_row(c, "tr.rule", "conn-test", "button.danger", "delete button").await);
    wait_text(c, "#flash", "rule deleted", |t| t.contains("Rule deleted")).await;

    // Policies: the demo VM drops incoming traffic; change it to REJECT (SSH stays allowed by
    // a rule, so no lock-out confirmation) and see REJECT on a fresh load of the page.
    let policy_in = async || {
        c.find(Locator::Css("#policy-in"))
            .await
            .expect("policy-in")
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    };
    assert_eq!(policy_in().await, "DROP", "the demo VM's IN policy");
    c.find(Locator::Css("#policy-in"))
        .await
        .expect("policy-in")
        .select_by_label("REJECT")
        .await
        .expect("select REJECT");
    click(c, "#save-policies").await;
    wait_text(c, "#flash", "policies saved", |t| {
        t.contains("Policies saved")
    })
    .await;
    c.goto(&format!("{base}/s/100/firewall"))
        .await
        .expect("firewall");
    assert_eq!(policy_in().await, "REJECT", "the IN policy persisted");

    // ISO: mount the Ubuntu image.
    mount_ubuntu(c, base).await;
    shot(c, "iso").await;
    click_enabled(c, "#unmount").await;
    wait_text(c, "#mounted", "nothing mounted", |t| t == "nothing").await;

    // Snapshot rollback: mount the ISO again, roll back to the snapshot taken before (confirm
    // dialog); the mount is undone, and the VM runs (the snapshot kept its RAM).
    mount_ubuntu(c, base).await;
    c.goto(&format!("{base}/s/100/snapshots"))
        .await
        .expect("snapshots");
    wait_enabled(c, "tr.snap button[value=rollback]").await;
    let rolled = click_in_row(
        c,
        "tr.snap",
        "snap_",
        "button[value=rollback]",
        "rollback button",
    )
    .await;
    assert!(rolled, "the snapshot has a Rollback button");
    c.accept_alert().await.expect("confirm the rollback");
    wait_text(c, "#flash", "rollback requested", |t| {
        t.contains("rollback of snap_")
    })
    .await;
    let finished = wait_text(c, "#task .t", "the rollback task to end", |t| {
        t.starts_with("Finished")
    })
    .await;
    assert!(finished.contains("(OK)"), "{finished}");
    wait_task_done(c).await;
    c.goto(&format!("{base}/s/100/iso")).await.expect("iso");
    wait_text(c, "#mounted", "the mount rolled back", |t| t == "nothing").await;
    c.goto(&format!("{base}/s/100")).await.expect("overview");
    wait_text(c, "#status", "status running after the rollback", |t| {
        t.starts_with("running")
    })
    .await;
    // Remove the snapshot.
    c.goto(&format!("{base}/s/100/snapshots"))
        .await
        .expect("snapshots");
    wait_enabled(c, "tr.snap button[value=delete]").await;
    // Remove it again.
    let removed = click_in_row(
        c,
        "tr.snap",
        "snap_",
        "button[value=delete]",
        "remove button",
    )
    .await;
    assert!(removed, "the new snapshot has a Remove button");
    wait_task_done(c).await;
    wait_text(c, "#snapshots", "the snapshot gone", |t| {
        !t.contains("snap_")
    })
    .await;

    // Charts.
    c.goto(&format!("{base}/s/100/charts?tf=day"))
        .await
        .expect("charts");
    let n = c
        .find_all(Locator::Css("#charts svg > path"))
        .await
        .expect("plots")
        .len();
    assert!(
        n >= 7,
        "four plots drawn (CPU; used/total memory; disk read/write; net in/out), found {n} lines"
    );
    shot(c, "charts").await;

    // Console: the noVNC button opens the one-time link; the canvas shows the framebuffer.
    wait_for(90, "the noVNC client to be fetched", || async {
        running.app.novnc_dir.get().map(|_| ())
    })
    .await;
    c.goto(&format!("{base}/s/100")).await.expect("overview");
    wait_for(20, "the console button to be enabled", || async {
        let b = c.find(Locator::Css("#btn-console")).await.ok()?;
        let running = text(c, "#status").await?.starts_with("running");
        (running && b.attr("disabled").await.ok()?.is_none()).then_some(())
    })
    .await;
    let before = c.windows().await.expect("windows");
    click(c, "#btn-console").await;
    let console = wait_for(10, "the console window", || async {
        let now = c.windows().await.ok()?;
        now.into_iter().find(|w| !before.contains(w))
    })
    .await;
    c.switch_to_window(console).await.expect("switch");
    wait_text(c, "#state", "the console to connect", |t| t == "connected").await;
    let lit = wait_for(20, "a non-blank canvas", || async {
        let v = c
            .execute(
                "const cv=document.querySelector('#screen canvas'); if(!cv||!cv.width) return 0;\
                 const d=cv.getContext('2d').getImageData(0,0,cv.width,cv.height).data; let n=0;\
                 for(let i=0;i<d.length;i+=4){ if(d[i]||d[i+1]||d[i+2]) n++; } return n;",
                vec![],
            )
            .await
            .ok()?;
        v.as_u64().filter(|n| *n > 1000)
    })
    .await;
    assert!(lit > 1000);
    shot(c, "console").await;

    // Reinstall with the REINSTALL confirmation (back in the first window).
    let first_window = before[0].clone();
    c.switch_to_window(first_window).await.expect("switch back");
    c.goto(&format!("{base}/s/100/reinstall"))
        .await
        .expect("reinstall");
    fill(c, "#confirmation", "reinstall").await;
    click(c, "#reinstall").await;
    wait_text(c, "#flash", "the wrong word refused", |t| {
        t.contains("REINSTALL")
    })
    .await;
    fill(c, "#confirmation", "REINSTALL").await;
    click(c, "#reinstall").await;
    wait_text(c, "#flash", "reinstall started", |t| {
        t.contains("Reinstall started")
    })
    .await;
    shot(c, "reinstall").await;
    let done = wait_for(60, "the reinstall to finish", || async {
        c.refresh().await.ok()?;
        let t = text(c, "#operation").await?;
        (t.contains("finished") || t.contains("failed")).then_some(t)
    })
    .await;
    assert!(done.contains("finished"), "{done}");

    // Restore the backup made above (confirm dialog), in the background until it ends.
    c.goto(&format!("{base}/s/100/backups"))
        .await
        .expect("backups");
    click(c, "tr.backup button[value=restore]").await;
    c.accept_alert().await.expect("confirm the restore");
    wait_text(c, "#flash", "restore started", |t| {
        t.contains("Restore started")
    })
    .await;
    let done = wait_for(60, "the restore to finish", || async {
        c.refresh().await.ok()?;
        let t = text(c, "#operation").await?;
        (t.contains("finished") || t.contains("failed")).then_some(t)
    })
    .await;
    assert!(done.contains("finished"), "{done}");
    shot(c, "restore").await;

    // Remove the backup made above (confirm dialog): gone from the table, the quota as before.
    wait_enabled(c, "tr.backup button[value=delete]").await;
    let removed = click_in_row(
        c,
        "tr.backup",
        "from the browser test",
        "button[value=delete]",
        "remove button",
    )
    .await;
    assert!(removed, "the new backup has a Remove button");
    c.accept_alert().await.expect("confirm the removal");
    wait_text(c, "#flash", "backup removed", |t| {
        t.contains("Backup removed")
    })
    .await;
    let table = text(c, "#backups").await.expect("backups");
    assert!(!table.contains("from the browser test"), "{table}");
    let quota = text(c, "#backup-quota").await.expect("quota");
    assert_eq!(quota, quota_before, "the quota no longer counts it");
}

/// The npm package and version range of the accessibility checker.
const AXE_PACKAGE: &str = "axe-core@4";

/// axe-core's browser script, fetched with `npm pack` into the portal's cache directory once
/// (like the noVNC client), then read from there.
fn axe_source() -> String {
    let dir = PortalConfig::default().cache_dir().join("axe-core-4");
    let script = dir.join("package/axe.min.js");
    if !script.is_file() {
        assert!(
            which("npm").is_some(),
            "the accessibility check needs the axe-core npm package: install Debian's `npm`"
        );
        std::fs::create_dir_all(&dir).expect("cache dir");
        let out = Command::new("npm")
            .args(["pack", AXE_PACKAGE, "--silent"])
            .current_dir(&dir)
            .output()
            .expect("npm runs");
        assert!(
            out.status.success(),
            "npm pack {AXE_PACKAGE}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tgz = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let st = Command::new("tar")
            .args(["-xzf", &tgz])
            .current_dir(&dir)
            .status()
            .expect("tar runs");
        assert!(st.success() && script.is_file(), "unpacking {tgz} failed");
    }
    std::fs::read_to_string(&script).expect("axe.min.js")
}

/// The serious or critical violations axe-core finds on the current page (impact, rule id,
/// help, first nodes), and the rule ids of the lesser ones by impact.
async fn axe_run(
    c: &Client,
    axe: &str,
    page: &str,
) -> (Vec<String>, std::collections::BTreeMap<String, Vec<String>>) {
    c.execute(&format!("{axe}\n;return typeof axe;"), vec![])
        .await
        .expect("inject axe-core");
    let v = c
        .execute_async(
            "const done=arguments[arguments.length-1];\
             axe.run(document,{resultTypes:['violations']})\
               .then(r=>done(r.violations.map(v=>({id:v.id,impact:v.impact||'',help:v.help,\
                  nodes:v.nodes.slice(0,3).map(n=>n.target.join(' '))}))))\
               .catch(e=>done({error:String(e)}));",
            vec![],
        )
        .await
        .expect("axe.run");
    let list = v
        .as_array()
        .unwrap_or_else(|| panic!("axe on {page} failed: {v}"));
    let mut bad = Vec::new();
    let mut lesser = std::collections::BTreeMap::<String, Vec<String>>::new();
    for viol in list {
        let impact = viol["impact"].as_str().unwrap_or_default();
        let id = viol["id"].as_str().unwrap_or_default().to_owned();
        if impact == "serious" || impact == "critical" {
            bad.push(format!(
                "{impact} {id}: {} at {}",
                viol["help"], viol["nodes"]
            ));
        } else {
            lesser.entry(impact.to_owned()).or_default().push(id);
        }
    }
    (bad, lesser)
}

/// Runs axe-core on the current page: fails on any violation of impact "serious" or
/// "critical", prints the counts of the lesser ones; returns how many lesser ones there were.
async fn axe_check(c: &Client, axe: &str, page: &str) -> usize {
    let (bad, lesser) = axe_run(c, axe, page).await;
    let summary = lesser
        .iter()
        .map(|(impact, ids)| format!("{} {impact} ({})", ids.len(), ids.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    println!(
        "axe {page}: {} serious/critical; lesser: {}",
        bad.len(),
        if summary.is_empty() { "none" } else { &summary }
    );
    assert!(
        bad.is_empty(),
        "accessibility violations on {page}:\n{}",
        bad.join("\n")
    );
    lesser.values().map(Vec::len).sum()
}

/// The check itself works: an input without a label and an image without a text alternative,
/// added to the page, are reported as critical.
async fn axe_catches_a_broken_page(c: &Client, axe: &str) {
    c.execute(
        "document.querySelector('main').insertAdjacentHTML('beforeend',\
           '<input id=unlabelled><img src=data:, id=noalt>');",
        vec![],
    )
    .await
    .expect("break the page");
    let (bad, _) = axe_run(c, axe, "a deliberately broken page").await;
    let bad = bad.join("\n");
    assert!(
        bad.contains("critical label") && bad.contains("critical image-alt"),
        "axe-core missed an unlabelled input or an image without alt: {bad}"
    );
}

/// The page's width against the viewport's: a phone must not scroll sideways.
async fn no_horizontal_overflow(c: &Client, page: &str) {
    let v = c
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .expect("widths");
    let (scroll, inner) = (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0));
    if scroll > inner {
        let wide = c
            .execute(
                "return [...document.querySelectorAll('body *')]\
                   .filter(e=>e.getBoundingClientRect().right>innerWidth+0.5)\
                   .slice(0,8).map(e=>e.tagName+(e.id?'#'+e.id:'')+'.'+e.className+' '+\
                     Math.round(e.getBoundingClientRect().right));",
                vec![],
            )
            .await
            .expect("wide elements");
        panic!("{page} overflows horizontally at {inner} px: the page is {scroll} px wide: {wide}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accessible_and_usable_on_a_phone() {
    let _turn = ONE_BROWSER.lock().await;
    let axe = axe_source();
    Session::start(1280, 900)
        .await
        .run(170, async |c: &Client, base: &str, _: &portal::Running| {
            a11y_and_phone_steps(c, base, &axe).await
        })
        .await;
}

async fn a11y_and_phone_steps(c: &Client, base: &str, axe: &str) {
    // The main pages, with a selector that shows each is really there.
    let pages = [
        ("/s/100", "#ips"),
        ("/s/100/snapshots", "#snapshots"),
        ("/s/100/backups", "#backups"),
        ("/s/100/firewall", "#rules"),
        (
            "/s/100/firewall?test=1&t_proto=tcp&t_port=443&t_source=198.51.100.7",
            "#test-rule",
        ),
        (
            "/s/100/firewall?test=1&t_proto=tcp&t_port=70000&t_source=x",
            "#test-error",
        ),
        ("/s/100/charts", "#charts svg"),
        ("/s/100/iso", "#mounted"),
        ("/s/100/reinstall", "#confirmation"),
        ("/s/100/rdns", "#rdns"),
        ("/s/100/password", "#reset-password"),
        ("/s/102/firewall", "#denied"),
        ("/services", "main table"),
    ];
    let visit = async |path: &str, css: &str| {
        c.goto(&format!("{base}{path}")).await.expect("page");
        wait_for(20, &format!("{css} on {path}"), || async {
            c.find(Locator::Css(css)).await.ok().map(|_| ())
        })
        .await;
    };
    let mut lesser = 0;
    for (width, height) in [(1280, 900), (390, 844)] {
        c.set_window_size(width, height).await.expect("window size");
        let inner = c
            .execute("return window.innerWidth;", vec![])
            .await
            .expect("width");
        assert_eq!(
            inner.as_u64(),
            Some(u64::from(width)),
            "the viewport is {width} px wide"
        );
        let phone = width < 500;

        // Logged out: the login page.
        let _ = c.delete_all_cookies().await;
        visit("/login", "#username").await;
        if !phone {
            axe_catches_a_broken_page(c, axe).await;
            visit("/login", "#username").await;
        }
        lesser += axe_check(c, axe, &format!("/login at {width} px")).await;
        if phone {
            no_horizontal_overflow(c, "/login").await;
        }
        fill(c, "#username", "alice").await;
        fill(c, "#password", "alice-demo-pass").await;
        click(c, "#login").await;
        wait_text(c, "h1", "the services list", |t| t == "My services").await;

        for (path, css) in pages {
            visit(path, css).await;
            lesser += axe_check(c, axe, &format!("{path} at {width} px")).await;
            if phone {
                no_horizontal_overflow(c, path).await;
            }
        }
    }

    // On the phone: the overview with its menu above the page, every entry on screen, and the
    // menu leads to the other pages.
    c.goto(&format!("{base}/s/100")).await.expect("overview");
    wait_text(c, "#status", "status running", |t| t.starts_with("running")).await;
    shot(c, "phone-overview").await;
    let v = c
        .execute(
            "const n=document.querySelector('nav').getBoundingClientRect();\
             const m=document.querySelector('main').getBoundingClientRect();\
             const links=[...document.querySelectorAll('nav a')].map(a=>a.getBoundingClientRect());\
             return {navAboveMain: n.bottom<=m.top+1, links: links.length,\
                     onScreen: links.every(r=>r.width>0&&r.left>=0&&r.right<=innerWidth)};",
            vec![],
        )
        .await
        .expect("layout");
    assert_eq!(
        v["navAboveMain"], true,
        "the menu sits above the page on a phone: {v}"
    );
    assert_eq!(v["onScreen"], true, "every menu entry is on screen: {v}");
    assert!(v["links"].as_u64().unwrap_or(0) >= 5, "{v}");
    click(c, "nav a[href='/s/100/backups']").await;
    wait_text(c, "h1", "the backups page", |t| t == "Backups").await;
    no_horizontal_overflow(c, "/s/100/backups").await;
    shot(c, "phone-backups").await;
    // The wide tables scroll inside their box instead of widening the page.
    let v = c
        .execute(
            "const s=document.querySelector('#schedule .scroll');\
             return [s.scrollWidth, s.clientWidth, getComputedStyle(s).overflowX];",
            vec![],
        )
        .await
        .expect("schedule box");
    assert_eq!(v[2], "auto", "{v}");
    assert!(
        v[0].as_u64() > v[1].as_u64(),
        "the week's table scrolls sideways: {v}"
    );
    click(c, "nav a[href='/s/100/firewall']").await;
    wait_text(c, "h1", "the firewall page", |t| t == "Firewall").await;
    shot(c, "phone-firewall").await;
    println!("axe: {lesser} lesser (moderate/minor) violations over all pages and widths");
}
