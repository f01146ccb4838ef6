//! `report.html`: one self-contained page per run (and per sweep, and `harness report`),
//! as criterion writes one per benchmark: the configuration, host and calibration, the
//! matrix, the install by stage, the fidelity table, every figure inline as SVG (no
//! network, no files beside it), every warning, the models' notes, and, when a baseline
//! file is given, `compare`'s verdicts.
//!
//! A short script at the end checks, in the browser that opens the page, that every
//! figure has been laid out with a size, and writes what it found into the `<body>`'s
//! `data-` attributes; the test of the page reads them from Chromium's DOM.

use crate::results::matrix::{Matrix, Row};
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:'DejaVu Sans',sans-serif;margin:2em;max-width:1200px}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}\
table.kv td{text-align:left}\
tr.reference td{color:#555;background:#f6f6f6}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}\
.warn{color:#a40}";

/// One results file's sections.
pub struct Section<'a> {
    /// The results file, read as JSON.
    pub results: &'a Value,
    /// Its label (the run directory's name).
    pub label: String,
    pub baseline: Option<&'a str>,
}

/// What a page holds.
pub struct Page<'a> {
    pub title: String,
    pub sections: Vec<Section<'a>>,
    /// Extra text blocks (heading, preformatted text): a sweep's table.
    pub texts: Vec<(String, String)>,
    /// SVG figures to inline, in order.
    pub figures: Vec<PathBuf>,
    /// `compare`'s Markdown, when a baseline file was given: (base file, table).
    pub compare: Option<(String, String)>,
}

fn key_values(out: &mut String, heading: &str, v: &Value) {
    let Some(map) = v.as_object() else {
        return;
    };
    let _ = writeln!(out, "<h3>{}</h3>\n<table class=\"kv\">", esc(heading));
    for (k, val) in map {
        let text = match val {
            Value::String(s) => s.clone(),
            Value::Object(o) if o.contains_key("median") => {
                format!("{:.4e} (median)", o["median"].as_f64().unwrap_or(0.0))
            }
            other => other.to_string(),
        };
        let _ = writeln!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&text));
    }
    out.push_str("</table>\n");
}

fn matrix_table(out: &mut String, m: &Matrix, cell: &dyn Fn(&Row, usize) -> String) {
    out.push_str("<table class=\"matrix\">\n<tr><th>model</th>");
    for c in &m.columns {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr>\n");
    let row = |out: &mut String, r: &Row, class: &str| {
        let _ = write!(
            out,
            "<tr class=\"{class}\" data-model=\"{}\"><td>{}</td>",
            esc(&r.name),
            esc(&r.name)
        );
        if r.status != "ok" {
            let _ = write!(
                out,
                "<td colspan=\"{}\">{}: {}</td>",
                m.columns.len().max(1),
                esc(&r.status.replace('_', " ")),
                esc(r.reason.as_deref().unwrap_or(""))
            );
        } else {
            for i in 0..m.columns.len() {
                let _ = write!(out, "<td>{}</td>", esc(&cell(r, i)));
            }
        }
        out.push_str("</tr>\n");
    };
    for r in &m.models {
        row(out, r, "model");
    }
    for r in &m.references {
        row(out, r, "reference");
    }
    out.push_str("</table>\n");
}

fn fidelity_table(out: &mut String, results: &Value) {
    let Some(rows) = results["fidelity"].as_array().filter(|r| !r.is_empty()) else {
        return;
    };
    out.push_str(
        "<h3>Fidelity and readers</h3>\n<p>Median model / median reference; &lt; 1: the model is faster. \
         A phase group names the phases both sides do.</p>\n<table>\n\
         <tr><th>model</th><th>reference</th><th>kind</th><th>workload</th><th>compared</th><th>ratio</th><th>durable</th></tr>\n",
    );
    for r in rows {
        let phases = |k: &str| {
            r[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("+")
                })
                .unwrap_or_default()
        };
        let (m, rf) = (phases("model_phases"), phases("reference_phases"));
        let compared = if m.is_empty() {
            "whole".to_string()
        } else {
            format!("{m} vs {rf}")
        };
        let num = |k: &str| r[k].as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(r["model"].as_str().unwrap_or("")),
            esc(r["reference"].as_str().unwrap_or("")),
            esc(r["kind"].as_str().unwrap_or("")),
            esc(r["workload"].as_str().unwrap_or("")),
            esc(&compared),
            num("ratio"),
            num("durable_ratio")
        );
    }
    out.push_str("</table>\n");
}

