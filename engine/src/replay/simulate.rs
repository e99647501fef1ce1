//! The recorded history run again on a simulated clock, through the same queue order and
//! `choose_agent` the supervisor uses ([`dispatch`]): arrivals come when they came, agents go
//! online, away and offline when they did, each offer gets the answer the conversation's offer
//! of the same rank got (after as long), and each conversation holds its agent as long as it
//! held the recorded one. What changes is who is offered what, and when.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ids::{AgentId, ConversationId, TeamId};
use crate::replay::history::{Answer, Cycle, History, Then};
use crate::routing::dispatch::{Clock, Dispatched, Rules, Waiting, dispatch};
use crate::routing::policy::{Candidate, PolicyKind, Presence};

/// What is changed for the replay.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub policy: PolicyKind,
    pub sticky: bool,
    /// Added to every agent's capacity (at least 0).
    pub capacity_delta: i32,
    /// Agents added (online throughout, in every team, at the median capacity) or, below 0,
    /// taken away (those last by id among the ones that were ever online).
    pub agents_delta: i32,
    pub decline_cooldown: Duration,
    pub window_warning: chrono::Duration,
}

/// How one cycle went.
#[derive(Clone, Copy, Debug, Default)]
pub struct Served {
    pub measured: bool,
    pub arrival: Option<DateTime<Utc>>,
    pub first_offer: Option<Duration>,
    /// From arrival to the first assignment.
    pub queue_wait: Option<Duration>,
}

/// One agent's share.
#[derive(Clone, Debug)]
pub struct Share {
    pub agent_id: AgentId,
    pub name: String,
    /// Conversations it was given (assignments, including requeued ones given again).
    pub assigned: u32,
    /// Its load (conversations held and offers pending) averaged over the range.
    pub mean_load: f64,
    pub peak_load: u32,
}

/// How a run (recorded or replayed) went.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub cycles: Vec<Served>,
    pub agents: Vec<Share>,
    /// The queue's length after each change, for the plots.
    pub queue_length: Vec<(DateTime<Utc>, usize)>,
    /// Cycles still waiting when nothing more could happen.
    pub never_assigned: usize,
}

/// Integrates each agent's load over the range (what happens after its end is not counted).
struct Loads {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Per agent: current load, since when, the integral in load·seconds, the peak, assigned.
    by_agent: HashMap<AgentId, (u32, DateTime<Utc>, f64, u32, u32)>,
}

impl Loads {
    fn new(history: &History) -> Loads {
        Loads {
            from: history.from,
            to: history.to,
            by_agent: HashMap::new(),
        }
    }

    fn change(&mut self, agent: AgentId, at: DateTime<Utc>, delta: i32) {
        let at = at.clamp(self.from, self.to);
        let entry = self
            .by_agent
            .entry(agent)
            .or_insert((0, self.from, 0.0, 0, 0));
        let seconds = (at - entry.1).num_microseconds().unwrap_or_default().max(0) as f64 / 1e6;
        entry.2 += f64::from(entry.0) * seconds;
        entry.1 = at;
        entry.0 = entry.0.saturating_add_signed(delta);
        entry.3 = entry.3.max(entry.0);
    }

    fn assigned(&mut self, agent: AgentId) {
        self.by_agent
            .entry(agent)
            .or_insert((0, self.from, 0.0, 0, 0))
            .4 += 1;
    }

    fn shares(mut self, names: &HashMap<AgentId, String>) -> Vec<Share> {
        let span =
            ((self.to - self.from).num_microseconds().unwrap_or_default() as f64 / 1e6).max(1e-6);
        let agents: Vec<AgentId> = self.by_agent.keys().copied().collect();
        for agent in agents {
            self.change(agent, self.to, 0);
        }
        let mut shares: Vec<Share> = self
            .by_agent
            .into_iter()
            .map(|(agent_id, (_, _, integral, peak, assigned))| Share {
                agent_id,
                name: names.get(&agent_id).cloned().unwrap_or_default(),
                assigned,
                mean_load: integral / span,
                peak_load: peak,
            })
            .collect();
        shares.sort_by_key(|s| s.agent_id);
        shares
    }
}

