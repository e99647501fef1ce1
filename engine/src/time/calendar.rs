//! Business hours: a weekly pattern of local intervals in an IANA zone, with dated overrides.
//!
//! Pure: no IO, no clock. Everything that asks "open at t?", "when does that change?" or "how
//! much open time between two instants?" asks a [`Calendar`], so out-of-hours replies, offers,
//! SLA clocks and reports cannot disagree about what "open" means.
//!
//! Local times become instants with the zone's rules for that date:
//! - a start or end that falls in a spring-forward gap (02:30 in New York on the March change)
//!   is the first instant after the gap (03:00 EDT), so an interval inside the gap is empty;
//! - in a fall-back repeat (01:30 in London on the October change), a start is its first
//!   occurrence and an end its last, so the interval covers both passes of the clock;
//! - `24:00` is the next day's midnight; intervals that touch (a day's `22:00`-`24:00` and the
//!   next day's `00:00`-`02:00`) are one open span.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The day names of `weekly`, Monday first.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// Intervals one day may have.
pub const MAX_INTERVALS_PER_DAY: usize = 48;
/// Dated overrides one calendar may have.
pub const MAX_OVERRIDES: usize = 1000;
/// How far ahead "next change" and business-time deadlines look before answering "never".
const HORIZON_WEEKS: u32 = 60;
const MINUTES_PER_DAY: u16 = 24 * 60;

/// Why a calendar was refused; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CalendarError(pub String);

fn refuse<T>(message: String) -> Result<T, CalendarError> {
    Err(CalendarError(message))
}

/// A local interval of one day, in minutes since midnight: `start < end <= 1440`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    start: u16,
    end: u16,
}

impl Interval {
    /// The whole day, `["00:00","24:00"]`.
    pub const ALL_DAY: Interval = Interval {
        start: 0,
        end: MINUTES_PER_DAY,
    };

    /// An interval from minutes since midnight.
    pub fn new(start: u16, end: u16) -> Option<Interval> {
        (start < end && end <= MINUTES_PER_DAY).then_some(Interval { start, end })
    }

    /// `["HH:MM","HH:MM"]`; `field` names it in the refusal.
    pub fn parse(field: &str, pair: &[String]) -> Result<Interval, CalendarError> {
        let [start, end] = pair else {
            return refuse(format!(
                "`{field}` must be a pair [\"HH:MM\",\"HH:MM\"], not {} values",
                pair.len()
            ));
        };
        let start = minutes(&format!("{field}[0]"), start, false)?;
        let end = minutes(&format!("{field}[1]"), end, true)?;
        Interval::new(start, end).map_or_else(
            || {
                refuse(format!(
                    "`{field}` ends before it starts (an interval past midnight is two: one to \"24:00\", one from \"00:00\" the next day)"
                ))
            },
            Ok,
        )
    }

    /// The `["HH:MM","HH:MM"]` form.
    pub fn render(&self) -> [String; 2] {
        [clock(self.start), clock(self.end)]
    }
}

fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `HH:MM` to minutes since midnight; `24:00` only as an end.
fn minutes(field: &str, text: &str, is_end: bool) -> Result<u16, CalendarError> {
    let parsed = text.split_once(':').and_then(|(hours, mins)| {
        let well_formed = hours.len() == 2
            && mins.len() == 2
            && hours
                .bytes()
                .chain(mins.bytes())
                .all(|b| b.is_ascii_digit());
        if !well_formed {
            return None;
        }
        let (hours, mins) = (hours.parse::<u16>().ok()?, mins.parse::<u16>().ok()?);
        (mins < 60 && (hours < 24 || (hours == 24 && mins == 0))).then_some(hours * 60 + mins)
    });
    match parsed {
        Some(MINUTES_PER_DAY) if !is_end => refuse(format!(
            "`{field}` is \"24:00\", which may only end an interval"
        )),
        Some(value) => Ok(value),
        None => refuse(format!(
            "`{field}` must be a local time \"HH:MM\" from \"00:00\" to \"24:00\", not {text:?}"
        )),
    }
}

