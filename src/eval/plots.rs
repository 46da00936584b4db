//! Evaluation plots as self-contained SVG (no fonts or scripts fetched): a confusion-matrix
//! heat map, ROC curves and a Recall@K curve.

use crate::eval::metrics::RocCurve;

const W: f64 = 640.0;
const H: f64 = 480.0;
const MARGIN: f64 = 60.0;
const COLOURS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn open(width: f64, height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
        escape(title),
        width / 2.0,
        escape(title)
    )
}

/// Axes from (0,0) to (1,1) of a unit plot, with ticks every 0.2 and axis labels.
fn unit_axes(x_label: &str, y_label: &str) -> String {
    let (x0, y0, x1, y1) = (MARGIN, H - MARGIN, W - MARGIN / 2.0, MARGIN);
    let mut s = format!(
        "<rect x=\"{x0}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n",
        x1 - x0,
        y0 - y1
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let (x, y) = (x0 + f * (x1 - x0), y0 - f * (y0 - y1));
        s += &format!("<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{f:.1}</text>\n", y0 + 16.0);
        s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{f:.1}</text>\n", x0 - 6.0, y + 4.0);
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        (x0 + x1) / 2.0,
        H - 16.0,
        escape(x_label)
    );
    s += &format!(
        "<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n",
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        escape(y_label)
    );
    s
}

fn to_px(x: f64, y: f64) -> (f64, f64) {
    let (x0, y0, x1, y1) = (MARGIN, H - MARGIN, W - MARGIN / 2.0, MARGIN);
    (x0 + x.clamp(0.0, 1.0) * (x1 - x0), y0 - y.clamp(0.0, 1.0) * (y0 - y1))
}

fn polyline(points: impl Iterator<Item = (f64, f64)>, colour: &str) -> String {
    let pts: Vec<String> = points.map(|(x, y)| to_px(x, y)).map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    format!("<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n", pts.join(" "))
}

fn legend(entries: &[String]) -> String {
    let backdrop = format!(
        "<rect x=\"{}\" y=\"{}\" width=\"245\" height=\"{}\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n",
        W - 275.0,
        MARGIN + 4.0,
        16.0 * entries.len() as f64 + 6.0
    );
    backdrop
        + &entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let y = MARGIN + 14.0 + 16.0 * i as f64;
            let c = COLOURS[i % COLOURS.len()];
            format!(
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{c}\" stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
                W - 270.0,
                W - 250.0,
                W - 245.0,
                y + 4.0,
                escape(e)
            )
        })
        .collect::<String>()
}

/// One ROC curve per class (one-vs-rest), with its AUROC in the legend.
pub fn roc_svg(title: &str, curves: &[(String, RocCurve, f64)]) -> String {
    let mut s = open(W, H, title) + &unit_axes("false positive rate", "true positive rate");
    s += &polyline([(0.0, 0.0), (1.0, 1.0)].into_iter(), "#bbb");
    for (i, (_, c, _)) in curves.iter().enumerate() {
        s += &polyline(c.fpr.iter().copied().zip(c.tpr.iter().copied()), COLOURS[i % COLOURS.len()]);
    }
    let names: Vec<String> = curves.iter().map(|(n, _, auc)| format!("{n} ({auc:.3})")).collect();
    s + &legend(&names) + "</svg>\n"
}

/// Recall@K against K (log-spaced positions), image→text and text→image.
pub fn recall_svg(title: &str, ks: &[usize], image_to_text: &[f64], text_to_image: &[f64]) -> String {
    let mut s = open(W, H, title) + &unit_axes("K", "recall@K");
    let max = ks.iter().copied().max().unwrap_or(1).max(2) as f64;
    let xpos = |k: usize| (k as f64).ln() / max.ln();
    for (i, series) in [image_to_text, text_to_image].iter().enumerate() {
        s += &polyline(ks.iter().zip(series.iter()).map(|(&k, &r)| (xpos(k), r)), COLOURS[i]);
    }
    for &k in ks {
        let (x, _) = to_px(xpos(k), 0.0);
        s += &format!("<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">K={k}</text>\n", H - MARGIN - 6.0);
    }
    s + &legend(&["image → text".to_string(), "text → image".to_string()]) + "</svg>\n"
}

/// Counts as a heat map, rows = true class, columns = predicted class, shaded by row share.
pub fn confusion_svg(title: &str, classes: &[String], matrix: &[Vec<u64>]) -> String {
    let n = classes.len().max(1);
    let cell = (360.0 / n as f64).clamp(4.0, 60.0);
    let left = 200.0;
    let top = 60.0;
    let (width, height) = (left + cell * n as f64 + 40.0, top + cell * n as f64 + 200.0);
    let mut s = open(width, height, title);
    for (r, row) in matrix.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (c, &v) in row.iter().enumerate() {
            let share = if total == 0 { 0.0 } else { v as f64 / total as f64 };
            let shade = (255.0 * (1.0 - share)) as u8;
            let (x, y) = (left + c as f64 * cell, top + r as f64 * cell);
            s += &format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({shade},{shade},255)\" stroke=\"#ccc\"><title>{} → {}: {v}</title></rect>\n",
                escape(&classes[r]),
                escape(&classes[c])
            );
            if cell >= 24.0 {
                let colour = if share > 0.5 { "white" } else { "black" };
                s += &format!(
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{colour}\">{v}</text>\n",
                    x + cell / 2.0,
                    y + cell / 2.0 + 4.0
                );
            }
        }
    }
    if cell >= 10.0 {
        for (i, name) in classes.iter().enumerate() {
            let y = top + i as f64 * cell + cell / 2.0 + 4.0;
            s += &format!("<text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{}</text>\n", left - 6.0, escape(name));
            let x = left + i as f64 * cell + cell / 2.0;
            let yb = top + n as f64 * cell + 8.0;
            s += &format!("<text x=\"{x}\" y=\"{yb}\" transform=\"rotate(60 {x} {yb})\">{}</text>\n", escape(name));
        }
    }
    s + &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">rows: true class · columns: predicted class</text>\n</svg>\n",
        width / 2.0,
        height - 12.0
    )
}
