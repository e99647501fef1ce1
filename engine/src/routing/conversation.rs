//! `ConversationActor`: one per open conversation. Owns its routing state (waiting, offered,
//! assigned, resolved; the agent; the offer's timer; who declined) and writes every change to
//! the database and the audit. Stops when resolved; rebuilt from the database when needed again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use serde_json::json;

use crate::audit::{AuditKind, AuditRecord};
use crate::automation::marks::Marks;
use crate::automation::rules::RuleSet;
use crate::ids::{AgentId, ConversationId, SlaPolicyId, TeamId, WorkspaceId};
use crate::inbox::{ConversationView, MessageView};
use crate::reports::{Fact, FactMetric, FactScope};
use crate::routing::agent::{AgentActor, Assigned, Deliver, Held, OfferEnded, Offered, Unassigned};
use crate::routing::directory::{ConversationStopped, Directory, RetireRequest, StillRunning};
use crate::routing::dispatch::Waiting;
use crate::routing::frames::{OfferView, ServerFrame};
use crate::routing::policy::Decision;
use crate::routing::reply::{self, Reply};
use crate::routing::store::{self, StoredConversation};
use crate::routing::supervisor::{
    GetAgent, MoveSlot, Release, RequestAgent, Restored, Supervisor, Unqueue, UpdateWaiting,
};
use crate::routing::{RoutingContext, RoutingError};
use crate::store::entity::conversation::ConversationStatus;
use crate::store::entity::message::MessageDirection;
use crate::time::clocks::{ClockEvent, Clocks, Policy};
use crate::time::settings::TeamTime;

mod automate;

/// Messages an agent receives right after it is given a conversation.
const HISTORY_ON_ASSIGN: u64 = 50;

/// The supervisor chose an agent (or a supervisor did, by hand); its slot is already reserved.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Offer {
    pub agent_id: AgentId,
    pub agent_name: String,
    pub agent: Addr<AgentActor>,
    pub decision: Option<Decision>,
    pub manual: bool,
    /// The agent took it from the queue itself.
    pub picked: bool,
    /// Its place in its team's queue when offered (1: the first).
    pub position: usize,
}

/// A new customer message was stored for this conversation.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NewMessage {
    pub message: MessageView,
}

#[derive(Message)]
#[rtype(result = "Result<(), RoutingError>")]
pub struct Accept {
    pub agent_id: AgentId,
}

#[derive(Message)]
#[rtype(result = "Result<(), RoutingError>")]
pub struct Decline {
    pub agent_id: AgentId,
}

/// The agent can no longer take the offer (it disconnected).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Withdraw {
    pub agent_id: AgentId,
    pub reason: String,
}

#[derive(Message)]
#[rtype(result = "Result<(), RoutingError>")]
pub struct Resolve {
    pub agent_id: Option<AgentId>,
}

/// The agent left for longer than the grace period: back to the front of the queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Requeue {
    pub agent_id: AgentId,
    pub reason: String,
}

/// A delivery status of one of this conversation's messages.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StatusUpdate(pub crate::ingest::StatusEvent);

/// An agent's reply.
#[derive(Message)]
#[rtype(result = "Result<MessageView, RoutingError>")]
pub struct SendReply {
    pub agent_id: AgentId,
    pub reply: Reply,
}

#[derive(Message)]
#[rtype(result = "Result<(), RoutingError>")]
pub struct TransferToAgent {
    /// The agent holding it (or `None` when a supervisor moves it).
    pub by: Option<AgentId>,
    pub to: AgentId,
}

#[derive(Message)]
#[rtype(result = "Result<(), RoutingError>")]
pub struct TransferToTeam {
    pub by: Option<AgentId>,
    pub team_id: TeamId,
}

/// Time passed: a deadline or an inactivity timer of a conversation whose actor had stopped
/// (the directory starts it again from the database, which re-arms everything).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// The team's calendar, SLA policy or inactivity rule changed: read them again (a waiting
/// conversation queues again under its team's new hours; the cycle keeps its deadlines).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ReloadSettings;

/// Answered once everything sent before it is handled (shutdown's drain).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Ping;

/// The conversation's tags, as they were just replaced through the API: what its rules'
/// conditions read from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TagsEdited {
    pub tags: Vec<String>,
}

/// From the directory, which routes nothing more to this actor: stop, unless something
/// happened since the actor asked to (then it says [`StillRunning`]). `opening`: the message
/// that has just opened the conversation again, whose rules the actor runs if it stays.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop {
    pub opening: Option<MessageView>,
}

/// From the directory: `message` opened this conversation, whose actor was built from rows
/// that already held a later one. The opening message's rules run now, before the later
/// one's (delivered after this).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Opened {
    pub message: MessageView,
}

/// From the directory: another node routes this conversation's workspace now. The actor stops
/// at once, writing nothing and telling nobody (its state is the new owner's to rebuild).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Abandon;

enum State {
    Waiting,
    Offered {
        agent_id: AgentId,
        agent_name: String,
        agent: Addr<AgentActor>,
        timer: SpawnHandle,
        offered_at: Instant,
    },
    Assigned {
        agent_id: AgentId,
        agent_name: String,
        agent: Addr<AgentActor>,
    },
    /// Kept with the agent who resolved it (none when an automation closed it unassigned):
    /// the customer's next conversation goes back to them when sticky routing is on.
    Resolved {
        by: Option<AgentId>,
    },
}

impl State {
    fn status(&self) -> ConversationStatus {
        match self {
            State::Waiting => ConversationStatus::Waiting,
            State::Offered { .. } => ConversationStatus::Offered,
            State::Assigned { .. } => ConversationStatus::Assigned,
            State::Resolved { .. } => ConversationStatus::Resolved,
        }
    }

    fn agent_id(&self) -> Option<AgentId> {
        match self {
            State::Offered { agent_id, .. } | State::Assigned { agent_id, .. } => Some(*agent_id),
            State::Resolved { by } => *by,
            State::Waiting => None,
        }
    }
}

pub struct ConversationActor {
    stored: StoredConversation,
    team_id: TeamId,
    offer_timeout_secs: i32,
    auto_accept: bool,
    state: State,
    excluded: HashMap<AgentId, Instant>,
    since: chrono::DateTime<Utc>,
    front: bool,
    last_message: Option<MessageView>,
    supervisor: Addr<Supervisor>,
    directory: Addr<Directory>,
    context: Arc<RoutingContext>,
    /// Stops the actor when an assigned conversation goes quiet (its state is in the database).
    idle: Option<SpawnHandle>,
    /// The idle time ran out and the directory was asked to retire this actor; anything that
    /// touches the conversation before the directory's [`Stop`] arrives keeps it running.
    idle_expired: bool,
    /// The current cycle's SLA clocks and replies (stored with the state).
    clocks: Clocks,
    /// The team's calendar, SLA policy and inactivity rule.
    time: Arc<TeamTime>,
    /// The one timer for the next SLA warning or breach, or the inactivity resolve.
    alarm: Option<SpawnHandle>,
    /// Agents' replies being stored now (the actor must not idle out under them).
    replies_in_flight: u32,
    /// The workspace's automation rules, and what they have done here.
    rules: Arc<RuleSet>,
    marks: Marks,
    /// Queued or offered once since the actor started (before that, a rule that moves the
    /// conversation to another team only changes its team: routing has not begun).
    routed: bool,
    /// The customer's latest message (the `no_agent_reply` silence starts there).
    last_customer_at: Option<chrono::DateTime<Utc>>,
    /// An SLA policy an automation applied to this cycle in place of the team's.
    cycle_policy: Option<Policy>,
    /// Rebuilt as assigned, and finding its agent: timer rules wait until it knows who holds it.
    attaching: bool,
    /// A chain of rules is running; runs asked for meanwhile wait here, in order.
    automating: bool,
    next_runs: VecDeque<automate::PendingRun>,
    /// Report facts settled since the last state write; they are stored with the next one.
    facts: Vec<Fact>,
}

