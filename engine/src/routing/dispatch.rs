//! The queue and the round that offers from it, as pure functions of the queue, the roster and a
//! clock: the supervisor runs them on the real clock, `waos replay` on a simulated one (one
//! routing core, two clocks).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::ids::{AgentId, ConversationId, TeamId};
use crate::routing::policy::{Candidate, Decision, PolicyKind, Request, choose_agent};

/// A conversation waiting for an agent.
#[derive(Clone)]
pub struct Waiting {
    pub conversation_id: ConversationId,
    pub team_id: TeamId,
    /// Waiting since (kept across declines and requeues, so the oldest goes first).
    pub since: DateTime<Utc>,
    pub priority: i32,
    /// Requeued after its agent left: goes before everything of the same priority.
    pub front: bool,
    pub window_expires_at: Option<DateTime<Utc>>,
    pub required_skills: Vec<String>,
    /// Agents that declined or let the offer lapse, until when.
    pub excluded: HashMap<AgentId, Instant>,
    pub sticky: Option<AgentId>,
    /// Its first-response deadline: nearer goes first at equal priority.
    pub first_response_due: Option<DateTime<Utc>>,
    /// Its team's hours when offers wait for opening (`offer_outside_hours: false`).
    pub offer_hours: Option<Arc<crate::time::settings::TeamTime>>,
}

/// The key [`queue_order`] sorts by.
pub type QueueKey = (
    Reverse<i32>,
    bool,
    (bool, Option<DateTime<Utc>>),
    DateTime<Utc>,
    ConversationId,
);

/// Where a waiting conversation stands in its queue: higher priority first (a conversation
/// whose 24-hour window is still open but closes within `warning` counts one higher), then
/// those requeued after their agent left, then the nearer first-response deadline (any
/// before none), then the oldest.
pub fn queue_order(waiting: &Waiting, now: DateTime<Utc>, warning: chrono::Duration) -> QueueKey {
    (
        Reverse(effective_priority(waiting, now, warning)),
        !waiting.front,
        (
            waiting.first_response_due.is_none(),
            waiting.first_response_due,
        ),
        waiting.since,
        waiting.conversation_id,
    )
}

/// Its priority, one higher while its 24-hour window is open but closes within `warning`.
pub fn effective_priority(waiting: &Waiting, now: DateTime<Utc>, warning: chrono::Duration) -> i32 {
    // A window that has already closed is not "closing": it stays closed, and a reply now
    // needs a template whatever the order, so it must not outrank fresh conversations.
    let closing = waiting
        .window_expires_at
        .is_some_and(|expires| expires > now && expires - now < warning);
    waiting.priority + i32::from(closing)
}

/// The instant a round runs at, on both clocks: `now` for cool-downs and the roster's
/// last-assigned times, `wall` for windows, deadlines and opening hours.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now: Instant,
    pub wall: DateTime<Utc>,
}

/// What a round goes by besides the queue and the roster.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub policy: PolicyKind,
    /// Prefer the customer's last agent when eligible.
    pub sticky: bool,
    pub window_warning: chrono::Duration,
}

/// One conversation taken from the queue for an agent.
pub struct Dispatched {
    pub waiting: Waiting,
    pub agent_id: AgentId,
    pub decision: Decision,
    /// Its place in its team's queue when it was chosen (those ahead that could not be offered
    /// count).
    pub position: usize,
}

/// What a round decided, and when to run one again.
#[derive(Default)]
pub struct Round {
    pub offers: Vec<Dispatched>,
    /// The earliest end of a cool-down that kept a conversation from an agent.
    pub retry_at: Option<Instant>,
    /// The earliest opening of a team whose conversations wait for its hours.
    pub opening_at: Option<DateTime<Utc>>,
}

