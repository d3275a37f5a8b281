//! Medians and percentiles of measured durations, and a process's CPU time and memory.

use std::time::{Duration, Instant};

use aap_telemetry::memory::Process;

/// The median of `samples` (sorted in place); zero when there are none.
pub fn median(samples: &mut [Duration]) -> Duration {
    percentile(samples, 50.0)
}

/// The `p`th percentile (nearest rank) of `samples`, sorted in place; zero when there are none.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// The median of `values` (the mean of the middle two when even); zero when there are none.
pub fn median_f64(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

/// A ratio measured in trials, as a table shows it: the median, then the range and the count
/// when there were several ("0.93 (0.88–1.01, 3 trials)").
pub fn ratio_of_trials(ratios: &[f64]) -> String {
    let median = median_f64(ratios.to_vec());
    match ratios.len() {
        0 | 1 => format!("{median:.2}"),
        count => {
            let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{median:.2} ({low:.2}–{high:.2}, {count} trials)")
        }
    }
}

/// Milliseconds with two decimals below 10, none above.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.0} ms") }
}

/// Where in a run the slow answers were: for each `bucket` of time from `started`, a line of
/// tab-separated figures (ms since the start, answers received in it, their callback latency's
/// p50, p99 and most), buckets without answers left out, after a header line.
pub fn timeline(started: Instant, samples: &[(Instant, Duration)], bucket: Duration) -> String {
    let mut buckets: std::collections::BTreeMap<u128, Vec<Duration>> = Default::default();
    for (at, latency) in samples {
        let index = at.saturating_duration_since(started).as_nanos() / bucket.as_nanos().max(1);
        buckets.entry(index).or_default().push(*latency);
    }
    let mut out = String::from("ms\tanswers\tp50_ms\tp99_ms\tmax_ms\n");
    for (index, mut latencies) in buckets {
        let start_ms = index * bucket.as_millis();
        let (p50, p99) = (median(&mut latencies), percentile(&mut latencies, 99.0));
        let most = latencies.last().copied().unwrap_or_default();
        let f = |d: Duration| d.as_secs_f64() * 1e3;
        out.push_str(&format!("{start_ms}\t{}\t{:.1}\t{:.1}\t{:.1}\n", latencies.len(), f(p50), f(p99), f(most)));
    }
    out
}

/// CPU time (user + system, every thread) a process has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11).unwrap_or(&"0").parse::<u64>()? + fields.get(12).unwrap_or(&"0").parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / *CLOCK_TICKS))
}

/// CPU time of a process and its children now running (PostgreSQL: the postmaster and its
/// backends); processes unreadable or gone meanwhile count as zero.
pub fn tree_cpu_time(root: u32) -> Duration {
    let mut total = cpu_time(root).unwrap_or_default();
    let Ok(entries) = std::fs::read_dir("/proc") else { return total };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        // The parent pid is field 4 of the line, 2 after the name.
        if after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(root) {
            total += cpu_time(pid).unwrap_or_default();
        }
    }
    total
}

/// Clock ticks a second of /proc's CPU times, asked once: `getconf CLK_TCK` is 100 on every
/// Linux this runs on; read it rather than assume it.
static CLOCK_TICKS: std::sync::LazyLock<f64> = std::sync::LazyLock::new(|| {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
});

/// Resident memory of a process, in bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    Process::of(pid).resident_bytes.ok_or_else(|| anyhow::anyhow!("no VmRSS for process {pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(median(&mut samples), Duration::from_millis(50));
        assert_eq!(percentile(&mut samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&mut samples, 100.0), Duration::from_millis(100));
        assert_eq!(median(&mut []), Duration::ZERO);
    }

    #[test]
    fn medians_and_ratios_of_trials() {
        assert_eq!(median_f64(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_f64(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_f64(Vec::new()), 0.0);
        assert_eq!(ratio_of_trials(&[0.934]), "0.93");
        assert_eq!(ratio_of_trials(&[1.01, 0.88, 0.93]), "0.93 (0.88–1.01, 3 trials)");
    }

    #[test]
    fn timeline_buckets_answers_by_arrival() {
        let started = Instant::now();
        let at = |ms| started + Duration::from_millis(ms);
        let samples = [
            (at(10), Duration::from_millis(20)),
            (at(90), Duration::from_millis(40)),
            (at(350), Duration::from_millis(300)),
        ];
        let text = timeline(started, &samples, Duration::from_millis(100));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            ["ms\tanswers\tp50_ms\tp99_ms\tmax_ms", "0\t2\t20.0\t40.0\t40.0", "300\t1\t300.0\t300.0\t300.0"]
        );
    }

    #[test]
    fn this_process_has_used_cpu_and_memory() -> anyhow::Result<()> {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        assert!(rss(pid)? > 1024 * 1024);
        assert!(cpu_time(pid)? > Duration::ZERO);
        Ok(())
    }
}
