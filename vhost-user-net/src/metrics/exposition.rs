//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` once per family,
//! then one line per sample, `name{label="value",...} value`.
//!
//! Format rules followed (Prometheus "Exposition formats", text format details):
//! - a family's samples are contiguous and follow its HELP and TYPE lines; a family appears once;
//! - label values escape `\` as `\\`, `"` as `\"` and a line feed as `\n`; HELP text escapes `\`
//!   and line feed only;
//! - values are Go-style floats; counters here are integers and print as such, `+Inf` is written
//!   `+Inf` (bucket bounds);
//! - histograms are `<name>_bucket{le="..."}` (cumulative, ending with `le="+Inf"`), `<name>_sum`
//!   and `<name>_count`.
//!
//! Names and label names are written by this crate only (constants), so they are not escaped;
//! label *values* come from VIF ids, labels, segment names, and are always escaped. The writer
//! appends to one `String` reused across families: a scrape allocates its text once.

use std::fmt::Write as _;

/// The media type of this format, for the HTTP `Content-Type` header.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type (the `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A sample's labels: `(name, value)` pairs, written in the given order.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// Appends exposition text to a string.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: writes its HELP and TYPE lines. The caller writes all its samples next.
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        self.text.push_str("# HELP ");
        self.text.push_str(name);
        self.text.push(' ');
        escape_help(&mut self.text, help);
        self.text.push_str("\n# TYPE ");
        self.text.push_str(name);
        self.text.push(' ');
        self.text.push_str(kind.as_str());
        self.text.push('\n');
    }

    /// One sample with an integer value (counters, integer gauges).
    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: u64) {
        self.series(name, labels, None);
        // Writing into a String cannot fail.
        let _ = writeln!(self.text, " {value}");
    }

    /// One sample with a float value (durations in seconds).
    pub fn sample_f64(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.series(name, labels, None);
        self.text.push(' ');
        push_f64(&mut self.text, value);
        self.text.push('\n');
    }

    /// A histogram's samples: `bounds` are the buckets' upper bounds in the exported unit,
    /// `counts` the (non-cumulative) observations per bucket with one extra for `+Inf`, `sum`
    /// in the exported unit. Mismatched lengths write what pairs up (never panics).
    pub fn histogram(
        &mut self,
        name: &str,
        labels: Labels<'_>,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let mut cumulative = 0u64;
        let mut le = String::with_capacity(16);
        for (bound, count) in bounds.iter().zip(counts) {
            cumulative = cumulative.wrapping_add(*count);
            le.clear();
            push_f64(&mut le, *bound);
            self.bucket(name, labels, &le, cumulative);
        }
        // The +Inf bucket holds everything, including what the finite buckets did not.
        let total = counts.iter().fold(0u64, |sum, n| sum.wrapping_add(*n));
        self.bucket(name, labels, "+Inf", total);
        self.series(name, labels, Some("_sum"));
        self.text.push(' ');
        push_f64(&mut self.text, sum);
        self.text.push('\n');
        self.series(name, labels, Some("_count"));
        let _ = writeln!(self.text, " {total}");
    }

    fn bucket(&mut self, name: &str, labels: Labels<'_>, le: &str, cumulative: u64) {
        self.text.push_str(name);
        self.text.push_str("_bucket{");
        for (key, value) in labels {
            self.label(key, value);
            self.text.push(',');
        }
        self.label("le", le);
        let _ = writeln!(self.text, "}} {cumulative}");
    }

    fn series(&mut self, name: &str, labels: Labels<'_>, suffix: Option<&str>) {
        self.text.push_str(name);
        if let Some(suffix) = suffix {
            self.text.push_str(suffix);
        }
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (index, (key, value)) in labels.iter().enumerate() {
            if index > 0 {
                self.text.push(',');
            }
            self.label(key, value);
        }
        self.text.push('}');
    }

    fn label(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        self.text.push_str("=\"");
        escape_label_value(&mut self.text, value);
        self.text.push('"');
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

fn escape_help(out: &mut String, help: &str) {
    for ch in help.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            ch => out.push(ch),
        }
    }
}

/// Escapes a label value. Model validation already refuses control characters in VIF labels,
/// but the exporter does not rely on it: a value can never end a line or a quoted string.
pub fn escape_label_value(out: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            ch => out.push(ch),
        }
    }
}

