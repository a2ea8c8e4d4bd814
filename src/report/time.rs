//! Times in the mail log, as the report compares them: local civil time
//! as the log writes it, counted in seconds from 1970-01-01 00:00:00 of
//! that same calendar (a "stamp"). No time zone is applied: syslog's
//! traditional timestamps have none, and rsyslog's RFC 3339 ones carry
//! the server's own offset, which is dropped, so both kinds of line and the
//! `--since`/`--until` dates compare as the server's wall clock reads them.

/// Seconds since 1970-01-01 00:00:00, local civil time.
pub type Stamp = i64;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date of a day count: (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

pub fn stamp(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Stamp {
    days_from_civil(y, mo, d) * 86400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)
}

/// `YYYY-MM-DD HH:MM` (or `YYYY-MM-DD` when `date_only`).
pub fn format(t: Stamp, date_only: bool) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    let s = t.rem_euclid(86400);
    if date_only {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", s / 3600, s / 60 % 60)
    }
}

/// `YYYY-MM-DDTHH:MM:SS`, for JSON.
pub fn format_iso(t: Stamp) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    let s = t.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The current local time as a stamp (localtime_r(3), so TZ applies).
pub fn now_local() -> Stamp {
    use nix::libc;
    // SAFETY: time(2) with a null pointer and localtime_r with valid
    // pointers to a time_t and a zeroed tm have no other preconditions.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return t;
        }
        stamp(
            i64::from(tm.tm_year) + 1900,
            (tm.tm_mon + 1) as u32,
            tm.tm_mday as u32,
            tm.tm_hour as u32,
            tm.tm_min as u32,
            tm.tm_sec as u32,
        )
    }
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u32, |n, &d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