/// The recorded run, read straight from the history.
pub fn recorded(history: &History) -> Run {
    let mut loads = Loads::new(history);
    let mut changes: Vec<(DateTime<Utc>, AgentId, i32)> = Vec::new();
    let mut queue: Vec<(DateTime<Utc>, i32)> = Vec::new();
    let mut cycles = Vec::with_capacity(history.cycles.len());
    let mut never_assigned = 0;
    for cycle in &history.cycles {
        let arrival = cycle.arrival();
        let first = cycle.segments.first();
        let since = |at: Option<DateTime<Utc>>| {
            at.zip(arrival)
                .map(|(at, arrival)| (at - arrival).to_std().unwrap_or_default())
        };
        let assigned = first.and_then(|s| s.assigned).map(|(at, _)| at);
        if cycle.measured && assigned.is_none() {
            never_assigned += 1;
        }
        cycles.push(Served {
            measured: cycle.measured,
            arrival,
            first_offer: since(first.and_then(|s| s.first_offer_at)),
            queue_wait: since(assigned),
        });
        for segment in &cycle.segments {
            // The slot was taken when the offer that was accepted was made (a pending offer
            // counts as load, as in routing), and the queue left then.
            let taken = segment.assigned.map(|(at, agent)| {
                let waited = segment.answers.iter().rev().find_map(|a| match a {
                    Answer::Accepted(after) => Some(*after),
                    _ => None,
                });
                (
                    at - chrono::Duration::from_std(waited.unwrap_or_default()).unwrap_or_default(),
                    at,
                    agent,
                )
            });
            queue.push((segment.queued_at.max(history.from), 1));
            let left = taken
                .map(|(offered, _, _)| offered)
                .or(segment.left_at.map(|(at, _)| at));
            if let Some(left) = left {
                queue.push((left, -1));
            }
            if let Some((offered, at, agent)) = taken {
                loads.assigned(agent);
                changes.push((offered, agent, 1));
                if let Some(held) = segment.held_for {
                    changes.push((
                        at + chrono::Duration::from_std(held).unwrap_or_default(),
                        agent,
                        -1,
                    ));
                }
            }
        }
    }
    changes.sort_by_key(|(at, agent, delta)| (*at, *delta, *agent));
    for (at, agent, delta) in changes {
        loads.change(agent, at, delta);
    }
    queue.sort();
    let mut length = 0usize;
    let queue_length = queue
        .into_iter()
        .map(|(at, delta)| {
            length = length.saturating_add_signed(delta as isize);
            (at, length)
        })
        .collect();
    Run {
        cycles,
        agents: loads.shares(&names(history)),
        queue_length,
        never_assigned,
    }
}

fn names(history: &History) -> HashMap<AgentId, String> {
    history
        .agents
        .iter()
        .map(|a| (a.candidate.agent_id, a.candidate.name.clone()))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A cycle's segment joins its queue.
    Arrive { cycle: usize, segment: usize },
    /// Agent `agent` (roster index) changes presence to `change` of its history.
    Presence { agent: usize, change: usize },
    /// The offer ends with the answer it was given.
    Answered { cycle: usize, agent: usize },
    /// The slot's hold ends.
    Released { cycle: usize, agent: usize },
    /// A waiting segment stops waiting (resolved or moved while queued).
    Leaves { cycle: usize, segment: usize },
    /// A cool-down ended: look at the queue again.
    Wake,
}

/// Where a cycle is in the replay.
#[derive(Clone, Debug, Default)]
struct Progress {
    segment: usize,
    /// Offers made in this segment (the answer of the same rank applies).
    offers: usize,
    answer: Option<Answer>,
    served: Served,
    waiting: bool,
    excluded: HashMap<AgentId, Instant>,
}

