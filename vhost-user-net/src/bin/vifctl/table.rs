//! Plain-text tables and key/value blocks for `vifctl`'s human output: columns padded to their
//! widest cell, two spaces apart, no trailing blanks; numbers right-aligned.

/// A table under construction.
pub struct Table {
    headers: Vec<&'static str>,
    /// Right-align this column (numbers).
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns named `headers`; a header starting with `#` is numeric (the `#` is not shown).
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers
                .iter()
                .map(|h| h.strip_prefix('#').unwrap_or(h))
                .collect(),
            numeric: headers.iter().map(|h| h.starts_with('#')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if index > 0 {
                    line.push_str("  ");
                }
                let pad = width.saturating_sub(cell.chars().count());
                let right = self.numeric.get(index).copied().unwrap_or(false);
                if right {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        out.push_str(&format!(
            "{key:<width$}  {value}\n",
            width = width + 1,
            key = format!("{key}:")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut table = Table::new(&["VIF", "#PACKETS", "STATE"]);
        table.row(vec!["web-1".into(), "7".into(), "connected".into()]);
        table.row(vec!["a".into(), "12345".into(), "".into()]);
        assert_eq!(
            table.render(),
            "VIF    PACKETS  STATE\nweb-1        7  connected\na        12345\n"
        );
    }

    #[test]
    fn key_values_align() {
        let text = key_values(&[("id", "a".into()), ("state", "up".into())]);
        assert_eq!(text, "id:     a\nstate:  up\n");
    }
}
