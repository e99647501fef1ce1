//! `--report <folder>`: `report.json` (everything measured), `report.html` (one self-contained
//! page: a summary and inline SVG line charts, drawn by hand here: no JavaScript, no external
//! files, no plotting dependency) and each chart again as an SVG file of its own.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use crate::generator::RunResult;
use crate::procstat::ServerSamples;

/// Where to write the report and which process to watch (shared by every scenario).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ReportArgs {
    /// Folder to write report.json and report.html into (created if missing).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The server's process id: its CPU% and RSS are sampled from /proc every 500 ms during
    /// the run (CPU ticks assumed 100 a second). Only meaningful on this machine.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// The command line, the machine and the time, common to every report.
pub fn header(scenario: &str, settings: Value) -> Value {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    json!({
        "scenario": scenario,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "harness_version": env!("CARGO_PKG_VERSION"),
        "started_unix_s": started,
        "machine": crate::procstat::machine(),
        "settings": settings,
    })
}

#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

pub fn series(name: &str, index: usize, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_owned(),
        color: COLORS[index % COLORS.len()],
        points,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step giving about `count` ticks over `range`.
fn nice_step(range: f64, count: f64) -> f64 {
    let raw = (range / count).max(1e-12);
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn tick_label(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{value:.decimals$}")
}

/// One line chart as an inline `<svg>`: y from 0, x over the data, 5-ish ticks on each axis.
pub fn svg(chart: &Chart) -> String {
    let (width, height) = (760.0, 280.0);
    let (left, right, top, bottom) = (70.0, 20.0, 36.0, 44.0);
    let points = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x_min, mut x_max, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for (x, y) in points {
        x_min = x_min.min(*x);
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
    }
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        out,
        r#"<text x="{left}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(&chart.title)
    );
    if !x_min.is_finite() {
        let _ = write!(
            out,
            r#"<text x="{left}" y="{}">no data</text></svg>"#,
            height / 2.0
        );
        return out;
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let y_step = nice_step(if y_max > 0.0 { y_max } else { 1.0 }, 5.0);
    let y_top = ((y_max / y_step).ceil().max(1.0)) * y_step;
    let x_step = nice_step(x_max - x_min, 8.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let px = |x: f64| left + (x - x_min) / (x_max - x_min) * plot_w;
    let py = |y: f64| top + plot_h - y / y_top * plot_h;
    // Grid and y ticks.
    let mut tick = 0.0;
    while tick <= y_top + y_step / 2.0 {
        let y = py(tick);
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            width - right,
            left - 6.0,
            y + 4.0,
            tick_label(tick, y_step)
        );
        tick += y_step;
    }
    // x ticks.
    let mut tick = (x_min / x_step).ceil() * x_step;
    while tick <= x_max + x_step * 1e-9 {
        let x = px(tick);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + plot_h,
            top + plot_h + 4.0,
            top + plot_h + 16.0,
            tick_label(tick, x_step)
        );
        tick += x_step;
    }
    let _ = write!(
        out,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>"##
    );
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 8.0,
        escape(&chart.x_label)
    );
    let _ = write!(
        out,
        r#"<text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + plot_h / 2.0,
        escape(&chart.y_label)
    );
    for (index, series) in chart.series.iter().enumerate() {
        let coordinates: Vec<String> = series
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        if coordinates.len() == 1 {
            if let Some((x, y)) = coordinates[0].split_once(',') {
                let _ = write!(
                    out,
                    r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                    series.color
                );
            }
        } else if !coordinates.is_empty() {
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                series.color,
                coordinates.join(" ")
            );
        }
        let legend_x = width - right - 150.0;
        let legend_y = top + 14.0 + index as f64 * 14.0;
        let _ = write!(
            out,
            r#"<line x1="{legend_x}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{legend_y:.1}">{}</text>"#,
            legend_y - 4.0,
            legend_x + 18.0,
            legend_y - 4.0,
            series.color,
            legend_x + 24.0,
            escape(&series.name)
        );
    }
    out.push_str("</svg>");
    out
}

