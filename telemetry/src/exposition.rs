//! Reads the Prometheus/OpenMetrics text format back: samples with their labels, and the
//! families' types. For tests and checks of a scrape; it accepts what Prometheus accepts of
//! the text format, timestamps and exemplars aside (they are skipped).

use std::collections::{BTreeMap, BTreeSet};

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// Family name → type (`counter`, `gauge`, `histogram`, ...), from the `# TYPE` lines.
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses exposition text; the error names the line that does not read.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut scrape = Scrape::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") {
                    let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                        return Err(format!("line {}: a TYPE line without a name and a type: {line:?}", number + 1));
                    };
                    scrape.types.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            let sample = parse_sample(line).map_err(|reason| format!("line {}: {reason}: {line:?}", number + 1))?;
            scrape.samples.push(sample);
        }
        Ok(scrape)
    }

    /// The sum of the samples named `name` that carry every label in `labels` (others may
    /// differ); `None` when no sample matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matching = self.matching(name, labels).peekable();
        matching.peek()?;
        Some(matching.map(|s| s.value).sum())
    }

    /// The samples named `name` that carry every label in `labels`.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
    }

    /// The type of family `name` (`counter`, `gauge`, `histogram`, ...).
    pub fn kind(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    /// Every sample name the families declare, whether or not a series has a value yet: a
    /// counter `x` gives `x_total`, a histogram `x_bucket`, `x_sum` and `x_count`, a gauge `x`.
    pub fn declared_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (family, kind) in &self.types {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{family}{suffix}")));
        }
        names
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next().ok_or("a sample without a value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse::<f64>().map_err(|error| format!("invalid value {number:?}: {error}"))?,
    };
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// A sample's labels, in their order.
type LabelPairs = Vec<(String, String)>;

/// Reads `key="value",...}` and returns the labels and what follows the closing brace.
fn parse_labels(mut text: &str) -> Result<(LabelPairs, &str), String> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = text.find('=').ok_or("a label without `=`")?;
        let key = text[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid label name {key:?}"));
        }
        let quoted = text[eq + 1..].trim_start();
        let mut chars = quoted.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {key} has no quoted value"));
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (at, c) in chars {
            if escaped {
                value.push(if c == 'n' { '\n' } else { c });
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '"' => {
                    end = Some(at);
                    break;
                }
                other => value.push(other),
            }
        }
        let end = end.ok_or_else(|| format!("label {key} has an unterminated value"))?;
        labels.push((key.to_owned(), value));
        text = quoted[end + 1..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_labels_and_types_are_read() {
        let text = "# HELP aap_x Things.\n# TYPE aap_x counter\naap_x_total{a=\"1\",b=\"q\\\"u\\\\o\\nte\"} 2\n\
                    aap_x_total{a=\"2\"} 3.5\n# TYPE aap_h histogram\naap_h_bucket{le=\"+Inf\"} 1\n# EOF\n";
        let scrape = Scrape::parse(text).expect("parses");
        assert_eq!(scrape.value("aap_x_total", &[]), Some(5.5));
        assert_eq!(scrape.value("aap_x_total", &[("b", "q\"u\\o\nte")]), Some(2.0));
        assert_eq!(scrape.value("aap_x_total", &[("a", "3")]), None);
        assert_eq!(scrape.kind("aap_h"), Some("histogram"));
        let names = scrape.declared_names();
        assert!(names.contains("aap_x_total") && names.contains("aap_h_bucket") && names.contains("aap_h_count"));
        assert!(!names.contains("aap_x"));
    }

    #[test]
    fn lines_that_do_not_read_are_refused() {
        assert!(Scrape::parse("aap_x{a=\"1\" 2\n").is_err());
        assert!(Scrape::parse("aap_x{a=1} 2\n").is_err());
        assert!(Scrape::parse("aap x\n").is_err());
        assert!(Scrape::parse("aap_x\n").is_err());
    }
}
