//! The SVG charts, drawn with `plotters` from the recorded figures only: one
//! grouped bar chart per benchmark part and metric (a group of bars per case,
//! a bar per side at the median, each round a dot), and one chart of every
//! median paired ratio against its target.

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::format::{number, ratio};
use crate::results::{Better, Figure, Target};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const FONT: &str = "sans-serif";
/// Colours a reader tells apart (Okabe–Ito), one per side.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
];

/// The figures of one chart: a benchmark's part, one metric in one unit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chart {
    /// `relay drain: throughput`.
    pub(crate) title: String,
    /// The file's name: `relay-drain-throughput.svg`.
    pub(crate) file: String,
    /// The metric and its unit, the y axis.
    pub(crate) metric: String,
    pub(crate) unit: String,
    pub(crate) better: Better,
    /// Cases in their first order of appearance (the x axis).
    pub(crate) cases: Vec<String>,
    /// Sides in their first order of appearance (the legend).
    pub(crate) sides: Vec<String>,
    /// The figures, each at (case, side).
    pub(crate) figures: Vec<Figure>,
}

impl Chart {
    /// The bench and part this chart belongs to.
    pub(crate) fn bench_part(&self) -> (&str, &str) {
        self.figures
            .first()
            .map_or(("", ""), |f| (f.bench.as_str(), f.part.as_str()))
    }
}

/// A file name of lower-case letters, digits and dashes.
pub(crate) fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The charts of `figures`: one per (bench, part, metric, unit), in order of
/// first appearance; figures without a finite value are left out.
pub(crate) fn charts(figures: &[Figure]) -> Vec<Chart> {
    let mut charts: Vec<Chart> = Vec::new();
    for figure in figures.iter().filter(|f| f.value.is_finite()) {
        let chart = match charts.iter_mut().find(|c| {
            let first = &c.figures[0];
            first.bench == figure.bench
                && first.part == figure.part
                && first.metric == figure.metric
                && first.unit == figure.unit
        }) {
            Some(chart) => chart,
            None => {
                charts.push(Chart {
                    title: format!("{} {}: {}", figure.bench, figure.part, figure.metric),
                    file: format!(
                        "{}.svg",
                        slug(&format!(
                            "{} {} {}",
                            figure.bench, figure.part, figure.metric
                        ))
                    ),
                    metric: figure.metric.clone(),
                    unit: figure.unit.clone(),
                    better: figure.better,
                    cases: Vec::new(),
                    sides: Vec::new(),
                    figures: Vec::new(),
                });
                charts.last_mut().unwrap()
            }
        };
        if !chart.cases.contains(&figure.case) {
            chart.cases.push(figure.case.clone());
        }
        if !chart.sides.contains(&figure.side) {
            chart.sides.push(figure.side.clone());
        }
        chart.figures.push(figure.clone());
    }
    charts
}

/// An axis of `n` categories, `0..n`, whose key points (ticks and labels)
/// are their centres `0.5, 1.5, …`; the chart's label formatter names them.
struct Categories {
    n: usize,
    inner: RangedCoordf64,
}

fn category_axis(n: usize) -> Categories {
    Categories {
        n,
        inner: (0f64..n.max(1) as f64).into(),
    }
}

impl Ranged for Categories {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.n).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

impl ValueFormatter<f64> for Categories {
    fn format(value: &f64) -> String {
        format!("{value}")
    }
}

fn category(labels: &[String], x: f64) -> String {
    let i = (x - 0.5).round();
    if i >= 0.0 && (i as usize) < labels.len() && (x - 0.5 - i).abs() < 1e-6 {
        labels[i as usize].clone()
    } else {
        String::new()
    }
}