impl ConversationActor {
    pub fn new(
        stored: StoredConversation,
        supervisor: Addr<Supervisor>,
        directory: Addr<Directory>,
        context: Arc<RoutingContext>,
    ) -> Self {
        let clocks = Clocks::from_row(&stored.raw);
        let marks = Marks::from_row(&stored.raw);
        // The actor keeps the clocks parsed: the row's text copies would only cost memory.
        let mut stored = stored;
        for text in [
            &mut stored.raw.sla_breached,
            &mut stored.raw.sla_met,
            &mut stored.raw.sla_warned,
        ] {
            *text = String::new();
        }
        stored.raw.automation_fired = String::new();
        Self {
            marks,
            rules: Arc::default(),
            routed: false,
            last_customer_at: stored.raw.last_inbound_at,
            cycle_policy: None,
            attaching: false,
            automating: false,
            next_runs: VecDeque::new(),
            facts: Vec::new(),
            clocks,
            team_id: stored.team_id,
            offer_timeout_secs: stored.offer_timeout_secs,
            auto_accept: stored.auto_accept,
            state: State::Waiting,
            excluded: HashMap::new(),
            since: stored.created_at,
            front: false,
            last_message: stored.last_message.clone(),
            stored,
            supervisor,
            directory,
            context,
            idle: None,
            idle_expired: false,
            time: Arc::new(TeamTime::default()),
            alarm: None,
            replies_in_flight: 0,
        }
    }

    /// Loads the team's time settings, the workspace's rules and (when an automation gave
    /// this cycle another SLA policy than the team's) that policy, holding the mailbox
    /// meanwhile (a database hiccup retries), then runs `next`.
    fn load_settings(
        &mut self,
        ctx: &mut Context<Self>,
        next: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        // What to load is read when the load starts, not when it is asked for (a team changed
        // by a wait that actix polls first must not have its old team's settings put back).
        ctx.wait(
            fut::ready(())
                .then(|(), conversation: &mut Self, _| {
                    settings_of(
                        conversation.context.clone(),
                        conversation.team_id,
                        conversation.stored.workspace_id,
                        conversation.clocks.policy_id,
                    )
                    .into_actor(conversation)
                })
                .map(move |(time, rules, policy), conversation, ctx| {
                    conversation.time = time;
                    conversation.rules = rules;
                    if policy.is_some() {
                        conversation.cycle_policy = policy;
                    }
                    next(conversation, ctx)
                }),
        );
    }

    /// The SLA policy of the current cycle: one an automation applied, else the team's.
    fn policy(&self) -> Option<&Policy> {
        self.cycle_policy
            .as_ref()
            .filter(|p| self.clocks.policy_id == Some(p.id))
            .or(self.time.policy.as_ref())
    }

    /// Applies the team's SLA policy to a cycle that has none yet.
    fn apply_policy(&mut self) -> bool {
        if !self.clocks.needs_policy() {
            return false;
        }
        let Some(policy) = self.time.policy.clone() else {
            return false;
        };
        let events = self.clocks.apply(&policy, self.time.calendar());
        self.report(events);
        true
    }

    /// Stores a freshly applied policy's clocks beside routing, not before it: a new
    /// conversation is offered without waiting for this write (every later state write carries
    /// the clocks too, and a restart before either applies the policy again, to the same
    /// deadlines, from the stored cycle start).
    ///
    /// It runs on the engine's thread, not in the actor's context: a future of the actor is not
    /// polled while the actor waits (`ctx.wait`) for its next state write, and one holding a
    /// write permit meanwhile would starve every conversation of permits.
    ///
    /// The pending facts (a new cycle's `opened`) are stored right after, in the same task.
    fn store_applied_clocks(&mut self) {
        let context = self.context.clone();
        let (id, clocks) = (self.id(), self.clocks.clone());
        let facts = std::mem::take(&mut self.facts);
        // Another node routes the workspace now: its recovered actor applies the policy.
        let Ok(epoch) = context.owner_epoch(self.stored.workspace_id) else {
            return;
        };
        actix::spawn(async move {
            {
                let _permit = context.writes.acquire().await;
                let saved = store::save_applied_clocks(&context.db, id, &clocks, epoch).await;
                if let Err(error) = saved {
                    tracing::warn!(%error, conversation_id = %id, "SLA clocks not stored yet; the next state write carries them");
                }
            }
            store_facts(&context, &facts).await;
        });
    }

    /// Stores the pending facts without a state write and without holding the mailbox, trying
    /// until it can (they are keyed, so a retry adds nothing; if this process dies first, the
    /// recovered actor of the waiting conversation records them again). Runs on the engine's
    /// thread, like the clocks above.
    fn store_facts_apart(&mut self) {
        let facts = std::mem::take(&mut self.facts);
        if facts.is_empty() {
            return;
        }
        let context = self.context.clone();
        actix::spawn(async move { store_facts(&context, &facts).await });
    }

    /// Audits what the clocks report, tells the holder of warnings and breaches, and the
    /// supervisor of the conversation's standing.
    fn report(&mut self, events: Vec<ClockEvent>) {
        use crate::routing::frames::SlaState;
        if events.is_empty() {
            return;
        }
        let holder = self.state.agent_id();
        for event in events {
            let (kind, metric, due_at, text) = match &event {
                ClockEvent::Applied {
                    policy_id,
                    policy_name,
                } => {
                    let sla = self.clocks.view();
                    self.audit(
                        AuditKind::SlaApplied,
                        None,
                        Some(json!({"policy_id": policy_id, "sla": sla})),
                        format!("SLA policy {policy_name} applied"),
                    );
                    continue;
                }
                ClockEvent::Warned { metric, due_at } => (
                    AuditKind::SlaWarned,
                    *metric,
                    *due_at,
                    format!("{} due at {due_at}: warning", metric.label()),
                ),
                ClockEvent::Breached { metric, due_at } => (
                    {
                        // The cycle's first breach counts (the facts' key keeps one).
                        self.tally(FactMetric::SlaBreached, holder, *due_at, 1);
                        AuditKind::SlaBreached
                    },
                    *metric,
                    *due_at,
                    format!("{} breached: it was due at {due_at}", metric.label()),
                ),
                ClockEvent::Met { metric, due_at } => (
                    AuditKind::SlaMet,
                    *metric,
                    *due_at,
                    format!("{} met before {due_at}", metric.label()),
                ),
            };
            self.audit(
                kind,
                holder,
                Some(json!({"metric": metric, "due_at": due_at})),
                text,
            );
            let state = match event {
                ClockEvent::Warned { .. } => SlaState::Warning,
                ClockEvent::Breached { .. } => SlaState::Breached,
                _ => continue,
            };
            if let State::Assigned { agent, .. } = &self.state {
                agent.do_send(Deliver {
                    frame: ServerFrame::Sla {
                        conversation_id: self.id().to_string(),
                        metric,
                        state,
                        due_at,
                    },
                });
            }
        }
        self.tell_sla_standing();
        self.push_sla();
    }

