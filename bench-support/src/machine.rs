//! Where, when and on what code the numbers were taken: the CPUs, the kernel, today's
//! date and, when asked for, the git commit of the work tree.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The machine a run was taken on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs available to the bench (`nproc`).
    pub cpus: usize,
    /// The CPU's model name, from /proc/cpuinfo.
    pub cpu_model: String,
    /// The kernel release.
    pub kernel: String,
    /// Today, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// The commit measured, from [`Machine::with_commit`]: `` `abc1234` ``, with
    /// ` + uncommitted changes` when the work tree differs, or `unknown`.
    pub commit: Option<String>,
}

impl Machine {
    /// Reads the machine's description (`nproc`, /proc/cpuinfo, kernel) and today's date.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown CPU".into(), |(_, model)| model.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".into(), |release| release.trim().to_owned());
        let days = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() / 86_400) as i64;
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel,
            date: civil_date(days),
            commit: None,
        }
    }

    /// The same, with the commit of the git work tree at `root`.
    pub fn with_commit(self, root: &Path) -> Machine {
        Machine {
            commit: Some(commit(root)),
            ..self
        }
    }

    /// One line describing the machine (and the commit, when known).
    pub fn describe(&self) -> String {
        let commit = self
            .commit
            .as_ref()
            .map_or(String::new(), |commit| format!(", commit {commit}"));
        format!(
            "{}, {} CPUs (`nproc`), {}, Linux {}{commit}",
            self.date, self.cpus, self.cpu_model, self.kernel
        )
    }
}

/// The short hash of HEAD in the work tree at `root`, in backquotes, with
/// ` + uncommitted changes` when `git status` lists anything; `unknown` without git.
pub fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => {
            format!("`{hash}` + uncommitted changes")
        }
        Some(hash) => format!("`{hash}`"),
        None => "unknown".into(),
    }
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::{civil_date, commit, Machine};

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(-1), "1969-12-31");
        assert_eq!(civil_date(59), "1970-03-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(19_782), "2024-02-29");
        assert_eq!(civil_date(19_783), "2024-03-01");
        assert_eq!(civil_date(20_453), "2025-12-31");
    }

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            cpu_model: "Some CPU @ 2.0GHz".into(),
            kernel: "6.1.0".into(),
            date: "2025-01-02".into(),
            commit: None,
        }
    }

    #[test]
    fn describe_without_and_with_a_commit() {
        assert_eq!(
            machine().describe(),
            "2025-01-02, 2 CPUs (`nproc`), Some CPU @ 2.0GHz, Linux 6.1.0"
        );
        let with_commit = Machine {
            commit: Some("`abc1234` + uncommitted changes".into()),
            ..machine()
        };
        assert_eq!(
            with_commit.describe(),
            "2025-01-02, 2 CPUs (`nproc`), Some CPU @ 2.0GHz, Linux 6.1.0, commit `abc1234` + uncommitted changes"
        );
    }

    #[test]
    fn the_commit_is_a_quoted_hash_or_unknown() {
        let found = commit(crate::repository_root());
        let hash = found
            .strip_prefix('`')
            .and_then(|rest| rest.split_once('`'));
        match hash {
            Some((hash, rest)) => {
                assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{found:?}");
                assert!(
                    rest.is_empty() || rest == " + uncommitted changes",
                    "{found:?}"
                );
            }
            None => assert_eq!(found, "unknown"),
        }
    }

    #[test]
    fn detect_reads_this_machine() {
        let machine = Machine::detect();
        assert!(machine.cpus >= 1);
        assert_eq!(machine.date.len(), "YYYY-MM-DD".len());
        assert!(machine.commit.is_none());
    }
}