/// The chart as an SVG document.
pub(crate) fn bars_svg(chart: &Chart) -> Result<String> {
    let mut svg = String::new();
    {
        let width = (220 + 90 * chart.cases.len() * chart.sides.len().max(1)).clamp(640, 1100);
        let root = SVGBackend::with_string(&mut svg, (width as u32, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = chart
            .figures
            .iter()
            .flat_map(|f| f.rounds.iter().copied().chain([f.value]))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let top = if top > 0.0 { top * 1.35 } else { 1.0 };
        let cases = &chart.cases;
        let better = match chart.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        let mut plot = ChartBuilder::on(&root)
            .caption(&chart.title, (FONT, 20))
            .margin(14)
            .x_label_area_size(if cases.iter().all(String::is_empty) {
                20
            } else {
                40
            })
            .y_label_area_size(80)
            .build_cartesian_2d(category_axis(cases.len()), 0f64..top)?;
        plot.configure_mesh()
            .disable_x_mesh()
            .max_light_lines(1)
            .x_label_formatter(&|x| category(cases, *x))
            .y_label_formatter(&|y| number(*y))
            .y_desc(format!("{} ({}), {better}", chart.metric, chart.unit))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        let sides = chart.sides.len().max(1) as f64;
        let width = 0.8 / sides;
        for (s, side) in chart.sides.iter().enumerate() {
            let colour = PALETTE[s % PALETTE.len()];
            let at = |case: &str| {
                let c = chart.cases.iter().position(|x| x == case).unwrap_or(0) as f64;
                c + 0.1 + s as f64 * width
            };
            let mine: Vec<&Figure> = chart.figures.iter().filter(|f| &f.side == side).collect();
            plot.draw_series(mine.iter().map(|f| {
                let x = at(&f.case);
                Rectangle::new(
                    [(x + width * 0.06, 0.0), (x + width * 0.94, f.value)],
                    colour.filled(),
                )
            }))?
            .label(side.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
            plot.draw_series(mine.iter().flat_map(|f| {
                let x = at(&f.case) + width / 2.0;
                f.rounds
                    .iter()
                    .filter(|v| v.is_finite())
                    .map(move |v| Circle::new((x, *v), 3, BLACK.mix(0.7).filled()))
            }))?;
            let label =
                TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            plot.draw_series(mine.iter().map(|f| {
                let x = at(&f.case) + width / 2.0;
                let text = match f.ratio {
                    Some(r) => format!("{} ({}×)", number(f.value), ratio(r)),
                    None => number(f.value),
                };
                Text::new(text, (x, f.value * 1.02 + top * 0.01), label.clone())
            }))?;
        }
        plot.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.5))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// The figures that have a median paired ratio, one bar each, with their
/// rounds' ratios as dots and their target as a red mark; `None` when no
/// figure has a ratio.
pub(crate) fn ratios_svg(figures: &[Figure]) -> Result<Option<String>> {
    let rows: Vec<&Figure> = figures
        .iter()
        .filter(|f| f.ratio.is_some_and(f64::is_finite))
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    // Row 0 is drawn at the top: the axis counts from the bottom.
    let labels: Vec<String> = rows.iter().rev().map(|f| ratio_label(f)).collect();
    let right = rows
        .iter()
        .flat_map(|f| {
            f.ratio_rounds
                .iter()
                .copied()
                .chain([f.ratio.unwrap_or(0.0), target_of(f), 1.0])
        })
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        * 1.3;
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(10);
    let mut svg = String::new();
    {
        let height = (90 + 34 * rows.len()) as u32;
        let root = SVGBackend::with_string(&mut svg, (1000, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut plot = ChartBuilder::on(&root)
            .caption("median paired ratio against the baseline", (FONT, 20))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size((longest * 7 + 20) as u32)
            .build_cartesian_2d(0f64..right, category_axis(rows.len()))?;
        plot.configure_mesh()
            .disable_y_mesh()
            .max_light_lines(1)
            .y_label_formatter(&|y| category(&labels, *y))
            .x_label_formatter(&|x| format!("{x:.2}"))
            .x_desc("ratio (side ÷ baseline), red mark: target; dots: rounds")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .draw()?;
        let n = rows.len();
        // Row 0 at the top.
        let y = |i: usize| (n - 1 - i) as f64;
        plot.draw_series(rows.iter().enumerate().map(|(i, f)| {
            let colour = match f.verdict() {
                Some(true) => PALETTE[2],
                Some(false) => PALETTE[5],
                None => PALETTE[0],
            };
            Rectangle::new(
                [(0.0, y(i) + 0.2), (f.ratio.unwrap_or(0.0), y(i) + 0.8)],
                colour.filled(),
            )
        }))?;
        plot.draw_series(rows.iter().enumerate().flat_map(|(i, f)| {
            f.ratio_rounds
                .iter()
                .filter(|v| v.is_finite())
                .map(move |r| Circle::new((*r, y(i) + 0.5), 3, BLACK.mix(0.7).filled()))
        }))?;
        plot.draw_series(rows.iter().enumerate().filter_map(|(i, f)| {
            let t = target_of(f);
            t.is_finite().then(|| {
                PathElement::new(
                    vec![(t, y(i) + 0.05), (t, y(i) + 0.95)],
                    RED.stroke_width(3),
                )
            })
        }))?;
        plot.draw_series(std::iter::once(PathElement::new(
            vec![(1.0, 0.0), (1.0, n as f64)],
            BLACK.mix(0.4).stroke_width(1),
        )))?;
        let label = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        plot.draw_series(rows.iter().enumerate().map(|(i, f)| {
            let r = f.ratio.unwrap_or(0.0);
            // right of the bar, its rounds and its target mark
            let after = f
                .ratio_rounds
                .iter()
                .copied()
                .chain([r, target_of(f)])
                .filter(|v| v.is_finite())
                .fold(r, f64::max);
            let text = match f.target {
                Some(t) => format!("{}  (target {})", ratio(r), t.label()),
                None => ratio(r),
            };
            Text::new(text, (after + right * 0.015, y(i) + 0.5), label.clone())
        }))?;
        root.present()?;
    }
    Ok(Some(svg))
}

/// The figure's target ratio, NaN without one.
fn target_of(f: &Figure) -> f64 {
    match f.target {
        Some(Target::AtLeast(t) | Target::AtMost(t)) => t,
        None => f64::NAN,
    }
}

/// `relay drain batch 100: relay ÷ raw produce`.
pub(crate) fn ratio_label(f: &Figure) -> String {
    let mut label = format!("{} {}", f.bench, f.part);
    if !f.case.is_empty() {
        label.push(' ');
        label.push_str(&f.case);
    }
    label.push_str(&format!(
        ": {} ÷ {}",
        f.side,
        f.baseline.as_deref().unwrap_or("?")
    ));
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn drain() -> Vec<Figure> {
        let raw100 = [400_000.0, 380_000.0, 410_000.0];
        let raw1000 = [500_000.0, 480_000.0, 520_000.0];
        vec![
            Figure::new("relay", "drain", "raw produce", "throughput", "msg/s")
                .case("batch 100")
                .rounds(&raw100),
            Figure::new("relay", "drain", "relay", "throughput", "msg/s")
                .case("batch 100")
                .rounds(&[120_000.0, 110_000.0, 130_000.0])
                .against("raw produce", &raw100)
                .target_at_least(0.3),
            Figure::new("relay", "drain", "raw produce", "throughput", "msg/s")
                .case("batch 1000")
                .rounds(&raw1000),
            Figure::new("relay", "drain", "relay", "throughput", "msg/s")
                .case("batch 1000")
                .rounds(&[200_000.0, 230_000.0, 240_000.0])
                .against("raw produce", &raw1000)
                .target_at_least(0.5),
            Figure::new("relay", "memory", "relay", "VmHWM", "MiB")
                .value(42.5)
                .lower_is_better(),
        ]
    }

    #[test]
    fn groups_by_part_and_metric_in_order() {
        let charts = charts(&drain());
        assert_eq!(charts.len(), 2);
        assert_eq!(charts[0].file, "relay-drain-throughput.svg");
        assert_eq!(charts[0].cases, ["batch 100", "batch 1000"]);
        assert_eq!(charts[0].sides, ["raw produce", "relay"]);
        assert_eq!(charts[1].title, "relay memory: VmHWM");
        assert_eq!(charts[1].cases, [""]);
    }

    #[test]
    fn a_bar_chart_has_axes_labels_and_legend() {
        let svg = bars_svg(&charts(&drain())[0]).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in [
            "relay drain: throughput",
            "throughput (msg/s), higher is better",
            "batch 100",
            "batch 1000",
            "raw produce",
            "relay",
            // the batch 100 relay median and its paired ratio median (0.3)
            "120,000 (0.30×)",
        ] {
            assert!(svg.contains(text), "no {text:?} in the SVG");
        }
        // 4 bars, 12 round dots, legend swatches
        assert!(svg.matches("<circle").count() >= 12);
    }

    #[test]
    fn the_ratio_chart_shows_every_ratio_and_target() {
        let svg = ratios_svg(&drain()).unwrap().unwrap();
        assert!(svg.contains("relay drain batch 100: relay ÷ raw produce"));
        assert!(svg.contains("0.30  (target ≥ 0.3)"));
        assert!(svg.contains("0.46  (target ≥ 0.5)"));
        assert_eq!(ratios_svg(&drain()[..1]).unwrap(), None);
    }

    #[test]
    fn an_unlabelled_axis_point_is_blank() {
        let labels = vec!["a".to_string(), "b".to_string()];
        assert_eq!(category(&labels, 0.5), "a");
        assert_eq!(category(&labels, 1.5), "b");
        assert_eq!(category(&labels, 1.0), "");
        assert_eq!(category(&labels, 7.5), "");
    }
}
