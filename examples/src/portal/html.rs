//! Server-side HTML: the askama templates under `examples/templates/` (HTML-escaped
//! automatically), the page frame with its sidebar, and the numbers of the inline SVG plots.
//!
//! Every value a template prints goes through askama's HTML escaper; nothing here builds markup
//! by hand. The plots' geometry is computed in Rust (numbers only) and drawn by `plot.html`.

use std::fmt::Write as _;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use pve_vps_services::charts::{Series, Unit};
use pve_vps_services::permissions::{Access, Feature};

/// The sidebar entry of a feature: label and path below `/s/{vmid}`.
pub fn feature_link(f: Feature) -> Option<(&'static str, &'static str)> {
    Some(match f {
        Feature::Overview => ("Overview", ""),
        Feature::Charts => ("Charts", "/charts"),
        Feature::Reinstall => ("Reinstall", "/reinstall"),
        Feature::Snapshots => ("Snapshots", "/snapshots"),
        Feature::Backups => ("Backups", "/backups"),
        Feature::ResetPassword => ("Reset password", "/password"),
        Feature::Rdns => ("Reverse DNS", "/rdns"),
        Feature::Iso => ("ISO images", "/iso"),
        Feature::Firewall => ("Firewall", "/firewall"),
        Feature::PowerControl | Feature::Console => return None,
    })
}

/// The sidebar context of a service page.
#[derive(Debug)]
pub struct Nav<'a> {
    /// The VMID.
    pub vmid: u32,
    /// The service's domain.
    pub domain: &'a str,
    /// Every feature with its access (denied ones are not shown).
    pub access: Vec<(Feature, Access)>,
    /// The active entry.
    pub active: Feature,
}

/// One entry of the sidebar.
#[derive(Debug)]
pub struct NavLink {
    /// Its text.
    pub label: &'static str,
    /// Where it goes.
    pub href: String,
    /// Whether it is the current page.
    pub on: bool,
}

impl Nav<'_> {
    /// The entries shown: every feature with a page that the product does not deny.
    pub fn links(&self) -> Vec<NavLink> {
        self.access
            .iter()
            .filter(|(_, a)| *a != Access::Denied)
            .filter_map(|(f, _)| {
                let (label, path) = feature_link(*f)?;
                Some(NavLink {
                    label,
                    href: format!("/s/{}{path}", self.vmid),
                    on: *f == self.active,
                })
            })
            .collect()
    }
}

/// The logged-in customer shown in the header.
#[derive(Debug)]
pub struct User<'a> {
    /// Login name.
    pub name: &'a str,
    /// The session's CSRF token (the logout form and the page's scripts carry it).
    pub csrf: &'a str,
}

/// What every page shares: its title, the customer and the sidebar.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The page title (before "· Client area").
    pub title: &'a str,
    /// The customer, when logged in.
    pub user: Option<User<'a>>,
    /// The sidebar of a service page.
    pub nav: Option<&'a Nav<'a>>,
}

impl Frame<'_> {
    /// The CSRF token of the `<meta name=csrf>` tag (empty when logged out).
    pub fn csrf(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.csrf)
    }
}

/// A flash message from the query string.
#[derive(Debug, Default)]
pub struct Flash<'a> {
    /// Success text.
    pub ok: Option<&'a str>,
    /// Error text.
    pub err: Option<&'a str>,
}

/// A long operation (restore, reinstall) as the pages show it.
#[derive(Debug)]
pub enum OpView {
    /// Still running: what.
    Running(String),
    /// Ended well: what, and how.
    Finished(String, String),
    /// Failed: what, and why.
    Failed(String, String),
}

/// Renders a template into a response with `status` (500 if rendering fails, which only a
/// failing `Display` of a value could cause).
pub fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page cannot be shown",
            )
                .into_response()
        }
    }
}

/// The login page.
#[derive(Debug, Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Message.
    pub flash: Flash<'a>,
}

