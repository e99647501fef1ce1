//! A conversation's clocks for its current cycle: SLA deadlines (first response, next response,
//! resolution), what was warned, breached and met, and the replies they measure.
//!
//! Pure: the conversation actor feeds it what happens (a customer wrote, an agent replied, the
//! conversation was resolved, time passed) and gets back the events to audit and tell; it arms
//! one timer at [`Clocks::next_alarm`]. The state is stored on the conversation row, so a
//! restart rebuilds it and a deadline that passed meanwhile is reported at once.
//!
//! Definitions (CONTRACT.md): first response runs from the cycle's first customer message to
//! the first agent reply; next response from each later customer message not yet answered to
//! the next agent reply; resolution from the cycle's start to the resolve. Automated messages
//! are not replies. With `business_hours`, a deadline is where that much open time of the
//! team's calendar has passed; a warning comes `warn_before` (wall clock) ahead of it.

use chrono::{DateTime, Duration, Utc};
use sea_orm::ActiveValue::Set;
use serde::{Deserialize, Serialize};

use crate::ids::SlaPolicyId;
use crate::store::entity::conversation;
use crate::time::Calendar;

/// What an SLA measures.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    FirstResponse,
    NextResponse,
    Resolution,
}

impl Metric {
    pub const ALL: [Metric; 3] = [
        Metric::FirstResponse,
        Metric::NextResponse,
        Metric::Resolution,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::FirstResponse => "first_response",
            Metric::NextResponse => "next_response",
            Metric::Resolution => "resolution",
        }
    }

    /// Said in audit texts.
    pub fn label(self) -> &'static str {
        match self {
            Metric::FirstResponse => "first response",
            Metric::NextResponse => "next response",
            Metric::Resolution => "resolution",
        }
    }
}

/// An SLA policy as the clocks use it: targets in milliseconds (the policy's seconds times the
/// routing settings' unit, so that tests run in milliseconds what production runs in seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub id: SlaPolicyId,
    pub name: String,
    pub first_response: Option<i64>,
    pub next_response: Option<i64>,
    pub resolution: Option<i64>,
    pub business_hours: bool,
    pub warn_before: Option<i64>,
}

impl Policy {
    fn target(&self, metric: Metric) -> Option<i64> {
        match metric {
            Metric::FirstResponse => self.first_response,
            Metric::NextResponse => self.next_response,
            Metric::Resolution => self.resolution,
        }
    }

    /// The deadline for `metric` of a clock started at `from`; `None` when the policy has no
    /// target for it, or the calendar does not open enough within a year.
    fn deadline(
        &self,
        metric: Metric,
        from: DateTime<Utc>,
        calendar: &Calendar,
    ) -> Option<DateTime<Utc>> {
        let target = Duration::milliseconds(self.target(metric)?);
        if self.business_hours {
            calendar.after_open(from, target)
        } else {
            Some(from + target)
        }
    }
}

/// What the clocks report, each at the moment it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum ClockEvent {
    Applied {
        policy_id: SlaPolicyId,
        policy_name: String,
    },
    Warned {
        metric: Metric,
        due_at: DateTime<Utc>,
    },
    Breached {
        metric: Metric,
        due_at: DateTime<Utc>,
    },
    Met {
        metric: Metric,
        due_at: DateTime<Utc>,
    },
}

/// The stored clocks of one conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Clocks {
    /// 1 for the conversation's first cycle, one more for each reopen.
    pub cycle: i32,
    pub cycle_started_at: Option<DateTime<Utc>>,
    pub policy_id: Option<SlaPolicyId>,
    pub first_response_due_at: Option<DateTime<Utc>>,
    pub next_response_due_at: Option<DateTime<Utc>>,
    pub resolution_due_at: Option<DateTime<Utc>>,
    pub breached: Vec<Metric>,
    pub met: Vec<Metric>,
    pub warned: Vec<Metric>,
    pub awaiting_reply_since: Option<DateTime<Utc>>,
    pub first_replied_at: Option<DateTime<Utc>>,
    pub last_agent_reply_at: Option<DateTime<Utc>>,
    pub out_of_hours_replied_at: Option<DateTime<Utc>>,
    /// Offers that ended unanswered before the cycle's first assignment.
    pub missed_offers: i32,
    /// The cycle's first assignment.
    pub assigned_at: Option<DateTime<Utc>>,
}