    /// The holder's console shows the clocks as they are now.
    fn push_sla(&self) {
        if let State::Assigned { agent, .. } = &self.state {
            agent.do_send(Deliver {
                frame: ServerFrame::SlaUpdate {
                    conversation_id: self.id().to_string(),
                    sla: self.clocks.view(),
                },
            });
        }
    }

    fn tell_sla_standing(&self) {
        let open = !matches!(self.state, State::Resolved { .. });
        self.supervisor
            .do_send(crate::routing::supervisor::SlaChanged {
                conversation_id: self.id(),
                team_id: self.team_id,
                breached: open && self.clocks.is_breached(),
                at_risk: open && self.clocks.at_risk(),
            });
    }

    /// When the inactivity rule resolves this conversation, if it is held.
    fn auto_resolve_at(&self) -> Option<chrono::DateTime<Utc>> {
        if !matches!(self.state, State::Assigned { .. }) {
            return None;
        }
        self.clocks.auto_resolve_at(self.time.auto_resolve_after_ms)
    }

    /// Reports what is due now, then arms the one timer for whatever comes next.
    fn rearm(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.alarm.take() {
            ctx.cancel_future(handle);
        }
        if matches!(self.state, State::Resolved { .. }) {
            return;
        }
        let now = Utc::now();
        let warn_before = self.policy().and_then(|p| p.warn_before);
        let events = self.clocks.tick(now, warn_before);
        if !events.is_empty() {
            self.report(events);
            self.persist(ctx);
        }
        if self.auto_resolve_at().is_some_and(|at| at <= now) {
            self.auto_resolve(ctx);
            return;
        }
        if self.run_due_timers(now, ctx) {
            // Re-armed once the timer rules' actions are done.
            return;
        }
        let next = [
            self.clocks.next_alarm(warn_before),
            self.auto_resolve_at(),
            self.next_rule_timer(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = next {
            let wait = (at - now)
                .to_std()
                .unwrap_or_default()
                .max(Duration::from_millis(1));
            self.alarm = Some(ctx.run_later(wait, |conversation, ctx| {
                conversation.alarm = None;
                conversation.rearm(ctx);
            }));
        }
    }

    fn window_open(&self) -> bool {
        self.stored
            .window_expires_at
            .is_some_and(|until| until > Utc::now())
    }

    /// Where a reply goes: an agent's, or (`automated`) one WaOS sends itself.
    fn destination(&self, automated: bool) -> Result<reply::Destination, RoutingError> {
        let contact = self.stored.contact.clone().ok_or_else(|| {
            RoutingError::Invalid("the customer has no phone number or user id".into())
        })?;
        Ok(reply::Destination {
            conversation_id: self.id(),
            workspace_id: self.stored.workspace_id,
            channel_id: self.stored.channel_id,
            phone_number_id: self.stored.phone_number_id.clone(),
            contact,
            automated,
        })
    }

    /// Sends a message of WaOS's own (out-of-hours reply, inactivity message, automation),
    /// under the rules of any reply (free text only inside the 24-hour window), holding the
    /// mailbox until it is stored; `then` learns whether it was, or why not.
    fn send_automated_reply(
        &mut self,
        message: Reply,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, Result<(), String>, &mut Context<Self>) + 'static,
    ) {
        let checked = reply::check(message, self.window_open())
            .and_then(|message| Ok((self.destination(true)?, message)));
        let (destination, message) = match checked {
            Ok(ready) => ready,
            Err(error) => return then(self, Err(automated_refusal(error)), ctx),
        };
        let db = self.context.db.clone();
        ctx.wait(
            reply::queue(db, destination, message)
                .into_actor(self)
                .map(move |stored, conversation, ctx| match stored {
                    Ok(view) => {
                        if let State::Assigned { agent, .. } = &conversation.state {
                            agent.do_send(Deliver {
                                frame: ServerFrame::Message {
                                    conversation_id: conversation.id().to_string(),
                                    message: view,
                                },
                            });
                        }
                        then(conversation, Ok(()), ctx)
                    }
                    Err(error) => {
                        tracing::warn!(%error, conversation_id = %conversation.id(), "automated message not sent");
                        then(conversation, Err(automated_refusal(error)), ctx)
                    }
                }),
        );
    }

    /// An automated text; `then` learns whether it was stored.
    fn send_automated(
        &mut self,
        text: String,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, bool, &mut Context<Self>) + 'static,
    ) {
        self.send_automated_reply(Reply::Text(text), ctx, move |conversation, sent, ctx| {
            then(conversation, sent.is_ok(), ctx)
        });
    }

    /// The team's out-of-hours reply: once per cycle, while the team is closed and the
    /// customer waits for an answer inside the window.
    fn reply_out_of_hours(&mut self, ctx: &mut Context<Self>) {
        let Some(text) = self.time.out_of_hours_reply.clone() else {
            return;
        };
        if matches!(self.state, State::Resolved { .. }) {
            return;
        }
        let now = Utc::now();
        if self.clocks.out_of_hours_replied()
            || self.clocks.awaiting_reply_since.is_none()
            || self.time.is_open(now)
        {
            return;
        }
        self.send_automated(text, ctx, move |conversation, sent, ctx| {
            if !sent {
                return;
            }
            conversation.clocks.out_of_hours_replied_at = Some(now);
            let opens = conversation.time.calendar().next_change(now);
            conversation.audit(
                AuditKind::OutOfHoursReplied,
                None,
                Some(json!({"opens_at": opens})),
                match opens {
                    Some(at) => format!("out-of-hours reply sent; the team opens at {at}"),
                    None => "out-of-hours reply sent".to_owned(),
                },
            );
            conversation.persist(ctx);
        });
    }