/// What a message page says.
#[derive(Debug)]
pub enum MessageKind<'a> {
    /// The cluster could not be reached or answered with an error.
    WentWrong,
    /// The product does not include the feature.
    Denied,
    /// The service's cluster cannot be reached right now (the others work).
    Unavailable {
        /// The cluster's name.
        cluster: &'a str,
        /// Why, short and safe to show.
        reason: &'a str,
    },
    /// Any other refusal, shown as it is.
    Error(&'a str),
}

/// "Something went wrong", "Access Denied" or an error.
#[derive(Debug, Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Which message.
    pub kind: MessageKind<'a>,
}

/// A row of the services list.
#[derive(Debug)]
pub struct ServiceRow<'a> {
    /// Domain.
    pub domain: &'a str,
    /// Product id.
    pub product: &'a str,
    /// VMID.
    pub vmid: u32,
    /// The service's cluster.
    pub cluster: &'a str,
    /// Why the service is temporarily unavailable (its cluster cannot be reached), if it is.
    pub unavailable: Option<String>,
}

/// "My services".
#[derive(Debug, Template)]
#[template(path = "services.html")]
pub struct ServicesPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// The customer's services.
    pub rows: Vec<ServiceRow<'a>>,
    /// Whether the portal serves several clusters (the list then names each service's).
    pub several_clusters: bool,
}

/// The power buttons of the overview: action, label, CSS class, confirmation question
/// (empty: none).
pub const POWER_BUTTONS: [(&str, &str, &str, &str); 5] = [
    ("start", "Start", "", ""),
    ("stop", "Stop", "danger", ""),
    ("shutdown", "Shut down", "", ""),
    ("reboot", "Reboot", "", ""),
    (
        "reset",
        "Reset (hard)",
        "danger",
        "Reset the VM? Like pressing a reset button: the system gets no chance to shut down and unsaved data is lost.",
    ),
];

/// The overview of a service.
#[derive(Debug, Template)]
#[template(path = "overview.html")]
pub struct OverviewPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Message.
    pub flash: Flash<'a>,
    /// A task to follow.
    pub task: Option<&'a str>,
    /// A long operation.
    pub op: Option<OpView>,
    /// VMID.
    pub vmid: u32,
    /// CSRF token for the forms.
    pub csrf: &'a str,
    /// Domain.
    pub domain: &'a str,
    /// The power buttons.
    pub power: [(&'static str, &'static str, &'static str, &'static str); 5],
    /// System disk summary.
    pub sysdisk: String,
    /// Additional disk summary.
    pub adddisk: String,
    /// Network card summary.
    pub nic: String,
    /// Addresses: label and value.
    pub ips: Vec<(&'static str, String)>,
    /// DNS servers.
    pub dns: String,
    /// The network note.
    pub note: &'a str,
}

/// The charts page.
#[derive(Debug, Template)]
#[template(path = "charts.html")]
pub struct ChartsPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Timeframe tabs: name, current.
    pub tabs: Vec<(&'static str, bool)>,
    /// The plots.
    pub plots: Vec<Plot>,
}

/// A snapshot row.
#[derive(Debug)]
pub struct SnapRow<'a> {
    /// Name.
    pub name: &'a str,
    /// When it was taken (UTC).
    pub taken: String,
    /// Time left before the expiry sweep removes it.
    pub remaining: &'a str,
    /// Description.
    pub description: &'a str,
}

/// The snapshots page.
#[derive(Debug, Template)]
#[template(path = "snapshots.html")]
pub struct SnapshotsPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Message.
    pub flash: Flash<'a>,
    /// A task to follow.
    pub task: Option<&'a str>,
    /// VMID.
    pub vmid: u32,
    /// CSRF token.
    pub csrf: &'a str,
    /// Quota used.
    pub used: u32,
    /// Quota limit.
    pub limit: u32,
    /// Lifetime in days.
    pub lifetime_days: u8,
    /// Whether a snapshot can be taken now (allowed and room left).
    pub can_take: bool,
    /// Whether rollback and removal are allowed now.
    pub can_act: bool,
    /// The snapshots.
    pub rows: Vec<SnapRow<'a>>,
}

