//! PNG plots of the results: delivery-latency percentiles per chat
//! scenario and the throughput ceiling (delivery p99 against the offered
//! rate), one line per target. Text is drawn with the system's DejaVu Sans
//! (Debian's fonts-dejavu-core); without it the plots are skipped.

use std::path::{Path, PathBuf};

use crate::report::Results;
use plotters::prelude::*;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (960, 540);
const PERCENTILES: [(&str, &str); 4] =
    [("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"), ("max", "max_ms")];

/// Draws every plot the results allow; returns (scenario stem, file).
pub fn draw_all(results: &Results, targets: &[String], dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let Ok(font) = std::fs::read(FONT) else {
        eprintln!("no {FONT}: plots skipped (apt-get install fonts-dejavu-core)");
        return Ok(Vec::new());
    };
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| "bad font file".to_owned())?;
    let mut drawn = Vec::new();
    for stem in ["steady", "steady-ws", "big-room", "big-room-ws"] {
        let lines: Vec<(String, Vec<f64>)> = targets
            .iter()
            .filter_map(|target| {
                let latency = results[target].get(stem)?.pointer("/outcome/delivery_latency")?;
                let values =
                    PERCENTILES.iter().map(|(_, key)| latency[*key].as_f64()).collect::<Option<Vec<_>>>()?;
                Some((target.clone(), values))
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        let file = dir.join(format!("latency-{stem}.png"));
        latency_plot(&file, &format!("Delivery latency, {stem}"), &lines)
            .map_err(|e| format!("{stem} plot: {e}"))?;
        drawn.push((stem.to_owned(), file));
    }
    let ceilings: Vec<(String, Vec<(f64, f64)>)> = targets
        .iter()
        .filter_map(|target| {
            let steps = results[target].get("ceiling")?.pointer("/outcome/steps")?.as_array()?;
            let points = steps
                .iter()
                .filter_map(|s| {
                    Some((s["offered_rate"].as_f64()?, s.pointer("/delivery_latency/p99_ms")?.as_f64()?))
                })
                .collect::<Vec<_>>();
            (!points.is_empty()).then(|| (target.clone(), points))
        })
        .collect();
    if !ceilings.is_empty() {
        let limit = targets
            .iter()
            .find_map(|t| results[t].get("ceiling")?.pointer("/outcome/p99_limit_ms")?.as_f64())
            .unwrap_or(200.0);
        let file = dir.join("ceiling.png");
        ceiling_plot(&file, &ceilings, limit).map_err(|e| format!("ceiling plot: {e}"))?;
        drawn.push(("ceiling".to_owned(), file));
    }
    Ok(drawn)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Percentiles on a log scale, one line per target.
fn latency_plot(file: &Path, title: &str, lines: &[(String, Vec<f64>)]) -> DrawResult {
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let values = lines.iter().flat_map(|(_, v)| v.iter().copied());
    // Head room above the lines for the legend.
    let top = values.clone().fold(1.0_f64, f64::max) * 8.0;
    let bottom = (values.fold(f64::MAX, f64::min) / 2.0).max(0.01);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.2_f64..3.2_f64, (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(4)
        .x_label_formatter(&|x| {
            PERCENTILES
                .get(x.round() as usize)
                .filter(|_| (x - x.round()).abs() < 0.01)
                .map_or(String::new(), |p| p.0.to_owned())
        })
        .y_desc("milliseconds (log scale)")
        .label_style(("sans-serif", 16))
        .draw()?;
    for (i, (target, values)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> =
            values.iter().enumerate().map(|(x, y)| (x as f64, y.max(bottom))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?
            .label(target.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Delivery p99 against the offered rate, with the limit drawn across.
fn ceiling_plot(file: &Path, lines: &[(String, Vec<(f64, f64)>)], limit: f64) -> DrawResult {
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let points = lines.iter().flat_map(|(_, p)| p.iter().copied());
    let right = points.clone().map(|p| p.0).fold(1.0_f64, f64::max) * 1.1;
    let top = points.map(|p| p.1).fold(limit, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput ceiling: delivery p99 by offered rate", ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0_f64..right, (1.0_f64..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("messages per second offered")
        .y_desc("delivery p99, ms (log scale)")
        .label_style(("sans-serif", 16))
        .draw()?;
    chart
        .draw_series(LineSeries::new(vec![(0.0, limit), (right, limit)], BLACK.mix(0.5).stroke_width(1)))?
        .label(format!("p99 limit {limit:.0} ms"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    for (i, (target, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?
            .label(target.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
