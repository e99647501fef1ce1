//! The routing policy: a pure function from the roster and one request to a decision and its
//! reason. No actors, no IO, so every rule is unit-tested here.
//!
//! Rules, in order: an agent is eligible when online, in the conversation's team, holding every
//! skill the channel requires, under capacity (pending offers count), and not cooling down after
//! declining this conversation. Sticky routing prefers the customer's last agent when eligible.
//! Otherwise the workspace's [`PolicyKind`] picks among the eligible:
//!
//! - `least_loaded` (the default): the least loaded relative to capacity; ties go to the one
//!   given a conversation longest ago, then to the lowest id.
//! - `round_robin`: in turn, whatever the load: the one given a conversation longest ago (never
//!   first); ties by lowest id.
//! - `longest_idle`: the one whose last change (a conversation given or one finished) is
//!   oldest; ties by relative load, then lowest id.
//!
//! Every rule ends on the agent id, so that the choice is deterministic.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::time::Instant;

use serde::Serialize;

use crate::ids::{AgentId, TeamId};

/// Where an agent is, as routing sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Online,
    Away,
    Offline,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Away => "away",
            Presence::Offline => "offline",
        }
    }
}

/// One agent of the roster, as plain data.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub agent_id: AgentId,
    pub name: String,
    pub teams: Vec<TeamId>,
    pub skills: Vec<String>,
    pub presence: Presence,
    /// Conversations held plus offers pending.
    pub load: u32,
    pub capacity: u32,
    /// When the agent last received a conversation; `None` = never, the longest idle.
    pub last_assigned: Option<Instant>,
    /// When one of its conversations last ended (resolved, moved away or requeued).
    pub last_released: Option<Instant>,
}

impl Candidate {
    /// Online with a free slot: could be offered a conversation now (skills and teams aside).
    pub fn has_room(&self) -> bool {
        self.presence == Presence::Online && self.load < self.capacity
    }
}

/// What one conversation needs.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub team_id: Option<TeamId>,
    pub required_skills: Vec<String>,
    /// Agents that declined or let the offer lapse, still cooling down.
    pub excluded: HashSet<AgentId>,
    /// The customer's last agent, preferred when eligible.
    pub sticky: Option<AgentId>,
    pub policy: PolicyKind,
}

/// How the eligible agents are ranked (`routing.policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    #[default]
    LeastLoaded,
    RoundRobin,
    LongestIdle,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 3] = [
        PolicyKind::LeastLoaded,
        PolicyKind::RoundRobin,
        PolicyKind::LongestIdle,
    ];

    /// The setting's and the command line's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::LeastLoaded => "least_loaded",
            PolicyKind::RoundRobin => "round_robin",
            PolicyKind::LongestIdle => "longest_idle",
        }
    }

    fn rule(self) -> Rule {
        match self {
            PolicyKind::LeastLoaded => Rule::LeastLoaded,
            PolicyKind::RoundRobin => Rule::RoundRobin,
            PolicyKind::LongestIdle => Rule::LongestIdle,
        }
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = String;

    fn from_str(text: &str) -> Result<PolicyKind, String> {
        PolicyKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| {
                format!("unknown policy `{text}`: least_loaded, round_robin or longest_idle")
            })
    }
}

/// Why a candidate was not eligible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    NotInTeam,
    Offline,
    Away,
    MissingSkill,
    AtCapacity,
    Declined,
}

/// One candidate as the reason records it.
#[derive(Clone, Debug, Serialize)]
pub struct Considered {
    pub agent_id: AgentId,
    pub name: String,
    pub load: u32,
    pub capacity: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ineligible: Option<Ineligible>,
}

/// The rule that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Sticky,
    LeastLoaded,
    RoundRobin,
    LongestIdle,
    NoEligibleAgent,
}

/// The choice and everything needed to explain it.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub agent: Option<AgentId>,
    pub rule: Rule,
    /// Every team member considered, with load, capacity and why it was passed over.
    pub candidates: Vec<Considered>,
}

