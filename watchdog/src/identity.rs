//! RUN_AS: the user and group the function's processes run as. Names are looked up in
//! the `/etc/passwd` and `/etc/group` of the watchdog's own filesystem (the image's),
//! with a parser small enough for the static binary.

use gantry_protocol::env;

use crate::config::ConfigError;

/// The user database RUN_AS names are looked up in.
pub const PASSWD: &str = "/etc/passwd";
/// The group database RUN_AS group names are looked up in.
pub const GROUP: &str = "/etc/group";

/// A uid and gid to start the function's processes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// The user id.
    pub uid: u32,
    /// The group id (the only group: supplementary groups are dropped).
    pub gid: u32,
    /// Whether RUN_AS named the group (`UID:GID`, `NAME:GROUP`) rather than leaving it
    /// to the user's entry.
    pub explicit_group: bool,
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::Invalid {
        var: env::RUN_AS,
        reason,
    }
}

/// A numeric id; `(uid_t)-1` means "unchanged" to the kernel, so it is not one.
fn numeric_id(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|id| *id != u32::MAX)
}

/// The third and fourth fields (the ids) of the first entry of `database` (the text of
/// `/etc/passwd` or `/etc/group`) whose name (`by_id`: third field) is `wanted`.
/// Lines with fewer than four `:`-separated fields are skipped.
fn find_entry<'a>(database: &'a str, by_id: bool, wanted: &str) -> Option<[&'a str; 2]> {
    database.lines().find_map(|line| {
        let mut fields = line.split(':');
        let (name, _password) = (fields.next()?, fields.next()?);
        let (id, next) = (fields.next()?, fields.next()?);
        (if by_id { id } else { name } == wanted).then_some([id, next])
    })
}