/// A conversation's SLA as the API and the console show it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlaView {
    pub policy_id: SlaPolicyId,
    /// Null once met, or when the policy has no such target.
    pub first_response_due_at: Option<DateTime<Utc>>,
    pub next_response_due_at: Option<DateTime<Utc>>,
    pub resolution_due_at: Option<DateTime<Utc>>,
    pub breached: Vec<Metric>,
    pub met: Vec<Metric>,
}

/// The fields of a new conversation's first cycle, for ingest's insert.
pub fn new_cycle(started_at: DateTime<Utc>) -> conversation::ActiveModel {
    let mut row = conversation::ActiveModel {
        ..Default::default()
    };
    start_cycle(&mut row, started_at, 1);
    row
}

/// A reopened conversation starts a new cycle: every clock and reply of the last one is reset
/// (the SLA is applied by the conversation actor when it next starts).
pub fn start_cycle(row: &mut conversation::ActiveModel, started_at: DateTime<Utc>, cycle: i32) {
    Clocks {
        cycle,
        cycle_started_at: Some(started_at),
        awaiting_reply_since: Some(started_at),
        ..Clocks::default()
    }
    .write(row);
}

fn metrics(text: &str) -> Vec<Metric> {
    serde_json::from_str(text).unwrap_or_default()
}