impl Decision {
    pub fn eligible_count(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.ineligible.is_none())
            .count()
    }

    /// "least loaded (1/4) of 3 eligible" and the like.
    pub fn explain(&self) -> String {
        let chosen = self
            .agent
            .and_then(|id| self.candidates.iter().find(|c| c.agent_id == id));
        match (self.rule, chosen) {
            (Rule::Sticky, Some(c)) => format!(
                "the customer's last agent ({}/{}), of {} eligible",
                c.load,
                c.capacity,
                self.eligible_count()
            ),
            (Rule::LeastLoaded, Some(c)) => format!(
                "least loaded ({}/{}) of {} eligible",
                c.load,
                c.capacity,
                self.eligible_count()
            ),
            (Rule::RoundRobin, Some(c)) => format!(
                "next in turn ({}/{}) of {} eligible",
                c.load,
                c.capacity,
                self.eligible_count()
            ),
            (Rule::LongestIdle, Some(c)) => format!(
                "longest idle ({}/{}) of {} eligible",
                c.load,
                c.capacity,
                self.eligible_count()
            ),
            _ => {
                let full = self
                    .candidates
                    .iter()
                    .filter(|c| c.ineligible == Some(Ineligible::AtCapacity))
                    .count();
                format!(
                    "no eligible agent: {} in team, {} at capacity",
                    self.candidates.len(),
                    full
                )
            }
        }
    }
}

fn ineligibility(candidate: &Candidate, request: &Request) -> Option<Ineligible> {
    if let Some(team) = request.team_id
        && !candidate.teams.contains(&team)
    {
        return Some(Ineligible::NotInTeam);
    }
    match candidate.presence {
        Presence::Offline => return Some(Ineligible::Offline),
        Presence::Away => return Some(Ineligible::Away),
        Presence::Online => {}
    }
    if !request
        .required_skills
        .iter()
        .all(|skill| candidate.skills.contains(skill))
    {
        return Some(Ineligible::MissingSkill);
    }
    if candidate.load >= candidate.capacity {
        return Some(Ineligible::AtCapacity);
    }
    if request.excluded.contains(&candidate.agent_id) {
        return Some(Ineligible::Declined);
    }
    None
}

/// Lower load relative to capacity first (compared exactly, without floats).
fn relative_load(a: &Candidate, b: &Candidate) -> Ordering {
    (u64::from(a.load) * u64::from(b.capacity)).cmp(&(u64::from(b.load) * u64::from(a.capacity)))
}

/// Earlier first; `None` (never) before any instant.
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(&y),
    }
}

/// When the agent last changed: given a conversation or done with one.
fn last_change(candidate: &Candidate) -> Option<Instant> {
    candidate.last_assigned.max(candidate.last_released)
}

/// `Less` when `a` should be chosen before `b` under `policy`.
fn better(policy: PolicyKind, a: &Candidate, b: &Candidate) -> Ordering {
    let ranked = match policy {
        PolicyKind::LeastLoaded => {
            relative_load(a, b).then_with(|| earlier(a.last_assigned, b.last_assigned))
        }
        PolicyKind::RoundRobin => earlier(a.last_assigned, b.last_assigned),
        PolicyKind::LongestIdle => {
            earlier(last_change(a), last_change(b)).then_with(|| relative_load(a, b))
        }
    };
    ranked.then_with(|| a.agent_id.cmp(&b.agent_id))
}