/// Every warning a results file holds: samples' warnings, a suspect cold read, warm
/// samples, and models that did not run.
fn warnings(results: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if results["calibration"]["cold_below_guest"] == "suspect" {
        out.push("calibration: a buffered read after dropping caches ran faster than O_DIRECT: a cache below the guest (cold reads may be flattered)".into());
    }
    for m in results["models"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or("?");
        if m["status"] != "ok" {
            out.push(format!(
                "{name}: {}: {}",
                m["status"].as_str().unwrap_or("?"),
                m["reason"].as_str().unwrap_or("")
            ));
        }
        for (workload, w) in m["workloads"].as_object().into_iter().flatten() {
            if let Some(reason) = w["reason"].as_str() {
                out.push(format!("{name} {workload}: refused: {reason}"));
            }
            if w["caches_dropped"] == false && workload != "warm-read" {
                out.push(format!(
                    "{name} {workload}: timed warm (caches could not be dropped)"
                ));
            }
            for (metric, s) in w["metrics"].as_object().into_iter().flatten() {
                for warning in s["warnings"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "{name} {workload} {metric}: {}",
                        warning.as_str().unwrap_or("")
                    ));
                }
            }
        }
    }
    out
}

/// A Markdown table (and the lines around it) as HTML.
fn markdown_to_html(md: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with('|') {
            if t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
                continue;
            }
            let tag = if in_table { "td" } else { "th" };
            if !in_table {
                out.push_str("<table class=\"compare\">\n");
                in_table = true;
            }
            out.push_str("<tr>");
            for cell in t.trim_matches('|').split('|') {
                let _ = write!(out, "<{tag}>{}</{tag}>", esc(cell.trim().trim_matches('*')));
            }
            out.push_str("</tr>\n");
        } else {
            if in_table {
                out.push_str("</table>\n");
                in_table = false;
            }
            if !t.is_empty() {
                let _ = writeln!(out, "<p>{}</p>", esc(t));
            }
        }
    }
    if in_table {
        out.push_str("</table>\n");
    }
    out
}

/// An SVG file without its XML declaration, for inlining.
fn inline_svg(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let start = text
        .find("<svg")
        .with_context(|| format!("{}: no <svg> element", path.display()))?;
    Ok(text[start..].to_string())
}