/// Sorted, non-overlapping intervals of one day (touching is allowed).
fn day(field: &str, pairs: &[Vec<String>]) -> Result<Vec<Interval>, CalendarError> {
    if pairs.len() > MAX_INTERVALS_PER_DAY {
        return refuse(format!(
            "`{field}` has {} intervals; at most {MAX_INTERVALS_PER_DAY}",
            pairs.len()
        ));
    }
    let mut intervals = pairs
        .iter()
        .enumerate()
        .map(|(index, pair)| Interval::parse(&format!("{field}[{index}]"), pair))
        .collect::<Result<Vec<_>, _>>()?;
    intervals.sort();
    for pair in intervals.windows(2) {
        if pair[1].start < pair[0].end {
            let [a0, a1] = pair[0].render();
            let [b0, b1] = pair[1].render();
            return refuse(format!(
                "`{field}` has overlapping intervals {a0}-{a1} and {b0}-{b1}"
            ));
        }
    }
    Ok(intervals)
}

/// What the API takes and shows: `weekly` maps `mon`..`sun` to `["HH:MM","HH:MM"]` pairs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CalendarSpec {
    /// An IANA zone name, `Europe/London`.
    pub time_zone: String,
    /// `mon`..`sun` to a list of local `["HH:MM","HH:MM"]` intervals; a missing day is closed.
    #[schema(value_type = Object, example = json!({"mon": [["09:00", "12:30"], ["13:30", "17:00"]]}))]
    pub weekly: BTreeMap<String, Vec<Vec<String>>>,
    /// Dated exceptions; an empty list of intervals closes that date.
    #[serde(default)]
    pub overrides: Vec<OverrideSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideSpec {
    /// A local date, `YYYY-MM-DD`.
    pub date: String,
    #[schema(value_type = Vec<Vec<String>>)]
    pub intervals: Vec<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A dated exception to the weekly pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub intervals: Vec<Interval>,
    pub label: Option<String>,
}

/// One open span, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A validated calendar.
#[derive(Clone, Debug, PartialEq)]
pub struct Calendar {
    zone: Tz,
    /// Monday first.
    weekly: [Vec<Interval>; 7],
    overrides: BTreeMap<NaiveDate, Override>,
}

impl Calendar {
    /// Open around the clock, every day: what a team without a calendar is.
    pub fn always_open() -> Calendar {
        Calendar {
            zone: Tz::UTC,
            weekly: std::array::from_fn(|_| vec![Interval::ALL_DAY]),
            overrides: BTreeMap::new(),
        }
    }

    /// Validates the API's form; each refusal names its field.
    pub fn parse(spec: &CalendarSpec) -> Result<Calendar, CalendarError> {
        let zone: Tz = spec.time_zone.trim().parse().map_err(|_| {
            CalendarError(format!(
                "`time_zone` {:?} is not an IANA time zone name (like \"Europe/London\" or \"Asia/Dubai\")",
                spec.time_zone
            ))
        })?;
        let mut weekly: [Vec<Interval>; 7] = Default::default();
        for (name, pairs) in &spec.weekly {
            let Some(index) = DAYS.iter().position(|d| d == name) else {
                return refuse(format!(
                    "`weekly.{name}` is not a day; days are {}",
                    DAYS.join(", ")
                ));
            };
            weekly[index] = day(&format!("weekly.{name}"), pairs)?;
        }
        if spec.overrides.len() > MAX_OVERRIDES {
            return refuse(format!(
                "`overrides` may have at most {MAX_OVERRIDES} dates"
            ));
        }
        let mut overrides = BTreeMap::new();
        for (index, item) in spec.overrides.iter().enumerate() {
            let field = format!("overrides[{index}]");
            let date = NaiveDate::parse_from_str(&item.date, "%Y-%m-%d").map_err(|_| {
                CalendarError(format!(
                    "`{field}.date` must be a date \"YYYY-MM-DD\", not {:?}",
                    item.date
                ))
            })?;
            let label = match &item.label {
                Some(label) if label.chars().count() > 200 || label.contains('\0') => {
                    return refuse(format!(
                        "`{field}.label` must be at most 200 characters, without NUL"
                    ));
                }
                Some(label) => Some(label.trim().to_owned()).filter(|l| !l.is_empty()),
                None => None,
            };
            let intervals = day(&format!("{field}.intervals"), &item.intervals)?;
            if overrides
                .insert(date, Override { intervals, label })
                .is_some()
            {
                return refuse(format!("`{field}.date` {date} is overridden twice"));
            }
        }
        Ok(Calendar {
            zone,
            weekly,
            overrides,
        })
    }

