//! Server-side HTML: escaping, the page frame with its sidebar, and inline SVG plots.

use std::fmt::Write as _;

use pve_vps_services::charts::{Series, Unit};
use pve_vps_services::permissions::{Access, Feature};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;color:#1d2733;background:#f3f5f8}
header{background:#1f3a5f;color:#fff;padding:10px 20px;display:flex;justify-content:space-between;align-items:center}
header a,header button{color:#fff}header form{display:inline}
.wrap{display:flex;min-height:calc(100vh - 44px)}nav{width:210px;background:#fff;border-right:1px solid #dde3ea;padding:12px 0}
nav a{display:block;padding:7px 18px;color:#1d2733;text-decoration:none}nav a.on{background:#e7eef7;font-weight:600;border-left:3px solid #2c6bb3}
nav .svc{padding:6px 18px;font-size:12px;color:#66768a;text-transform:uppercase}
main{flex:1;padding:20px 28px;max-width:1100px}h1{font-size:20px;margin:0 0 14px}h2{font-size:16px;margin:18px 0 8px}
.card{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:14px 16px;margin-bottom:14px}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #e6eaf0;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f7f9fb;font-weight:600}button,.btn{background:#2c6bb3;color:#fff;border:0;border-radius:4px;padding:6px 12px;cursor:pointer;font:inherit;text-decoration:none;display:inline-block}
button.danger{background:#b3392c}button[disabled],.btn.dim{opacity:.4;cursor:not-allowed}
.msg{padding:8px 12px;border-radius:4px;margin-bottom:12px}.ok{background:#e3f4e6;border:1px solid #9fd3a8}.err{background:#fbe5e3;border:1px solid #e6a49c}
.status-running{color:#1f8a3a;font-weight:600}.status-stopped{color:#b3392c;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px}.kv td:first-child{color:#66768a;width:38%}
.bar{height:10px;background:#e6eaf0;border-radius:5px;overflow:hidden}.bar>div{height:100%;background:#2c6bb3}
.tabs a{display:inline-block;padding:6px 12px;border:1px solid #dde3ea;border-bottom:0;background:#f7f9fb;color:#1d2733;text-decoration:none}.tabs a.on{background:#fff;font-weight:600}
tr.drag{opacity:.5}tr[draggable=true]{cursor:move}input,select{font:inherit;padding:4px 6px}
.err:empty{display:none}.muted{color:#66768a}.denied{text-align:center;padding:50px}
"#;

const JS: &str = r#"
function csrf(){return document.querySelector('meta[name=csrf]').content}
async function pollTask(vmid, upid){
  const box=document.getElementById('task');if(!box)return;
  for(;;){
    const r=await fetch('/s/'+vmid+'/task?upid='+encodeURIComponent(upid));
    if(r.status===401){location.href='/login?err=Your+session+has+expired.+Please+log+in+again.';return}
    if(!r.ok){box.textContent='task status unavailable';return}
    const t=await r.json();
    box.querySelector('.bar>div').style.width=(t.running?(t.percent!=null?t.percent:Math.min(95,(t.lines.length*15)+10)):100)+'%';
    box.querySelector('.t').textContent=(t.running?'Running: ':'Finished: ')+t.kind+(t.running?'':' ('+t.exitstatus+')');
    box.querySelector('.l').textContent=t.lines.join('\n');
    if(!t.running){box.className='card '+(t.exitstatus==='OK'?'ok':'err');
      setTimeout(()=>{const u=new URL(location.href);u.searchParams.delete('task');location.replace(u.href)},1200);return}
    await new Promise(res=>setTimeout(res,600));
  }
}
"#;

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

/// A whole page.
pub fn page(title: &str, user: Option<(&str, &str)>, nav: Option<&Nav<'_>>, body: &str) -> String {
    let mut h = String::new();
    let csrf = user.map(|u| u.1).unwrap_or("");
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>\
         <meta name=csrf content='{}'><title>{} · Client area</title><style>{CSS}</style><script>{JS}</script></head><body>\
         <header><b>VPS client area</b><span>",
        esc(csrf),
        esc(title)
    );
    if let Some((name, csrf)) = user {
        let _ = write!(
            h,
            "<a href='/services'>My services</a> · {} · <form method=post action='/logout'>\
             <input type=hidden name=csrf value='{}'><button id=logout>Log out</button></form>",
            esc(name),
            esc(csrf)
        );
    }
    h.push_str("</span></header><div class=wrap>");
    if let Some(nav) = nav {
        let _ = write!(h, "<nav><div class=svc>{}</div>", esc(nav.domain));
        for (f, a) in &nav.access {
            let Some((label, path)) = feature_link(*f) else {
                continue;
            };
            if *a == Access::Denied {
                continue;
            }
            let on = if *f == nav.active { " class=on" } else { "" };
            let _ = write!(h, "<a{on} href='/s/{}{path}'>{label}</a>", nav.vmid);
        }
        h.push_str("</nav>");
    }
    let _ = write!(h, "<main>{body}</main></div></body></html>");
    h
}

/// A flash message from the query string.
pub fn flash(ok: Option<&str>, err: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(m) = ok {
        let _ = write!(s, "<div class='msg ok' id=flash>{}</div>", esc(m));
    }
    if let Some(m) = err {
        let _ = write!(s, "<div class='msg err' id=flash>{}</div>", esc(m));
    }
    s
}

/// The running-task box, polling the task's progress.
pub fn task_box(vmid: u32, upid: Option<&str>) -> String {
    match upid {
        None => String::new(),
        Some(u) => format!(
            "<div class=card id=task><div class=t>Running…</div><div class=bar><div style='width:5%'></div></div>\
             <pre class='l muted'></pre></div><script>pollTask({vmid},{})</script>",
            serde_json::to_string(u).unwrap_or_default()
        ),
    }
}

/// A hidden CSRF field.
pub fn csrf_field(csrf: &str) -> String {
    format!("<input type=hidden name=csrf value='{}'>", esc(csrf))
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

/// A line plot of one or two series as inline SVG, with axes, gaps kept as gaps.
pub fn svg_plot(title: &str, series: &[&Series]) -> String {
    const W: f64 = 480.0;
    const H: f64 = 180.0;
    const L: f64 = 64.0;
    const B: f64 = 24.0;
    let colors = ["#2c6bb3", "#d9822b"];
    let pts: Vec<(i64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|(t, v)| v.map(|v| (*t, v))))
        .collect();
    let unit = series.first().map(|s| s.unit).unwrap_or(Unit::Percent);
    let mut o = format!(
        "<svg class=chart viewBox='0 0 {W} {}' width='100%' role=img aria-label='{}'><text x='{L}' y=14 font-weight=600>{}</text>",
        H + 20.0,
        esc(title),
        esc(title)
    );
    if pts.is_empty() {
        o.push_str("<text x=200 y=100 fill='#66768a'>no data</text></svg>");
        return o;
    }
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
        let _ = write!(
            o,
            "<line x1='{L}' x2='{}' y1='{y:.1}' y2='{y:.1}' stroke='#e6eaf0'/><text x='{}' y='{:.1}' font-size=10 text-anchor=end fill='#66768a'>{}</text>",
            W - 8.0,
            L - 4.0,
            y(v) + 3.0,
            fmt_value(v, unit),
            y = y(v)
        );
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
        let c = colors[i % colors.len()];
        let _ = write!(
            o,
            "<path d='{d}' fill=none stroke='{c}' stroke-width='1.6'/><text x='{}' y=14 font-size=11 text-anchor=end fill='{c}'>■ {}</text>",
            W - 8.0 - 150.0 * (series.len() - 1 - i) as f64,
            esc(&s.label)
        );
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_plots() {
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        let s = Series {
            label: "CPU".into(),
            unit: Unit::Percent,
            points: vec![
                (0, Some(10.0)),
                (60, None),
                (120, Some(30.0)),
                (180, Some(20.0)),
            ],
        };
        let svg = svg_plot("CPU usage", &[&s]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<path").count(), 1, "{svg}");
        assert_eq!(
            svg.matches('M').count(),
            2,
            "two segments around the gap: {svg}"
        );
    }
}