/// A day of the weekly backup schedule.
#[derive(Debug)]
pub struct DayView {
    /// 0 = Sunday.
    pub index: usize,
    /// Its name.
    pub name: &'static str,
    /// Whether a backup runs that day.
    pub enabled: bool,
    /// At what time (`HH:MM`).
    pub time: String,
}

/// A backup row.
#[derive(Debug)]
pub struct BackupRow<'a> {
    /// Archive file name.
    pub file: &'a str,
    /// Protected from removal.
    pub protected: bool,
    /// When it was made (UTC).
    pub created: String,
    /// Size in MB.
    pub size: String,
    /// Notes.
    pub notes: &'a str,
    /// Volume id.
    pub volid: String,
    /// Whether the Remove button is usable.
    pub can_remove: bool,
}

/// The backups page.
#[derive(Debug, Template)]
#[template(path = "backups.html")]
pub struct BackupsPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Message.
    pub flash: Flash<'a>,
    /// A task to follow.
    pub task: Option<&'a str>,
    /// A long operation.
    pub op: Option<OpView>,
    /// VMID.
    pub vmid: u32,
    /// CSRF token.
    pub csrf: &'a str,
    /// Quota used.
    pub used: u32,
    /// Quota limit.
    pub limit: u32,
    /// Whether a backup can be started now.
    pub can_run: bool,
    /// Whether restore is allowed now.
    pub can_act: bool,
    /// The schedule.
    pub days: Vec<DayView>,
    /// The backups, newest first.
    pub rows: Vec<BackupRow<'a>>,
}

/// A folder of ISO images.
#[derive(Debug)]
pub struct IsoFolder<'a> {
    /// Folder name.
    pub name: &'a str,
    /// How many images.
    pub count: usize,
    /// Images: file name, volume id.
    pub files: Vec<(&'a str, String)>,
}

/// The ISO page.
#[derive(Debug, Template)]
#[template(path = "iso.html")]
pub struct IsoPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Message.
    pub flash: Flash<'a>,
    /// CSRF token.
    pub csrf: &'a str,
    /// The mounted image's file name, or "nothing".
    pub mounted: &'a str,
    /// Whether an image is mounted.
    pub has_mounted: bool,
    /// Whether mount/unmount are allowed now.
    pub can_act: bool,
    /// The folders.
    pub folders: Vec<IsoFolder<'a>>,
}

/// A firewall rule row.
#[derive(Debug)]
pub struct RuleRow<'a> {
    /// Position.
    pub pos: usize,
    /// The rule as text (`.fw` syntax), for the screen reader label and the test answer.
    pub text: &'a str,
    /// `IN` or `OUT`.
    pub direction: String,
    /// The action, or the macro with its action (`SSH(ACCEPT)`).
    pub action: String,
    /// Protocol (empty: any).
    pub proto: &'a str,
    /// Destination port(s) (empty: any).
    pub dport: &'a str,
    /// Source (empty: any).
    pub source: &'a str,
    /// Destination (empty: any).
    pub dest: &'a str,
    /// Its comment.
    pub comment: &'a str,
    /// Whether the rule is enabled.
    pub enabled: bool,
}

/// The "Test a connection" form's values and its answer.
#[derive(Debug, Default)]
pub struct ConnTest {
    /// Direction: `in` or `out`.
    pub direction: String,
    /// Protocol.
    pub proto: String,
    /// Port as typed.
    pub port: String,
    /// Address as typed.
    pub source: String,
    /// Whether the form was submitted.
    pub asked: bool,
    /// Why the question was refused.
    pub error: Option<String>,
    /// The verdict (`ACCEPT`, `DROP`, `REJECT`).
    pub verdict: Option<String>,
    /// What decided, as a sentence.
    pub decided: String,
    /// The deciding rule: position and text (`.fw` syntax, with its comment).
    pub rule: Option<(usize, String)>,
    /// Rules naming IP sets or aliases the check cannot see (`#2, #5`; empty: none).
    pub unseen: String,
}