/// The page's HTML.
pub fn render(page: &Page<'_>) -> Result<String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body>\n<h1>{}</h1>\n",
        esc(&page.title),
        esc(&page.title)
    );
    let mut all_warnings = Vec::new();
    for s in &page.sections {
        let r = s.results;
        let _ = writeln!(
            out,
            "<section class=\"results\" data-label=\"{}\">",
            esc(&s.label)
        );
        let _ = writeln!(
            out,
            "<h2>{}</h2>\n<p>pkgbench {} (commit {}), started {}, finished {}</p>",
            esc(&s.label),
            esc(r["tool"]["version"].as_str().unwrap_or("?")),
            esc(r["tool"]["git_commit"].as_str().unwrap_or("?")),
            esc(r["started_utc"].as_str().unwrap_or("?")),
            esc(r["finished_utc"].as_str().unwrap_or("not finished"))
        );
        match Matrix::from_json(r, s.baseline) {
            Ok(m) => {
                let _ = writeln!(
                    out,
                    "<h3>Models by workload</h3>\n<p>{}</p>",
                    esc(&m.heading())
                );
                matrix_table(&mut out, &m, &|row, i| row.cells[i].text());
                if let Some(h) = m.ratio_heading() {
                    let _ = writeln!(out, "<p>{}</p>", esc(&h));
                    matrix_table(&mut out, &m, &|row, i| {
                        m.ratio(row, i)
                            .map_or_else(|| "-".into(), |x| format!("{x:.2}x"))
                    });
                }
            }
            Err(e) => {
                let _ = writeln!(out, "<p class=\"warn\">{}</p>", esc(&e));
            }
        }
        if let Ok(measured) = crate::results::read::measured_of(r) {
            let stages = crate::results::stages::render_stages(
                &crate::results::stages::install_stages(&measured),
            );
            if !stages.trim().is_empty() {
                let _ = writeln!(
                    out,
                    "<h3>Install by stage</h3>\n<pre>{}</pre>",
                    esc(stages.trim())
                );
            }
        }
        fidelity_table(&mut out, r);
        key_values(&mut out, "Configuration", &r["config"]);
        key_values(&mut out, "Corpus", &r["corpus"]);
        key_values(&mut out, "Host", &r["host"]);
        key_values(
            &mut out,
            "Calibration (limits of the work directory)",
            &r["calibration"],
        );
        let notes: Vec<String> = r["models"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| {
                let name = m["name"].as_str().unwrap_or("?").to_string();
                m["notes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(move |n| format!("{name}: {n}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        if !notes.is_empty() {
            out.push_str("<details><summary>Models' notes</summary><ul>\n");
            for n in notes {
                let _ = writeln!(out, "<li>{}</li>", esc(&n));
            }
            out.push_str("</ul></details>\n");
        }
        all_warnings.extend(warnings(r).into_iter().map(|w| format!("{}: {w}", s.label)));
        out.push_str("</section>\n");
    }
    for (heading, text) in &page.texts {
        let _ = writeln!(out, "<h2>{}</h2>\n<pre>{}</pre>", esc(heading), esc(text));
    }
    let _ = writeln!(out, "<h2>Warnings</h2>");
    if all_warnings.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        out.push_str("<ul class=\"warnings\">\n");
        for w in &all_warnings {
            let _ = writeln!(out, "<li class=\"warn\">{}</li>", esc(w));
        }
        out.push_str("</ul>\n");
    }
    if let Some((base, md)) = &page.compare {
        let _ = writeln!(out, "<h2>Compared with {}</h2>", esc(base));
        out.push_str(&markdown_to_html(md));
    }
    out.push_str("<h2>Figures</h2>\n");
    for f in &page.figures {
        let name = f
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<figure data-figure=\"{}\">{}<figcaption>{}</figcaption></figure>",
            esc(&name),
            inline_svg(f)?,
            esc(&name)
        );
    }
    // Checked in the browser: every figure laid out with a size (see the module doc).
    out.push_str(
        "<script>\n(function(){\n\
         var figs=document.querySelectorAll('figure[data-figure]');var ok=0;\n\
         figs.forEach(function(f){var s=f.querySelector('svg');if(s){var b=s.getBoundingClientRect();\
         if(b.width>0&&b.height>0&&s.querySelectorAll('rect,path,text').length>0){ok++;}}});\n\
         document.body.setAttribute('data-figures',String(figs.length));\n\
         document.body.setAttribute('data-figures-rendered',String(ok));\n\
         document.body.setAttribute('data-checked','yes');\n\
         })();\n</script>\n</body></html>\n",
    );
    Ok(out)
}

/// The SVG figures in `dir`, by name.
pub fn svg_figures(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    out.sort();
    out
}

/// Writes `page` as `out/report.html` and returns its path.
pub fn write(page: &Page<'_>, out: &Path) -> Result<PathBuf> {
    let html = render(page)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("report.html");
    std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