/// The synthetic id a cycle has in the replay's queue (a conversation may have several cycles).
fn queue_id(cycle: usize) -> ConversationId {
    ConversationId(Uuid::from_u128(cycle as u128 + 1))
}

fn cycle_of(id: ConversationId) -> usize {
    (id.0.as_u128() as usize).saturating_sub(1)
}

/// The history replayed under `setup`.
pub fn replay(history: &History, setup: &Setup) -> Run {
    Simulation::new(history, setup).run()
}

struct Simulation<'a> {
    history: &'a History,
    setup: &'a Setup,
    base: Instant,
    roster: Vec<Candidate>,
    /// Roster index of each history agent (`None`: taken away by `agents_delta`).
    index_of: Vec<Option<usize>>,
    queue: Vec<Waiting>,
    progress: Vec<Progress>,
    events: BinaryHeap<Reverse<(DateTime<Utc>, u64, Event)>>,
    sequence: u64,
    loads: Loads,
    queue_length: Vec<(DateTime<Utc>, usize)>,
}

impl<'a> Simulation<'a> {
    fn new(history: &'a History, setup: &'a Setup) -> Self {
        let adjust = |capacity: u32| capacity.saturating_add_signed(setup.capacity_delta);
        let mut removed: Vec<usize> = Vec::new();
        if setup.agents_delta < 0 {
            let mut ever_online: Vec<usize> = (0..history.agents.len())
                .filter(|i| {
                    let agent = &history.agents[*i];
                    agent.candidate.presence == Presence::Online
                        || agent.changes.iter().any(|c| c.presence == Presence::Online)
                })
                .collect();
            ever_online.sort_by_key(|i| Reverse(history.agents[*i].candidate.agent_id));
            removed = ever_online
                .into_iter()
                .take(setup.agents_delta.unsigned_abs() as usize)
                .collect();
        }
        let mut roster = Vec::new();
        let mut index_of = Vec::with_capacity(history.agents.len());
        for (i, agent) in history.agents.iter().enumerate() {
            if removed.contains(&i) {
                index_of.push(None);
                continue;
            }
            let mut candidate = agent.candidate.clone();
            candidate.capacity = adjust(candidate.capacity);
            index_of.push(Some(roster.len()));
            roster.push(candidate);
        }
        if setup.agents_delta > 0 {
            let mut teams: Vec<TeamId> = history
                .agents
                .iter()
                .flat_map(|a| a.candidate.teams.iter().copied())
                .chain(
                    history
                        .cycles
                        .iter()
                        .flat_map(|c| c.segments.iter().map(|s| s.team_id)),
                )
                .collect();
            teams.sort();
            teams.dedup();
            let mut capacities: Vec<u32> = history
                .agents
                .iter()
                .map(|a| a.candidate.capacity)
                .collect();
            capacities.sort_unstable();
            let capacity = capacities.get(capacities.len() / 2).copied().unwrap_or(1);
            for n in 0..setup.agents_delta {
                roster.push(Candidate {
                    agent_id: AgentId(Uuid::from_u128(u128::MAX - n as u128)),
                    name: format!("added agent {}", n + 1),
                    teams: teams.clone(),
                    skills: history
                        .cycles
                        .iter()
                        .flat_map(|c| c.segments.iter().flat_map(|s| s.required_skills.clone()))
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                    presence: Presence::Online,
                    load: 0,
                    capacity: adjust(capacity),
                    last_assigned: None,
                    last_released: None,
                });
            }
        }
        Self {
            history,
            setup,
            base: Instant::now(),
            roster,
            index_of,
            queue: Vec::new(),
            progress: vec![Progress::default(); history.cycles.len()],
            events: BinaryHeap::new(),
            sequence: 0,
            loads: Loads::new(history),
            queue_length: Vec::new(),
        }
    }

    fn at(&mut self, when: DateTime<Utc>, event: Event) {
        self.sequence += 1;
        self.events.push(Reverse((when, self.sequence, event)));
    }