/// The firewall page.
#[derive(Debug, Template)]
#[template(path = "firewall.html")]
pub struct FirewallPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Message.
    pub flash: Flash<'a>,
    /// VMID.
    pub vmid: u32,
    /// CSRF token.
    pub csrf: &'a str,
    /// Whether the firewall is on.
    pub enabled: bool,
    /// Incoming policy choices: value, selected.
    pub policy_in: Vec<(&'static str, bool)>,
    /// Outgoing policy choices: value, selected.
    pub policy_out: Vec<(&'static str, bool)>,
    /// The rules.
    pub rules: Vec<RuleRow<'a>>,
    /// The connection test.
    pub test: ConnTest,
}

/// The reverse DNS page.
#[derive(Debug, Template)]
#[template(path = "rdns.html")]
pub struct RdnsPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Message.
    pub flash: Flash<'a>,
    /// CSRF token.
    pub csrf: &'a str,
    /// Address and current PTR (empty: none).
    pub rows: Vec<(String, &'a str)>,
}

/// The reset-password page, before or after the reset.
#[derive(Debug, Template)]
#[template(path = "password.html")]
pub struct PasswordPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Message.
    pub flash: Flash<'a>,
    /// CSRF token.
    pub csrf: &'a str,
    /// Whether a reset is allowed now.
    pub can_reset: bool,
    /// The new password, shown once after a reset.
    pub new_password: Option<&'a str>,
    /// How it was applied.
    pub how: &'a str,
}

/// The reinstall page.
#[derive(Debug, Template)]
#[template(path = "reinstall.html")]
pub struct ReinstallPage<'a> {
    /// Frame.
    pub frame: Frame<'a>,
    /// Message.
    pub flash: Flash<'a>,
    /// A long operation.
    pub op: Option<OpView>,
    /// CSRF token.
    pub csrf: &'a str,
    /// Whether a reinstall is allowed now.
    pub can_reinstall: bool,
    /// Offered templates: VMID, name.
    pub templates: Vec<(u32, &'a str)>,
}

/// The noVNC console page.
#[derive(Debug, Template)]
#[template(path = "console.html")]
pub struct ConsolePage<'a> {
    /// VMID.
    pub vmid: u32,
    /// The link (`{vmid}-{token}`), already validated.
    pub link: &'a str,
}

/// A horizontal grid line of a plot with its value label.
#[derive(Debug)]
pub struct GridLine {
    /// Height.
    pub y: f64,
    /// Height of the label's baseline.
    pub label_y: f64,
    /// The value there.
    pub label: String,
}

/// One series of a plot.
#[derive(Debug)]
pub struct PlotPath {
    /// SVG path data (numbers and `M`/`L` only).
    pub d: String,
    /// Stroke colour.
    pub color: &'static str,
    /// Legend text.
    pub label: String,
    /// Where the legend ends.
    pub legend_x: f64,
}

/// A line plot of one or two series, drawn by `plot.html` as inline SVG.
#[derive(Debug)]
pub struct Plot {
    /// Title (also its accessible name).
    pub title: String,
    /// View box width.
    pub width: f64,
    /// View box height.
    pub height: f64,
    /// Left edge of the plot area.
    pub left: f64,
    /// Right edge of the plot area.
    pub right: f64,
    /// Right edge of the value labels.
    pub label_x: f64,
    /// Grid lines with values.
    pub grid: Vec<GridLine>,
    /// The series (empty: "no data").
    pub paths: Vec<PlotPath>,
}

fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Percent => format!("{v:.1}%"),
        Unit::Bytes => {
            if v >= 1e9 {
                format!("{:.1} GB", v / 1e9)
            } else {
                format!("{:.0} MB", v / 1e6)
            }
        }
        Unit::MegabytesPerSecond => format!("{v:.2} MB/s"),
    }
}

