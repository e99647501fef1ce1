//! `Supervisor`: one per workspace. Holds every team's waiting queue and the workspace's roster
//! (presence, load counting pending offers, capacity, skills, teams), so an agent in several
//! teams is counted once, exactly, without locks. It decides with [`dispatch`] (the queue's order
//! and `choose_agent`) and tells the conversation; it never waits on anyone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::audit::{AuditKind, AuditRecord};
use crate::ids::{AgentId, ConversationId, TeamId, WorkspaceId};
use crate::routing::agent::{AgentActor, SignOut};
use crate::routing::conversation::Offer;
use crate::routing::directory::{Directory, Tell};
use crate::routing::dispatch::{
    Clock, Dispatched, QueueKey, Rules, Waiting, dispatch, queue_order,
};
use crate::routing::policy::{Candidate, Presence};
use crate::routing::stats::{AgentStats, Stats, StatsFrame, TeamStats, WaitingStats};
use crate::routing::wait::{self, Holds, WaitEstimate};
use crate::routing::{RoutingContext, RoutingError, store};

/// A conversation's SLA standing changed (both false once it is met, resolved or gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SlaChanged {
    pub conversation_id: ConversationId,
    pub team_id: TeamId,
    pub breached: bool,
    pub at_risk: bool,
}

/// Queue this conversation; `release` frees the slot an offer or assignment held.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestAgent {
    pub waiting: Waiting,
    pub release: Option<AgentId>,
}

/// An agent's slot is free again (resolved, transferred away, offer ended without a requeue).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub agent_id: AgentId,
    pub conversation_id: ConversationId,
}

/// After a restart: an assigned conversation counts as active in its team.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restored {
    pub conversation_id: ConversationId,
    pub team_id: TeamId,
}

/// A dashboard socket wants the workspace's stats: a snapshot now, then coalesced deltas.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub subscriber_id: u64,
    pub outbox: tokio::sync::mpsc::Sender<String>,
    /// The teams it may see; `None` = every team (an admin).
    pub teams: Option<Vec<TeamId>>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub subscriber_id: u64,
}

/// An agent came online, went away or went offline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentPresence {
    pub agent_id: AgentId,
    pub presence: Presence,
}

/// Moves one conversation's slot to `to` (transfer to an agent); refused when `to` is full.
#[derive(Message)]
#[rtype(result = "Result<String, RoutingError>")]
pub struct MoveSlot {
    pub from: Option<AgentId>,
    pub to: AgentId,
}

/// How long a conversation of `team_id` can expect to wait for an offer now (the median, see
/// [`wait`]): at its place in the queue when it waits there, else behind everyone waiting;
/// `None` while there is nothing to go on.
#[derive(Message)]
#[rtype(result = "Option<std::time::Duration>")]
pub struct ExpectedWait {
    pub team_id: TeamId,
    pub conversation_id: ConversationId,
}

/// A supervisor's manual assignment of a waiting conversation, or (`picked`) an agent taking
/// one from its team's queue.
#[derive(Message)]
#[rtype(result = "Result<(), RoutingError>")]
pub struct ManualAssign {
    pub conversation_id: ConversationId,
    pub agent_id: AgentId,
    pub picked: bool,
}

/// A waiting conversation's 24-hour window moved (its customer wrote again).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateWaiting {
    pub conversation_id: ConversationId,
    pub window_expires_at: Option<DateTime<Utc>>,
}

/// A conversation that stopped waiting without an offer (resolved by someone, stopped).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unqueue {
    pub conversation_id: ConversationId,
}

/// Shutdown: every agent's sockets and every dashboard close.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSockets;

/// Another node routes the workspace now: every dashboard and agent socket closes (consoles
/// reconnect, and reach the new owner), the agents' actors stop, then the supervisor does.
/// Nothing is written: what agents hold stays theirs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// An agent's settings changed (capacity, teams, skills, deactivation): reload it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReloadAgent {
    pub agent_id: AgentId,
}

/// The actor of one agent of this workspace (started on first use); `None` if no such agent.
#[derive(Message)]
#[rtype(result = "Result<Option<(Addr<AgentActor>, String)>, RoutingError>")]
pub struct GetAgent {
    pub agent_id: AgentId,
}

struct RosterEntry {
    candidate: Candidate,
    actor: Option<Addr<AgentActor>>,
}