fn valid(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> bool {
    (1..=12).contains(&mo) && d >= 1 && d <= days_in_month(y, mo) && h < 24 && mi < 60 && s <= 60
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD`, then optionally `T` or a space and `HH:MM[:SS]`, at the
/// start of `b`: the stamp and the length read. A fraction or offset after
/// it is the caller's to skip.
pub fn parse_iso(b: &[u8]) -> Option<(Stamp, usize)> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(&b[..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (mut h, mut mi, mut s, mut len) = (0, 0, 0, 10);
    if b.len() >= 16 && (b[10] == b'T' || b[10] == b' ') && b[13] == b':' {
        h = num(&b[11..13])?;
        mi = num(&b[14..16])?;
        len = 16;
        if b.len() >= 19 && b[16] == b':' {
            s = num(&b[17..19])?;
            len = 19;
        }
    }
    let y = i64::from(y);
    valid(y, mo, d, h, mi, s).then(|| (stamp(y, mo, d, h, mi, s), len))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Syslog's traditional `Mmm dd HH:MM:SS` (day space-padded or two
/// digits), exactly 15 bytes at the start of `b`: (month, day, seconds of
/// the day). The year is not in the line.
pub fn parse_bsd(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() < 15 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let mo = MONTHS.iter().position(|m| &b[..3] == *m)? as u32 + 1;
    let d = if b[4] == b' ' {
        num(&b[5..6])?
    } else {
        num(&b[4..6])?
    };
    let (h, mi, s) = (num(&b[7..9])?, num(&b[10..12])?, num(&b[13..15])?);
    valid(2000, mo, d, h, mi, s).then_some((mo, d, h * 3600 + mi * 60 + s))
}

/// The year of a traditional syslog date, which has none: the current
/// year, or the one before when that puts the date more than a day in the
/// future (as pflogsumm does), so December's lines read in January are
/// last year's.
#[derive(Debug, Clone, Copy)]
pub struct YearGuess {
    now: Stamp,
    year: i64,
}

impl YearGuess {
    pub fn new(now: Stamp) -> Self {
        YearGuess {
            now,
            year: civil_from_days(now.div_euclid(86400)).0,
        }
    }

    pub fn stamp(&self, (mo, d, secs): (u32, u32, u32)) -> Stamp {
        // Feb 29 of a year that has none: the year before the current one
        // that has it is not looked for; the date then falls on Mar 1.
        let t = days_from_civil(self.year, mo, d) * 86400 + i64::from(secs);
        if t > self.now + 86400 {
            days_from_civil(self.year - 1, mo, d) * 86400 + i64::from(secs)
        } else {
            t
        }
    }
}

/// A `--since`/`--until` value: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (or
/// with a space for the `T`), `today`, `yesterday`, `now`, or `-N` followed
/// by `m`, `h`, `d` or `w` (minutes, hours, days, weeks before now).
pub fn parse_arg(s: &str, now: Stamp) -> Result<Stamp, String> {
    let midnight = now.div_euclid(86400) * 86400;
    match s {
        "now" => return Ok(now),
        "today" => return Ok(midnight),
        "yesterday" => return Ok(midnight - 86400),
        _ => {}
    }
    if let Some(rel) = s.strip_prefix('-') {
        let unit = match rel.as_bytes().last() {
            Some(b'm') => 60,
            Some(b'h') => 3600,
            Some(b'd') => 86400,
            Some(b'w') => 7 * 86400,
            _ => 0,
        };
        if let Some(n) = num(&rel.as_bytes()[..rel.len().saturating_sub(1)]).filter(|_| unit > 0) {
            return Ok(now - i64::from(n) * unit);
        }
    } else if let Some((t, len)) = parse_iso(s.as_bytes()) {
        if len == s.len() {
            return Ok(t);
        }
    }
    Err(format!(
        "{s:?} is not a time: give YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], today, yesterday, now, or -N with m, h, d or w (minutes, hours, days, weeks ago)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in [-719468, -1, 0, 1, 10957, 20000, 20513, 2932896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(
            format(stamp(2026, 12, 3, 10, 5, 9), false),
            "2026-12-03 10:05"
        );
    }

    #[test]
    fn iso_and_bsd_dates() {
        assert_eq!(
            parse_iso(b"2026-12-03T10:00:00.123456+01:00 host"),
            Some((stamp(2026, 12, 3, 10, 0, 0), 19))
        );
        assert_eq!(
            parse_iso(b"2026-12-03"),
            Some((stamp(2026, 12, 3, 0, 0, 0), 10))
        );
        assert_eq!(parse_iso(b"2026-02-30"), None);
        assert_eq!(parse_iso(b"2026-1-30"), None);
        assert_eq!(parse_bsd(b"Dec  3 10:00:01 h"), Some((12, 3, 36001)));
        assert_eq!(parse_bsd(b"Dec 03 10:00:01"), Some((12, 3, 36001)));
        assert_eq!(parse_bsd(b"Dez  3 10:00:01"), None);
        assert_eq!(parse_bsd(b"Dec 32 10:00:01"), None);
    }

    #[test]
    fn year_is_never_in_the_future() {
        let now = stamp(2027, 1, 5, 12, 0, 0);
        let g = YearGuess::new(now);
        assert_eq!(g.stamp((12, 31, 0)), stamp(2026, 12, 31, 0, 0, 0));
        assert_eq!(g.stamp((1, 5, 3600)), stamp(2027, 1, 5, 1, 0, 0));
        // A clock a little ahead of ours: still this year.
        assert_eq!(g.stamp((1, 6, 0)), stamp(2027, 1, 6, 0, 0, 0));
        assert_eq!(g.stamp((1, 7, 0)), stamp(2026, 1, 7, 0, 0, 0));
    }

    #[test]
    fn since_and_until_arguments() {
        let now = stamp(2026, 12, 10, 15, 30, 0);
        assert_eq!(
            parse_arg("2026-12-01", now),
            Ok(stamp(2026, 12, 1, 0, 0, 0))
        );
        assert_eq!(
            parse_arg("2026-12-01T10:00", now),
            Ok(stamp(2026, 12, 1, 10, 0, 0))
        );
        assert_eq!(
            parse_arg("2026-12-01 10:00:05", now),
            Ok(stamp(2026, 12, 1, 10, 0, 5))
        );
        assert_eq!(parse_arg("today", now), Ok(stamp(2026, 12, 10, 0, 0, 0)));
        assert_eq!(parse_arg("yesterday", now), Ok(stamp(2026, 12, 9, 0, 0, 0)));
        assert_eq!(parse_arg("-7d", now), Ok(stamp(2026, 12, 3, 15, 30, 0)));
        assert_eq!(parse_arg("-2h", now), Ok(stamp(2026, 12, 10, 13, 30, 0)));
        for bad in [
            "",
            "-",
            "-d",
            "-7x",
            "2026-12-01X",
            "2026-13-01",
            "7d",
            "last week",
        ] {
            assert!(parse_arg(bad, now).is_err(), "{bad}");
        }
    }
}