    /// The customer has not written for the team's inactivity time after an agent's reply.
    fn auto_resolve(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.state, State::Assigned { .. }) {
            return;
        }
        let after_ms = self.time.auto_resolve_after_ms.unwrap_or_default();
        let finish = move |conversation: &mut Self, _: bool, ctx: &mut Context<Self>| {
            // Something may have happened while the message was stored (a customer message,
            // another agent assigned by a rule): the holder is read now, not before.
            let holder = match &conversation.state {
                State::Assigned { agent_id, .. } => Some(*agent_id),
                _ => None,
            };
            let due = conversation
                .auto_resolve_at()
                .is_some_and(|at| at <= Utc::now());
            let Some(agent_id) = holder.filter(|_| due) else {
                conversation.rearm(ctx);
                return;
            };
            conversation.finish(
                agent_id,
                AuditKind::AutoResolved,
                Some(json!({"after_ms": after_ms})),
                format!(
                    "resolved: no customer message for {:.1} s after the agent's reply",
                    after_ms as f64 / 1000.0
                ),
                ctx,
            );
        };
        match self.time.auto_resolve_message.clone() {
            Some(text) => self.send_automated(text, ctx, finish),
            None => finish(self, false, ctx),
        }
    }

    /// After a rebuild: finds the agent who holds this conversation and tells it, holding the
    /// mailbox meanwhile. A database hiccup retries; only a missing agent requeues.
    ///
    /// Until the agent is found the actor's state is the placeholder `Waiting`, so the mailbox
    /// waits for it, retries included (a message handled meanwhile, or a write, would act on
    /// or store "waiting, nobody" over the assignment), and what follows a resume
    /// ([`after_resume`]) runs once it is attached.
    ///
    /// [`after_resume`]: ConversationActor::after_resume
    fn attach_agent(&mut self, agent_id: AgentId, ctx: &mut Context<Self>) {
        self.attaching = true;
        let (supervisor, retry) = (self.supervisor.clone(), self.context.settings.store_retry);
        let conversation_id = self.id();
        ctx.wait(
            async move {
                loop {
                    let found = supervisor
                        .send(GetAgent { agent_id })
                        .await
                        .map_err(|_| RoutingError::Unavailable)
                        .and_then(|found| found);
                    match found {
                        Ok(found) => break found,
                        Err(error) => {
                            tracing::warn!(%error, %conversation_id, "agent not reachable; retrying");
                            tokio::time::sleep(retry).await;
                        }
                    }
                }
            }
            .into_actor(self)
            .map(move |found, conversation, ctx| match found {
                Some((agent, agent_name)) => {
                    conversation.supervisor.do_send(Restored {
                        conversation_id: conversation.id(),
                        team_id: conversation.team_id,
                    });
                    conversation.state = State::Assigned {
                        agent_id,
                        agent_name,
                        agent: agent.clone(),
                    };
                    agent.do_send(Held {
                        view: conversation.view(),
                    });
                    conversation.touch(ctx);
                    conversation.attaching = false;
                    conversation.after_resume(ctx);
                }
                None => {
                    conversation.audit(
                        AuditKind::Requeued,
                        Some(agent_id),
                        None,
                        "requeued: its agent no longer exists".into(),
                    );
                    conversation.attaching = false;
                    conversation.queue(None, ctx);
                    conversation.after_resume(ctx);
                }
            }),
        );
    }

    /// Restarts the idle clock; only an assigned conversation may stop for being idle (a waiting
    /// or offered one is in the supervisor's queue or has a timer running).
    fn touch(&mut self, ctx: &mut Context<Self>) {
        self.idle_expired = false;
        if let Some(handle) = self.idle.take() {
            ctx.cancel_future(handle);
        }
        if matches!(self.state, State::Assigned { .. }) {
            self.idle = Some(ctx.run_later(
                self.context.settings.conversation_idle,
                |conversation, _| {
                    conversation.idle = None;
                    if matches!(conversation.state, State::Assigned { .. }) {
                        conversation.idle_expired = true;
                        conversation.directory.do_send(RetireRequest {
                            conversation_id: conversation.id(),
                        });
                    }
                },
            ));
        }
    }

    /// The current cycle's facts are filed under these (none before a cycle began).
    fn fact_scope(&self) -> Option<FactScope> {
        Some(FactScope {
            conversation_id: self.id(),
            cycle: self.clocks.cycle,
            cycle_started_at: self.clocks.cycle_started_at?,
            workspace_id: self.stored.workspace_id,
            team_id: self.team_id,
            channel_id: self.stored.channel_id,
        })
    }

    /// A duration of the cycle, from its start to now, stored with the next state write.
    fn measure(&mut self, metric: FactMetric, agent_id: Option<AgentId>) {
        if let Some(scope) = self.fact_scope() {
            let fact = scope.duration(metric, agent_id, Utc::now(), self.time.calendar.as_ref());
            self.facts.push(fact);
        }
    }

    /// A count of the cycle at `at`, stored with the next state write.
    fn tally(
        &mut self,
        metric: FactMetric,
        agent_id: Option<AgentId>,
        at: chrono::DateTime<Utc>,
        value: i64,
    ) {
        if let Some(scope) = self.fact_scope() {
            self.facts.push(scope.count(metric, agent_id, at, value));
        }
    }

    fn id(&self) -> ConversationId {
        self.stored.id
    }

    pub fn view(&self) -> ConversationView {
        self.stored.view(
            self.state.status(),
            self.state.agent_id(),
            self.team_id,
            self.time.is_open(Utc::now()),
            self.clocks.view(),
        )
    }

    fn audit(
        &self,
        kind: AuditKind,
        agent_id: Option<AgentId>,
        reason: Option<serde_json::Value>,
        text: String,
    ) {
        self.context.audit(AuditRecord {
            workspace_id: Some(self.stored.workspace_id),
            conversation_id: Some(self.id()),
            agent_id,
            kind,
            reason,
            text,
            at: Some(Utc::now()),
        });
    }

    /// Writes the state; later messages to this actor wait for the write, so writes stay in order.
    fn persist(&mut self, ctx: &mut Context<Self>) {
        self.persist_then(ctx, |_, _| {});
    }

    /// Writes the state, then runs `next` (stopping the actor must wait for the last write).
    fn persist_then(
        &mut self,
        ctx: &mut Context<Self>,
        next: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        // Until it is stored: the actor must not run ahead of the database (a restart, or the
        // next actor after this one idles out, would read an older state and strand the
        // conversation). The mailbox waits meanwhile, so later changes stay in order.
        //
        // The state is read when the write starts, not when it is asked for: actix polls the
        // most recent `ctx.wait` first, so a write asked for earlier in the same turn starts
        // after later ones, and must not put back an older state.
        ctx.wait(
            fut::ready(())
                .then(|(), conversation: &mut Self, _| {
                    let context = conversation.context.clone();
                    let (id, status, agent, team) = (
                        conversation.id(),
                        conversation.state.status(),
                        conversation.state.agent_id(),
                        conversation.team_id,
                    );
                    let (clocks, marks) = (conversation.clocks.clone(), conversation.marks.clone());
                    let epoch = context.owner_epoch(conversation.stored.workspace_id);
                    let facts = std::mem::take(&mut conversation.facts);
                    async move {
                        // Not this node's workspace any more: its new owner routes it.
                        let Ok(epoch) = epoch else {
                            tracing::info!(conversation_id = %id, "conversation state not written: this node no longer holds its workspace");
                            return true;
                        };
                        let state = store::RoutingState {
                            status,
                            assigned: agent,
                            team_id: team,
                            clocks: &clocks,
                            marks: &marks,
                            epoch,
                        };
                        let mut attempt = 0;
                        loop {
                            let saved = {
                                let _permit = context.writes.acquire().await;
                                store::save_state(&context.db, id, &state, &facts).await
                            };
                            let error = match saved {
                                Ok(()) => break false,
                                // Another node owns the workspace now: retrying cannot help,
                                // and this actor must route it no longer.
                                Err(store::SaveError::Fenced(epoch)) => {
                                    tracing::warn!(conversation_id = %id, epoch, "conversation state fenced off: another node owns its workspace now");
                                    break true;
                                }
                                Err(store::SaveError::Database(error)) => error,
                            };
                            attempt += 1;
                            let wait = context.settings.store_retry_after(attempt);
                            tracing::warn!(%error, conversation_id = %id, attempt, retry_in_ms = wait.as_millis() as u64, "conversation state not saved; trying again");
                            tokio::time::sleep(wait).await;
                        }
                    }
                    .into_actor(conversation)
                })
                .map(move |fenced, conversation, ctx| {
                    if fenced {
                        ctx.stop();
                    } else {
                        next(conversation, ctx);
                    }
                }),
        );
    }

    fn waiting(&self) -> Waiting {
        Waiting {
            conversation_id: self.id(),
            team_id: self.team_id,
            since: self.since,
            priority: self.stored.priority,
            front: self.front,
            window_expires_at: self.stored.window_expires_at,
            required_skills: self.stored.required_skills.clone(),
            excluded: self.excluded.clone(),
            sticky: self.stored.sticky,
            first_response_due: self.clocks.first_response_due(),
            offer_hours: (!self.time.offer_outside_hours && self.time.calendar.is_some())
                .then(|| self.time.clone()),
        }
    }

    /// What a queued (or reopened) event records of the request, for `waos replay`.
    fn queued_reason(&self) -> serde_json::Value {
        json!({
            "team_id": self.team_id,
            "priority": self.stored.priority,
            "required_skills": self.stored.required_skills,
            "sticky": self.stored.sticky,
        })
    }

    /// Back to waiting and into the queue, freeing `release`'s slot.
    fn queue(&mut self, release: Option<AgentId>, ctx: &mut Context<Self>) {
        self.state = State::Waiting;
        self.persist(ctx);
        self.request_agent(release);
    }

    fn request_agent(&mut self, release: Option<AgentId>) {
        self.supervisor.do_send(RequestAgent {
            waiting: self.waiting(),
            release,
        });
    }

    fn offer_view(&self, expires_at: chrono::DateTime<Utc>, position: usize) -> OfferView {
        OfferView {
            conversation_id: self.id().to_string(),
            expires_at,
            position,
            contact: self.stored.contact.clone(),
            last_message: self.last_message.clone(),
        }
    }

    fn assign(
        &mut self,
        agent_id: AgentId,
        agent_name: String,
        agent: Addr<AgentActor>,
        reason: String,
        ctx: &mut Context<Self>,
    ) {
        self.assign_then(agent_id, agent_name, agent, reason, ctx, |_, _| {});
    }

    /// Assigns, then runs `next` once the agent has been told (with the history).
    fn assign_then(
        &mut self,
        agent_id: AgentId,
        agent_name: String,
        agent: Addr<AgentActor>,
        reason: String,
        ctx: &mut Context<Self>,
        next: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        self.state = State::Assigned {
            agent_id,
            agent_name,
            agent: agent.clone(),
        };
        self.front = false;
        if self.clocks.assigned_at.is_none() && self.clocks.cycle_started_at.is_some() {
            let now = Utc::now();
            self.clocks.assigned_at = Some(now);
            self.measure(FactMetric::QueueWait, Some(agent_id));
            let missed = i64::from(self.clocks.missed_offers);
            self.tally(
                FactMetric::OffersBeforeAcceptance,
                Some(agent_id),
                now,
                missed,
            );
        }
        self.persist(ctx);
        self.touch(ctx);
        let view = self.view();
        let db = self.context.db.clone();
        let context = self.context.clone();
        let id = self.id();
        // The agent gets the conversation, then its history, in one message so nothing
        // interleaves; the mailbox waits for it, so that nothing that follows (a requeue, a
        // resolve, the actor idling out) can overtake or cancel the assignment.
        ctx.wait(
            async move {
                let _permit = context.writes.acquire().await;
                store::recent_messages(&db, id, HISTORY_ON_ASSIGN)
                    .await
                    .unwrap_or_default()
            }
            .into_actor(self)
            .map(move |messages, conversation, ctx| {
                agent.do_send(Assigned {
                    view,
                    reason,
                    messages,
                });
                next(conversation, ctx)
            }),
        );
    }

    /// Ends a pending offer without an assignment; the agent's slot is freed by the requeue.
    fn end_offer(
        &mut self,
        agent_id: AgentId,
        kind: AuditKind,
        text: String,
        cooldown: bool,
        ctx: &mut Context<Self>,
    ) {
        let State::Offered { agent, timer, .. } =
            std::mem::replace(&mut self.state, State::Waiting)
        else {
            return;
        };
        ctx.cancel_future(timer);
        if self.clocks.assigned_at.is_none() {
            self.clocks.missed_offers += 1;
        }
        if cooldown {
            self.excluded.insert(
                agent_id,
                Instant::now() + self.context.settings.decline_cooldown,
            );
        }
        agent.do_send(OfferEnded {
            conversation_id: self.id(),
            reason: text.clone(),
        });
        self.audit(kind, Some(agent_id), None, text);
        self.queue(Some(agent_id), ctx);
    }

    fn offer_timeout(&self) -> Duration {
        self.context
            .settings
            .offer_timeout_unit
            .saturating_mul(u32::try_from(self.offer_timeout_secs.max(1)).unwrap_or(1))
    }

    fn is_held_by(&self, agent_id: Option<AgentId>) -> bool {
        match (&self.state, agent_id) {
            (State::Assigned { .. }, None) => true,
            (
                State::Assigned {
                    agent_id: holder, ..
                },
                Some(agent),
            ) => *holder == agent,
            _ => false,
        }
    }
}