pub struct Supervisor {
    workspace_id: WorkspaceId,
    directory: Addr<Directory>,
    context: Arc<RoutingContext>,
    roster: HashMap<AgentId, RosterEntry>,
    queue: Vec<Waiting>,
    /// Conversations offered or assigned, by team (for the dashboard's `active`).
    active: HashMap<ConversationId, TeamId>,
    subscribers: HashMap<u64, Subscriber>,
    /// Something changed since the last stats push.
    dirty: bool,
    /// Open conversations with a breached or warned SLA: (team, breached, at risk).
    sla: HashMap<ConversationId, (TeamId, bool, bool)>,
    /// A wake-up is armed for the queue's next `not_before`.
    opening_armed: Option<DateTime<Utc>>,
    /// When each active conversation's slot was taken (an offer, a manual assignment), so
    /// that its end tells how long the team's slots are held.
    held_since: HashMap<ConversationId, Instant>,
    /// How long each team's slots were held by the conversations that ended lately: the
    /// expected wait's service rate.
    holds: HashMap<TeamId, Holds>,
}

struct Subscriber {
    outbox: tokio::sync::mpsc::Sender<String>,
    teams: Option<Vec<TeamId>>,
    last: Option<Stats>,
}

impl Supervisor {
    pub fn new(
        workspace_id: WorkspaceId,
        directory: Addr<Directory>,
        context: Arc<RoutingContext>,
    ) -> Self {
        Self {
            workspace_id,
            directory,
            context,
            roster: HashMap::new(),
            queue: Vec::new(),
            active: HashMap::new(),
            subscribers: HashMap::new(),
            dirty: false,
            sla: HashMap::new(),
            opening_armed: None,
            held_since: HashMap::new(),
            holds: HashMap::new(),
        }
    }

    /// The free and the total slots of `team_id`'s online agents.
    fn team_slots(&self, team_id: TeamId) -> (u32, u32) {
        self.roster
            .values()
            .map(|e| &e.candidate)
            .filter(|c| c.presence == Presence::Online && c.teams.contains(&team_id))
            .fold((0, 0), |(free, all), c| {
                (free + c.capacity.saturating_sub(c.load), all + c.capacity)
            })
    }

    /// What the conversation at `position` of `team_id`'s queue can expect to wait.
    fn expected_wait(&self, team_id: TeamId, position: usize) -> Option<WaitEstimate> {
        let settings = &self.context.settings;
        let hold = self.holds.get(&team_id).and_then(|holds| {
            holds.mean(
                Instant::now(),
                settings.expected_wait_window,
                settings.expected_wait_min_samples,
            )
        });
        let (free, online) = self.team_slots(team_id);
        wait::estimate(position, free, online, hold)
    }