fn metrics_text(list: &[Metric]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

fn add(list: &mut Vec<Metric>, metric: Metric) {
    if !list.contains(&metric) {
        list.push(metric);
        list.sort();
    }
}

impl Clocks {
    pub fn from_row(row: &conversation::Model) -> Clocks {
        Clocks {
            cycle: row.cycle,
            cycle_started_at: row.cycle_started_at,
            policy_id: row.sla_policy_id,
            first_response_due_at: row.first_response_due_at,
            next_response_due_at: row.next_response_due_at,
            resolution_due_at: row.resolution_due_at,
            breached: metrics(&row.sla_breached),
            met: metrics(&row.sla_met),
            warned: metrics(&row.sla_warned),
            awaiting_reply_since: row.awaiting_reply_since,
            first_replied_at: row.first_replied_at,
            last_agent_reply_at: row.last_agent_reply_at,
            out_of_hours_replied_at: row.out_of_hours_replied_at,
            missed_offers: row.cycle_missed_offers,
            assigned_at: row.cycle_assigned_at,
        }
    }

    pub fn write(&self, row: &mut conversation::ActiveModel) {
        row.cycle = Set(self.cycle);
        row.cycle_started_at = Set(self.cycle_started_at);
        row.sla_policy_id = Set(self.policy_id);
        row.first_response_due_at = Set(self.first_response_due_at);
        row.next_response_due_at = Set(self.next_response_due_at);
        row.resolution_due_at = Set(self.resolution_due_at);
        row.sla_breached = Set(metrics_text(&self.breached));
        row.sla_met = Set(metrics_text(&self.met));
        row.sla_warned = Set(metrics_text(&self.warned));
        row.awaiting_reply_since = Set(self.awaiting_reply_since);
        row.first_replied_at = Set(self.first_replied_at);
        row.last_agent_reply_at = Set(self.last_agent_reply_at);
        row.out_of_hours_replied_at = Set(self.out_of_hours_replied_at);
        row.cycle_missed_offers = Set(self.missed_offers);
        row.cycle_assigned_at = Set(self.assigned_at);
    }

    /// `None` when no policy applies to this cycle.
    pub fn view(&self) -> Option<SlaView> {
        Some(SlaView {
            policy_id: self.policy_id?,
            first_response_due_at: self.first_response_due_at,
            next_response_due_at: self.next_response_due_at,
            resolution_due_at: self.resolution_due_at,
            breached: self.breached.clone(),
            met: self.met.clone(),
        })
    }

    fn due(&self, metric: Metric) -> Option<DateTime<Utc>> {
        match metric {
            Metric::FirstResponse => self.first_response_due_at,
            Metric::NextResponse => self.next_response_due_at,
            Metric::Resolution => self.resolution_due_at,
        }
    }

    fn set_due(&mut self, metric: Metric, due: Option<DateTime<Utc>>) {
        match metric {
            Metric::FirstResponse => self.first_response_due_at = due,
            Metric::NextResponse => self.next_response_due_at = due,
            Metric::Resolution => self.resolution_due_at = due,
        }
    }

    /// Whether this cycle still needs its policy: it started, and none was applied yet.
    pub fn needs_policy(&self) -> bool {
        self.cycle_started_at.is_some() && self.policy_id.is_none()
    }

    /// Applies `policy` to the cycle: first response and resolution clocks start at the
    /// cycle's first customer message (a first response already given counts from then).
    pub fn apply(&mut self, policy: &Policy, calendar: &Calendar) -> Vec<ClockEvent> {
        let Some(start) = self.cycle_started_at else {
            return Vec::new();
        };
        self.policy_id = Some(policy.id);
        if self.first_replied_at.is_none() {
            self.first_response_due_at = policy.deadline(Metric::FirstResponse, start, calendar);
        }
        self.resolution_due_at = policy.deadline(Metric::Resolution, start, calendar);
        if self.first_replied_at.is_some()
            && let Some(waiting) = self.awaiting_reply_since
        {
            self.next_response_due_at = policy.deadline(Metric::NextResponse, waiting, calendar);
        }
        vec![ClockEvent::Applied {
            policy_id: policy.id,
            policy_name: policy.name.clone(),
        }]
    }

    /// A customer message at `at`: once the first response was given, the next-response
    /// clock starts unless one is running already.
    pub fn customer_wrote(
        &mut self,
        at: DateTime<Utc>,
        policy: Option<&Policy>,
        calendar: &Calendar,
    ) {
        if self.cycle_started_at.is_none() {
            self.cycle_started_at = Some(at);
        }
        if self.awaiting_reply_since.is_some() {
            return;
        }
        self.awaiting_reply_since = Some(at);
        if self.first_replied_at.is_some()
            && let Some(policy) = policy.filter(|p| self.policy_id == Some(p.id))
        {
            self.next_response_due_at = policy.deadline(Metric::NextResponse, at, calendar);
            self.warned.retain(|m| *m != Metric::NextResponse);
        }
    }

    /// An agent's reply (text, media or template; never an automated message) at `at`.
    pub fn agent_replied(&mut self, at: DateTime<Utc>) -> Vec<ClockEvent> {
        let mut events = Vec::new();
        self.last_agent_reply_at = Some(at);
        self.awaiting_reply_since = None;
        let answering = if self.first_replied_at.is_none() {
            self.first_replied_at = Some(at);
            Metric::FirstResponse
        } else {
            Metric::NextResponse
        };
        if let Some(due) = self.due(answering) {
            if at <= due && !self.breached.contains(&answering) {
                add(&mut self.met, answering);
                events.push(ClockEvent::Met {
                    metric: answering,
                    due_at: due,
                });
            }
            self.set_due(answering, None);
        }
        events
    }

    /// The conversation was resolved at `at`: the resolution clock settles and every clock
    /// of the cycle stops.
    pub fn resolved(&mut self, at: DateTime<Utc>) -> Vec<ClockEvent> {
        let mut events = Vec::new();
        if let Some(due) = self.resolution_due_at
            && at <= due
            && !self.breached.contains(&Metric::Resolution)
        {
            add(&mut self.met, Metric::Resolution);
            events.push(ClockEvent::Met {
                metric: Metric::Resolution,
                due_at: due,
            });
        }
        self.first_response_due_at = None;
        self.next_response_due_at = None;
        self.resolution_due_at = None;
        self.awaiting_reply_since = None;
        events
    }

    fn warn_at(&self, metric: Metric, warn_before: Option<i64>) -> Option<DateTime<Utc>> {
        let due = self.due(metric)?;
        let ahead = warn_before.filter(|secs| *secs > 0)?;
        (!self.warned.contains(&metric) && !self.breached.contains(&metric))
            .then(|| due - Duration::milliseconds(ahead))
    }

    fn breach_at(&self, metric: Metric) -> Option<DateTime<Utc>> {
        self.due(metric)
            .filter(|_| !self.breached.contains(&metric))
    }

    /// Everything due at or before `now`: warnings (skipped when the breach is due too, as
    /// after a long restart) and breaches.
    pub fn tick(&mut self, now: DateTime<Utc>, warn_before: Option<i64>) -> Vec<ClockEvent> {
        let mut events = Vec::new();
        for metric in Metric::ALL {
            if let Some(due) = self.breach_at(metric)
                && due <= now
            {
                add(&mut self.breached, metric);
                add(&mut self.warned, metric);
                events.push(ClockEvent::Breached {
                    metric,
                    due_at: due,
                });
            } else if let Some(warn) = self.warn_at(metric, warn_before)
                && warn <= now
                && let Some(due) = self.due(metric)
            {
                add(&mut self.warned, metric);
                events.push(ClockEvent::Warned {
                    metric,
                    due_at: due,
                });
            }
        }
        events
    }

    /// The next instant [`Clocks::tick`] has something to report.
    pub fn next_alarm(&self, warn_before: Option<i64>) -> Option<DateTime<Utc>> {
        Metric::ALL
            .into_iter()
            .flat_map(|metric| [self.warn_at(metric, warn_before), self.breach_at(metric)])
            .flatten()
            .min()
    }

    /// When an inactive conversation resolves itself: `after` milliseconds past the agent's last
    /// reply, while the customer has not written since.
    pub fn auto_resolve_at(&self, after: Option<i64>) -> Option<DateTime<Utc>> {
        let after = after.filter(|secs| *secs > 0)?;
        if self.awaiting_reply_since.is_some() {
            return None;
        }
        self.last_agent_reply_at
            .map(|reply| reply + Duration::milliseconds(after))
    }

    /// A breach happened in this cycle (the dashboard's `sla_breached`).
    pub fn is_breached(&self) -> bool {
        !self.breached.is_empty()
    }

    /// Warned of a deadline that is still open (the dashboard's `sla_at_risk`).
    pub fn at_risk(&self) -> bool {
        self.warned
            .iter()
            .any(|m| self.due(*m).is_some() && !self.breached.contains(m))
    }

    /// Whether an out-of-hours reply already went in this cycle.
    pub fn out_of_hours_replied(&self) -> bool {
        match (self.out_of_hours_replied_at, self.cycle_started_at) {
            (Some(replied), Some(started)) => replied >= started,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The earliest open first-response deadline, for the queue's order.
    pub fn first_response_due(&self) -> Option<DateTime<Utc>> {
        self.first_response_due_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::minutes(minutes)
    }

    fn policy() -> Policy {
        Policy {
            id: SlaPolicyId(uuid::Uuid::from_u128(1)),
            name: "Gold".into(),
            first_response: Some(600_000),
            next_response: Some(300_000),
            resolution: Some(3_600_000),
            business_hours: false,
            warn_before: Some(120_000),
        }
    }

    fn started() -> Clocks {
        let mut clocks = Clocks {
            cycle_started_at: Some(at(0)),
            awaiting_reply_since: Some(at(0)),
            ..Clocks::default()
        };
        assert_eq!(
            clocks.apply(&policy(), &Calendar::always_open()),
            vec![ClockEvent::Applied {
                policy_id: policy().id,
                policy_name: "Gold".into()
            }]
        );
        clocks
    }

    #[test]
    fn first_response_met_before_its_deadline() {
        let mut clocks = started();
        assert_eq!(clocks.first_response_due_at, Some(at(10)));
        assert_eq!(clocks.resolution_due_at, Some(at(60)));
        assert_eq!(clocks.next_alarm(Some(120_000)), Some(at(8)));
        assert_eq!(
            clocks.agent_replied(at(5)),
            vec![ClockEvent::Met {
                metric: Metric::FirstResponse,
                due_at: at(10)
            }]
        );
        assert_eq!(clocks.first_response_due_at, None);
        assert_eq!(clocks.met, vec![Metric::FirstResponse]);
        // Only resolution is left: warned at 58, breached at 60.
        assert_eq!(clocks.next_alarm(Some(120_000)), Some(at(58)));
    }

    #[test]
    fn first_response_warned_then_breached_then_answered_late_is_not_met() {
        let mut clocks = started();
        assert_eq!(clocks.tick(at(7), Some(120_000)), vec![]);
        assert_eq!(
            clocks.tick(at(8), Some(120_000)),
            vec![ClockEvent::Warned {
                metric: Metric::FirstResponse,
                due_at: at(10)
            }]
        );
        assert_eq!(clocks.next_alarm(Some(120_000)), Some(at(10)));
        assert_eq!(
            clocks.tick(at(10), Some(120_000)),
            vec![ClockEvent::Breached {
                metric: Metric::FirstResponse,
                due_at: at(10)
            }]
        );
        assert_eq!(clocks.breached, vec![Metric::FirstResponse]);
        assert_eq!(clocks.agent_replied(at(12)), vec![]);
        assert!(clocks.met.is_empty());
        assert_eq!(clocks.first_response_due_at, None);
    }

    #[test]
    fn a_deadline_passed_while_down_breaches_at_once_without_a_stale_warning() {
        let mut clocks = started();
        assert_eq!(
            clocks.tick(at(90), Some(120_000)),
            vec![
                ClockEvent::Breached {
                    metric: Metric::FirstResponse,
                    due_at: at(10)
                },
                ClockEvent::Breached {
                    metric: Metric::Resolution,
                    due_at: at(60)
                },
            ]
        );
        assert_eq!(clocks.next_alarm(Some(120_000)), None);
    }

    #[test]
    fn next_response_runs_from_the_oldest_unanswered_customer_message() {
        let mut clocks = started();
        clocks.agent_replied(at(1));
        let calendar = Calendar::always_open();
        clocks.customer_wrote(at(20), Some(&policy()), &calendar);
        // A second message while unanswered does not move the clock.
        clocks.customer_wrote(at(22), Some(&policy()), &calendar);
        assert_eq!(clocks.next_response_due_at, Some(at(25)));
        assert_eq!(
            clocks.agent_replied(at(24)),
            vec![ClockEvent::Met {
                metric: Metric::NextResponse,
                due_at: at(25)
            }]
        );
        clocks.customer_wrote(at(30), Some(&policy()), &calendar);
        assert_eq!(clocks.next_response_due_at, Some(at(35)));
        assert_eq!(
            clocks.tick(at(35), Some(120_000)),
            vec![ClockEvent::Breached {
                metric: Metric::NextResponse,
                due_at: at(35)
            }]
        );
    }

    #[test]
    fn resolution_met_or_not_and_every_clock_stops() {
        let mut clocks = started();
        clocks.agent_replied(at(2));
        assert_eq!(
            clocks.resolved(at(50)),
            vec![ClockEvent::Met {
                metric: Metric::Resolution,
                due_at: at(60)
            }]
        );
        assert_eq!(clocks.next_alarm(Some(120_000)), None);
        let mut late = started();
        late.tick(at(61), None);
        assert_eq!(late.resolved(at(70)), vec![]);
    }

    #[test]
    fn business_time_deadline_waits_for_opening() {
        // Weekdays 09:00-10:00 UTC; a cycle starting Monday 09:50 with a 20-minute first
        // response is due Tuesday 09:10.
        let calendar = Calendar::parse(&crate::time::CalendarSpec {
            time_zone: "UTC".into(),
            weekly: ["mon", "tue"]
                .iter()
                .map(|d| (d.to_string(), vec![vec!["09:00".into(), "10:00".into()]]))
                .collect(),
            overrides: vec![],
        })
        .unwrap();
        let mut clocks = Clocks {
            cycle_started_at: Some(at(50)),
            ..Clocks::default()
        };
        let policy = Policy {
            first_response: Some(1_200_000),
            business_hours: true,
            ..policy()
        };
        clocks.apply(&policy, &calendar);
        assert_eq!(clocks.first_response_due_at, Some(at(24 * 60 + 10)));
    }

    #[test]
    fn auto_resolve_counts_from_the_last_reply_while_the_customer_is_silent() {
        let mut clocks = started();
        assert_eq!(clocks.auto_resolve_at(Some(600_000)), None);
        clocks.agent_replied(at(3));
        assert_eq!(clocks.auto_resolve_at(Some(600_000)), Some(at(13)));
        assert_eq!(clocks.auto_resolve_at(None), None);
        clocks.customer_wrote(at(5), None, &Calendar::always_open());
        assert_eq!(clocks.auto_resolve_at(Some(600_000)), None);
    }

    #[test]
    fn the_out_of_hours_reply_is_once_per_cycle() {
        let mut clocks = started();
        assert!(!clocks.out_of_hours_replied());
        clocks.out_of_hours_replied_at = Some(at(1));
        assert!(clocks.out_of_hours_replied());
        let mut row = conversation::ActiveModel::default();
        clocks.write(&mut row);
        start_cycle(&mut row, at(100), 2);
        let reopened = Clocks {
            cycle_started_at: Some(at(100)),
            out_of_hours_replied_at: None,
            ..clocks
        };
        assert!(!reopened.out_of_hours_replied());
    }
}
