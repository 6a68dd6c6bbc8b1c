//! The usage chart: bars drawn by plotters' SVG backend into a string that the page inserts as
//! markup (no canvas, no pixels: it scales, prints and stays sharp), with the same numbers in a
//! table beside it for screen readers and for anyone who wants the figures.

use leptos::prelude::*;
use plotters::prelude::*;

/// One bar: its label on the x axis and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
}

const ACCENT: RGBColor = RGBColor(59, 91, 219);
const MUTED: RGBColor = RGBColor(95, 107, 122);
const GRID: RGBColor = RGBColor(221, 225, 230);

/// Draws `bars` as a bar chart of `size` pixels (the SVG's own coordinates; CSS scales it).
pub fn bar_chart_svg(bars: &[Bar], size: (u32, u32)) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let count = bars.len().max(1) as u32;
        let top = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
        // Leave headroom above the tallest bar; an all-zero series still gets an axis.
        let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d((0u32..count).into_segmented(), 0f64..y_max)
            .map_err(|e| e.to_string())?;
        // About one label per 64 px, at most 8: a phone gets fewer, none overlap.
        let max_labels = (size.0 / 64).clamp(2, 8) as usize;
        let label_every = (count as usize).div_ceil(max_labels).max(1);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .axis_style(MUTED)
            .x_labels(count as usize)
            .y_labels(5)
            .label_style(("sans-serif", 12, &MUTED))
            .x_label_formatter(&|x: &SegmentValue<u32>| match x {
                SegmentValue::CenterOf(i) if (*i as usize).is_multiple_of(label_every) => {
                    bars.get(*i as usize).map(|b| b.label.clone()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .y_label_formatter(&|v: &f64| short_number(*v))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(ACCENT.filled())
                    .margin(3)
                    .data(bars.iter().enumerate().map(|(i, b)| (i as u32, b.value))),
            )
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// `1200` → `1.2k`, `0.5` → `0.5`: axis labels that fit.
pub fn short_number(v: f64) -> String {
    let (scaled, suffix) = if v.abs() >= 1e9 {
        (v / 1e9, "G")
    } else if v.abs() >= 1e6 {
        (v / 1e6, "M")
    } else if v.abs() >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

/// The chart with its caption and its numbers as a table.
#[component]
pub fn BarChart(
    /// What the chart shows, for its accessible name.
    #[prop(into)]
    title: String,
    bars: Vec<Bar>,
    /// The value as text for the table, exactly as the server sent it.
    values: Vec<String>,
    width: u32,
) -> impl IntoView {
    let svg = bar_chart_svg(&bars, (width.max(280), 240));
    let rows = bars
        .iter()
        .zip(values)
        .map(|(bar, value)| {
            view! {
                <tr>
                    <th scope="row">{bar.label.clone()}</th>
                    <td class="num">{value}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" data-testid="usage-chart">
            {match svg {
                Ok(svg) => view! { <div class="chart-svg" role="img" aria-label=title.clone() inner_html=svg></div> }.into_any(),
                Err(e) => view! { <p class="notice notice-error" role="alert">"The chart could not be drawn: " {e}</p> }.into_any(),
            }}
            <details class="chart-table">
                <summary>"Show the numbers"</summary>
                <table class="table" data-testid="usage-table">
                    <caption class="visually-hidden">{title}</caption>
                    <thead>
                        <tr>
                            <th scope="col">"Period"</th>
                            <th scope="col" class="num">"Usage"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </details>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Bar> {
        ["1 Nov", "2 Nov", "3 Nov", "4 Nov"]
            .iter()
            .zip([12.0, 0.0, 30.5, 7.0])
            .map(|(l, v)| Bar {
                label: (*l).into(),
                value: v,
            })
            .collect()
    }

    /// The accent-coloured rectangles (the bars) as (x, height), left to right.
    fn bars_of(svg: &str) -> Vec<(u32, u32)> {
        let attr = |tag: &str, name: &str| -> u32 {
            let from = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            tag[from..].split('"').next().unwrap().parse().unwrap()
        };
        let mut bars: Vec<(u32, u32)> = svg
            .split("<rect")
            .skip(1)
            .filter(|tag| tag.contains("fill=\"#3B5BDB\""))
            .map(|tag| (attr(tag, "x"), attr(tag, "height")))
            .collect();
        bars.sort();
        bars
    }

    #[test]
    fn draws_one_bar_per_bucket_in_order_with_heights_proportional_to_the_values() {
        let svg = bar_chart_svg(&sample(), (600, 240)).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("viewBox=\"0 0 600 240\""), "scales with CSS: {svg}");
        for label in ["1 Nov", "2 Nov", "3 Nov", "4 Nov"] {
            assert!(svg.contains(&format!("\n{label}\n")), "x label {label}: {svg}");
        }
        let heights: Vec<u32> = bars_of(&svg).into_iter().map(|(_, h)| h).collect();
        assert_eq!(heights.len(), 4, "{svg}");
        assert_eq!(heights[1], 0, "a zero bucket has no height");
        assert!(heights[2] > heights[0] && heights[0] > heights[3], "{heights:?}");
        // 12 : 30.5 within a pixel of rounding.
        let ratio = f64::from(heights[0]) / f64::from(heights[2]);
        assert!((ratio - 12.0 / 30.5).abs() < 0.02, "{heights:?}");
    }

    #[test]
    fn an_all_zero_or_empty_series_still_draws_axes() {
        let zero = vec![Bar {
            label: "1 Nov".into(),
            value: 0.0,
        }];
        let svg = bar_chart_svg(&zero, (300, 200)).unwrap();
        assert!(svg.contains("<polyline"), "axes: {svg}");
        assert!(bars_of(&svg).iter().all(|(_, h)| *h == 0), "{svg}");
        assert!(bar_chart_svg(&[], (300, 200)).is_ok());
    }

    #[test]
    fn many_buckets_get_at_most_eight_labels() {
        let bars: Vec<Bar> = (1..=31)
            .map(|d| Bar {
                label: format!("d{d}"),
                value: f64::from(d),
            })
            .collect();
        let svg = bar_chart_svg(&bars, (600, 240)).unwrap();
        let shown = (1..=31).filter(|d| svg.contains(&format!("\nd{d}\n"))).count();
        assert!((4..=8).contains(&shown), "{shown} labels");
        assert!(svg.contains("\nd1\n"), "the first bucket is labelled");
        assert_eq!(bars_of(&svg).len(), 31);
    }

    #[test]
    fn a_narrow_chart_gets_fewer_labels() {
        let bars: Vec<Bar> = (0..24)
            .map(|h| Bar {
                label: format!("h{h}"),
                value: 1.0,
            })
            .collect();
        let svg = bar_chart_svg(&bars, (300, 200)).unwrap();
        let shown = (0..24).filter(|h| svg.contains(&format!("\nh{h}\n"))).count();
        assert!((2..=4).contains(&shown), "{shown} labels on 300 px");
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(short_number(1200.0), "1.2k");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(3_000_000.0), "3M");
        assert_eq!(short_number(0.0), "0");
    }
}