    /// How near its window's end a conversation rises in priority (see [`queue_order`]).
    fn window_warning(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.context.settings.window_warning)
            .unwrap_or(chrono::Duration::hours(2))
    }

    /// Each waiting conversation's place in its team's queue, in the order offers go.
    fn positions(&self) -> HashMap<ConversationId, usize> {
        let wall = Utc::now();
        let warning = self.window_warning();
        let mut keys: Vec<(TeamId, QueueKey)> = self
            .queue
            .iter()
            .map(|w| (w.team_id, queue_order(w, wall, warning)))
            .collect();
        keys.sort();
        let mut places = HashMap::with_capacity(keys.len());
        let mut team = None;
        let mut place = 0;
        for (team_id, key) in keys {
            if team != Some(team_id) {
                team = Some(team_id);
                place = 0;
            }
            place += 1;
            places.insert(key.4, place);
        }
        places
    }

    /// One conversation's place in its team's queue (as in [`Self::positions`], without
    /// sorting the queue); behind all of `team_id`'s when it is not waiting.
    fn place_of(&self, team_id: TeamId, conversation_id: ConversationId) -> usize {
        let wall = Utc::now();
        let warning = self.window_warning();
        let team: Vec<&Waiting> = self.queue.iter().filter(|w| w.team_id == team_id).collect();
        match team.iter().find(|w| w.conversation_id == conversation_id) {
            Some(own) => {
                let key = queue_order(own, wall, warning);
                1 + team
                    .iter()
                    .filter(|w| queue_order(w, wall, warning) < key)
                    .count()
            }
            None => team.len() + 1,
        }
    }

    /// A slot given back: how long it was held counts toward the team's service rate.
    fn slot_ended(&mut self, conversation_id: ConversationId) {
        let team = self.active.remove(&conversation_id);
        if let (Some(team), Some(since)) = (team, self.held_since.remove(&conversation_id)) {
            let now = Instant::now();
            self.holds
                .entry(team)
                .or_default()
                .record(now, now.saturating_duration_since(since));
        }
    }

    /// The workspace's stats as one subscriber may see them.
    /// `positions`: [`Self::positions`], computed once for every subscriber of a push.
    fn stats(&self, teams: Option<&[TeamId]>, positions: &HashMap<ConversationId, usize>) -> Stats {
        let visible = |team: &TeamId| teams.is_none_or(|teams| teams.contains(team));
        let now = Utc::now();
        let mut team_ids: Vec<TeamId> = self
            .roster
            .values()
            .flat_map(|e| e.candidate.teams.iter().copied())
            .chain(self.queue.iter().map(|w| w.team_id))
            .chain(self.active.values().copied())
            .filter(|t| visible(t))
            .collect();
        if let Some(teams) = teams {
            team_ids.extend(teams.iter().copied());
        }
        team_ids.sort();
        team_ids.dedup();
        let team_stats = team_ids
            .into_iter()
            .map(|team_id| {
                let waiting: Vec<&Waiting> =
                    self.queue.iter().filter(|w| w.team_id == team_id).collect();
                let members = self
                    .roster
                    .values()
                    .filter(|e| e.candidate.teams.contains(&team_id));
                let online: Vec<&RosterEntry> = members
                    .filter(|e| e.candidate.presence == Presence::Online)
                    .collect();
                TeamStats {
                    team_id: team_id.to_string(),
                    waiting: waiting.len(),
                    longest_wait_ms: waiting
                        .iter()
                        .map(|w| (now - w.since).num_milliseconds().max(0))
                        .max()
                        .unwrap_or(0),
                    agents_online: online.len(),
                    agents_available: online
                        .iter()
                        .filter(|e| e.candidate.load < e.candidate.capacity)
                        .count(),
                    active: self.active.values().filter(|t| **t == team_id).count(),
                    sla_breached: self
                        .sla
                        .values()
                        .filter(|(team, breached, _)| *team == team_id && *breached)
                        .count(),
                    sla_at_risk: self
                        .sla
                        .values()
                        .filter(|(team, breached, at_risk)| {
                            *team == team_id && *at_risk && !*breached
                        })
                        .count(),
                    expected_wait_ms: self.expected_wait(team_id, waiting.len() + 1),
                }
            })
            .collect();
        let mut agents: Vec<AgentStats> = self
            .roster
            .values()
            .filter(|e| teams.is_none() || e.candidate.teams.iter().any(&visible))
            .map(|e| AgentStats {
                agent_id: e.candidate.agent_id.to_string(),
                name: e.candidate.name.clone(),
                presence: e.candidate.presence,
                load: e.candidate.load,
                capacity: e.candidate.capacity,
            })
            .collect();
        agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        let mut waiting: Vec<WaitingStats> = self
            .queue
            .iter()
            .filter(|w| visible(&w.team_id))
            .map(|w| WaitingStats {
                conversation_id: w.conversation_id.to_string(),
                team_id: w.team_id.to_string(),
                since: w.since,
                position: positions.get(&w.conversation_id).copied().unwrap_or(1),
                sla_breached: self
                    .sla
                    .get(&w.conversation_id)
                    .is_some_and(|(_, breached, _)| *breached),
            })
            .collect();
        waiting.sort_by(|a, b| (a.since, &a.conversation_id).cmp(&(b.since, &b.conversation_id)));
        Stats {
            teams: team_stats,
            agents,
            waiting,
        }
    }

    /// Sends each subscriber what changed since its last frame (at most once per tick).
    fn push_stats(&mut self) {
        if !self.dirty || self.subscribers.is_empty() {
            self.dirty = false;
            return;
        }
        self.dirty = false;
        let mut gone = Vec::new();
        let positions = self.positions();
        let ids: Vec<u64> = self.subscribers.keys().copied().collect();
        for id in ids {
            let Some(subscriber) = self.subscribers.get(&id) else {
                continue;
            };
            let now = self.stats(subscriber.teams.as_deref(), &positions);
            let frame = match &subscriber.last {
                None => StatsFrame::Stats(now.clone()),
                Some(before) => match now.delta_since(before) {
                    Some(delta) => StatsFrame::StatsDelta(delta),
                    None => continue,
                },
            };
            let text = serde_json::to_string(&frame).unwrap_or_default();
            let Some(subscriber) = self.subscribers.get_mut(&id) else {
                continue;
            };
            if subscriber.outbox.try_send(text).is_err() {
                gone.push(id);
            }
            subscriber.last = Some(now);
        }
        for id in gone {
            self.subscribers.remove(&id);
        }
    }

    fn agent_actor(
        &mut self,
        agent_id: AgentId,
        ctx: &mut Context<Self>,
    ) -> Option<Addr<AgentActor>> {
        let supervisor = ctx.address();
        let directory = self.directory.clone();
        let context = self.context.clone();
        let workspace_id = self.workspace_id;
        let entry = self.roster.get_mut(&agent_id)?;
        let actor = entry.actor.get_or_insert_with(|| {
            AgentActor::new(agent_id, workspace_id, supervisor, directory, context).start()
        });
        Some(actor.clone())
    }

    /// Offers waiting conversations, highest priority then oldest first, while anyone has room.
    fn assign_next(&mut self, ctx: &mut Context<Self>) {
        // Every path that changes the queue or the roster comes through here.
        self.dirty = true;
        if self.queue.is_empty() || !self.roster.values().any(|e| e.candidate.has_room()) {
            return;
        }
        let now = Instant::now();
        let wall = Utc::now();
        let rules = Rules {
            policy: self.context.settings.policy,
            sticky: self.context.settings.sticky,
            window_warning: self.window_warning(),
        };
        let mut roster: Vec<Candidate> =
            self.roster.values().map(|e| e.candidate.clone()).collect();
        let decision_seconds = &self.context.decision_seconds;
        let round = dispatch(
            &mut self.queue,
            &mut roster,
            Clock { now, wall },
            rules,
            |took| decision_seconds.observe(took.as_secs_f64()),
        );
        for Dispatched {
            waiting,
            agent_id,
            decision,
            position,
        } in round.offers
        {
            let Some(entry) = self.roster.get_mut(&agent_id) else {
                continue;
            };
            entry.candidate.load += 1;
            entry.candidate.last_assigned = Some(now);
            debug_assert!(
                entry.candidate.load <= entry.candidate.capacity,
                "capacity invariant: {} holds {} of {}",
                agent_id,
                entry.candidate.load,
                entry.candidate.capacity
            );
            let agent_name = entry.candidate.name.clone();
            let Some(agent) = self.agent_actor(agent_id, ctx) else {
                continue;
            };
            self.active.insert(waiting.conversation_id, waiting.team_id);
            self.held_since.insert(waiting.conversation_id, now);
            self.directory.do_send(Tell {
                conversation_id: waiting.conversation_id,
                message: Offer {
                    agent_id,
                    agent_name,
                    agent,
                    decision: Some(decision),
                    manual: false,
                    picked: false,
                    position,
                },
            });
        }
        let (next_retry, next_opening) = (round.retry_at, round.opening_at);
        if let Some(at) = next_retry {
            ctx.run_later(at.saturating_duration_since(now), |supervisor, ctx| {
                supervisor.assign_next(ctx)
            });
        }
        // Teams that open later: look again at the first opening (one timer for it).
        if let Some(opening) = next_opening
            && self
                .opening_armed
                .is_none_or(|armed| opening < armed || armed <= wall)
        {
            self.opening_armed = Some(opening);
            let wait = (opening - wall)
                .to_std()
                .unwrap_or_default()
                .min(std::time::Duration::from_secs(24 * 3600));
            ctx.run_later(wait, |supervisor, ctx| {
                supervisor.opening_armed = None;
                supervisor.assign_next(ctx)
            });
        }
    }

    /// Keeps an agent's presence and capacity in the audit history, from which `waos replay`
    /// knows who could have been offered what, and when.
    fn record_presence(&self, candidate: &Candidate) {
        self.context.audit(AuditRecord {
            workspace_id: Some(self.workspace_id),
            conversation_id: None,
            agent_id: Some(candidate.agent_id),
            kind: AuditKind::Presence,
            reason: Some(serde_json::json!({
                "presence": candidate.presence,
                "capacity": candidate.capacity,
            })),
            text: format!(
                "{} is {} (capacity {})",
                candidate.name,
                candidate.presence.as_str(),
                candidate.capacity
            ),
            at: Some(Utc::now()),
        });
    }

    fn release(&mut self, agent_id: AgentId) {
        if let Some(entry) = self.roster.get_mut(&agent_id) {
            debug_assert!(
                entry.candidate.load > 0,
                "released a slot {agent_id} did not hold"
            );
            entry.candidate.load = entry.candidate.load.saturating_sub(1);
            entry.candidate.last_released = Some(Instant::now());
        }
    }

    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        let queued: std::collections::HashSet<_> =
            self.queue.iter().map(|w| w.conversation_id).collect();
        debug_assert_eq!(
            queued.len(),
            self.queue.len(),
            "a conversation is queued twice"
        );
    }

    #[cfg(not(debug_assertions))]
    fn check_invariants(&self) {}
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Dashboards get at most one frame per interval, however busy the workspace is.
        ctx.run_interval(self.context.settings.stats_interval, |supervisor, _| {
            supervisor.push_stats()
        });
        // Nothing is decided before the roster is known: hold the mailbox until it is loaded.
        let db = self.context.db.clone();
        let workspace_id = self.workspace_id;
        ctx.wait(
            async move { store::load_roster(&db, workspace_id).await }
                .into_actor(self)
                .map(|loaded, supervisor, _| match loaded {
                    Ok(roster) => {
                        for candidate in roster {
                            supervisor.roster.insert(
                                candidate.agent_id,
                                RosterEntry {
                                    candidate,
                                    actor: None,
                                },
                            );
                        }
                    }
                    Err(error) => tracing::error!(%error, "could not load the roster"),
                }),
        );
    }
}

