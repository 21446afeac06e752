//! The SIP-date of the Date header (RFC 3261 §20.17, the RFC 1123 form of RFC 2616 §3.3.1):
//! `Sat, 13 Nov 2010 23:29:00 GMT`, always in GMT.

/// Formats `unix_secs` (seconds since 1970-01-01 00:00:00 UTC) as a SIP-date, e.g.
/// `Thu, 01 Jan 1970 00:00:00 GMT`. Total for every `u64`.
pub fn sip_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let of_day = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    let weekday = DAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let month = MONTHS
        .get(m.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} GMT",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian (year, month 1..=12, day 1..=31) of `days` since 1970-01-01.
///
/// Howard Hinnant's `civil_from_days` ("chrono-Compatible Low-Level Date Algorithms"): shift
/// the epoch to 0000-03-01 so that the leap day ends a year, split into 400-year eras of
/// 146097 days, then year of era, day of year (from March) and month by the 153-day five-month
/// cycle. Integer arithmetic only; exact for every `i64` day within ±2^60.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1; // 1..=31
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // 1..=12
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_dates() {
        assert_eq!(sip_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 3261 §20.17's example.
        assert_eq!(sip_date(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(sip_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert!(sip_date(u64::MAX).ends_with("GMT"));
    }
}