    fn instant(&self, when: DateTime<Utc>) -> Instant {
        self.base + (when - self.history.from).to_std().unwrap_or_default()
    }

    fn later(when: DateTime<Utc>, after: Duration) -> DateTime<Utc> {
        when + chrono::Duration::from_std(after).unwrap_or_default()
    }

    fn run(mut self) -> Run {
        let history = self.history;
        for (index, cycle) in history.cycles.iter().enumerate() {
            self.progress[index].served = Served {
                measured: cycle.measured,
                arrival: cycle.arrival(),
                ..Served::default()
            };
            match cycle.held_at_start {
                Some(holder) => self.hold_from_start(index, cycle, holder),
                None => {
                    if let Some(first) = cycle.segments.first() {
                        self.at(
                            first.queued_at,
                            Event::Arrive {
                                cycle: index,
                                segment: 0,
                            },
                        );
                    }
                }
            }
        }
        for (agent, entry) in history.agents.iter().enumerate() {
            for (change, presence) in entry.changes.iter().enumerate() {
                self.at(presence.at, Event::Presence { agent, change });
            }
        }
        while let Some(Reverse((when, _, event))) = self.events.pop() {
            self.apply(when, event);
            // Everything at one instant happens before the round that follows it.
            if self
                .events
                .peek()
                .is_none_or(|Reverse((next, _, _))| *next > when)
            {
                self.round(when);
            }
        }
        let never_assigned = self
            .progress
            .iter()
            .filter(|p| p.served.measured && p.served.queue_wait.is_none())
            .count();
        let names = self
            .roster
            .iter()
            .map(|c| (c.agent_id, c.name.clone()))
            .collect();
        Run {
            cycles: self.progress.iter().map(|p| p.served).collect(),
            agents: self.loads.shares(&names),
            queue_length: self.queue_length,
            never_assigned,
        }
    }

    /// A cycle already held when the range began keeps its agent for the time it held it.
    fn hold_from_start(&mut self, index: usize, cycle: &Cycle, holder: AgentId) {
        let Some(agent) = self.roster.iter().position(|c| c.agent_id == holder) else {
            return;
        };
        let from = self.history.from;
        self.roster[agent].load += 1;
        self.loads.change(holder, from, 1);
        self.progress[index].waiting = false;
        if let Some(held) = cycle.segments.first().and_then(|s| s.held_for) {
            self.at(
                Self::later(from, held),
                Event::Released {
                    cycle: index,
                    agent,
                },
            );
        }
    }

    fn waiting_of(&self, index: usize) -> Option<Waiting> {
        let cycle = &self.history.cycles[index];
        let progress = &self.progress[index];
        let segment = cycle.segments.get(progress.segment)?;
        Some(Waiting {
            conversation_id: queue_id(index),
            team_id: segment.team_id,
            since: cycle.arrival().unwrap_or(segment.queued_at),
            priority: segment.priority,
            front: segment.front,
            window_expires_at: None,
            required_skills: segment.required_skills.clone(),
            excluded: progress.excluded.clone(),
            sticky: segment.sticky,
            first_response_due: None,
            offer_hours: None,
        })
    }

    fn enqueue(&mut self, index: usize, when: DateTime<Utc>) {
        let Some(waiting) = self.waiting_of(index) else {
            return;
        };
        self.progress[index].waiting = true;
        self.queue
            .retain(|w| w.conversation_id != waiting.conversation_id);
        self.queue.push(waiting);
        self.queue_length.push((when, self.queue.len()));
    }

    fn release(&mut self, agent: usize, when: DateTime<Utc>) {
        let now = self.instant(when);
        let candidate = &mut self.roster[agent];
        candidate.load = candidate.load.saturating_sub(1);
        candidate.last_released = Some(now);
        let id = candidate.agent_id;
        self.loads.change(id, when, -1);
    }