/// Rounds to one decimal, as drawn.
fn r1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The plot of one or two series, with axes, gaps kept as gaps.
pub fn svg_plot(title: &str, series: &[&Series]) -> Plot {
    const W: f64 = 480.0;
    const H: f64 = 180.0;
    const L: f64 = 64.0;
    const B: f64 = 24.0;
    // The second colour is dark enough for its legend text on white (WCAG AA).
    let colors = ["#2c6bb3", "#b35c00"];
    let mut plot = Plot {
        title: title.to_owned(),
        width: W,
        height: H + 20.0,
        left: L,
        right: W - 8.0,
        label_x: L - 4.0,
        grid: Vec::new(),
        paths: Vec::new(),
    };
    let pts: Vec<(i64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|(t, v)| v.map(|v| (*t, v))))
        .collect();
    if pts.is_empty() {
        return plot;
    }
    let unit = series.first().map(|s| s.unit).unwrap_or(Unit::Percent);
    let t0 = pts.iter().map(|p| p.0).min().unwrap_or(0) as f64;
    let t1 = (pts.iter().map(|p| p.0).max().unwrap_or(1) as f64).max(t0 + 1.0);
    let vmax = pts.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let vmax = if unit == Unit::Percent {
        vmax.max(1.0)
    } else {
        (vmax * 1.1).max(1e-9)
    };
    let x = |t: f64| L + (t - t0) / (t1 - t0) * (W - L - 8.0);
    let y = |v: f64| 20.0 + (H - B - 20.0) * (1.0 - v / vmax);
    for i in 0..=4 {
        let v = vmax * f64::from(i) / 4.0;
        plot.grid.push(GridLine {
            y: r1(y(v)),
            label_y: r1(y(v) + 3.0),
            label: fmt_value(v, unit),
        });
    }
    for (i, s) in series.iter().enumerate() {
        let mut d = String::new();
        let mut pen_up = true;
        for (t, v) in &s.points {
            match v {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_up { "M" } else { "L" },
                        x(*t as f64),
                        y(*v)
                    );
                    pen_up = false;
                }
                None => pen_up = true,
            }
        }
        plot.paths.push(PlotPath {
            d: d.trim_end().to_owned(),
            color: colors[i % colors.len()],
            label: s.label.clone(),
            legend_x: W - 8.0 - 150.0 * (series.len() - 1 - i) as f64,
        });
    }
    plot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_keep_gaps_and_escape_their_text() {
        let s = Series {
            label: "CPU <b>".into(),
            unit: Unit::Percent,
            points: vec![
                (0, Some(10.0)),
                (60, None),
                (120, Some(30.0)),
                (180, Some(20.0)),
            ],
        };
        let plot = svg_plot("CPU \"usage\" & <script>", &[&s]);
        assert_eq!(plot.paths.len(), 1);
        assert_eq!(
            plot.paths[0].d.matches('M').count(),
            2,
            "two segments around the gap: {}",
            plot.paths[0].d
        );
        let html = ChartsPage {
            frame: Frame {
                title: "Charts",
                user: None,
                nav: None,
            },
            tabs: vec![("hour", true)],
            plots: vec![plot, svg_plot("empty", &[])],
        }
        .render()
        .unwrap();
        let svg = &html[html.find("<svg").unwrap()..html.rfind("</svg>").unwrap() + 6];
        assert_eq!(svg.matches("<path").count(), 1, "{svg}");
        assert!(svg.contains("no data"), "{svg}");
        assert!(!html.contains("& <script>"), "{html}");
        assert!(
            svg.contains("aria-label='CPU &#34;usage&#34; &#38; &#60;script&#62;'")
                || svg.contains("aria-label='CPU &quot;usage&quot; &amp; &lt;script&gt;'"),
            "{svg}"
        );
        assert!(!svg.contains("CPU <b>"), "{svg}");
    }
}