/// Chooses the agent for `request` from `roster`, or none, with the reason.
pub fn choose_agent(roster: &[Candidate], request: &Request) -> Decision {
    let in_team: Vec<&Candidate> = roster
        .iter()
        .filter(|c| request.team_id.is_none_or(|team| c.teams.contains(&team)))
        .collect();
    let candidates: Vec<Considered> = in_team
        .iter()
        .map(|c| Considered {
            agent_id: c.agent_id,
            name: c.name.clone(),
            load: c.load,
            capacity: c.capacity,
            ineligible: ineligibility(c, request),
        })
        .collect();
    let eligible: Vec<&Candidate> = in_team
        .iter()
        .zip(&candidates)
        .filter(|(_, considered)| considered.ineligible.is_none())
        .map(|(candidate, _)| *candidate)
        .collect();
    if let Some(sticky) = request.sticky
        && eligible.iter().any(|c| c.agent_id == sticky)
    {
        return Decision {
            agent: Some(sticky),
            rule: Rule::Sticky,
            candidates,
        };
    }
    match eligible
        .into_iter()
        .min_by(|a, b| better(request.policy, a, b))
    {
        Some(best) => Decision {
            agent: Some(best.agent_id),
            rule: request.policy.rule(),
            candidates,
        },
        None => Decision {
            agent: None,
            rule: Rule::NoEligibleAgent,
            candidates,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn agent(n: u128, load: u32, capacity: u32) -> Candidate {
        Candidate {
            agent_id: AgentId(uuid::Uuid::from_u128(n)),
            name: format!("agent {n}"),
            teams: vec![team()],
            skills: vec![],
            presence: Presence::Online,
            load,
            capacity,
            last_assigned: None,
            last_released: None,
        }
    }

    fn team() -> TeamId {
        TeamId(uuid::Uuid::from_u128(100))
    }

    fn request() -> Request {
        Request {
            team_id: Some(team()),
            ..Request::default()
        }
    }

    fn id(n: u128) -> Option<AgentId> {
        Some(AgentId(uuid::Uuid::from_u128(n)))
    }

    #[test]
    fn least_loaded_relative_to_capacity_wins() {
        // 2/8 = 25% beats 1/2 = 50%, although its raw load is higher.
        let roster = [agent(1, 1, 2), agent(2, 2, 8), agent(3, 3, 4)];
        let decision = choose_agent(&roster, &request());
        assert_eq!(decision.agent, id(2));
        assert_eq!(decision.rule, Rule::LeastLoaded);
        assert_eq!(decision.explain(), "least loaded (2/8) of 3 eligible");
    }

    #[test]
    fn ties_go_to_the_longest_idle_then_the_lowest_id() {
        let now = Instant::now();
        let mut recent = agent(1, 1, 4);
        recent.last_assigned = Some(now);
        let mut earlier = agent(2, 1, 4);
        earlier.last_assigned = Some(now - Duration::from_secs(60));
        assert_eq!(
            choose_agent(&[recent.clone(), earlier.clone()], &request()).agent,
            id(2)
        );
        let mut never = agent(3, 1, 4);
        never.last_assigned = None;
        assert_eq!(
            choose_agent(&[recent, earlier, never], &request()).agent,
            id(3)
        );
        assert_eq!(
            choose_agent(&[agent(5, 0, 2), agent(4, 0, 2)], &request()).agent,
            id(4)
        );
    }

    #[test]
    fn skills_filter_out_agents_without_every_required_skill() {
        let mut arabic = agent(1, 3, 4);
        arabic.skills = vec!["arabic".into(), "billing".into()];
        let mut partial = agent(2, 0, 4);
        partial.skills = vec!["arabic".into()];
        let request = Request {
            required_skills: vec!["arabic".into(), "billing".into()],
            ..request()
        };
        let decision = choose_agent(&[arabic, partial], &request);
        assert_eq!(decision.agent, id(1));
        assert_eq!(
            decision.candidates[1].ineligible,
            Some(Ineligible::MissingSkill)
        );
    }

    #[test]
    fn sticky_prefers_the_last_agent_only_when_eligible() {
        let roster = [agent(1, 0, 4), agent(2, 3, 4)];
        let sticky = Request {
            sticky: id(2),
            ..request()
        };
        let decision = choose_agent(&roster, &sticky);
        assert_eq!((decision.agent, decision.rule), (id(2), Rule::Sticky));
        let full = [agent(1, 0, 4), agent(2, 4, 4)];
        assert_eq!(choose_agent(&full, &sticky).agent, id(1));
    }

    #[test]
    fn full_capacity_offline_away_and_declined_agents_are_never_chosen() {
        let mut offline = agent(1, 0, 4);
        offline.presence = Presence::Offline;
        let mut away = agent(2, 0, 4);
        away.presence = Presence::Away;
        let full = agent(3, 2, 2);
        let declined = agent(4, 0, 4);
        let mut other_team = agent(5, 0, 4);
        other_team.teams = vec![TeamId(uuid::Uuid::from_u128(101))];
        let request = Request {
            excluded: [AgentId(uuid::Uuid::from_u128(4))].into(),
            ..request()
        };
        let decision = choose_agent(&[offline, away, full, declined, other_team], &request);
        assert_eq!(decision.agent, None);
        assert_eq!(decision.rule, Rule::NoEligibleAgent);
        let reasons: Vec<_> = decision.candidates.iter().map(|c| c.ineligible).collect();
        assert_eq!(
            reasons,
            vec![
                Some(Ineligible::Offline),
                Some(Ineligible::Away),
                Some(Ineligible::AtCapacity),
                Some(Ineligible::Declined)
            ],
            "agents of other teams are not even considered"
        );
        assert_eq!(
            decision.explain(),
            "no eligible agent: 4 in team, 1 at capacity"
        );
    }

    #[test]
    fn zero_capacity_is_never_eligible() {
        assert_eq!(choose_agent(&[agent(1, 0, 0)], &request()).agent, None);
    }

    fn under(policy: PolicyKind) -> Request {
        Request {
            policy,
            ..request()
        }
    }

    #[test]
    fn round_robin_takes_turns_whatever_the_load() {
        let now = Instant::now();
        let mut busy_but_next = agent(1, 3, 4);
        busy_but_next.last_assigned = Some(now - Duration::from_secs(90));
        let mut light = agent(2, 0, 4);
        light.last_assigned = Some(now);
        let roster = [busy_but_next.clone(), light.clone()];
        let decision = choose_agent(&roster, &under(PolicyKind::RoundRobin));
        assert_eq!((decision.agent, decision.rule), (id(1), Rule::RoundRobin));
        assert_eq!(decision.explain(), "next in turn (3/4) of 2 eligible");
        // Least loaded would have taken the light one.
        assert_eq!(choose_agent(&roster, &request()).agent, id(2));
        // A full agent is still skipped, its turn or not.
        let full = Candidate {
            load: 4,
            ..busy_but_next
        };
        assert_eq!(
            choose_agent(&[full, light], &under(PolicyKind::RoundRobin)).agent,
            id(2)
        );
    }

    #[test]
    fn round_robin_cycles_through_every_agent_once_before_repeating() {
        let start = Instant::now();
        let mut roster: Vec<Candidate> = (1..=3).map(|n| agent(n, 0, 10)).collect();
        let mut order = Vec::new();
        for turn in 0..6u64 {
            let chosen = choose_agent(&roster, &under(PolicyKind::RoundRobin))
                .agent
                .unwrap();
            order.push(chosen.0.as_u128());
            let given = roster.iter_mut().find(|c| c.agent_id == chosen).unwrap();
            given.load += 1;
            given.last_assigned = Some(start + Duration::from_secs(turn));
        }
        assert_eq!(order, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn longest_idle_counts_a_finished_conversation_as_activity() {
        let now = Instant::now();
        // Given its last conversation long ago, but finished one a moment ago.
        let mut just_finished = agent(1, 0, 4);
        just_finished.last_assigned = Some(now - Duration::from_secs(600));
        just_finished.last_released = Some(now);
        let mut quiet = agent(2, 1, 4);
        quiet.last_assigned = Some(now - Duration::from_secs(300));
        let roster = [just_finished, quiet];
        let decision = choose_agent(&roster, &under(PolicyKind::LongestIdle));
        assert_eq!((decision.agent, decision.rule), (id(2), Rule::LongestIdle));
        assert_eq!(decision.explain(), "longest idle (1/4) of 2 eligible");
        // Round robin only looks at what was given: agent 1's turn.
        assert_eq!(
            choose_agent(&roster, &under(PolicyKind::RoundRobin)).agent,
            id(1)
        );
        // Never active beats any activity; equal activity goes to the lighter load.
        let fresh = agent(3, 2, 4);
        assert_eq!(
            choose_agent(
                &[roster[0].clone(), roster[1].clone(), fresh],
                &under(PolicyKind::LongestIdle)
            )
            .agent,
            id(3)
        );
        assert_eq!(
            choose_agent(
                &[agent(4, 2, 4), agent(5, 1, 4)],
                &under(PolicyKind::LongestIdle)
            )
            .agent,
            id(5)
        );
    }

    #[test]
    fn sticky_and_eligibility_hold_under_every_policy() {
        for policy in PolicyKind::ALL {
            let mut offline = agent(1, 0, 4);
            offline.presence = Presence::Offline;
            let roster = [offline, agent(2, 3, 4), agent(3, 4, 4), agent(4, 0, 4)];
            let sticky = Request {
                sticky: id(2),
                ..under(policy)
            };
            assert_eq!(
                choose_agent(&roster, &sticky).rule,
                Rule::Sticky,
                "{policy:?}"
            );
            let chosen = choose_agent(&roster, &under(policy)).agent;
            assert!(
                chosen == id(2) || chosen == id(4),
                "{policy:?} chose {chosen:?}: offline and full agents are never chosen"
            );
        }
    }

    #[test]
    fn policy_names_round_trip() {
        for policy in PolicyKind::ALL {
            assert_eq!(policy.as_str().parse::<PolicyKind>(), Ok(policy));
            assert_eq!(
                serde_json::to_value(policy).unwrap(),
                serde_json::json!(policy.as_str())
            );
        }
        assert!("fastest".parse::<PolicyKind>().is_err());
    }
}