impl Handler<RequestAgent> for Supervisor {
    type Result = ();

    fn handle(&mut self, message: RequestAgent, ctx: &mut Context<Self>) {
        if let Some(agent_id) = message.release {
            self.release(agent_id);
        }
        let id = message.waiting.conversation_id;
        // Back in the queue (declined, timed out, transferred to a team): not an end.
        self.active.remove(&id);
        self.held_since.remove(&id);
        self.queue.retain(|w| w.conversation_id != id);
        self.queue.push(message.waiting);
        self.check_invariants();
        self.assign_next(ctx);
    }
}

impl Handler<Release> for Supervisor {
    type Result = ();

    fn handle(&mut self, message: Release, ctx: &mut Context<Self>) {
        self.release(message.agent_id);
        self.slot_ended(message.conversation_id);
        self.assign_next(ctx);
    }
}

impl Handler<AgentPresence> for Supervisor {
    type Result = ();

    fn handle(&mut self, message: AgentPresence, ctx: &mut Context<Self>) {
        if let Some(entry) = self.roster.get_mut(&message.agent_id)
            && entry.candidate.presence != message.presence
        {
            entry.candidate.presence = message.presence;
            let candidate = entry.candidate.clone();
            self.record_presence(&candidate);
        }
        self.dirty = true;
        if message.presence == Presence::Online {
            self.assign_next(ctx);
        }
    }
}

