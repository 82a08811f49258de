//! `--chart`: inbound and processing rates, replicas per autoscaler and lag
//! over time, as one SVG.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{Report, Trace};

const COLORS: [RGBColor; 6] = [
    RGBColor(228, 26, 28),
    RGBColor(255, 127, 0),
    RGBColor(152, 78, 163),
    RGBColor(55, 126, 184),
    RGBColor(77, 175, 74),
    RGBColor(120, 120, 120),
];

/// One line of a panel.
struct Line {
    label: &'static str,
    color: RGBColor,
    width: u32,
    points: Vec<(f64, f64)>,
}

/// Draws the report's traces into `path` (SVG).
pub fn draw(report: &Report, path: &Path) -> Result<(), String> {
    draw_traces(&report.scenario, &report.traces, path)
}

/// Draws traces (the first one's inbound rate is the load) into `path`.
pub fn draw_traces(title: &str, traces: &[Trace], path: &Path) -> Result<(), String> {
    if path.extension().is_none_or(|e| e != "svg") {
        return Err(format!(
            "{}: charts are written as SVG; name the file *.svg",
            path.display()
        ));
    }
    let Some(first) = traces.first() else {
        return Err("nothing to draw".into());
    };
    let root = SVGBackend::new(path, (1200, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((3, 1));
    let t_max = first.t.last().copied().unwrap_or(1.0).max(1.0);
    let per_policy = |value: fn(&Trace, usize) -> f64| -> Vec<Line> {
        traces
            .iter()
            .enumerate()
            .map(|(i, trace)| Line {
                label: trace.policy,
                color: COLORS[i % COLORS.len()],
                width: 2,
                points: (0..trace.t.len())
                    .map(|k| (trace.t[k], value(trace, k)))
                    .collect(),
            })
            .collect()
    };

    let mut rates = vec![Line {
        label: "inbound",
        color: BLACK,
        width: 3,
        points: first
            .t
            .iter()
            .copied()
            .zip(first.inbound_rate.iter().copied())
            .collect(),
    }];
    rates.extend(
        per_policy(|t, k| t.processing_rate[k])
            .into_iter()
            .map(|l| Line { width: 1, ..l }),
    );
    panel(
        &panels[0],
        &format!("{title}: inbound rate and processing rate (msg/s)"),
        t_max,
        &rates,
    )?;
    panel(
        &panels[1],
        "pods (starting or ready)",
        t_max,
        &per_policy(|t, k| f64::from(t.pods[k])),
    )?;
    panel(
        &panels[2],
        "consumer group lag (messages)",
        t_max,
        &per_policy(|t, k| t.lag[k]),
    )?;
    root.present().map_err(|e| e.to_string())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    t_max: f64,
    lines: &[Line],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(err)?;
    for line in lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(line.width),
            ))
            .map_err(err)?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)
}
