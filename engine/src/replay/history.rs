//! What a range of the audit history says happened, as plain data: each conversation cycle that
//! began in the range (its queue entries, the offers and how they ended, how long its agent
//! held it) and each agent's presence and capacity over time. Read with SELECTs only.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;

use crate::audit::AuditKind;
use crate::ids::{AgentId, ConversationId, TeamId, WorkspaceId};
use crate::routing::policy::{Candidate, Presence};
use crate::store::entity::{agent, audit_event, conversation};

/// How an offer ended, and how long after it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted(Duration),
    Declined(Duration),
    TimedOut(Duration),
}

/// What became of a conversation when its agent's slot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Resolved (or the range ended while it was held).
    Ends,
    /// Back to the front of its queue (its agent left).
    Requeued,
    /// Into another team's queue.
    ToTeam(TeamId),
}

/// One stretch of a cycle from joining a queue to the end of the slot that served it.
#[derive(Clone, Debug)]
pub struct Segment {
    /// When it joined the queue (recorded).
    pub queued_at: DateTime<Utc>,
    pub team_id: TeamId,
    pub priority: i32,
    pub required_skills: Vec<String>,
    pub sticky: Option<AgentId>,
    /// Requeued after its agent left: it goes to the front.
    pub front: bool,
    /// The recorded offers' answers, in order (withdrawn ones left out).
    pub answers: Vec<Answer>,
    /// The recorded first offer (or assignment) and the agent that took it, with when.
    pub first_offer_at: Option<DateTime<Utc>>,
    pub assigned: Option<(DateTime<Utc>, AgentId)>,
    /// How long the slot was held once taken; `None` while still held at the history's end.
    pub held_for: Option<Duration>,
    pub then: Then,
    /// It stopped waiting without anyone taking it (resolved or moved while queued): when,
    /// and where it went.
    pub left_at: Option<(DateTime<Utc>, Then)>,
}

/// One conversation cycle.
#[derive(Clone, Debug)]
pub struct Cycle {
    pub conversation_id: ConversationId,
    /// Begun in the range (those already under way at its start only take their slots).
    pub measured: bool,
    /// Already held by this agent when the range began.
    pub held_at_start: Option<AgentId>,
    pub segments: Vec<Segment>,
}

impl Cycle {
    pub fn arrival(&self) -> Option<DateTime<Utc>> {
        self.segments.first().map(|s| s.queued_at)
    }
}

/// A change of an agent's presence or capacity.
#[derive(Clone, Copy, Debug)]
pub struct PresenceChange {
    pub at: DateTime<Utc>,
    pub presence: Presence,
    pub capacity: Option<u32>,
}

/// An agent as routing knew it, and its presence over the range.
#[derive(Clone, Debug)]
pub struct AgentHistory {
    /// Teams, skills and capacity as stored now; presence as at the range's start.
    pub candidate: Candidate,
    pub changes: Vec<PresenceChange>,
}

/// Everything a replay needs.
#[derive(Clone, Debug)]
pub struct History {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub agents: Vec<AgentHistory>,
    pub cycles: Vec<Cycle>,
}

const ROUTING_KINDS: [AuditKind; 13] = [
    AuditKind::Queued,
    AuditKind::Reopened,
    AuditKind::Offered,
    AuditKind::Accepted,
    AuditKind::Declined,
    AuditKind::TimedOut,
    AuditKind::Withdrawn,
    AuditKind::Assigned,
    AuditKind::Picked,
    AuditKind::Requeued,
    AuditKind::Transferred,
    AuditKind::Resolved,
    AuditKind::AutoResolved,
];

fn kind_names(kinds: &[AuditKind]) -> Vec<String> {
    kinds.iter().map(|k| k.name().into_owned()).collect()
}

