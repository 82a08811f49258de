//! `--chart`: inbound and processing rates, replicas per autoscaler and lag
//! over time, as one SVG.

use std::path::Path;

use plotters::prelude::*;

use super::report::Report;

const COLORS: [RGBColor; 6] = [
    RGBColor(228, 26, 28),
    RGBColor(255, 127, 0),
    RGBColor(152, 78, 163),
    RGBColor(55, 126, 184),
    RGBColor(77, 175, 74),
    RGBColor(120, 120, 120),
];

/// Draws the report's traces into `path` (SVG).
pub fn draw(report: &Report, path: &Path) -> Result<(), String> {
    if path.extension().is_none_or(|e| e != "svg") {
        return Err(format!(
            "{}: charts are written as SVG; name the file *.svg",
            path.display()
        ));
    }
    let root = SVGBackend::new(path, (1200, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((3, 1));
    let Some(first) = report.traces.first() else {
        return Err("nothing to draw".into());
    };
    let t_max = first.t.last().copied().unwrap_or(1.0).max(1.0);
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();

    // Rates.
    let rate_max = report
        .traces
        .iter()
        .flat_map(|t| t.inbound_rate.iter().chain(&t.processing_rate))
        .fold(1.0f64, |a, &b| a.max(b))
        * 1.1;
    let mut chart = ChartBuilder::on(&panels[0])
        .caption(
            format!(
                "{}: inbound rate and processing rate (msg/s)",
                report.scenario
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..rate_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            first
                .t
                .iter()
                .copied()
                .zip(first.inbound_rate.iter().copied()),
            BLACK.stroke_width(2),
        ))
        .map_err(err)?
        .label("inbound")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    for (i, trace) in report.traces.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                trace
                    .t
                    .iter()
                    .copied()
                    .zip(trace.processing_rate.iter().copied()),
                color.stroke_width(1),
            ))
            .map_err(err)?
            .label(trace.policy)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)?;

    // Replicas.
    let pods_max = report
        .traces
        .iter()
        .flat_map(|t| t.pods.iter())
        .copied()
        .max()
        .unwrap_or(1) as f64
        * 1.1
        + 1.0;
    let mut chart = ChartBuilder::on(&panels[1])
        .caption("pods (starting or ready)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..pods_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(err)?;
    for (i, trace) in report.traces.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                trace
                    .t
                    .iter()
                    .copied()
                    .zip(trace.pods.iter().map(|&p| f64::from(p))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(trace.policy)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)?;

    // Lag.
    let lag_max = report
        .traces
        .iter()
        .flat_map(|t| t.lag.iter())
        .fold(1.0f64, |a, &b| a.max(b))
        * 1.1;
    let mut chart = ChartBuilder::on(&panels[2])
        .caption("consumer group lag (messages)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..lag_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(err)?;
    for (i, trace) in report.traces.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                trace.t.iter().copied().zip(trace.lag.iter().copied()),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(trace.policy)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