/// Stores report facts apart from a state write, trying until it can (keyed: a retry adds
/// nothing).
/// A team's time settings, its workspace's rules and the cycle's own SLA policy when it is not
/// the team's, tried again until the database answers.
async fn settings_of(
    context: Arc<RoutingContext>,
    team_id: TeamId,
    workspace_id: WorkspaceId,
    cycle_policy: Option<SlaPolicyId>,
) -> (Arc<TeamTime>, Arc<RuleSet>, Option<Policy>) {
    let mut attempt = 0;
    loop {
        let loaded = async {
            let time = context.times.get(&context.db, team_id).await?;
            let rules = context.automations.get(&context.db, workspace_id).await?;
            let policy = match cycle_policy
                .filter(|id| time.policy.as_ref().is_none_or(|team| team.id != *id))
            {
                Some(id) => {
                    crate::time::settings::load_policy(&context.db, id, context.settings.time_unit)
                        .await?
                }
                None => None,
            };
            Ok::<_, sea_orm::DbErr>((time, rules, policy))
        };
        match loaded.await {
            Ok(loaded) => return loaded,
            Err(error) => {
                attempt += 1;
                let wait = context.settings.store_retry_after(attempt);
                tracing::warn!(%error, %team_id, attempt, "team's settings not loaded; trying again");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn store_facts(context: &RoutingContext, facts: &[Fact]) {
    if facts.is_empty() {
        return;
    }
    let mut attempt = 0;
    loop {
        let stored = {
            let _permit = context.writes.acquire().await;
            crate::reports::record(&context.db, facts).await
        };
        let Err(error) = stored else { return };
        attempt += 1;
        let wait = context.settings.store_retry_after(attempt);
        tracing::warn!(%error, attempt, retry_in_ms = wait.as_millis() as u64, "report facts not stored; trying again");
        tokio::time::sleep(wait).await;
    }
}

/// Why a message of WaOS's own was not sent, for the audit.
fn automated_refusal(error: RoutingError) -> String {
    match error {
        RoutingError::WindowClosed => "the customer's 24-hour window is closed".to_owned(),
        other => other.to_string(),
    }
}

impl Actor for ConversationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.context.conversation_actors.inc();
        self.load_settings(ctx, |conversation, ctx| conversation.resume(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.context.conversation_actors.dec();
        // A held conversation that went quiet still has clocks running: wake it for them.
        let wake_at = match self.state {
            State::Resolved { .. } => None,
            _ => {
                let warn_before = self.policy().and_then(|p| p.warn_before);
                [
                    self.clocks.next_alarm(warn_before),
                    self.auto_resolve_at(),
                    self.next_rule_timer(),
                ]
                .into_iter()
                .flatten()
                .min()
            }
        };
        self.directory.do_send(ConversationStopped {
            conversation_id: self.id(),
            wake_at,
        });
    }
}

impl ConversationActor {
    /// Started: a new conversation's `conversation_created` rules and the opening message's
    /// `message_received` rules run first (so a rule that routes it does so before anyone is
    /// offered it). Then an assigned conversation stays with its agent; anything else queues
    /// (offers never survive a rebuild). The cycle gets its SLA policy if it has none yet,
    /// what fell due while nobody watched is reported, and the clocks are armed.
    fn resume(&mut self, ctx: &mut Context<Self>) {
        self.opening_rules(ctx, |conversation, ctx| {
            conversation.resume_after_rules(ctx)
        });
    }

    fn resume_after_rules(&mut self, ctx: &mut Context<Self>) {
        // A rule resolved it: nothing is left to route or time.
        if matches!(self.state, State::Resolved { .. }) {
            return;
        }
        // The cycle counts once it is routed, recorded whenever the actor starts (the key keeps
        // one). Even one rebuilt as assigned: a process killed between the assignment's write
        // and this fact's (written apart) would otherwise lose it for good.
        if let Some(start) = self.clocks.cycle_started_at {
            self.tally(FactMetric::Opened, None, start, 1);
        }
        if self.apply_policy() {
            self.store_applied_clocks();
        }
        if self.stored.status == ConversationStatus::Assigned {
            self.store_facts_apart();
        }
        self.resume_routing(ctx);
        // Rebuilt as assigned: settled once its agent is attached.
        if !self.attaching {
            self.after_resume(ctx);
        }
    }

    /// Once routing has resumed: the out-of-hours reply, the holder told of its SLA standing,
    /// the timers.
    fn after_resume(&mut self, ctx: &mut Context<Self>) {
        self.reply_out_of_hours(ctx);
        if self.clocks.is_breached() || self.clocks.at_risk() {
            self.tell_sla_standing();
        }
        self.rearm(ctx);
    }

    fn resume_routing(&mut self, ctx: &mut Context<Self>) {
        self.routed = true;
        // A rule assigned or resolved it already.
        if !matches!(self.state, State::Waiting) {
            return;
        }
        let assigned = (self.stored.status == ConversationStatus::Assigned)
            .then_some(self.stored.assigned_agent_id)
            .flatten();
        match assigned {
            Some(agent_id) => self.attach_agent(agent_id, ctx),
            None => {
                self.audit(
                    AuditKind::Queued,
                    None,
                    Some(self.queued_reason()),
                    format!("queued in team {}", self.team_id),
                );
                match self.stored.status {
                    // Stored as waiting already (a new conversation): only its fact to write.
                    ConversationStatus::Waiting => {
                        self.store_facts_apart();
                        self.request_agent(None);
                    }
                    _ => self.queue(None, ctx),
                }
            }
        }
    }
}

impl Handler<Offer> for ConversationActor {
    type Result = ();

    fn handle(&mut self, offer: Offer, ctx: &mut Context<Self>) {
        if !matches!(self.state, State::Waiting) {
            // Taken or resolved meanwhile: give the slot back.
            self.supervisor.do_send(Release {
                conversation_id: self.id(),
                agent_id: offer.agent_id,
            });
            return;
        }
        let explanation = offer
            .decision
            .as_ref()
            .map_or_else(|| "assigned by a supervisor".to_owned(), Decision::explain);
        let reason = offer
            .decision
            .as_ref()
            .and_then(|d| serde_json::to_value(d).ok());
        if self.auto_accept || offer.manual {
            let why = match (offer.picked, offer.manual) {
                (true, _) => "picked",
                (false, true) => "manual assignment",
                (false, false) => "auto-accept",
            };
            if offer.picked {
                self.audit(
                    AuditKind::Picked,
                    Some(offer.agent_id),
                    None,
                    format!("picked from the queue by {}", offer.agent_name),
                );
            } else {
                self.audit(
                    AuditKind::Assigned,
                    Some(offer.agent_id),
                    reason,
                    format!("assigned to {} ({why}): {explanation}", offer.agent_name),
                );
            }
            self.assign(
                offer.agent_id,
                offer.agent_name,
                offer.agent,
                why.to_owned(),
                ctx,
            );
            return;
        }
        let timeout = self.offer_timeout();
        let expires_at = Utc::now() + chrono::Duration::from_std(timeout).unwrap_or_default();
        let agent_id = offer.agent_id;
        let timer = ctx.run_later(timeout, move |conversation, ctx| {
            let secs = timeout.as_secs_f64();
            let name = match &conversation.state {
                State::Offered { agent_name, .. } => agent_name.clone(),
                _ => return,
            };
            conversation.end_offer(
                agent_id,
                AuditKind::TimedOut,
                format!("offer to {name} timed out after {secs} s"),
                true,
                ctx,
            );
        });
        self.audit(
            AuditKind::Offered,
            Some(agent_id),
            reason,
            format!("offered to {}: {explanation}", offer.agent_name),
        );
        offer.agent.do_send(Offered {
            offer: self.offer_view(expires_at, offer.position),
        });
        self.state = State::Offered {
            agent_id,
            agent_name: offer.agent_name,
            agent: offer.agent,
            timer,
            offered_at: Instant::now(),
        };
        self.persist(ctx);
    }
}

impl Handler<Wake> for ConversationActor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.rearm(ctx);
    }
}

impl Handler<ReloadSettings> for ConversationActor {
    type Result = ();

    fn handle(&mut self, _: ReloadSettings, ctx: &mut Context<Self>) {
        self.load_settings(ctx, |conversation, ctx| {
            if matches!(conversation.state, State::Waiting) {
                conversation.request_agent(None);
            }
            conversation.rearm(ctx);
        });
    }
}

impl Handler<Ping> for ConversationActor {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

impl Handler<TagsEdited> for ConversationActor {
    type Result = ();

    fn handle(&mut self, edited: TagsEdited, _: &mut Context<Self>) {
        self.stored.raw.tags =
            serde_json::to_string(&edited.tags).unwrap_or_else(|_| "[]".to_owned());
    }
}

impl Handler<Stop> for ConversationActor {
    type Result = ();

    fn handle(&mut self, stop: Stop, ctx: &mut Context<Self>) {
        // A reply still being stored keeps it: stopping now would drop the agent's answer.
        let quiet = self.idle_expired
            && self.replies_in_flight == 0
            && matches!(self.state, State::Assigned { .. });
        if quiet || matches!(self.state, State::Resolved { .. }) {
            tracing::debug!(conversation_id = %self.id(), "conversation actor stops");
            ctx.stop();
            return;
        }
        // Built by a takeover from the rows that this message opened: its rules are run
        // here, once (the directory loads nothing fresh for it now).
        if let Some(opening) = stop.opening {
            self.message_rules(opening, ctx, |_, _| {});
        }
        self.directory.do_send(StillRunning {
            conversation_id: self.id(),
        });
    }
}

impl Handler<Opened> for ConversationActor {
    type Result = ();

    fn handle(&mut self, opened: Opened, ctx: &mut Context<Self>) {
        self.message_rules(opened.message, ctx, |_, _| {});
    }
}

impl Handler<Abandon> for ConversationActor {
    type Result = ();

    fn handle(&mut self, _: Abandon, ctx: &mut Context<Self>) {
        tracing::debug!(conversation_id = %self.id(), "conversation actor abandoned to another node");
        ctx.stop();
    }
}

impl Handler<NewMessage> for ConversationActor {
    type Result = ();

    fn handle(&mut self, message: NewMessage, ctx: &mut Context<Self>) {
        self.touch(ctx);
        // Each customer message reopens the 24-hour window from its own time.
        if message.message.direction == MessageDirection::In {
            let until = message.message.timestamp + crate::ingest::CUSTOMER_SERVICE_WINDOW;
            if self
                .stored
                .window_expires_at
                .is_none_or(|current| until > current)
            {
                self.stored.window_expires_at = Some(until);
                // The queue orders by the window too: it must see the new one.
                if matches!(self.state, State::Waiting) {
                    self.supervisor.do_send(UpdateWaiting {
                        conversation_id: self.id(),
                        window_expires_at: self.stored.window_expires_at,
                    });
                }
            }
        }
        if let State::Assigned { agent, .. } = &self.state {
            agent.do_send(Deliver {
                frame: ServerFrame::Message {
                    conversation_id: self.id().to_string(),
                    message: message.message.clone(),
                },
            });
        }
        let customer_wrote = message.message.direction == MessageDirection::In;
        let written_at = message.message.timestamp;
        if customer_wrote && self.last_customer_at.is_none_or(|last| written_at > last) {
            self.last_customer_at = Some(written_at);
        }
        self.last_message = Some(message.message);
        if !customer_wrote {
            return;
        }
        // Written as the agent resolved it (ingest still saw it open): it waits for an agent
        // again rather than leaving the customer unanswered, in a new cycle.
        if matches!(self.state, State::Resolved { .. }) {
            self.audit(
                AuditKind::Reopened,
                None,
                Some(self.queued_reason()),
                "reopened by a customer message that arrived as it was resolved".into(),
            );
            self.clocks = Clocks {
                cycle: self.clocks.cycle + 1,
                cycle_started_at: Some(written_at),
                awaiting_reply_since: Some(written_at),
                ..Clocks::default()
            };
            self.marks.fired.clear();
            self.cycle_policy = None;
            self.apply_policy();
            self.tally(FactMetric::Opened, None, written_at, 1);
            self.queue(None, ctx);
        } else {
            let waiting_before = self.clocks.awaiting_reply_since;
            let next_before = self.clocks.next_response_due_at;
            let policy = self.policy().cloned();
            self.clocks
                .customer_wrote(written_at, policy.as_ref(), self.time.calendar());
            if (waiting_before, next_before)
                != (
                    self.clocks.awaiting_reply_since,
                    self.clocks.next_response_due_at,
                )
            {
                self.persist(ctx);
                self.push_sla();
            }
        }
        // The rules first (one may move it to an open team, or resolve it), then whether the
        // customer is told the team is closed, on the state the rules left.
        if let Some(message) = self.last_message.clone() {
            self.message_rules(message, ctx, |conversation, ctx| {
                conversation.reply_out_of_hours(ctx);
                conversation.rearm(ctx);
            });
        }
    }
}

impl Handler<Accept> for ConversationActor {
    type Result = Result<(), RoutingError>;

    fn handle(&mut self, accept: Accept, ctx: &mut Context<Self>) -> Self::Result {
        let State::Offered { agent_id, .. } = &self.state else {
            return Err(RoutingError::Conflict("the offer is no longer open".into()));
        };
        if *agent_id != accept.agent_id {
            return Err(RoutingError::Conflict("the offer is no longer open".into()));
        }
        let State::Offered {
            agent_id,
            agent_name,
            agent,
            timer,
            offered_at,
        } = std::mem::replace(&mut self.state, State::Waiting)
        else {
            return Err(RoutingError::Conflict("the offer is no longer open".into()));
        };
        ctx.cancel_future(timer);
        self.audit(
            AuditKind::Accepted,
            Some(agent_id),
            Some(json!({"after_ms": offered_at.elapsed().as_millis() as u64})),
            format!(
                "accepted by {agent_name} after {:.1} s",
                offered_at.elapsed().as_secs_f64()
            ),
        );
        self.assign(agent_id, agent_name, agent, "accepted".to_owned(), ctx);
        Ok(())
    }
}

impl Handler<Decline> for ConversationActor {
    type Result = Result<(), RoutingError>;

    fn handle(&mut self, decline: Decline, ctx: &mut Context<Self>) -> Self::Result {
        let name = match &self.state {
            State::Offered {
                agent_id,
                agent_name,
                ..
            } if *agent_id == decline.agent_id => agent_name.clone(),
            _ => return Err(RoutingError::Conflict("the offer is no longer open".into())),
        };
        self.end_offer(
            decline.agent_id,
            AuditKind::Declined,
            format!("declined by {name}"),
            true,
            ctx,
        );
        Ok(())
    }
}

impl Handler<Withdraw> for ConversationActor {
    type Result = ();

    fn handle(&mut self, withdraw: Withdraw, ctx: &mut Context<Self>) {
        let name = match &self.state {
            State::Offered {
                agent_id,
                agent_name,
                ..
            } if *agent_id == withdraw.agent_id => agent_name.clone(),
            _ => return,
        };
        self.end_offer(
            withdraw.agent_id,
            AuditKind::Withdrawn,
            format!("offer to {name} withdrawn: {}", withdraw.reason),
            false,
            ctx,
        );
    }
}

impl Handler<Resolve> for ConversationActor {
    type Result = Result<(), RoutingError>;

    fn handle(&mut self, resolve: Resolve, ctx: &mut Context<Self>) -> Self::Result {
        if !self.is_held_by(resolve.agent_id) {
            return Err(RoutingError::NotAssigned);
        }
        let (agent_id, agent_name) = match &self.state {
            State::Assigned {
                agent_id,
                agent_name,
                ..
            } => (*agent_id, agent_name.clone()),
            _ => return Err(RoutingError::NotAssigned),
        };
        self.finish(
            agent_id,
            AuditKind::Resolved,
            None,
            format!("resolved by {agent_name}"),
            ctx,
        );
        Ok(())
    }
}

impl ConversationActor {
    /// Resolves a held conversation: its clocks settle, the resolve is stored, then the slot
    /// frees and the actor retires.
    fn finish(
        &mut self,
        agent_id: AgentId,
        kind: AuditKind,
        reason: Option<serde_json::Value>,
        text: String,
        ctx: &mut Context<Self>,
    ) {
        let State::Assigned { agent, .. } = &self.state else {
            return;
        };
        let agent = agent.clone();
        self.state = State::Resolved { by: Some(agent_id) };
        self.audit(kind, Some(agent_id), reason, text);
        self.settle(ctx);
        // The slot frees only once the resolve is stored, so the next conversation cannot
        // overtake it, and the actor stops after its last write. The workspace's
        // `conversation_resolved` rules run first (a survey, a tag).
        self.resolved_rules(ctx, move |conversation, ctx| {
            conversation.persist_then(ctx, move |conversation, _| {
                agent.do_send(Unassigned {
                    conversation_id: conversation.id(),
                    reason: ConversationStatus::Resolved.to_string(),
                });
                conversation.supervisor.do_send(Release {
                    agent_id,
                    conversation_id: conversation.id(),
                });
                conversation.retire();
            });
        });
    }

    /// A resolve: the clocks settle and stop.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        let by = self.state.agent_id();
        self.measure(FactMetric::Resolution, by);
        if self.clocks.policy_id.is_some() && self.clocks.breached.is_empty() {
            self.tally(FactMetric::SlaMet, by, now, 1);
        }
        let settled = self.clocks.resolved(now);
        self.report(settled);
        self.tell_sla_standing();
        if let Some(handle) = self.alarm.take() {
            ctx.cancel_future(handle);
        }
    }

    /// Resolved and stored: out of the queue, and the actor retires.
    fn retire(&self) {
        self.supervisor.do_send(Unqueue {
            conversation_id: self.id(),
        });
        self.directory.do_send(RetireRequest {
            conversation_id: self.id(),
        });
    }
}

impl Handler<Requeue> for ConversationActor {
    type Result = ();

    fn handle(&mut self, requeue: Requeue, ctx: &mut Context<Self>) {
        if !self.is_held_by(Some(requeue.agent_id)) {
            return;
        }
        if let State::Assigned { agent, .. } = &self.state {
            agent.do_send(Unassigned {
                conversation_id: self.id(),
                reason: requeue.reason.clone(),
            });
        }
        self.audit(
            AuditKind::Requeued,
            Some(requeue.agent_id),
            None,
            format!("requeued: {}", requeue.reason),
        );
        self.front = true;
        self.queue(Some(requeue.agent_id), ctx);
    }
}

impl Handler<TransferToTeam> for ConversationActor {
    type Result = ResponseActFuture<Self, Result<(), RoutingError>>;

    fn handle(&mut self, transfer: TransferToTeam, _: &mut Context<Self>) -> Self::Result {
        let db = self.context.db.clone();
        let workspace = self.stored.workspace_id.to_string();
        let team_id = transfer.team_id;
        Box::pin(
            async move {
                use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
                crate::store::entity::team::Entity::find_by_id(team_id)
                    .filter(crate::store::entity::team::Column::WorkspaceId.eq(workspace))
                    .one(&db)
                    .await
            }
            .into_actor(self)
            .map(move |team, conversation, ctx| {
                let team = team
                    .map_err(|_| RoutingError::Unavailable)?
                    .ok_or(RoutingError::NotFound("team"))?;
                if !conversation.is_held_by(transfer.by) && transfer.by.is_some() {
                    return Err(RoutingError::NotAssigned);
                }
                let previous = match std::mem::replace(&mut conversation.state, State::Waiting) {
                    State::Assigned {
                        agent_id, agent, ..
                    } => {
                        agent.do_send(Unassigned {
                            conversation_id: conversation.id(),
                            reason: format!("transferred to team {}", team.name),
                        });
                        Some(agent_id)
                    }
                    other => {
                        conversation.state = other;
                        if !matches!(conversation.state, State::Waiting) {
                            return Err(RoutingError::Conflict(
                                "only a held or waiting conversation can be transferred".into(),
                            ));
                        }
                        None
                    }
                };
                conversation.team_id = team_id;
                conversation.offer_timeout_secs = team.offer_timeout_secs;
                conversation.auto_accept = team.auto_accept;
                conversation.excluded.clear();
                conversation.audit(
                    AuditKind::Transferred,
                    previous,
                    Some(json!({"to_team_id": team_id.to_string()})),
                    format!("transferred to team {}", team.name),
                );
                // The new team's hours decide when it is offered; the cycle keeps its SLA.
                conversation.load_settings(ctx, move |conversation, ctx| {
                    conversation.queue(previous, ctx);
                    conversation.rearm(ctx);
                });
                Ok(())
            }),
        )
    }
}

impl Handler<TransferToAgent> for ConversationActor {
    /// Atomic: the mailbox waits while the slot moves, so no resolve or other assignment can
    /// come between the slot taken from `from` and the conversation given to `to` (each would
    /// release `from`'s slot a second time).
    type Result = AtomicResponse<Self, Result<(), RoutingError>>;

    fn handle(&mut self, transfer: TransferToAgent, _: &mut Context<Self>) -> Self::Result {
        let refused = |error| AtomicResponse::new(Box::pin(fut::ready(Err(error))));
        let State::Assigned { agent_id: from, .. } = &self.state else {
            return refused(RoutingError::NotAssigned);
        };
        if transfer.by.is_some_and(|by| by != *from) {
            return refused(RoutingError::NotAssigned);
        }
        if *from == transfer.to {
            return refused(RoutingError::Conflict("the agent already holds it".into()));
        }
        let from = *from;
        let supervisor = self.supervisor.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let name = supervisor
                    .send(MoveSlot { from: Some(from), to: transfer.to })
                    .await
                    .map_err(|_| RoutingError::Unavailable)??;
                let (agent, _) = supervisor
                    .send(GetAgent { agent_id: transfer.to })
                    .await
                    .map_err(|_| RoutingError::Unavailable)??
                    .ok_or(RoutingError::NotFound("agent"))?;
                Ok((name, agent))
            }
            .into_actor(self)
            .map(move |moved: Result<(String, Addr<AgentActor>), RoutingError>, conversation, ctx| {
                let (name, agent) = moved?;
                let previous_name = match &conversation.state {
                    State::Assigned { agent, agent_name, .. } => {
                        agent.do_send(Unassigned {
                            conversation_id: conversation.id(),
                            reason: format!("transferred to {name}"),
                        });
                        agent_name.clone()
                    }
                    _ => String::new(),
                };
                conversation.audit(
                    AuditKind::Transferred,
                    Some(transfer.to),
                    Some(json!({"from_agent_id": from.to_string(), "to_agent_id": transfer.to.to_string()})),
                    format!("transferred from {previous_name} to {name}"),
                );
                conversation.assign(transfer.to, name, agent, "transferred".into(), ctx);
                Ok(())
            }),
        ))
    }
}