    fn apply(&mut self, when: DateTime<Utc>, event: Event) {
        let history = self.history;
        match event {
            Event::Arrive { cycle, segment } => {
                self.progress[cycle].segment = segment;
                self.progress[cycle].offers = 0;
                self.enqueue(cycle, when);
                if let Some((left, _)) = history.cycles[cycle].segments[segment].left_at {
                    self.at(left.max(when), Event::Leaves { cycle, segment });
                }
            }
            Event::Leaves { cycle, segment } => {
                let progress = &mut self.progress[cycle];
                if progress.waiting && progress.segment == segment {
                    progress.waiting = false;
                    let id = queue_id(cycle);
                    self.queue.retain(|w| w.conversation_id != id);
                    self.queue_length.push((when, self.queue.len()));
                }
            }
            Event::Presence { agent, change } => {
                let Some(index) = self.index_of[agent] else {
                    return;
                };
                let recorded = history.agents[agent].changes[change];
                let candidate = &mut self.roster[index];
                candidate.presence = recorded.presence;
                if let Some(capacity) = recorded.capacity {
                    candidate.capacity = capacity.saturating_add_signed(self.setup.capacity_delta);
                }
            }
            Event::Answered { cycle, agent } => {
                let answer = self.progress[cycle].answer.take();
                match answer {
                    Some(Answer::Declined(_)) | Some(Answer::TimedOut(_)) => {
                        self.release(agent, when);
                        let until = self.instant(when) + self.setup.decline_cooldown;
                        let id = self.roster[agent].agent_id;
                        self.progress[cycle].excluded.insert(id, until);
                        self.enqueue(cycle, when);
                        self.at(Self::later(when, self.setup.decline_cooldown), Event::Wake);
                    }
                    _ => self.assigned(cycle, agent, when),
                }
            }
            Event::Released { cycle, agent } => {
                self.release(agent, when);
                let progress = &self.progress[cycle];
                let segments = &history.cycles[cycle].segments;
                let then = segments
                    .get(progress.segment)
                    .map_or(Then::Ends, |s| s.then);
                if then != Then::Ends && progress.segment + 1 < segments.len() {
                    self.at(
                        when,
                        Event::Arrive {
                            cycle,
                            segment: progress.segment + 1,
                        },
                    );
                }
            }
            Event::Wake => {}
        }
    }

    fn assigned(&mut self, cycle: usize, agent: usize, when: DateTime<Utc>) {
        let history = self.history;
        let id = self.roster[agent].agent_id;
        self.loads.assigned(id);
        let progress = &mut self.progress[cycle];
        if progress.served.queue_wait.is_none() {
            progress.served.queue_wait = progress
                .served
                .arrival
                .map(|arrival| (when - arrival).to_std().unwrap_or_default());
        }
        let held = history.cycles[cycle]
            .segments
            .get(progress.segment)
            .and_then(|s| s.held_for);
        if let Some(held) = held {
            self.at(Self::later(when, held), Event::Released { cycle, agent });
        }
    }