/// Writes a float as Prometheus parses it: integers without a fraction, `+Inf`/`-Inf`/`NaN`
/// spelled out, others with Rust's shortest round-trip representation.
fn push_f64(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A sample as a reader sees it: name, labels (unescaped), value text.
    pub(crate) type ParsedSample = (String, Vec<(String, String)>, String);

    /// A strict reader of the subset this writer produces: refuses anything malformed, so a test
    /// that round-trips through it proves the text is well-formed.
    pub(crate) fn parse_exposition(text: &str) -> Result<Vec<ParsedSample>, String> {
        let mut samples = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.splitn(3, ' ');
                let (Some(kind), Some(name)) = (words.next(), words.next()) else {
                    return Err(format!("line {number}: bad comment {line:?}"));
                };
                if !matches!(kind, "HELP" | "TYPE") || name.is_empty() {
                    return Err(format!("line {number}: bad comment {line:?}"));
                }
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .ok_or(format!("line {number}: no value"))?;
            let (name, mut rest) = line.split_at(name_end);
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                return Err(format!("line {number}: bad name {name:?}"));
            }
            let mut labels = Vec::new();
            if let Some(after) = rest.strip_prefix('{') {
                let mut chars = after.char_indices().peekable();
                let end;
                loop {
                    if let Some(&(at, '}')) = chars.peek() {
                        end = at + 1;
                        break;
                    }
                    let mut key = String::new();
                    for (_, c) in chars.by_ref() {
                        if c == '=' {
                            break;
                        }
                        key.push(c);
                    }
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(format!("line {number}: label {key} not quoted"));
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, '\\')) => value.push('\\'),
                                Some((_, '"')) => value.push('"'),
                                Some((_, 'n')) => value.push('\n'),
                                other => return Err(format!("line {number}: escape {other:?}")),
                            },
                            Some((_, '"')) => break,
                            Some((_, c)) => value.push(c),
                            None => return Err(format!("line {number}: unterminated value")),
                        }
                    }
                    labels.push((key, value));
                    match chars.next() {
                        Some((_, ',')) => continue,
                        Some((at, '}')) => {
                            end = at + 1;
                            break;
                        }
                        other => return Err(format!("line {number}: after label: {other:?}")),
                    }
                }
                rest = &after[end..];
            }
            let value = rest
                .strip_prefix(' ')
                .ok_or(format!("line {number}: no space before value"))?;
            if value != "+Inf" && value != "NaN" && value.parse::<f64>().is_err() {
                return Err(format!("line {number}: bad value {value:?}"));
            }
            samples.push((name.to_owned(), labels, value.to_owned()));
        }
        Ok(samples)
    }

    #[test]
    fn family_and_samples() {
        let mut text = Exposition::new();
        text.family(
            "vif_rx_packets_total",
            MetricType::Counter,
            "Frames delivered.\nTo the guest \\ ok",
        );
        text.sample(
            "vif_rx_packets_total",
            &[("vif", "web-1"), ("queue", "0")],
            42,
        );
        text.sample("vif_up", &[], 1);
        assert_eq!(
            text.as_str(),
            "# HELP vif_rx_packets_total Frames delivered.\\nTo the guest \\\\ ok\n\
             # TYPE vif_rx_packets_total counter\n\
             vif_rx_packets_total{vif=\"web-1\",queue=\"0\"} 42\n\
             vif_up 1\n"
        );
    }

    #[test]
    fn histogram_is_cumulative_with_inf() {
        let mut text = Exposition::new();
        text.histogram(
            "t_seconds",
            &[("vif", "a")],
            &[0.001, 0.01],
            &[2, 3, 1],
            0.5,
        );
        assert_eq!(
            text.as_str(),
            "t_seconds_bucket{vif=\"a\",le=\"0.001\"} 2\n\
             t_seconds_bucket{vif=\"a\",le=\"0.01\"} 5\n\
             t_seconds_bucket{vif=\"a\",le=\"+Inf\"} 6\n\
             t_seconds_sum{vif=\"a\"} 0.5\n\
             t_seconds_count{vif=\"a\"} 6\n"
        );
        parse_exposition(text.as_str()).unwrap();
    }

    #[test]
    fn floats_are_prometheus_spelled() {
        let mut out = String::new();
        for v in [1.0, 0.25, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-7] {
            push_f64(&mut out, v);
            out.push(' ');
        }
        assert_eq!(out, "1 0.25 +Inf -Inf NaN 0.0000001 ");
    }

    proptest! {
        /// Any label value survives a write and a strict read, and never breaks the line.
        #[test]
        fn label_values_round_trip(value in any::<String>(), n in any::<u64>()) {
            let mut text = Exposition::new();
            text.family("m_total", MetricType::Counter, &value);
            text.sample("m_total", &[("vif", &value), ("reason", "x")], n);
            let body = text.as_str();
            prop_assert_eq!(body.lines().count(), 3);
            let samples = parse_exposition(body).map_err(TestCaseError::fail)?;
            prop_assert_eq!(samples.len(), 1);
            let (name, labels, got) = &samples[0];
            prop_assert_eq!(name, "m_total");
            prop_assert_eq!(&labels[0], &("vif".to_owned(), value.clone()));
            prop_assert_eq!(got, &n.to_string());
        }
    }
}