/// Offers waiting conversations, in [`queue_order`], while anyone has room: each to the agent
/// [`choose_agent`] picks, whose load and last assignment in `roster` count it at once. The
/// chosen leave `queue`; `timed` is told how long each choice took.
pub fn dispatch(
    queue: &mut Vec<Waiting>,
    roster: &mut [Candidate],
    clock: Clock,
    rules: Rules,
    mut timed: impl FnMut(Duration),
) -> Round {
    let mut round = Round::default();
    // Without a free agent nothing can be offered: a long queue is not sorted again for
    // every arrival (that sort was most of the engine's time with thousands waiting).
    if queue.is_empty() || !roster.iter().any(Candidate::has_room) {
        return round;
    }
    let Clock { now, wall } = clock;
    queue.sort_by_cached_key(|w| queue_order(w, wall, rules.window_warning));
    let mut index = 0;
    while index < queue.len() {
        if !roster.iter().any(Candidate::has_room) {
            break;
        }
        let waiting = &queue[index];
        if let Some(hours) = waiting.offer_hours.as_ref().filter(|h| !h.offers_at(wall)) {
            // Closed: look again when it opens (or in a day, for a calendar that never does).
            let opening = hours
                .next_opening(wall)
                .unwrap_or(wall + chrono::Duration::days(1));
            round.opening_at = Some(round.opening_at.map_or(opening, |at| at.min(opening)));
            index += 1;
            continue;
        }
        let request = Request {
            team_id: Some(waiting.team_id),
            required_skills: waiting.required_skills.clone(),
            excluded: waiting
                .excluded
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(agent, _)| *agent)
                .collect::<HashSet<_>>(),
            sticky: waiting.sticky.filter(|_| rules.sticky),
            policy: rules.policy,
        };
        let deciding = Instant::now();
        let decision = choose_agent(roster, &request);
        timed(deciding.elapsed());
        let Some(agent_id) = decision.agent else {
            if let Some(until) = waiting.excluded.values().filter(|u| **u > now).min() {
                round.retry_at = Some(round.retry_at.map_or(*until, |at| at.min(*until)));
            }
            index += 1;
            continue;
        };
        // Those before it in the sorted queue that could not be offered are still ahead.
        let position = 1 + queue[..index]
            .iter()
            .filter(|w| w.team_id == waiting.team_id)
            .count();
        let waiting = queue.remove(index);
        if let Some(candidate) = roster.iter_mut().find(|c| c.agent_id == agent_id) {
            candidate.load += 1;
            candidate.last_assigned = Some(now);
        }
        round.offers.push(Dispatched {
            waiting,
            agent_id,
            decision,
            position,
        });
    }
    round
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(since_min: i64, window_left_min: i64, front: bool) -> Waiting {
        let now = Utc::now();
        Waiting {
            conversation_id: ConversationId::new(),
            team_id: TeamId::new(),
            since: now - chrono::Duration::minutes(since_min),
            priority: 0,
            front,
            window_expires_at: Some(now + chrono::Duration::minutes(window_left_min)),
            required_skills: vec![],
            excluded: HashMap::new(),
            sticky: None,
            first_response_due: None,
            offer_hours: None,
        }
    }

    #[test]
    fn a_nearer_first_response_deadline_goes_first_at_equal_priority() {
        let now = Utc::now();
        let warning = chrono::Duration::hours(2);
        let old_without = waiting(30, 23 * 60, false);
        let due_later = Waiting {
            first_response_due: Some(now + chrono::Duration::minutes(20)),
            ..waiting(10, 23 * 60, false)
        };
        let due_sooner = Waiting {
            first_response_due: Some(now + chrono::Duration::minutes(5)),
            ..waiting(1, 23 * 60, false)
        };
        let closing = waiting(1, 60, false);
        let mut queue = [
            old_without.clone(),
            due_later.clone(),
            closing.clone(),
            due_sooner.clone(),
        ];
        // Priority first (the closing window), then the deadlines, nearer first, then the
        // one without any, however old.
        assert_eq!(
            in_queue_order(&mut queue, now, warning),
            vec![
                closing.conversation_id,
                due_sooner.conversation_id,
                due_later.conversation_id,
                old_without.conversation_id,
            ]
        );
    }

    fn in_queue_order(
        queue: &mut [Waiting],
        now: DateTime<Utc>,
        warning: chrono::Duration,
    ) -> Vec<ConversationId> {
        queue.sort_by_key(|w| queue_order(w, now, warning));
        queue.iter().map(|w| w.conversation_id).collect()
    }

    #[test]
    fn oldest_first_closing_windows_and_requeued_conversations_jump_ahead() {
        let now = Utc::now();
        let warning = chrono::Duration::hours(2);
        let old = waiting(30, 23 * 60, false);
        let young = waiting(1, 23 * 60, false);
        let closing = waiting(1, 60, false);
        let requeued = waiting(2, 23 * 60, true);
        let mut queue = [
            young.clone(),
            old.clone(),
            closing.clone(),
            requeued.clone(),
        ];
        assert_eq!(
            in_queue_order(&mut queue, now, warning),
            vec![
                closing.conversation_id,
                requeued.conversation_id,
                old.conversation_id,
                young.conversation_id
            ]
        );
    }

    #[test]
    fn an_expired_window_does_not_rise() {
        let now = Utc::now();
        let warning = chrono::Duration::hours(2);
        let expired = waiting(30, -10, false);
        let fresh = waiting(1, 23 * 60, false);
        let closing = waiting(1, 30, false);
        let mut queue = [expired.clone(), fresh.clone(), closing.clone()];
        // The expired one is older than the fresh one, so it goes before it, but it does not
        // outrank the one whose window is still open and closing.
        assert_eq!(
            in_queue_order(&mut queue, now, warning),
            vec![
                closing.conversation_id,
                expired.conversation_id,
                fresh.conversation_id
            ]
        );
        assert_eq!(effective_priority(&expired, now, warning), 0);
        assert_eq!(effective_priority(&closing, now, warning), 1);
    }
}