/// Reads the history of `workspace_id` for cycles begun in `[from, to)`: their events up to
/// the latest recorded (a cycle begun in the range may end after it), and every agent's
/// presence from its last change before `from`.
pub async fn load(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<History, DbErr> {
    let workspace = workspace_id.to_string();
    let events = audit_event::Entity::find()
        .filter(audit_event::Column::WorkspaceId.eq(workspace.clone()))
        .filter(audit_event::Column::Kind.is_in(kind_names(&ROUTING_KINDS)))
        .filter(audit_event::Column::CreatedAt.gte(from))
        .order_by_asc(audit_event::Column::CreatedAt)
        .order_by_asc(audit_event::Column::Id)
        .all(db)
        .await?;
    let presence = audit_event::Entity::find()
        .filter(audit_event::Column::WorkspaceId.eq(workspace.clone()))
        .filter(audit_event::Column::Kind.eq(AuditKind::Presence.name().into_owned()))
        .order_by_asc(audit_event::Column::CreatedAt)
        .order_by_asc(audit_event::Column::Id)
        .all(db)
        .await?;
    let mut by_conversation: HashMap<ConversationId, Vec<audit_event::Model>> = HashMap::new();
    for event in events {
        if let Some(id) = event.conversation_id {
            by_conversation.entry(id).or_default().push(event);
        }
    }
    // Conversations with nothing in the range play no part.
    by_conversation.retain(|_, events| events.first().is_some_and(|e| e.created_at < to));
    let rows: HashMap<ConversationId, conversation::Model> = conversation::Entity::find()
        .filter(conversation::Column::WorkspaceId.eq(workspace.clone()))
        .filter(conversation::Column::Id.is_in(by_conversation.keys().cloned()))
        .all(db)
        .await?
        .into_iter()
        .map(|row| (row.id, row))
        .collect();
    let mut ids: Vec<ConversationId> = by_conversation.keys().copied().collect();
    ids.sort();
    let mut cycles = Vec::new();
    for conversation_id in ids {
        let Some(events) = by_conversation.get(&conversation_id) else {
            continue;
        };
        let fallback = rows
            .get(&conversation_id)
            .map(|row| (row.team_id, row.priority));
        cycles.extend(cycles_of(conversation_id, events, fallback, from, to));
    }
    cycles.sort_by_key(|c| (c.arrival(), c.conversation_id));

    let agents = agent::Entity::find()
        .filter(agent::Column::WorkspaceId.eq(workspace))
        .order_by_asc(agent::Column::Id)
        .all(db)
        .await?;
    let mut histories = Vec::with_capacity(agents.len());
    for row in agents {
        let mut candidate = crate::routing::store::candidate_of(db, row).await?;
        candidate.load = 0;
        candidate.presence = Presence::Offline;
        let own: Vec<PresenceChange> = presence
            .iter()
            .filter(|e| e.agent_id == Some(candidate.agent_id))
            .filter_map(presence_change)
            .collect();
        let (before, during): (Vec<_>, Vec<_>) = own.into_iter().partition(|c| c.at < from);
        if let Some(last) = before.last() {
            candidate.presence = last.presence;
            if let Some(capacity) = last.capacity {
                candidate.capacity = capacity;
            }
        } else if during.is_empty() && cycles.iter().any(|c| served_by(c, candidate.agent_id)) {
            // A history from before presence was recorded: whoever served is taken to have
            // been online throughout.
            candidate.presence = Presence::Online;
        }
        histories.push(AgentHistory {
            candidate,
            changes: during,
        });
    }
    Ok(History {
        from,
        to,
        agents: histories,
        cycles,
    })
}

fn served_by(cycle: &Cycle, agent_id: AgentId) -> bool {
    cycle.held_at_start == Some(agent_id)
        || cycle
            .segments
            .iter()
            .any(|s| s.assigned.is_some_and(|(_, a)| a == agent_id))
}

fn presence_change(event: &audit_event::Model) -> Option<PresenceChange> {
    let reason = event.reason.as_ref()?;
    let presence = match reason.get("presence")?.as_str()? {
        "online" => Presence::Online,
        "away" => Presence::Away,
        _ => Presence::Offline,
    };
    Some(PresenceChange {
        at: event.created_at,
        presence,
        capacity: reason
            .get("capacity")
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok()),
    })
}