    /// The supervisor's round, at `when` on the simulated clock.
    fn round(&mut self, when: DateTime<Utc>) {
        let history = self.history;
        let clock = Clock {
            now: self.instant(when),
            wall: when,
        };
        let rules = Rules {
            policy: self.setup.policy,
            sticky: self.setup.sticky,
            window_warning: self.setup.window_warning,
        };
        let before = self.queue.len();
        let round = dispatch(&mut self.queue, &mut self.roster, clock, rules, |_| {});
        for Dispatched {
            waiting, agent_id, ..
        } in round.offers
        {
            let cycle = cycle_of(waiting.conversation_id);
            let Some(agent) = self.roster.iter().position(|c| c.agent_id == agent_id) else {
                continue;
            };
            self.loads.change(agent_id, when, 1);
            let segments = &history.cycles[cycle].segments;
            let progress = &mut self.progress[cycle];
            progress.waiting = false;
            progress.served.first_offer.get_or_insert_with(|| {
                progress
                    .served
                    .arrival
                    .map(|arrival| (when - arrival).to_std().unwrap_or_default())
                    .unwrap_or_default()
            });
            let answers = segments
                .get(progress.segment)
                .map(|s| s.answers.as_slice())
                .unwrap_or_default();
            // The answer of the recorded offer of the same rank; past them, the last
            // acceptance's (an offer always ends accepted in the end).
            let answer = answers.get(progress.offers).copied().unwrap_or_else(|| {
                answers
                    .iter()
                    .rev()
                    .find(|a| matches!(a, Answer::Accepted(_)))
                    .copied()
                    .unwrap_or(Answer::Accepted(Duration::ZERO))
            });
            progress.offers += 1;
            progress.answer = Some(answer);
            let after = match answer {
                Answer::Accepted(after) | Answer::Declined(after) | Answer::TimedOut(after) => {
                    after
                }
            };
            self.at(Self::later(when, after), Event::Answered { cycle, agent });
        }
        if round.retry_at.is_some() || self.queue.len() != before {
            self.queue_length.push((when, self.queue.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::history::{AgentHistory, PresenceChange, Segment};

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("a date")
    }

    fn at(seconds: f64) -> DateTime<Utc> {
        start() + chrono::Duration::milliseconds((seconds * 1000.0) as i64)
    }

    fn team() -> TeamId {
        TeamId(Uuid::from_u128(7))
    }

    fn agent(n: u128, capacity: u32, presence: Presence) -> AgentHistory {
        AgentHistory {
            candidate: Candidate {
                agent_id: AgentId(Uuid::from_u128(n)),
                name: format!("agent {n}"),
                teams: vec![team()],
                skills: vec![],
                presence,
                load: 0,
                capacity,
                last_assigned: None,
                last_released: None,
            },
            changes: vec![],
        }
    }

    /// A cycle arriving at `arrival`, taken by `agent` at `assigned`, held `held` seconds.
    fn cycle(arrival: f64, assigned: f64, agent: u128, held: f64, answers: Vec<Answer>) -> Cycle {
        Cycle {
            conversation_id: ConversationId::new(),
            measured: true,
            held_at_start: None,
            segments: vec![Segment {
                queued_at: at(arrival),
                team_id: team(),
                priority: 0,
                required_skills: vec![],
                sticky: None,
                front: false,
                answers,
                first_offer_at: Some(at(assigned)),
                assigned: Some((at(assigned), AgentId(Uuid::from_u128(agent)))),
                held_for: Some(Duration::from_secs_f64(held)),
                then: Then::Ends,
                left_at: None,
            }],
        }
    }

    fn setup() -> Setup {
        Setup {
            policy: PolicyKind::LeastLoaded,
            sticky: false,
            capacity_delta: 0,
            agents_delta: 0,
            decline_cooldown: Duration::from_secs(60),
            window_warning: chrono::Duration::hours(2),
        }
    }

    /// One agent of capacity 1; arrivals each second, each held two: waits of 0, 1 and 2 s.
    fn one_agent_falling_behind() -> History {
        History {
            from: start(),
            to: at(60.0),
            agents: vec![agent(1, 1, Presence::Online)],
            cycles: vec![
                cycle(0.0, 0.0, 1, 2.0, vec![]),
                cycle(1.0, 2.0, 1, 2.0, vec![]),
                cycle(2.0, 4.0, 1, 2.0, vec![]),
            ],
        }
    }

    fn waits(run: &Run) -> Vec<Option<f64>> {
        run.cycles
            .iter()
            .map(|c| c.queue_wait.map(|d| d.as_secs_f64()))
            .collect()
    }

    #[test]
    fn the_recorded_policy_reproduces_the_recorded_waits() {
        let history = one_agent_falling_behind();
        let recorded = recorded(&history);
        let replayed = replay(&history, &setup());
        assert_eq!(waits(&recorded), vec![Some(0.0), Some(1.0), Some(2.0)]);
        assert_eq!(waits(&replayed), waits(&recorded));
        assert_eq!(replayed.agents.len(), 1);
        assert_eq!(replayed.agents[0].assigned, 3);
        // Busy 6 s of 60.
        assert!((replayed.agents[0].mean_load - 0.1).abs() < 1e-9);
        assert!((recorded.agents[0].mean_load - 0.1).abs() < 1e-9);
        assert_eq!(replayed.agents[0].peak_load, 1);
    }

    #[test]
    fn more_agents_or_capacity_shorten_the_waits_and_fewer_leave_them_waiting() {
        let history = one_agent_falling_behind();
        let more = replay(
            &history,
            &Setup {
                agents_delta: 1,
                ..setup()
            },
        );
        assert_eq!(waits(&more), vec![Some(0.0), Some(0.0), Some(0.0)]);
        assert_eq!(more.agents.len(), 2, "the added agent served too");
        let roomier = replay(
            &history,
            &Setup {
                capacity_delta: 1,
                ..setup()
            },
        );
        assert_eq!(waits(&roomier), vec![Some(0.0), Some(0.0), Some(0.0)]);
        assert_eq!(roomier.agents[0].peak_load, 2);
        let nobody = replay(
            &history,
            &Setup {
                agents_delta: -1,
                ..setup()
            },
        );
        assert_eq!(nobody.never_assigned, 3);
    }

    #[test]
    fn a_declined_offer_cools_the_agent_down_and_the_next_one_takes_it() {
        let history = History {
            from: start(),
            to: at(60.0),
            agents: vec![agent(1, 1, Presence::Online), agent(2, 1, Presence::Online)],
            cycles: vec![cycle(
                0.0,
                1.5,
                2,
                5.0,
                vec![
                    Answer::Declined(Duration::from_secs(1)),
                    Answer::Accepted(Duration::from_millis(500)),
                ],
            )],
        };
        let run = replay(&history, &setup());
        // To agent 1 (the lowest id) at 0, declined at 1, to agent 2, accepted at 1.5.
        assert_eq!(waits(&run), vec![Some(1.5)]);
        assert_eq!(run.cycles[0].first_offer, Some(Duration::ZERO));
        let by_agent: Vec<u32> = run.agents.iter().map(|a| a.assigned).collect();
        assert_eq!(by_agent, vec![0, 1]);
    }

    #[test]
    fn nobody_is_offered_anything_before_they_come_online() {
        let mut late = agent(1, 1, Presence::Offline);
        late.changes.push(PresenceChange {
            at: at(5.0),
            presence: Presence::Online,
            capacity: Some(2),
        });
        let history = History {
            from: start(),
            to: at(60.0),
            agents: vec![late],
            cycles: vec![
                cycle(0.0, 5.0, 1, 10.0, vec![]),
                cycle(1.0, 5.0, 1, 10.0, vec![]),
            ],
        };
        let run = replay(&history, &setup());
        // Both at its arrival with the capacity it came with.
        assert_eq!(waits(&run), vec![Some(5.0), Some(4.0)]);
    }

    #[test]
    fn a_requeued_conversation_goes_to_the_front_after_its_hold() {
        let mut first = cycle(0.0, 0.0, 1, 3.0, vec![]);
        first.segments[0].then = Then::Requeued;
        let mut again = first.segments[0].clone();
        again.queued_at = at(3.0);
        again.front = true;
        again.held_for = Some(Duration::from_secs(1));
        again.then = Then::Ends;
        first.segments.push(again);
        let history = History {
            from: start(),
            to: at(60.0),
            agents: vec![agent(1, 1, Presence::Online)],
            // The second arrives at 1 but waits behind the requeued first (front) at 3.
            cycles: vec![first, cycle(1.0, 4.0, 1, 1.0, vec![])],
        };
        let run = replay(&history, &setup());
        assert_eq!(waits(&run), vec![Some(0.0), Some(3.0)]);
        assert_eq!(run.agents[0].assigned, 3);
    }
}