impl Handler<MoveSlot> for Supervisor {
    type Result = Result<String, RoutingError>;

    fn handle(&mut self, message: MoveSlot, ctx: &mut Context<Self>) -> Self::Result {
        let entry = self
            .roster
            .get_mut(&message.to)
            .ok_or(RoutingError::NotFound("agent"))?;
        // From the agent it is offered to, to the same agent: its slot is already counted.
        if message.from == Some(message.to) {
            return Ok(entry.candidate.name.clone());
        }
        if entry.candidate.load >= entry.candidate.capacity {
            return Err(RoutingError::OverCapacity);
        }
        entry.candidate.load += 1;
        entry.candidate.last_assigned = Some(Instant::now());
        let name = entry.candidate.name.clone();
        if let Some(from) = message.from {
            self.release(from);
            self.assign_next(ctx);
        }
        Ok(name)
    }
}

impl Handler<ManualAssign> for Supervisor {
    type Result = Result<(), RoutingError>;

    fn handle(&mut self, message: ManualAssign, ctx: &mut Context<Self>) -> Self::Result {
        let in_teams = |team: &TeamId, roster: &HashMap<AgentId, RosterEntry>| {
            roster
                .get(&message.agent_id)
                .is_some_and(|e| e.candidate.teams.contains(team))
        };
        let Some(position) = self
            .queue
            .iter()
            .position(|w| w.conversation_id == message.conversation_id)
        else {
            // An agent learns nothing of conversations outside its teams.
            return Err(match self.active.get(&message.conversation_id) {
                Some(team) if message.picked && in_teams(team, &self.roster) => {
                    RoutingError::Conflict("it was offered or taken meanwhile".into())
                }
                _ if message.picked => RoutingError::NotFound("conversation"),
                _ => RoutingError::Conflict(
                    "only a waiting conversation can be assigned by hand".into(),
                ),
            });
        };
        if !in_teams(&self.queue[position].team_id, &self.roster) {
            return Err(match message.picked {
                true => RoutingError::NotFound("conversation"),
                false if !self.roster.contains_key(&message.agent_id) => {
                    RoutingError::NotFound("agent")
                }
                false => {
                    RoutingError::Conflict("the agent is not in the conversation's team".into())
                }
            });
        }
        let entry = self
            .roster
            .get_mut(&message.agent_id)
            .ok_or(RoutingError::NotFound("agent"))?;
        if entry.candidate.load >= entry.candidate.capacity {
            return Err(RoutingError::OverCapacity);
        }
        entry.candidate.load += 1;
        entry.candidate.last_assigned = Some(Instant::now());
        let agent_name = entry.candidate.name.clone();
        let place = self.place_of(self.queue[position].team_id, message.conversation_id);
        let waiting = self.queue.remove(position);
        self.active.insert(waiting.conversation_id, waiting.team_id);
        self.held_since
            .insert(waiting.conversation_id, Instant::now());
        self.dirty = true;
        let agent = self
            .agent_actor(message.agent_id, ctx)
            .ok_or(RoutingError::NotFound("agent"))?;
        self.directory.do_send(Tell {
            conversation_id: waiting.conversation_id,
            message: Offer {
                agent_id: message.agent_id,
                agent_name,
                agent,
                decision: None,
                manual: true,
                picked: message.picked,
                position: place,
            },
        });
        Ok(())
    }
}