/// The queue request a queued or reopened event records, or the conversation row's.
fn requested(
    reason: Option<&Value>,
    previous: Option<&Segment>,
    row: Option<(TeamId, i32)>,
) -> Option<(TeamId, i32, Vec<String>, Option<AgentId>)> {
    let field = |name: &str| reason.and_then(|r| r.get(name));
    let team_id = field("team_id")
        .and_then(Value::as_str)
        .and_then(TeamId::parse)
        .or_else(|| previous.map(|s| s.team_id))
        .or(row.map(|(team, _)| team))?;
    let priority = field("priority")
        .and_then(Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .or_else(|| previous.map(|s| s.priority))
        .or(row.map(|(_, priority)| priority))
        .unwrap_or_default();
    let required_skills = field("required_skills")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .or_else(|| previous.map(|s| s.required_skills.clone()))
        .unwrap_or_default();
    let sticky = field("sticky")
        .and_then(Value::as_str)
        .and_then(AgentId::parse)
        .or_else(|| previous.and_then(|s| s.sticky));
    Some((team_id, priority, required_skills, sticky))
}

/// Where one conversation's events stand while they are read.
struct Reading {
    cycle: Option<Cycle>,
    /// The open offer: when it was made.
    offered_at: Option<DateTime<Utc>>,
    /// The slot's holder and since when, while held.
    held: Option<(DateTime<Utc>, AgentId)>,
}

fn new_segment(
    at: DateTime<Utc>,
    front: bool,
    request: (TeamId, i32, Vec<String>, Option<AgentId>),
) -> Segment {
    let (team_id, priority, required_skills, sticky) = request;
    Segment {
        queued_at: at,
        team_id,
        priority,
        required_skills,
        sticky,
        front,
        answers: Vec::new(),
        first_offer_at: None,
        assigned: None,
        held_for: None,
        then: Then::Ends,
        left_at: None,
    }
}

/// Splits one conversation's events into cycles.
fn cycles_of(
    conversation_id: ConversationId,
    events: &[audit_event::Model],
    row: Option<(TeamId, i32)>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Cycle> {
    let mut done = Vec::new();
    let mut reading = Reading {
        cycle: None,
        offered_at: None,
        held: None,
    };
    for event in events {
        let Some(kind) = ROUTING_KINDS
            .iter()
            .find(|k| k.name() == event.kind.as_str())
            .copied()
        else {
            continue;
        };
        let at = event.created_at;
        let agent = event.agent_id;
        let reason = event.reason.as_ref();
        let starts = matches!(kind, AuditKind::Queued | AuditKind::Reopened);
        if reading.cycle.is_none() {
            if starts {
                if at >= to {
                    break;
                }
                if let Some(request) = requested(reason, None, row) {
                    reading.cycle = Some(Cycle {
                        conversation_id,
                        measured: true,
                        held_at_start: None,
                        segments: vec![new_segment(at, false, request)],
                    });
                }
                continue;
            }
            // Under way when the range began: waiting, offered or held since before it.
            let Some(request) = requested(None, None, row) else {
                continue;
            };
            let mut segment = new_segment(from, false, request);
            let held_by = match kind {
                AuditKind::Resolved
                | AuditKind::AutoResolved
                | AuditKind::Requeued
                | AuditKind::Transferred => agent,
                _ => None,
            };
            if let Some(holder) = held_by {
                segment.assigned = Some((from, holder));
                reading.held = Some((from, holder));
            }
            reading.cycle = Some(Cycle {
                conversation_id,
                measured: false,
                held_at_start: held_by,
                segments: vec![segment],
            });
        }
        let Some(cycle) = reading.cycle.as_mut() else {
            continue;
        };
        let last = cycle.segments.len() - 1;
        let segment = &mut cycle.segments[last];
        match kind {
            // A restart queues a waiting conversation again: the same wait goes on.
            AuditKind::Queued | AuditKind::Reopened => {}
            AuditKind::Offered => {
                reading.offered_at = Some(at);
                segment.first_offer_at.get_or_insert(at);
            }
            AuditKind::Declined | AuditKind::TimedOut => {
                if let Some(offered) = reading.offered_at.take() {
                    let after = (at - offered).to_std().unwrap_or_default();
                    segment.answers.push(match kind {
                        AuditKind::Declined => Answer::Declined(after),
                        _ => Answer::TimedOut(after),
                    });
                }
            }
            AuditKind::Withdrawn => reading.offered_at = None,
            AuditKind::Accepted | AuditKind::Assigned | AuditKind::Picked => {
                let Some(agent) = agent else { continue };
                let after = reading
                    .offered_at
                    .take()
                    .map(|offered| (at - offered).to_std().unwrap_or_default())
                    .unwrap_or_default();
                segment.answers.push(Answer::Accepted(after));
                segment.first_offer_at.get_or_insert(at);
                if segment.assigned.is_none() {
                    segment.assigned = Some((at, agent));
                }
                reading.held.get_or_insert((at, agent));
            }
            AuditKind::Requeued | AuditKind::Transferred => {
                let to_team = reason
                    .and_then(|r| r.get("to_team_id"))
                    .and_then(Value::as_str)
                    .and_then(TeamId::parse);
                let then = match (kind, to_team) {
                    (AuditKind::Requeued, _) => Then::Requeued,
                    (_, Some(team)) => Then::ToTeam(team),
                    // From one agent to another: the slot goes on (the replay keeps its agent).
                    (_, None) => continue,
                };
                let next_team = match then {
                    Then::ToTeam(team) => team,
                    _ => segment.team_id,
                };
                let request = (
                    next_team,
                    segment.priority,
                    segment.required_skills.clone(),
                    segment.sticky,
                );
                match reading.held.take() {
                    Some((since, _)) => {
                        segment.held_for = Some((at - since).to_std().unwrap_or_default());
                        segment.then = then;
                    }
                    None => segment.left_at = Some((at, then)),
                }
                reading.offered_at = None;
                let front = then == Then::Requeued;
                if segment.left_at.is_none() {
                    cycle.segments.push(new_segment(at, front, request));
                } else if let Then::ToTeam(team) = then {
                    // Moved while waiting: the wait goes on in the other team.
                    segment.team_id = team;
                    segment.left_at = None;
                }
            }
            AuditKind::Resolved | AuditKind::AutoResolved => {
                match reading.held.take() {
                    Some((since, _)) => {
                        segment.held_for = Some((at - since).to_std().unwrap_or_default());
                        segment.then = Then::Ends;
                    }
                    None => segment.left_at = Some((at, Then::Ends)),
                }
                reading.offered_at = None;
                if let Some(cycle) = reading.cycle.take() {
                    done.push(cycle);
                }
            }
            _ => {}
        }
    }
    done.extend(reading.cycle.take());
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        seconds: i64,
        kind: AuditKind,
        agent: Option<AgentId>,
        reason: Option<Value>,
    ) -> audit_event::Model {
        audit_event::Model {
            id: seconds,
            workspace_id: None,
            conversation_id: None,
            agent_id: agent,
            kind: kind.name().into_owned(),
            reason,
            text: String::new(),
            created_at: start() + chrono::Duration::seconds(seconds),
        }
    }

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("a date")
    }

    #[test]
    fn a_cycle_keeps_its_offers_answers_holds_and_requeues() {
        let team = TeamId::new();
        let other = TeamId::new();
        let (a, b) = (AgentId::new(), AgentId::new());
        let queued = serde_json::json!({"team_id": team, "priority": 2, "required_skills": ["fr"]});
        let events = [
            event(10, AuditKind::Queued, None, Some(queued.clone())),
            event(12, AuditKind::Offered, Some(a), None),
            event(15, AuditKind::Declined, Some(a), None),
            event(16, AuditKind::Offered, Some(b), None),
            event(17, AuditKind::Accepted, Some(b), None),
            event(40, AuditKind::Requeued, Some(b), None),
            event(41, AuditKind::Assigned, Some(a), None),
            event(
                50,
                AuditKind::Transferred,
                Some(a),
                Some(serde_json::json!({"to_team_id": other})),
            ),
            event(60, AuditKind::Picked, Some(b), None),
            event(90, AuditKind::Resolved, Some(b), None),
            // A second cycle, begun after the range: not read.
            event(4000, AuditKind::Reopened, None, Some(queued)),
        ];
        let id = ConversationId::new();
        let end = start() + chrono::Duration::hours(1);
        let cycles = cycles_of(id, &events, None, start(), end);
        assert_eq!(cycles.len(), 1);
        let cycle = &cycles[0];
        assert!(cycle.measured);
        let [first, second, third] = &cycle.segments[..] else {
            panic!("three segments: {:?}", cycle.segments)
        };
        assert_eq!(first.team_id, team);
        assert_eq!(first.priority, 2);
        assert_eq!(first.required_skills, vec!["fr".to_owned()]);
        assert_eq!(
            first.answers,
            vec![
                Answer::Declined(Duration::from_secs(3)),
                Answer::Accepted(Duration::from_secs(1))
            ]
        );
        assert_eq!(
            first.first_offer_at,
            Some(start() + chrono::Duration::seconds(12))
        );
        assert_eq!(first.assigned.map(|(_, agent)| agent), Some(b));
        assert_eq!(first.held_for, Some(Duration::from_secs(23)));
        assert_eq!(first.then, Then::Requeued);
        assert!(second.front);
        assert_eq!(second.answers, vec![Answer::Accepted(Duration::ZERO)]);
        assert_eq!(second.held_for, Some(Duration::from_secs(9)));
        assert_eq!(second.then, Then::ToTeam(other));
        assert_eq!(third.team_id, other);
        assert!(!third.front);
        assert_eq!(third.held_for, Some(Duration::from_secs(30)));
        assert_eq!(third.then, Then::Ends);
    }

    #[test]
    fn a_conversation_held_when_the_range_begins_only_takes_its_slot() {
        let agent = AgentId::new();
        let row = (TeamId::new(), 0);
        let events = [event(30, AuditKind::Resolved, Some(agent), None)];
        let cycles = cycles_of(
            ConversationId::new(),
            &events,
            Some(row),
            start(),
            start() + chrono::Duration::hours(1),
        );
        assert_eq!(cycles.len(), 1);
        assert!(!cycles[0].measured);
        assert_eq!(cycles[0].held_at_start, Some(agent));
        assert_eq!(
            cycles[0].segments[0].held_for,
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_conversation_resolved_while_it_waited_leaves_the_queue() {
        let team = TeamId::new();
        let events = [
            event(
                5,
                AuditKind::Queued,
                None,
                Some(serde_json::json!({"team_id": team})),
            ),
            // A restart queues it again: the same wait.
            event(
                8,
                AuditKind::Queued,
                None,
                Some(serde_json::json!({"team_id": team})),
            ),
            event(20, AuditKind::Resolved, None, None),
        ];
        let cycles = cycles_of(
            ConversationId::new(),
            &events,
            None,
            start(),
            start() + chrono::Duration::hours(1),
        );
        assert_eq!(cycles.len(), 1);
        let segment = &cycles[0].segments[0];
        assert_eq!(segment.queued_at, start() + chrono::Duration::seconds(5));
        assert_eq!(
            segment.left_at,
            Some((start() + chrono::Duration::seconds(20), Then::Ends))
        );
        assert!(segment.assigned.is_none());
    }
}