/// A report's page and, apart, each of its charts as an SVG file of its own (so that a
/// Markdown page such as docs/performance.md can show them inline, by name).
pub struct Page {
    pub html: String,
    /// (file name, SVG), in the page's order: `01-latency-by-second.svg`, ...
    pub charts: Vec<(String, String)>,
}

/// A chart's file name: its position and the first six words of its title, lowercase, joined
/// by dashes; numbers (a server's pid) are left out, so that reruns name their charts alike.
fn chart_file(index: usize, title: &str) -> String {
    let words: Vec<String> = title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty() && !word.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_ascii_lowercase)
        .filter(|word| word != "pid")
        .take(6)
        .collect();
    format!("{:02}-{}.svg", index + 1, words.join("-"))
}

/// The whole page: a title, the summary as a table of key → value, the charts.
pub fn html(title: &str, summary: &[(String, String)], charts: &[Chart]) -> Page {
    let drawn: Vec<(String, String)> = charts
        .iter()
        .enumerate()
        .map(|(index, chart)| (chart_file(index, &chart.title), svg(chart)))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:800px}}table{{border-collapse:collapse}}\
         td{{border:1px solid #ccc;padding:2px 8px}}figure{{margin:1em 0}}</style></head><body>\n<h1>{}</h1>\n<table>",
        escape(title),
        escape(title)
    );
    for (key, value) in summary {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(key),
            escape(value)
        );
    }
    out.push_str(
        "</table>\n<p>All figures, per interval, are in report.json beside this page.</p>\n",
    );
    for (_, chart) in &drawn {
        let _ = writeln!(out, "<figure>{chart}</figure>");
    }
    out.push_str("</body></html>\n");
    Page {
        html: out,
        charts: drawn,
    }
}

/// Writes `report.json`, `report.html` and each chart's `NN-title.svg` into `folder`.
pub fn write(folder: &Path, report: &Value, page: &Page) -> anyhow::Result<()> {
    std::fs::create_dir_all(folder)
        .with_context(|| format!("creating the report folder {}", folder.display()))?;
    std::fs::write(
        folder.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(folder.join("report.html"), &page.html)?;
    for (name, chart) in &page.charts {
        std::fs::write(folder.join(name), chart)?;
    }
    Ok(())
}

fn ms(value: u64) -> f64 {
    value as f64 / 1000.0
}

/// Latency percentiles of each 1-second interval (by scheduled time), shifted by `t0`.
pub fn latency_series(run: &RunResult, t0: f64) -> Vec<Series> {
    let quantiles = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];
    let mut all: Vec<Series> = quantiles
        .iter()
        .enumerate()
        .map(|(index, (name, quantile))| {
            let points = run
                .intervals
                .iter()
                .enumerate()
                .filter(|(_, interval)| !interval.latency.is_empty())
                .map(|(second, interval)| {
                    (
                        t0 + second as f64,
                        ms(interval.latency.value_at_quantile(*quantile)),
                    )
                })
                .collect();
            series(name, index, points)
        })
        .collect();
    let max = run
        .intervals
        .iter()
        .enumerate()
        .filter(|(_, interval)| !interval.latency.is_empty())
        .map(|(second, interval)| (t0 + second as f64, ms(interval.latency.max())))
        .collect();
    all.push(series("max", 4, max));
    all
}

/// Offered and achieved webhooks a second, per 1-second interval, shifted by `t0`. Only the
/// seconds that had arrivals: answers that completed after the sending window (the tail) are
/// in report.json, not drawn (a partial second would read as a collapse).
pub fn throughput_series(run: &RunResult, t0: f64) -> Vec<Series> {
    let per = |f: &dyn Fn(&crate::generator::Interval) -> u64| -> Vec<(f64, f64)> {
        run.intervals
            .iter()
            .enumerate()
            .filter(|(_, interval)| interval.scheduled > 0)
            .map(|(second, interval)| (t0 + second as f64, f(interval) as f64))
            .collect()
    };
    vec![
        series("offered", 0, per(&|i| i.scheduled)),
        series("achieved (2xx)", 2, per(&|i| i.ok)),
        series("errors", 3, per(&|i| i.errors)),
        series("dropped", 4, per(&|i| i.dropped)),
    ]
}