impl Handler<ExpectedWait> for Supervisor {
    type Result = Option<std::time::Duration>;

    fn handle(&mut self, message: ExpectedWait, _: &mut Context<Self>) -> Self::Result {
        let position = self.place_of(message.team_id, message.conversation_id);
        self.expected_wait(message.team_id, position)
            .map(|estimate| estimate.median())
    }
}

impl Handler<SlaChanged> for Supervisor {
    type Result = ();

    fn handle(&mut self, message: SlaChanged, _: &mut Context<Self>) {
        let changed = if message.breached || message.at_risk {
            self.sla.insert(
                message.conversation_id,
                (message.team_id, message.breached, message.at_risk),
            ) != Some((message.team_id, message.breached, message.at_risk))
        } else {
            self.sla.remove(&message.conversation_id).is_some()
        };
        self.dirty |= changed;
    }
}

impl Handler<Unqueue> for Supervisor {
    type Result = ();

    fn handle(&mut self, message: Unqueue, _: &mut Context<Self>) {
        self.queue
            .retain(|w| w.conversation_id != message.conversation_id);
    }
}

impl Handler<UpdateWaiting> for Supervisor {
    type Result = ();

    fn handle(&mut self, message: UpdateWaiting, _: &mut Context<Self>) {
        if let Some(waiting) = self
            .queue
            .iter_mut()
            .find(|w| w.conversation_id == message.conversation_id)
        {
            waiting.window_expires_at = message.window_expires_at;
        }
    }
}

