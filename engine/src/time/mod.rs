//! Time as a routing input: business-hours calendars, SLA clocks and inactivity.
//!
//! - [`calendar`]: the pure calendar engine ("open at t?", "next change", "open seconds
//!   between", business-time deadlines), DST and overrides applied.
//! - [`clocks`]: a conversation's SLA clocks and inactivity for its current cycle, pure; the
//!   conversation actor feeds it events and arms one timer at its next alarm.
//! - [`settings`]: calendars and SLA policies as workspace settings (stored, validated,
//!   scoped like every other setting), and a team's time settings as routing reads them.

pub mod calendar;
pub mod clocks;
pub mod settings;

pub use calendar::{Calendar, CalendarError, CalendarSpec, Span};