/// The latency and throughput charts of one run.
pub fn run_charts(run: &RunResult, label: &str) -> Vec<Chart> {
    vec![
        Chart {
            title: format!("{label}: latency from scheduled send, per second"),
            x_label: "seconds into the run".into(),
            y_label: "ms".into(),
            series: latency_series(run, 0.0),
        },
        Chart {
            title: format!("{label}: throughput, per second"),
            x_label: "seconds into the run".into(),
            y_label: "webhooks/s".into(),
            series: throughput_series(run, 0.0),
        },
    ]
}

/// RSS (MiB) and CPU% charts of the server, if sampled.
pub fn server_charts(server: Option<&ServerSamples>) -> Vec<Chart> {
    let Some(server) = server else {
        return Vec::new();
    };
    let rss = server
        .samples
        .iter()
        .map(|s| (s.t_s, s.rss_bytes as f64 / 1_048_576.0))
        .collect();
    let cpu = server
        .samples
        .iter()
        .filter_map(|s| s.cpu_percent.map(|c| (s.t_s, c)))
        .collect();
    vec![
        Chart {
            title: format!("server (pid {}) resident memory", server.pid),
            x_label: "seconds".into(),
            y_label: "RSS MiB".into(),
            series: vec![series("RSS", 0, rss)],
        },
        Chart {
            title: format!(
                "server (pid {}) CPU (100% = one core; ticks assumed 100/s)",
                server.pid
            ),
            x_label: "seconds".into(),
            y_label: "CPU %".into(),
            series: vec![series("CPU", 3, cpu)],
        },
    ]
}

/// The headline figures of one run for the HTML summary table.
pub fn run_summary(run: &RunResult, label: &str) -> Vec<(String, String)> {
    let p = |q: f64| format!("{:.2}", ms(run.latency.value_at_quantile(q)));
    vec![
        (
            format!("{label}: offered / achieved rate"),
            format!(
                "{:.1} / {:.1} per s",
                run.offered_rate(),
                run.achieved_rate()
            ),
        ),
        (
            format!("{label}: sent / ok / errors / dropped"),
            format!(
                "{} / {} / {} / {}",
                run.sent, run.ok, run.errors, run.dropped
            ),
        ),
        (
            format!("{label}: latency p50 / p90 / p99 / p99.9 / max (ms)"),
            format!(
                "{} / {} / {} / {} / {:.2}",
                p(0.5),
                p(0.9),
                p(0.99),
                p(0.999),
                ms(run.latency.max())
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert!((nice_step(0.3, 5.0) - 0.1).abs() < 1e-12);
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(200.0, 50.0), "200");
    }

    #[test]
    fn charts_are_self_contained_svg() {
        let chart = Chart {
            title: "latency <p99> & co".into(),
            x_label: "s".into(),
            y_label: "ms".into(),
            series: vec![
                series("p50", 0, vec![(0.0, 1.0), (1.0, 2.5), (2.0, f64::NAN)]),
                series("one", 1, vec![(1.0, 3.0)]),
            ],
        };
        let svg = svg(&chart);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<polyline") && svg.contains("<circle"));
        assert!(svg.contains("latency &lt;p99&gt; &amp; co"));
        assert!(!svg.contains("NaN"));
        let empty = Chart {
            series: vec![],
            ..chart
        };
        assert!(super::svg(&empty).contains("no data"));
        let page = html("t", &[("k".into(), "v".into())], &[empty]);
        assert!(
            page.html.contains("<svg")
                && !page.html.contains("<script")
                && !page.html.contains("src=")
        );
        // Each chart also stands alone, named by its place and title.
        assert_eq!(page.charts.len(), 1);
        assert_eq!(page.charts[0].0, "01-latency-p99-co.svg");
        assert_eq!(
            chart_file(4, "server (pid 5336) resident memory"),
            "05-server-resident-memory.svg"
        );
        assert!(page.html.contains(&page.charts[0].1));
    }
}