impl Handler<ReloadAgent> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, message: ReloadAgent, _: &mut Context<Self>) -> Self::Result {
        let db = self.context.db.clone();
        Box::pin(
            async move { store::load_candidate(&db, message.agent_id).await }
                .into_actor(self)
                .map(move |loaded, supervisor, ctx| {
                    match loaded {
                        Ok(Some(fresh)) => match supervisor.roster.get_mut(&message.agent_id) {
                            Some(entry) => {
                                let resized = entry.candidate.capacity != fresh.capacity;
                                entry.candidate.name = fresh.name;
                                entry.candidate.teams = fresh.teams;
                                entry.candidate.skills = fresh.skills;
                                entry.candidate.capacity = fresh.capacity;
                                if resized {
                                    let candidate = entry.candidate.clone();
                                    supervisor.record_presence(&candidate);
                                }
                            }
                            None => {
                                supervisor.roster.insert(
                                    message.agent_id,
                                    RosterEntry {
                                        candidate: fresh,
                                        actor: None,
                                    },
                                );
                            }
                        },
                        Ok(None) => {
                            // Deactivated: no new work, its sockets close and what it holds
                            // goes back to the queue.
                            if let Some(entry) = supervisor.roster.get_mut(&message.agent_id) {
                                entry.candidate.capacity = 0;
                            }
                            if let Some(actor) = supervisor.agent_actor(message.agent_id, ctx) {
                                actor.do_send(SignOut {
                                    reason: "the agent was deactivated".into(),
                                });
                            }
                        }
                        Err(error) => tracing::warn!(%error, "could not reload an agent"),
                    }
                    supervisor.assign_next(ctx);
                }),
        )
    }
}

impl Handler<GetAgent> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Option<(Addr<AgentActor>, String)>, RoutingError>>;

    fn handle(&mut self, message: GetAgent, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(entry) = self.roster.get(&message.agent_id) {
            let name = entry.candidate.name.clone();
            let actor = self
                .agent_actor(message.agent_id, ctx)
                .map(|actor| (actor, name));
            return Box::pin(fut::ready(Ok(actor)));
        }
        // An agent created after the roster was loaded.
        let db = self.context.db.clone();
        Box::pin(
            async move { store::load_candidate(&db, message.agent_id).await }
                .into_actor(self)
                .map(move |loaded, supervisor, ctx| {
                    // A database error is not "no such agent": the caller may retry.
                    let Some(candidate) = loaded.map_err(|_| RoutingError::Unavailable)? else {
                        return Ok(None);
                    };
                    // Another look-up of the same agent (its second tab) may have added it
                    // meanwhile, and offered it work since: that entry stands (replacing it
                    // would forget its load, and start a second actor for the agent).
                    let entry = supervisor
                        .roster
                        .entry(message.agent_id)
                        .or_insert(RosterEntry {
                            candidate,
                            actor: None,
                        });
                    let name = entry.candidate.name.clone();
                    Ok(supervisor
                        .agent_actor(message.agent_id, ctx)
                        .map(|actor| (actor, name)))
                }),
        )
    }
}

impl Handler<CloseSockets> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: CloseSockets, _: &mut Context<Self>) -> Self::Result {
        // Dropping a dashboard's outbox ends its pump, which closes the socket.
        self.subscribers.clear();
        let agents: Vec<Addr<AgentActor>> = self
            .roster
            .values()
            .filter_map(|entry| entry.actor.clone())
            .collect();
        Box::pin(async move {
            for agent in agents {
                let _ = agent.send(crate::routing::agent::CloseSockets).await;
            }
        })
    }
}

impl Handler<Retire> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.subscribers.clear();
        for entry in self.roster.values_mut() {
            if let Some(agent) = entry.actor.take() {
                agent.do_send(crate::routing::agent::Retire);
            }
        }
        ctx.stop();
    }
}

impl Handler<Restored> for Supervisor {
    type Result = ();

    fn handle(&mut self, message: Restored, _: &mut Context<Self>) {
        self.active.insert(message.conversation_id, message.team_id);
        self.dirty = true;
    }
}

impl Handler<Subscribe> for Supervisor {
    type Result = ();

    fn handle(&mut self, message: Subscribe, _: &mut Context<Self>) {
        let snapshot = self.stats(message.teams.as_deref(), &self.positions());
        let text = serde_json::to_string(&StatsFrame::Stats(snapshot.clone())).unwrap_or_default();
        if message.outbox.try_send(text).is_ok() {
            self.subscribers.insert(
                message.subscriber_id,
                Subscriber {
                    outbox: message.outbox,
                    teams: message.teams,
                    last: Some(snapshot),
                },
            );
        }
    }
}

impl Handler<Unsubscribe> for Supervisor {
    type Result = ();

    fn handle(&mut self, message: Unsubscribe, _: &mut Context<Self>) {
        self.subscribers.remove(&message.subscriber_id);
    }
}
