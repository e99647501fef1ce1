//! The replay's HTML report: the figures side by side and three plots drawn as inline SVG (no
//! script, nothing fetched): the queue wait's distribution, the queue's length over the range,
//! and each agent's mean load, recorded against replayed.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::html::escape;
use crate::replay::simulate::Run;
use crate::replay::{Figures, Outcome, Spread};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 36.0;
const RECORDED: &str = "#6b7280";
const REPLAYED: &str = "#2563eb";

/// One line of a plot: its name, colour and points in data units.
struct Line<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

fn plot(title: &str, x_label: &str, y_label: &str, lines: &[Line<'_>]) -> String {
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (mut x_max, mut y_max) = (0f64, 0f64);
    for (x, y) in all {
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
    }
    let (x_max, y_max) = (x_max.max(1e-9), y_max.max(1e-9));
    let sx = |x: f64| LEFT + x / x_max * (WIDTH - LEFT - 16.0);
    let sy = |y: f64| HEIGHT - BOTTOM - y / y_max * (HEIGHT - BOTTOM - 24.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{LEFT}" y1="24" x2="{LEFT}" y2="{b}" stroke="#999"/>"##,
        b = HEIGHT - BOTTOM,
        r = WIDTH - 16.0
    );
    for tick in 0..=4 {
        let share = f64::from(tick) / 4.0;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text><text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>"#,
            sx(share * x_max),
            HEIGHT - BOTTOM + 14.0,
            short(share * x_max),
            LEFT - 6.0,
            sy(share * y_max) + 4.0,
            short(share * y_max)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text><text x="14" y="16" font-size="12">{}</text>"#,
        (LEFT + WIDTH) / 2.0,
        HEIGHT - 4.0,
        escape(x_label),
        escape(y_label)
    );
    for (index, line) in lines.iter().enumerate() {
        let points: Vec<String> = line
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}" data-series="{}"/><text x="{}" y="{}" font-size="12" fill="{}">{}</text>"#,
            line.color,
            points.join(" "),
            escape(line.name),
            WIDTH - 150.0,
            30.0 + 16.0 * index as f64,
            line.color,
            escape(line.name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn short(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The queue waits' cumulative distribution (share of cycles against seconds waited).
fn distribution(run: &Run) -> Vec<(f64, f64)> {
    let mut waits: Vec<f64> = run
        .cycles
        .iter()
        .filter(|c| c.measured)
        .filter_map(|c| c.queue_wait)
        .map(|d| d.as_secs_f64())
        .collect();
    waits.sort_by(f64::total_cmp);
    let n = waits.len().max(1) as f64;
    let mut points = vec![(0.0, 0.0)];
    points.extend(
        waits
            .iter()
            .enumerate()
            .map(|(i, w)| (*w, (i + 1) as f64 / n)),
    );
    points
}

/// The queue's length over the range as steps (seconds since its start).
fn queue_steps(run: &Run, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(f64, f64)> {
    let seconds = |at: DateTime<Utc>| (at - from).num_milliseconds().max(0) as f64 / 1000.0;
    let mut points = vec![(0.0, 0.0)];
    let mut last = 0.0;
    for (at, length) in &run.queue_length {
        if *at > to {
            break;
        }
        let x = seconds(*at);
        points.push((x, last));
        last = *length as f64;
        points.push((x, last));
    }
    points.push((seconds(to), last));
    points
}

fn spread_cells(spread: &Spread) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.0} ms"));
    format!(
        "<td>{}</td><td>{}</td><td>{}</td>",
        spread.count,
        ms(spread.p50_ms),
        ms(spread.p90_ms)
    )
}

fn figures_rows(name: &str, figures: &Figures) -> String {
    format!(
        "<tr><th>{}</th>{}{}<td>{}</td><td>{}</td></tr>",
        escape(name),
        spread_cells(&figures.queue_wait),
        spread_cells(&figures.first_offer),
        figures
            .per_agent_load
            .p50
            .map_or_else(|| "—".into(), |v| format!("{v:.2}")),
        figures.never_assigned
    )
}

/// The whole report.
pub fn render(outcome: &Outcome) -> String {
    let (recorded, replayed) = &outcome.runs;
    let setup = &outcome.setup;
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>WaOS replay</title>\
         <style>body{font:14px system-ui,sans-serif;margin:2rem;max-width:60rem}\
         table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}\
         th{text-align:left}figure{margin:1.5rem 0}figcaption{font-weight:600}</style></head><body>",
    );
    let _ = write!(
        page,
        "<h1>Replay of workspace {}</h1><p>From {} to {}: {} conversation cycles. Replayed with \
         policy <b>{}</b>, sticky {}, capacity {:+}, agents {:+}.</p>",
        escape(&outcome.workspace_id.to_string()),
        escape(&outcome.from.to_rfc3339()),
        escape(&outcome.to.to_rfc3339()),
        outcome.cycles,
        escape(setup.policy.as_str()),
        setup.sticky,
        setup.capacity_delta,
        setup.agents_delta
    );
    page.push_str(
        "<table><thead><tr><th></th><th colspan=3>queue wait (count, p50, p90)</th>\
         <th colspan=3>first offer (count, p50, p90)</th><th>agent load p50</th>\
         <th>never assigned</th></tr></thead><tbody>",
    );
    page.push_str(&figures_rows("recorded", &outcome.recorded));
    page.push_str(&figures_rows("replayed", &outcome.replayed));
    page.push_str("</tbody></table>");
    page.push_str(&plot(
        "Queue wait, cumulative share of conversations",
        "seconds waited",
        "share",
        &[
            Line {
                name: "recorded",
                color: RECORDED,
                points: distribution(recorded),
            },
            Line {
                name: "replayed",
                color: REPLAYED,
                points: distribution(replayed),
            },
        ],
    ));
    page.push_str(&plot(
        "Conversations waiting",
        "seconds since the range's start",
        "waiting",
        &[
            Line {
                name: "recorded",
                color: RECORDED,
                points: queue_steps(recorded, outcome.from, outcome.to),
            },
            Line {
                name: "replayed",
                color: REPLAYED,
                points: queue_steps(replayed, outcome.from, outcome.to),
            },
        ],
    ));
    page.push_str(
        "<h2>Per agent</h2><table><thead><tr><th>agent</th><th>assigned (recorded)</th>\
         <th>assigned (replayed)</th><th>mean load (recorded)</th><th>mean load (replayed)</th>\
         </tr></thead><tbody>",
    );
    let mut ids: Vec<_> = outcome
        .recorded
        .per_agent_load
        .agents
        .iter()
        .chain(&outcome.replayed.per_agent_load.agents)
        .map(|a| (a.agent_id, a.name.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    for (id, name) in ids {
        let find = |figures: &Figures| {
            figures
                .per_agent_load
                .agents
                .iter()
                .find(|a| a.agent_id == id)
                .map_or((0, 0.0), |a| (a.assigned, a.mean_load))
        };
        let (recorded, replayed) = (find(&outcome.recorded), find(&outcome.replayed));
        let _ = write!(
            page,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(&name),
            recorded.0,
            replayed.0,
            recorded.1,
            replayed.1
        );
    }
    page.push_str("</tbody></table></body></html>");
    page
}