    /// The API's form, normalised (intervals sorted, dates in order, closed days left out).
    pub fn spec(&self) -> CalendarSpec {
        CalendarSpec {
            time_zone: self.zone.name().to_owned(),
            weekly: DAYS
                .iter()
                .zip(&self.weekly)
                .filter(|(_, intervals)| !intervals.is_empty())
                .map(|(name, intervals)| ((*name).to_owned(), render(intervals)))
                .collect(),
            overrides: self
                .overrides
                .iter()
                .map(|(date, item)| OverrideSpec {
                    date: date.format("%Y-%m-%d").to_string(),
                    intervals: render(&item.intervals),
                    label: item.label.clone(),
                })
                .collect(),
        }
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The intervals of one local date: its override, or its weekday's.
    fn intervals_on(&self, date: NaiveDate) -> &[Interval] {
        match self.overrides.get(&date) {
            Some(item) => &item.intervals,
            None => &self.weekly[date.weekday().num_days_from_monday() as usize],
        }
    }

    /// The open spans that meet `[from, to)`, merged, clipped to it.
    pub fn open_spans(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Span> {
        if to <= from {
            return Vec::new();
        }
        // Local dates around the range: an interval of the day before may run past `from`
        // once merged with the next day's, and the zone may be up to 14 hours off UTC.
        let first = self.zone.from_utc_datetime(&from.naive_utc()).date_naive() - Duration::days(1);
        let last = self.zone.from_utc_datetime(&to.naive_utc()).date_naive() + Duration::days(1);
        let mut spans: Vec<Span> = Vec::new();
        let mut date = first;
        while date <= last {
            for interval in self.intervals_on(date) {
                let start = self.instant(date, interval.start, Pick::Earliest);
                let end = self.instant(date, interval.end, Pick::Latest);
                if start >= end {
                    continue; // inside a spring-forward gap
                }
                match spans.last_mut() {
                    Some(last) if start <= last.end => last.end = last.end.max(end),
                    _ => spans.push(Span { start, end }),
                }
            }
            date += Duration::days(1);
        }
        spans
            .into_iter()
            .filter_map(|span| {
                let start = span.start.max(from);
                let end = span.end.min(to);
                (start < end).then_some(Span { start, end })
            })
            .collect()
    }

    /// Open at `at`?
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        !self.open_spans(at, at + Duration::seconds(1)).is_empty()
    }

    /// The next instant after `at` where open becomes closed or closed becomes open; `None`
    /// when nothing changes within about a year (always open, or never).
    pub fn next_change(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let open = self.is_open(at);
        let mut from = at;
        for _ in 0..HORIZON_WEEKS {
            let to = from + Duration::weeks(1);
            let spans = self.open_spans(from, to);
            match (open, spans.first()) {
                // Still open at the window's start: a span that ends inside it is the change.
                (true, Some(span)) if span.start == from => {
                    if span.end < to {
                        return Some(span.end);
                    }
                }
                // It closed exactly where the last window ended.
                (true, _) => return Some(from),
                (false, Some(span)) => return Some(span.start.max(at)),
                (false, None) => {}
            }
            from = to;
        }
        None
    }

    /// Open seconds in `[from, to)`.
    pub fn open_seconds(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        self.open_spans(from, to)
            .iter()
            .map(|span| (span.end - span.start).num_seconds())
            .sum()
    }

    /// The instant at which `open` time has passed since `from`: a business-time deadline.
    /// `None` when the calendar does not open enough within about a year.
    pub fn after_open(&self, from: DateTime<Utc>, open: Duration) -> Option<DateTime<Utc>> {
        let mut left = open.max(Duration::zero());
        if left.is_zero() {
            return Some(from);
        }
        let mut window = from;
        for _ in 0..HORIZON_WEEKS {
            let to = window + Duration::weeks(1);
            for span in self.open_spans(window, to) {
                let length = span.end - span.start;
                if left <= length {
                    return Some(span.start + left);
                }
                left -= length;
            }
            window = to;
        }
        None
    }

    /// A local date and time in the zone as an instant (see the module's note on DST).
    fn instant(&self, date: NaiveDate, minutes: u16, pick: Pick) -> DateTime<Utc> {
        let local = if minutes >= MINUTES_PER_DAY {
            (date + Duration::days(1)).and_time(NaiveTime::MIN)
        } else {
            date.and_time(
                NaiveTime::from_hms_opt(u32::from(minutes / 60), u32::from(minutes % 60), 0)
                    .unwrap_or(NaiveTime::MIN),
            )
        };
        match self.zone.from_local_datetime(&local) {
            chrono::LocalResult::Single(at) => at.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(first, second) => match pick {
                Pick::Earliest => first.min(second).with_timezone(&Utc),
                Pick::Latest => first.max(second).with_timezone(&Utc),
            },
            chrono::LocalResult::None => self.after_gap(local),
        }
    }

    /// The first instant whose local time is at or after `local`, which the zone skips.
    fn after_gap(&self, local: NaiveDateTime) -> DateTime<Utc> {
        use chrono::Offset;
        let offset_at = |naive: NaiveDateTime| {
            i64::from(
                self.zone
                    .offset_from_utc_datetime(&naive)
                    .fix()
                    .local_minus_utc(),
            )
        };
        let before = offset_at(local - Duration::days(1));
        let after = offset_at(local + Duration::days(1));
        // Between these two readings of `local` lies the transition; local time only moves
        // forward inside that range, so the first instant that reads `local` or later is found
        // by halving (seconds: transitions fall on whole seconds).
        let mut low = (local - Duration::seconds(after)).and_utc();
        let mut high = (local - Duration::seconds(before)).and_utc();
        if high <= low {
            return high;
        }
        while (high - low).num_seconds() > 1 {
            let middle = low + Duration::seconds((high - low).num_seconds() / 2);
            if self
                .zone
                .from_utc_datetime(&middle.naive_utc())
                .naive_local()
                >= local
            {
                high = middle;
            } else {
                low = middle;
            }
        }
        if self.zone.from_utc_datetime(&low.naive_utc()).naive_local() >= local {
            low
        } else {
            high
        }
    }
}

#[derive(Clone, Copy)]
enum Pick {
    Earliest,
    Latest,
}

fn render(intervals: &[Interval]) -> Vec<Vec<String>> {
    intervals.iter().map(|i| i.render().to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Instants in these tests are written out by hand from the zones' published rules, never
    /// computed with the library under test.
    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn pairs(text: &str) -> Vec<Vec<String>> {
        text.split_whitespace()
            .map(|range| range.split('-').map(str::to_owned).collect())
            .collect()
    }

    /// `weekly` as `"mon 09:00-12:00 13:00-17:00; tue ..."`, `overrides` as
    /// `"2026-12-25; 2026-12-27 10:00-12:00"` (a date alone is closed).
    fn calendar(zone: &str, weekly: &str, overrides: &str) -> Calendar {
        let entries = |text: &str| -> Vec<(String, Vec<Vec<String>>)> {
            text.split(';')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(|entry| {
                    let (key, rest) = entry.split_once(' ').unwrap_or((entry, ""));
                    (key.to_owned(), pairs(rest))
                })
                .collect()
        };
        Calendar::parse(&CalendarSpec {
            time_zone: zone.into(),
            weekly: entries(weekly).into_iter().collect(),
            overrides: entries(overrides)
                .into_iter()
                .map(|(date, intervals)| OverrideSpec {
                    date,
                    intervals,
                    label: None,
                })
                .collect(),
        })
        .unwrap()
    }

    fn every_day(zone: &str, intervals: &str) -> Calendar {
        let weekly: Vec<String> = DAYS.iter().map(|d| format!("{d} {intervals}")).collect();
        calendar(zone, &weekly.join(";"), "")
    }

    fn spans(calendar: &Calendar, from: &str, to: &str) -> Vec<(String, String)> {
        calendar
            .open_spans(utc(from), utc(to))
            .iter()
            .map(|s| (s.start.to_rfc3339(), s.end.to_rfc3339()))
            .collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (utc(a).to_rfc3339(), utc(b).to_rfc3339())
    }

    #[test]
    fn london_spring_forward_moves_utc_opening_an_hour_earlier() {
        // 2026-03-29 01:00 UTC: clocks go from 01:00 GMT to 02:00 BST.
        let london = every_day("Europe/London", "09:00-17:00");
        assert_eq!(
            spans(&london, "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
            vec![
                pair("2026-03-28T09:00:00Z", "2026-03-28T17:00:00Z"), // Saturday, GMT
                pair("2026-03-29T08:00:00Z", "2026-03-29T16:00:00Z"), // Sunday, BST
                pair("2026-03-30T08:00:00Z", "2026-03-30T16:00:00Z"),
            ]
        );
    }

    #[test]
    fn london_fall_back_repeats_an_hour_that_an_interval_covers_twice() {
        // 2026-10-25 01:00 UTC: clocks go from 02:00 BST back to 01:00 GMT; 01:00-02:00 local
        // happens twice (00:00-01:00 UTC in BST, 01:00-02:00 UTC in GMT).
        let london = every_day("Europe/London", "01:00-02:00 09:00-17:00");
        assert_eq!(
            spans(&london, "2026-10-24T12:00:00Z", "2026-10-26T00:00:00Z"),
            vec![
                pair("2026-10-24T12:00:00Z", "2026-10-24T16:00:00Z"),
                pair("2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"),
                pair("2026-10-25T09:00:00Z", "2026-10-25T17:00:00Z"),
            ]
        );
    }

    #[test]
    fn new_york_spring_forward_gap_starts_at_the_jump_and_an_interval_inside_it_is_empty() {
        // 2026-03-08 07:00 UTC: clocks go from 02:00 EST to 03:00 EDT; 02:00-03:00 never happens.
        let ny = every_day("America/New_York", "02:15-02:45");
        assert_eq!(
            spans(&ny, "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z"),
            vec![]
        );
        let ny = every_day("America/New_York", "02:30-04:00");
        assert_eq!(
            spans(&ny, "2026-03-07T00:00:00Z", "2026-03-09T00:00:00Z"),
            vec![
                pair("2026-03-07T07:30:00Z", "2026-03-07T09:00:00Z"), // EST: +5
                pair("2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"), // from the jump to 04:00 EDT
            ]
        );
    }

    #[test]
    fn new_york_fall_back_day_is_25_hours_long_when_open_all_day() {
        // 2026-11-01 06:00 UTC: 02:00 EDT back to 01:00 EST. Sunday 00:00 EDT is 04:00 UTC,
        // Monday 00:00 EST is 05:00 UTC the next day: 25 hours.
        let ny = calendar("America/New_York", "sun 00:00-24:00", "");
        assert_eq!(
            spans(&ny, "2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z"),
            vec![pair("2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z")]
        );
        assert_eq!(
            ny.open_seconds(utc("2026-10-31T00:00:00Z"), utc("2026-11-03T00:00:00Z")),
            25 * 3600
        );
    }

    #[test]
    fn dubai_has_no_dst_and_four_hours_ahead_all_year() {
        let dubai = every_day("Asia/Dubai", "08:00-20:00");
        for (from, to, open) in [
            (
                "2026-03-29T00:00:00Z",
                "2026-03-30T00:00:00Z",
                ("2026-03-29T04:00:00Z", "2026-03-29T16:00:00Z"),
            ),
            (
                "2026-10-25T00:00:00Z",
                "2026-10-26T00:00:00Z",
                ("2026-10-25T04:00:00Z", "2026-10-25T16:00:00Z"),
            ),
        ] {
            assert_eq!(spans(&dubai, from, to), vec![pair(open.0, open.1)]);
        }
    }

    #[test]
    fn lord_howe_moves_by_half_an_hour() {
        // Lord Howe: +10:30 standard, +11:00 in summer. 2026-04-05 02:00 local (+11) goes back
        // to 01:30 (+10:30), at 2026-04-04T15:00Z; 2026-10-04 02:00 (+10:30) jumps to 02:30
        // (+11), at 2026-10-03T15:30Z.
        let lord_howe = every_day("Australia/Lord_Howe", "09:00-17:00");
        assert_eq!(
            spans(&lord_howe, "2026-04-03T12:00:00Z", "2026-04-06T12:00:00Z"),
            vec![
                pair("2026-04-03T22:00:00Z", "2026-04-04T06:00:00Z"), // Sat 4 Apr, +11
                pair("2026-04-04T22:30:00Z", "2026-04-05T06:30:00Z"), // Sun 5 Apr, +10:30
                pair("2026-04-05T22:30:00Z", "2026-04-06T06:30:00Z"),
            ]
        );
        let gap = every_day("Australia/Lord_Howe", "02:10-03:00");
        assert_eq!(
            spans(&gap, "2026-10-03T12:00:00Z", "2026-10-04T12:00:00Z"),
            // 02:10 is skipped: open from the jump (02:30 +11 = 15:30Z) to 03:00 +11 (16:00Z).
            vec![pair("2026-10-03T15:30:00Z", "2026-10-03T16:00:00Z")]
        );
    }

    #[test]
    fn intervals_across_midnight_are_one_span_and_a_closed_day_has_none() {
        let late = calendar("Europe/London", "fri 22:00-24:00; sat 00:00-02:00", "");
        // January: GMT, UTC+0. 2026-01-02 is a Friday.
        assert_eq!(
            spans(&late, "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z"),
            vec![pair("2026-01-02T22:00:00Z", "2026-01-03T02:00:00Z")]
        );
        assert!(late.is_open(utc("2026-01-03T00:00:00Z")));
        assert!(!late.is_open(utc("2026-01-03T02:00:00Z")));
        assert_eq!(
            late.next_change(utc("2026-01-02T23:00:00Z")),
            Some(utc("2026-01-03T02:00:00Z"))
        );
        assert_eq!(
            late.next_change(utc("2026-01-03T02:00:00Z")),
            Some(utc("2026-01-09T22:00:00Z"))
        );
    }

    #[test]
    fn overrides_close_a_holiday_and_open_a_special_day() {
        let office = calendar(
            "Europe/London",
            "mon 09:00-17:00; tue 09:00-17:00",
            "2026-12-28; 2026-12-27 10:00-12:00",
        );
        // Sun 27 Dec opens specially, Mon 28 Dec is a holiday, Tue 29 opens as usual.
        assert_eq!(
            spans(&office, "2026-12-26T00:00:00Z", "2026-12-30T00:00:00Z"),
            vec![
                pair("2026-12-27T10:00:00Z", "2026-12-27T12:00:00Z"),
                pair("2026-12-29T09:00:00Z", "2026-12-29T17:00:00Z"),
            ]
        );
    }

    #[test]
    fn always_open_never_changes_and_a_calendar_that_never_opens_has_no_deadline() {
        let always = Calendar::always_open();
        assert!(always.is_open(utc("2026-06-01T03:00:00Z")));
        assert_eq!(always.next_change(utc("2026-06-01T03:00:00Z")), None);
        assert_eq!(
            always.after_open(utc("2026-06-01T03:00:00Z"), Duration::seconds(90)),
            Some(utc("2026-06-01T03:01:30Z"))
        );
        let never = calendar("Asia/Dubai", "", "");
        assert!(!never.is_open(utc("2026-06-01T03:00:00Z")));
        assert_eq!(never.next_change(utc("2026-06-01T03:00:00Z")), None);
        assert_eq!(
            never.after_open(utc("2026-06-01T03:00:00Z"), Duration::seconds(60)),
            None
        );
    }

    #[test]
    fn business_time_stops_at_closing_and_resumes_at_opening() {
        // Weekdays 09:00-17:00 New York (EST in January, UTC-5). Friday 2026-01-09 16:30 local
        // plus one open hour: 30 minutes on Friday, 30 on Monday from 09:00 -> 09:30 Monday.
        let ny = calendar(
            "America/New_York",
            "mon 09:00-17:00; tue 09:00-17:00; wed 09:00-17:00; thu 09:00-17:00; fri 09:00-17:00",
            "",
        );
        assert_eq!(
            ny.after_open(utc("2026-01-09T21:30:00Z"), Duration::seconds(3600)),
            Some(utc("2026-01-12T14:30:00Z"))
        );
        assert_eq!(
            ny.open_seconds(utc("2026-01-09T21:30:00Z"), utc("2026-01-12T14:30:00Z")),
            3600
        );
        // Opening hours counted while closed: none.
        assert_eq!(
            ny.open_seconds(utc("2026-01-09T22:00:00Z"), utc("2026-01-12T14:00:00Z")),
            0
        );
        // Exactly at closing: the deadline is the closing instant, not Monday's opening.
        assert_eq!(
            ny.after_open(utc("2026-01-09T21:30:00Z"), Duration::seconds(1800)),
            Some(utc("2026-01-09T22:00:00Z"))
        );
        // Across the March change: Friday 2026-03-06 16:00 EST (21:00Z) + 2 open hours ->
        // 1 h on Friday, 1 h on Monday 2026-03-09 from 09:00 EDT (13:00Z) -> 14:00Z.
        assert_eq!(
            ny.after_open(utc("2026-03-06T21:00:00Z"), Duration::seconds(7200)),
            Some(utc("2026-03-09T14:00:00Z"))
        );
    }

    #[test]
    fn next_change_across_a_week_boundary_and_from_inside_an_all_day_run() {
        let weekend = calendar("Europe/London", "sat 00:00-24:00; sun 00:00-24:00", "");
        // Sat 2026-07-04 00:00 BST = 2026-07-03T23:00Z; Mon 00:00 BST = 2026-07-05T23:00Z.
        assert_eq!(
            weekend.next_change(utc("2026-07-04T12:00:00Z")),
            Some(utc("2026-07-05T23:00:00Z"))
        );
        assert_eq!(
            weekend.next_change(utc("2026-07-06T12:00:00Z")),
            Some(utc("2026-07-10T23:00:00Z"))
        );
    }

    #[test]
    fn bad_input_names_its_field() {
        let refused = |zone: &str, weekly: &[(&str, Vec<Vec<&str>>)]| {
            Calendar::parse(&CalendarSpec {
                time_zone: zone.into(),
                weekly: weekly
                    .iter()
                    .map(|(d, l)| {
                        (
                            d.to_string(),
                            l.iter()
                                .map(|p| p.iter().map(|s| s.to_string()).collect())
                                .collect(),
                        )
                    })
                    .collect(),
                overrides: vec![],
            })
            .unwrap_err()
            .0
        };
        assert!(refused("Mars/Olympus", &[]).contains("`time_zone`"));
        assert!(
            refused("UTC", &[("mon", vec![vec!["25:00", "26:00"]])]).contains("`weekly.mon[0][0]`")
        );
        assert!(
            refused("UTC", &[("mon", vec![vec!["9:00", "17:00"]])]).contains("`weekly.mon[0][0]`")
        );
        assert!(refused("UTC", &[("mon", vec![vec!["24:00", "24:00"]])]).contains("may only end"));
        assert!(
            refused("UTC", &[("tue", vec![vec!["17:00", "09:00"]])])
                .contains("`weekly.tue[0]` ends before it starts")
        );
        assert!(
            refused(
                "UTC",
                &[("wed", vec![vec!["09:00", "12:00"], vec!["11:00", "13:00"]])]
            )
            .contains("overlapping")
        );
        assert!(refused("UTC", &[("wed", vec![vec!["09:00"]])]).contains("pair"));
        assert!(refused("UTC", &[("monday", vec![])]).contains("`weekly.monday`"));
        // Touching intervals are fine; 24:00 ends the day.
        assert!(
            Calendar::parse(&CalendarSpec {
                time_zone: "UTC".into(),
                weekly: [(
                    "mon".to_string(),
                    vec![
                        vec!["09:00".into(), "12:00".into()],
                        vec!["12:00".into(), "24:00".into()]
                    ]
                )]
                .into(),
                overrides: vec![],
            })
            .is_ok()
        );
        let doubled = Calendar::parse(&CalendarSpec {
            time_zone: "UTC".into(),
            weekly: BTreeMap::new(),
            overrides: vec![
                OverrideSpec {
                    date: "2026-12-25".into(),
                    intervals: vec![],
                    label: None,
                },
                OverrideSpec {
                    date: "2026-12-25".into(),
                    intervals: vec![],
                    label: None,
                },
            ],
        })
        .unwrap_err();
        assert!(doubled.0.contains("`overrides[1].date`"));
    }

    #[test]
    fn spec_round_trips_normalised() {
        let office = calendar("Europe/London", "mon 13:00-17:00 09:00-12:00", "2026-12-25");
        let spec = office.spec();
        assert_eq!(
            spec.weekly["mon"],
            vec![vec!["09:00", "12:00"], vec!["13:00", "17:00"]]
        );
        assert_eq!(spec.overrides[0].date, "2026-12-25");
        assert_eq!(Calendar::parse(&spec).unwrap(), office);
    }
}