impl Handler<SendReply> for ConversationActor {
    type Result = ResponseActFuture<Self, Result<MessageView, RoutingError>>;

    fn handle(&mut self, send: SendReply, ctx: &mut Context<Self>) -> Self::Result {
        let refused = |error| -> Self::Result { Box::pin(fut::ready(Err(error))) };
        if !self.is_held_by(Some(send.agent_id)) {
            return refused(RoutingError::NotAssigned);
        }
        let destination = match self.destination(false) {
            Ok(destination) => destination,
            Err(error) => return refused(error),
        };
        let reply = match reply::check(send.reply, self.window_open()) {
            Ok(reply) => reply,
            Err(error) => return refused(error),
        };
        self.touch(ctx);
        self.replies_in_flight += 1;
        Box::pin(
            reply::queue(self.context.db.clone(), destination, reply)
                .into_actor(self)
                .map(|stored, conversation, ctx| {
                    conversation.replies_in_flight -= 1;
                    let view = stored?;
                    // An agent's reply answers the customer: the clocks it settles are
                    // stored with the state.
                    if conversation.clocks.first_replied_at.is_none() {
                        let holder = conversation.state.agent_id();
                        conversation.measure(FactMetric::FirstResponse, holder);
                    }
                    let settled = conversation.clocks.agent_replied(Utc::now());
                    conversation.report(settled);
                    conversation.persist(ctx);
                    conversation.rearm(ctx);
                    // Every tab of the agent shows the reply.
                    if let State::Assigned { agent, .. } = &conversation.state {
                        agent.do_send(Deliver {
                            frame: ServerFrame::Message {
                                conversation_id: conversation.id().to_string(),
                                message: view.clone(),
                            },
                        });
                    }
                    Ok(view)
                }),
        )
    }
}

impl Handler<StatusUpdate> for ConversationActor {
    type Result = ();

    fn handle(&mut self, StatusUpdate(event): StatusUpdate, _: &mut Context<Self>) {
        if let State::Assigned { agent, .. } = &self.state {
            agent.do_send(Deliver {
                frame: ServerFrame::Status {
                    conversation_id: self.id().to_string(),
                    message_id: event.message_id.to_string(),
                    wamid: event.wamid,
                    status: event.status,
                    error: event.error,
                },
            });
        }
    }
}