impl RunAs {
    /// Parses RUN_AS (`UID`, `UID:GID`, `NAME` or `NAME:GROUP`). `read` returns the text
    /// of [`PASSWD`] or [`GROUP`] (empty when unreadable); it is called only when a name
    /// or a bare uid needs it. A bare uid takes the primary gid of its passwd entry, or
    /// gid = uid when it has none.
    pub fn parse(value: &str, read: impl Fn(&'static str) -> String) -> Result<RunAs, ConfigError> {
        let value = value.trim();
        let (user, group) = match value.split_once(':') {
            Some((user, group)) => (user.trim(), Some(group.trim())),
            None => (value, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(invalid(format!(
                "{value:?} is not UID, UID:GID, NAME or NAME:GROUP"
            )));
        }
        let (uid, primary_gid) = match numeric_id(user) {
            Some(uid) if group.is_some() => (uid, None),
            Some(uid) => {
                let passwd = read(PASSWD);
                let entry = find_entry(&passwd, true, &uid.to_string());
                (uid, entry.and_then(|[_, gid]| numeric_id(gid)))
            }
            None => {
                let passwd = read(PASSWD);
                let ids = find_entry(&passwd, false, user)
                    .map(|[uid, gid]| (numeric_id(uid), numeric_id(gid)));
                match ids {
                    Some((Some(uid), Some(gid))) => (uid, Some(gid)),
                    _ => {
                        return Err(invalid(format!(
                            "no user {user:?} with a valid uid and gid in {PASSWD}"
                        )))
                    }
                }
            }
        };
        let gid = match group.map(|group| (group, numeric_id(group))) {
            None => primary_gid.unwrap_or(uid),
            Some((_, Some(gid))) => gid,
            Some((group, None)) => {
                let groups = read(GROUP);
                find_entry(&groups, false, group)
                    .and_then(|[gid, _]| numeric_id(gid))
                    .ok_or_else(|| invalid(format!("no group {group:?} in {GROUP}")))?
            }
        };
        Ok(RunAs {
            uid,
            gid,
            explicit_group: group.is_some(),
        })
    }

    /// The identity the function's processes must be switched to, given the watchdog's
    /// effective uid and gid: `None` when RUN_AS is the watchdog's own identity. Another
    /// uid needs a root watchdog; asking for it otherwise is an error naming RUN_AS.
    pub fn switch_from(self, euid: u32, egid: u32) -> Result<Option<RunAs>, ConfigError> {
        if euid == 0 {
            return Ok((self.uid != 0 || self.gid != egid).then_some(self));
        }
        if self.uid != euid || (self.explicit_group && self.gid != egid) {
            return Err(invalid(format!(
                "asks for uid {} gid {}, but the watchdog runs as uid {euid} gid {egid}, not root, and cannot switch",
                self.uid, self.gid
            )));
        }
        Ok(None)
    }
}

/// Reads a small system file (`/etc/passwd`, `/proc/self/status`): at most 1 MiB, and
/// empty when it cannot be read.
pub fn read_text(path: &str) -> String {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read =
        std::fs::File::open(path).and_then(|file| file.take(1 << 20).read_to_end(&mut bytes));
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// Whether `status` (the text of `/proc/self/status`) shows the watchdog without a
/// capability a uid switch needs: CAP_KILL, CAP_SETGID or CAP_SETUID, bits 5 to 7 of
/// `CapEff` (16 hex digits), so in its 15th digit. Unreadable: `false`.
pub fn lacks_switch_capabilities(status: &str) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:\t"))
        .and_then(|hex| hex.as_bytes().get(14))
        .and_then(|digit| char::from(*digit).to_digit(16))
        .is_some_and(|bits| bits & 0b1110 != 0b1110)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment line\n\
        app:x:1000:1000::/home/app:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        odd:x:2000:3000::/:/bin/sh\n\
        broken:x:abc\n";
    const GROUP_TEXT: &str = "root:x:0:\nstaff:x:50:app\nnogroup:x:65534:\n";

    fn parse(value: &str) -> Result<RunAs, ConfigError> {
        RunAs::parse(value, |path| match path {
            PASSWD => PASSWD_TEXT.into(),
            GROUP => GROUP_TEXT.into(),
            _ => String::new(),
        })
    }

    fn ids(value: &str) -> (u32, u32) {
        let run_as = parse(value).unwrap();
        (run_as.uid, run_as.gid)
    }

    #[test]
    fn every_form_resolves() {
        assert_eq!(ids("65534"), (65534, 65534));
        assert_eq!(ids("2000"), (2000, 3000), "primary gid from /etc/passwd");
        assert_eq!(ids("4242"), (4242, 4242), "unlisted uid: gid = uid");
        assert_eq!(ids("4242:7"), (4242, 7));
        assert_eq!(ids("nobody"), (65534, 65534));
        assert_eq!(ids("odd"), (2000, 3000));
        assert_eq!(ids("app:staff"), (1000, 50));
        assert_eq!(ids("app:9"), (1000, 9));
        assert_eq!(ids("1000:nogroup"), (1000, 65534));
        assert!(!parse("app").unwrap().explicit_group);
        assert!(parse("app:staff").unwrap().explicit_group);
    }

    #[test]
    fn unknown_names_and_bad_forms_name_run_as() {
        for (value, mention) in [
            ("ghost", "ghost"),
            ("app:ghosts", "ghosts"),
            ("broken", "broken"),
            (":5", "UID"),
            ("5:", "UID"),
            ("4294967295", "4294967295"),
        ] {
            let err = parse(value).unwrap_err();
            assert_eq!(err.variable(), "RUN_AS");
            assert!(err.to_string().contains(mention), "{err}");
        }
    }

    #[test]
    fn a_numeric_uid_and_gid_need_no_database() {
        let run_as = RunAs::parse("123:456", |_| panic!("no lookup needed")).unwrap();
        assert_eq!((run_as.uid, run_as.gid), (123, 456));
    }

    #[test]
    fn root_switches_unless_run_as_is_itself() {
        let run_as = parse("65534").unwrap();
        assert_eq!(run_as.switch_from(0, 0).unwrap(), Some(run_as));
        assert_eq!(parse("root").unwrap().switch_from(0, 0).unwrap(), None);
        assert!(parse("0:50").unwrap().switch_from(0, 0).unwrap().is_some());
    }

    #[test]
    fn a_non_root_watchdog_accepts_only_its_own_uid() {
        assert_eq!(
            parse("1000").unwrap().switch_from(1000, 1000).unwrap(),
            None
        );
        // The derived gid does not have to match; an explicit one does.
        assert_eq!(parse("odd").unwrap().switch_from(2000, 0).unwrap(), None);
        let err = parse("1000:9")
            .unwrap()
            .switch_from(1000, 1000)
            .unwrap_err();
        assert!(err.to_string().contains("gid 9"), "{err}");
        let err = parse("65534").unwrap().switch_from(1000, 1000).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("RUN_AS:"), "{message}");
        assert!(
            message.contains("65534") && message.contains("1000"),
            "{message}"
        );
    }

    #[test]
    fn missing_switch_capabilities_are_seen() {
        let status = |cap_eff: &str| format!("Name:\twatchdog\nCapEff:\t{cap_eff}\nCapBnd:\t0\n");
        assert!(!lacks_switch_capabilities(&status("000001ffffffffff")));
        assert!(!lacks_switch_capabilities(&status("00000000000000e0")));
        assert!(!lacks_switch_capabilities("no capability lines"));
        // CAP_CHOWN, CAP_KILL and CAP_SETGID only: CAP_SETUID is missing.
        assert!(lacks_switch_capabilities(&status("0000000000000061")));
        assert!(lacks_switch_capabilities(&status("0000000000000000")));
    }
}
