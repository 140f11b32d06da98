//! Task progress as the client area shows it: the percentage a task log prints.

/// The last percentage printed in `lines` (vzdump `INFO:  42% (...)`, restore `progress 50%`,
/// clone `transferred ... (50.00%)`), clamped to `0..=100`.
pub fn percent(lines: &[String]) -> Option<f32> {
    lines.iter().rev().find_map(|l| percent_in(l))
}

/// The last `N%` or `N.NN%` in one line.
pub fn percent_in(line: &str) -> Option<f32> {
    let b = line.as_bytes();
    let mut found = None;
    for (i, &c) in b.iter().enumerate() {
        if c != b'%' {
            continue;
        }
        let mut start = i;
        while start > 0 && (b[start - 1].is_ascii_digit() || b[start - 1] == b'.') {
            start -= 1;
        }
        if start < i
            && let Ok(v) = line[start..i].parse::<f32>()
            && v.is_finite()
        {
            found = Some(v.clamp(0.0, 100.0));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(percent_in("INFO:  42% (1.0 GiB of 2.0 GiB)"), Some(42.0));
        assert_eq!(percent_in("progress 50% (read 1 bytes)"), Some(50.0));
        assert_eq!(
            percent_in("transferred 16.0 GiB of 32.0 GiB (50.00%)"),
            Some(50.0)
        );
        assert_eq!(percent_in("no number here %"), None);
        let lines = vec!["INFO: 10%".to_owned(), "INFO: done".to_owned()];
        assert_eq!(percent(&lines), Some(10.0));
        assert_eq!(percent(&[]), None);
    }
}
