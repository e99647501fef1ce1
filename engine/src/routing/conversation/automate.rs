//! The conversation actor runs its workspace's automation rules: on the events that happen to
//! it, serially with routing (a rule that moves the conversation to another team does so
//! before anyone is offered it), and on its own timers for `no_agent_reply` and
//! `no_customer_reply`. Rules are evaluated by the pure [`RuleSet::evaluate`]; this file
//! carries out their actions, in order, each one done before the next starts.
//!
//! Loop guard: only a customer's message is a `message_received` event, so nothing an
//! automation sends (or an agent writes) triggers one; each event evaluates each rule once;
//! a timer rule fires once per silence ([`Marks::fired`], stored with the state).

use std::collections::VecDeque;
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{ConversationActor, State};

/// Why an action's write was not made: another node of the cluster routes the workspace now.
const NOT_OWNER: &str = "this node no longer routes the conversation's workspace";
use crate::audit::AuditKind;
use crate::automation::placeholders;
use crate::automation::rules::{Action, Event, EventKind, Facts, Fired, MessageFacts, timer_due};
use crate::ids::{AgentId, AutomationId, SlaPolicyId, TeamId};
use crate::inbox::MessageView;
use crate::routing::RoutingError;
use crate::routing::agent::{OfferEnded, Unassigned};
use crate::routing::reply::Reply;
use crate::routing::store;
use crate::routing::supervisor::{ExpectedWait, GetAgent, MoveSlot, Release, Restored, Unqueue};
use crate::store::entity::message::MessageDirection;

type Context = actix::Context<ConversationActor>;
/// What runs once an action is done: `Err` is why it failed.
type Done = Box<dyn FnOnce(&mut ConversationActor, Result<(), String>, &mut Context)>;
/// What runs once a whole run is done.
type Then = Box<dyn FnOnce(&mut ConversationActor, &mut Context)>;
/// Events whose rules are to run, each with its message.
type Events = VecDeque<(Event, Option<MessageView>)>;
/// A run asked for while another was under way.
pub(super) type PendingRun = (Events, Then);

fn routing_failure(error: RoutingError) -> String {
    match error {
        RoutingError::OverCapacity => "the agent is at capacity".to_owned(),
        RoutingError::WindowClosed => "the customer's 24-hour window is closed".to_owned(),
        other => other.to_string(),
    }
}

impl ConversationActor {
    /// The facts conditions read now, with `message` as the event's message.
    fn facts(&self, message: Option<&MessageView>) -> Facts {
        let contact = self.stored.contact.as_ref();
        Facts {
            message: message.map(|m| MessageFacts {
                text: m.text.clone(),
                kind: m.kind.clone(),
                button_payload: m.button_payload.clone(),
            }),
            channel_id: self.stored.channel_id.to_string(),
            team_id: self.team_id.to_string(),
            contact_phone: contact.and_then(|c| c.phone.clone()),
            contact_name: contact.and_then(|c| c.name.clone()),
            contact_is_new: self.stored.raw.contact_is_new,
            tags: serde_json::from_str(&self.stored.raw.tags).unwrap_or_default(),
            priority: self.stored.priority,
            within_hours: self.time.is_open(Utc::now()),
            folded_text: Default::default(),
        }
    }

    /// A just-started conversation: its `conversation_created` rules if they have not run
    /// yet, then the opening message's `message_received` rules (only for the message ingest
    /// handed over with it: a rebuild never runs an old message's rules again).
    pub(super) fn opening_rules(
        &mut self,
        ctx: &mut Context,
        next: impl FnOnce(&mut Self, &mut Context) + 'static,
    ) {
        let mut events = Vec::new();
        if std::mem::take(&mut self.marks.pending)
            && self.rules.listens(EventKind::ConversationCreated)
        {
            events.push((Event::ConversationCreated, self.last_message.clone()));
        }
        if std::mem::take(&mut self.stored.fresh)
            && self.rules.listens(EventKind::MessageReceived)
            && let Some(message) = self
                .last_message
                .clone()
                .filter(|m| m.direction == MessageDirection::In)
        {
            events.push((Event::MessageReceived, Some(message)));
        }
        self.automate(events.into(), ctx, Box::new(next));
    }

    /// A customer's message (never an automation's or an agent's): its rules, then `next`.
    pub(super) fn message_rules(
        &mut self,
        message: MessageView,
        ctx: &mut Context,
        next: impl FnOnce(&mut Self, &mut Context) + 'static,
    ) {
        let mut events = VecDeque::new();
        if message.direction == MessageDirection::In
            && self.rules.listens(EventKind::MessageReceived)
        {
            events.push_back((Event::MessageReceived, Some(message)));
        }
        self.automate(events, ctx, Box::new(next));
    }

    /// Just resolved: the `conversation_resolved` rules, then `next`.
    pub(super) fn resolved_rules(
        &mut self,
        ctx: &mut Context,
        next: impl FnOnce(&mut Self, &mut Context) + 'static,
    ) {
        let mut events = VecDeque::new();
        if self.rules.listens(EventKind::ConversationResolved) {
            events.push_back((Event::ConversationResolved, self.last_message.clone()));
        }
        self.automate(events, ctx, Box::new(next));
    }

    /// Where the silence a timer rule measures began, if one is running: the customer's
    /// latest unanswered message (`no_agent_reply`) or the agent's reply the customer has not
    /// answered (`no_customer_reply`).
    fn silence_since(&self, event: EventKind) -> Option<DateTime<Utc>> {
        if matches!(self.state, State::Resolved { .. }) {
            return None;
        }
        match event {
            EventKind::NoAgentReply => self
                .clocks
                .awaiting_reply_since
                .map(|since| self.last_customer_at.map_or(since, |last| last.max(since))),
            EventKind::NoCustomerReply if self.clocks.awaiting_reply_since.is_none() => {
                self.clocks.last_agent_reply_at
            }
            _ => None,
        }
    }

    /// Timer rules still to fire in the current silences: (rule, silence start, due).
    fn pending_timers(&self) -> Vec<(AutomationId, DateTime<Utc>, DateTime<Utc>)> {
        if self.attaching {
            return Vec::new();
        }
        let unit_ms = i64::try_from(self.context.settings.time_unit.as_millis())
            .unwrap_or(1000)
            .max(1);
        self.rules
            .timers()
            .filter_map(|rule| {
                let since = self.silence_since(rule.trigger.event)?;
                if self.marks.fired_for(rule.id, since) {
                    return None;
                }
                let after_ms = i64::from(rule.trigger.after_secs?).saturating_mul(unit_ms);
                Some((rule.id, since, timer_due(since, after_ms)))
            })
            .collect()
    }

    /// When the next timer rule is due.
    pub(super) fn next_rule_timer(&self) -> Option<DateTime<Utc>> {
        self.pending_timers()
            .into_iter()
            .map(|(_, _, due)| due)
            .min()
    }

    /// Runs the timer rules due by `now` (each marked fired first, so it fires once), then
    /// re-arms; `false` when none was due.
    pub(super) fn run_due_timers(&mut self, now: DateTime<Utc>, ctx: &mut Context) -> bool {
        let due: Vec<_> = self
            .pending_timers()
            .into_iter()
            .filter(|(_, _, at)| *at <= now)
            .collect();
        if due.is_empty() {
            return false;
        }
        let mut events = VecDeque::new();
        for (automation_id, since, _) in due {
            self.marks.fired.insert(automation_id, since);
            events.push_back((Event::Timer { automation_id }, self.last_message.clone()));
        }
        // Stored as fired before any action runs: a crash in between must not fire it again.
        self.persist_then(ctx, |conversation, ctx| {
            conversation.automate(
                events,
                ctx,
                Box::new(|conversation, ctx| conversation.rearm(ctx)),
            );
        });
        true
    }

    /// Runs one chain of rules at a time: a run asked for while one is under way (a resolve
    /// by a rule starts the `conversation_resolved` rules; a timer falls due as an action
    /// re-arms) waits for it, since actix polls the newest wait first and two chains would
    /// interleave, each acting on state the other is changing.
    fn automate(&mut self, events: Events, ctx: &mut Context, then: Then) {
        if self.automating {
            self.next_runs.push_back((events, then));
            return;
        }
        if events.is_empty() {
            return then(self, ctx);
        }
        self.automating = true;
        self.run_events(
            events,
            ctx,
            Box::new(|conversation, ctx| {
                conversation.automating = false;
                then(conversation, ctx);
                if let Some((events, then)) = conversation.next_runs.pop_front() {
                    conversation.automate(events, ctx, then);
                }
            }),
        );
    }

    /// Evaluates each event's rules and runs what fired, event after event, then `then`.
    fn run_events(
        &mut self,
        mut events: VecDeque<(Event, Option<MessageView>)>,
        ctx: &mut Context,
        then: Then,
    ) {
        let Some((event, message)) = events.pop_front() else {
            return then(self, ctx);
        };
        let evaluating = Instant::now();
        let fired = self.rules.evaluate(&event, &self.facts(message.as_ref()));
        self.context
            .rules_seconds
            .observe(evaluating.elapsed().as_secs_f64());
        let ran = !fired.is_empty();
        self.run_fired(
            event,
            fired.into(),
            ctx,
            Box::new(move |conversation, ctx| {
                // What the rules did (and that they ran) is stored with the state.
                if ran {
                    conversation.persist(ctx);
                }
                conversation.run_events(events, ctx, then);
            }),
        );
    }

    fn run_fired(
        &mut self,
        event: Event,
        mut fired: VecDeque<Fired>,
        ctx: &mut Context,
        then: Then,
    ) {
        let Some(rule) = fired.pop_front() else {
            return then(self, ctx);
        };
        self.audit(
            AuditKind::AutomationRan,
            None,
            Some(crate::automation::rules::run_reason(&rule, &event)),
            format!(
                "automation {} ran: {}",
                rule.name,
                rule.actions
                    .iter()
                    .map(action_label)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        let actions: VecDeque<Action> = rule.actions.iter().cloned().collect();
        self.run_actions(
            rule,
            actions,
            ctx,
            Box::new(move |conversation, ctx| conversation.run_fired(event, fired, ctx, then)),
        );
    }

    /// One rule's actions in order; the first that fails is audited and ends the rule (the
    /// next rule still runs).
    fn run_actions(
        &mut self,
        rule: Fired,
        mut actions: VecDeque<Action>,
        ctx: &mut Context,
        then: Then,
    ) {
        let Some(action) = actions.pop_front() else {
            return then(self, ctx);
        };
        let label = action_label(&action);
        let name = rule.name.clone();
        self.act(
            action.clone(),
            &name,
            ctx,
            Box::new(move |conversation, outcome, ctx| match outcome {
                Ok(()) => conversation.run_actions(rule, actions, ctx, then),
                Err(why) => {
                    conversation.audit(
                        AuditKind::AutomationFailed,
                        None,
                        Some(json!({
                            "automation_id": rule.automation_id,
                            "name": rule.name,
                            "action": action,
                            "reason": why,
                        })),
                        format!("automation {} failed to {label}: {why}", rule.name),
                    );
                    then(conversation, ctx)
                }
            }),
        );
    }

    fn act(&mut self, action: Action, rule: &str, ctx: &mut Context, done: Done) {
        if matches!(self.state, State::Resolved { .. })
            && !matches!(
                action,
                Action::SendText { .. } | Action::SendTemplate { .. } | Action::AddTags { .. }
            )
        {
            return done(self, Err("the conversation is resolved".into()), ctx);
        }
        match action {
            Action::AssignTeam { team_id } => self.assign_team(team_id, rule, ctx, done),
            Action::AssignAgent { agent_id } => self.assign_agent(agent_id, rule, ctx, done),
            Action::AddTags { tags } => self.add_tags(tags, rule, ctx, done),
            Action::SetPriority { priority } => self.set_priority(priority, ctx, done),
            Action::SendText { text } => self.send_text(text, ctx, done),
            Action::SendTemplate { template } => {
                match crate::templates::TemplateRequest::parse(template) {
                    Ok(request) => self.send_automated_reply(Reply::Template(request), ctx, done),
                    Err(why) => done(self, Err(why), ctx),
                }
            }
            Action::ApplySla { sla_policy_id } => self.apply_sla(sla_policy_id, ctx, done),
            Action::Resolve => self.resolve_by_rule(rule, ctx, done),
        }
    }

    fn assign_team(&mut self, team_id: TeamId, rule: &str, ctx: &mut Context, done: Done) {
        if team_id == self.team_id && !matches!(self.state, State::Assigned { .. }) {
            return done(self, Ok(()), ctx);
        }
        let db = self.context.db.clone();
        let workspace = self.stored.workspace_id.to_string();
        let rule = rule.to_owned();
        ctx.wait(
            async move {
                use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
                crate::store::entity::team::Entity::find_by_id(team_id)
                    .filter(crate::store::entity::team::Column::WorkspaceId.eq(workspace))
                    .one(&db)
                    .await
            }
            .into_actor(self)
            .map(move |found, conversation, ctx| match found {
                Ok(Some(team)) if team.active => conversation.move_to_team(team, &rule, ctx, done),
                Ok(_) => done(conversation, Err("the team no longer exists".into()), ctx),
                Err(error) => done(
                    conversation,
                    Err(format!("the database failed: {error}")),
                    ctx,
                ),
            }),
        );
    }

    /// Into `team`'s queue (or, before routing began, only into the team): whoever held or was
    /// offered it lets go and is not offered it again straight away.
    fn move_to_team(
        &mut self,
        team: crate::store::entity::team::Model,
        rule: &str,
        ctx: &mut Context,
        done: Done,
    ) {
        let team_id = team.id;
        let reason = format!("moved to team {} by automation {rule}", team.name);
        let previous = match std::mem::replace(&mut self.state, State::Waiting) {
            State::Assigned {
                agent_id, agent, ..
            } => {
                agent.do_send(Unassigned {
                    conversation_id: self.id(),
                    reason: reason.clone(),
                });
                Some(agent_id)
            }
            State::Offered {
                agent_id,
                agent,
                timer,
                ..
            } => {
                ctx.cancel_future(timer);
                agent.do_send(OfferEnded {
                    conversation_id: self.id(),
                    reason: reason.clone(),
                });
                Some(agent_id)
            }
            other => {
                self.state = other;
                None
            }
        };
        if team_id != self.team_id {
            self.excluded.clear();
        }
        if let Some(agent_id) = previous {
            self.excluded.insert(
                agent_id,
                Instant::now() + self.context.settings.decline_cooldown,
            );
        }
        self.team_id = team_id;
        self.offer_timeout_secs = team.offer_timeout_secs;
        self.auto_accept = team.auto_accept;
        self.audit(
            AuditKind::Transferred,
            previous,
            Some(json!({"to_team_id": team_id.to_string(), "automation": rule})),
            reason,
        );
        self.load_settings(ctx, move |conversation, ctx| {
            if conversation.routed {
                conversation.queue(previous, ctx);
            } else {
                conversation.persist(ctx);
            }
            conversation.rearm(ctx);
            done(conversation, Ok(()), ctx)
        });
    }

    fn assign_agent(&mut self, to: AgentId, rule: &str, ctx: &mut Context, done: Done) {
        let from = match &self.state {
            State::Assigned { agent_id, .. } if *agent_id == to => {
                return done(self, Ok(()), ctx);
            }
            State::Assigned { agent_id, .. } | State::Offered { agent_id, .. } => Some(*agent_id),
            _ => None,
        };
        let supervisor = self.supervisor.clone();
        let rule = rule.to_owned();
        ctx.wait(
            async move {
                let name = supervisor
                    .send(MoveSlot { from, to })
                    .await
                    .map_err(|_| RoutingError::Unavailable)??;
                let (agent, _) = supervisor
                    .send(GetAgent { agent_id: to })
                    .await
                    .map_err(|_| RoutingError::Unavailable)??
                    .ok_or(RoutingError::NotFound("agent"))?;
                Ok((name, agent))
            }
            .into_actor(self)
            .map(move |moved: Result<_, RoutingError>, conversation, ctx| {
                let (name, agent) = match moved {
                    Ok(moved) => moved,
                    Err(error) => return done(conversation, Err(routing_failure(error)), ctx),
                };
                let reason = format!("assigned to {name} by automation {rule}");
                match std::mem::replace(&mut conversation.state, State::Waiting) {
                    State::Assigned { agent: old, .. } => old.do_send(Unassigned {
                        conversation_id: conversation.id(),
                        reason: reason.clone(),
                    }),
                    State::Offered {
                        agent: old, timer, ..
                    } => {
                        ctx.cancel_future(timer);
                        old.do_send(OfferEnded {
                            conversation_id: conversation.id(),
                            reason: reason.clone(),
                        });
                    }
                    _ if conversation.routed => conversation.supervisor.do_send(Unqueue {
                        conversation_id: conversation.id(),
                    }),
                    _ => {}
                }
                conversation.routed = true;
                conversation.supervisor.do_send(Restored {
                    conversation_id: conversation.id(),
                    team_id: conversation.team_id,
                });
                conversation.audit(
                    AuditKind::Assigned,
                    Some(to),
                    Some(json!({"automation": rule})),
                    reason,
                );
                // The next action starts once the agent has been told it holds it.
                conversation.assign_then(to, name, agent, "automation".into(), ctx, |c, ctx| {
                    done(c, Ok(()), ctx)
                });
            }),
        );
    }

    fn add_tags(&mut self, tags: Vec<String>, rule: &str, ctx: &mut Context, done: Done) {
        let Ok(epoch) = self.context.owner_epoch(self.stored.workspace_id) else {
            return done(self, Err(NOT_OWNER.to_owned()), ctx);
        };
        let (db, id, rule) = (self.context.db.clone(), self.id(), rule.to_owned());
        ctx.wait(
            async move { store::add_tags(&db, id, &tags, epoch).await }
                .into_actor(self)
                .map(move |merged, conversation, ctx| {
                    let (before, merged) = match merged {
                        Ok(merged) => merged,
                        Err(why) => return done(conversation, Err(why), ctx),
                    };
                    conversation.stored.raw.tags =
                        serde_json::to_string(&merged).unwrap_or_else(|_| "[]".to_owned());
                    let added: Vec<&String> =
                        merged.iter().filter(|t| !before.contains(t)).collect();
                    if !added.is_empty() {
                        conversation.audit(
                            AuditKind::TagsChanged,
                            None,
                            Some(json!({"added": added, "removed": [], "tags": merged, "automation": rule})),
                            format!(
                                "automation {rule} added {}",
                                added.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        );
                    }
                    done(conversation, Ok(()), ctx)
                }),
        );
    }

    fn set_priority(&mut self, priority: i32, ctx: &mut Context, done: Done) {
        if priority == self.stored.priority {
            return done(self, Ok(()), ctx);
        }
        let Ok(epoch) = self.context.owner_epoch(self.stored.workspace_id) else {
            return done(self, Err(NOT_OWNER.to_owned()), ctx);
        };
        let (db, id) = (self.context.db.clone(), self.id());
        ctx.wait(
            async move { store::save_priority(&db, id, priority, epoch).await }
                .into_actor(self)
                .map(move |saved, conversation, ctx| {
                    if let Err(error) = saved {
                        let why = match error {
                            store::SaveError::Database(error) => {
                                format!("the database failed: {error}")
                            }
                            fenced => fenced.to_string(),
                        };
                        return done(conversation, Err(why), ctx);
                    }
                    conversation.stored.priority = priority;
                    // The queue orders by priority: it must see the new one.
                    if conversation.routed && matches!(conversation.state, State::Waiting) {
                        conversation.request_agent(None);
                    }
                    done(conversation, Ok(()), ctx)
                }),
        );
    }

    fn send_text(&mut self, text: String, ctx: &mut Context, done: Done) {
        let supervisor = self.supervisor.clone();
        let (team_id, conversation_id) = (self.team_id, self.id());
        let needs_wait = text.contains("expected_wait");
        ctx.wait(
            async move {
                match needs_wait {
                    true => supervisor
                        .send(ExpectedWait {
                            team_id,
                            conversation_id,
                        })
                        .await
                        .ok()
                        .flatten(),
                    false => None,
                }
            }
            .into_actor(self)
            .map(move |wait, conversation, ctx| {
                let contact = conversation.stored.contact.clone();
                let team_name = conversation.time.name.clone();
                let filled = placeholders::render(&text, |name| match name {
                    "contact.name" => contact.as_ref().and_then(|c| c.name.clone()),
                    "contact.phone" => contact.as_ref().and_then(|c| c.phone.clone()),
                    "team.name" => Some(team_name.clone()),
                    "expected_wait" => Some(placeholders::describe_wait(wait)),
                    _ => None,
                });
                conversation.send_automated_reply(Reply::Text(filled), ctx, done)
            }),
        );
    }

    fn apply_sla(&mut self, policy_id: SlaPolicyId, ctx: &mut Context, done: Done) {
        let (db, unit) = (self.context.db.clone(), self.context.settings.time_unit);
        ctx.wait(
            async move { crate::time::settings::load_policy(&db, policy_id, unit).await }
                .into_actor(self)
                .map(move |found, conversation, ctx| match found {
                    Ok(Some(policy)) => {
                        let events = conversation
                            .clocks
                            .apply(&policy, conversation.time.calendar());
                        conversation.cycle_policy = Some(policy);
                        conversation.report(events);
                        conversation.persist(ctx);
                        conversation.rearm(ctx);
                        done(conversation, Ok(()), ctx)
                    }
                    Ok(None) => done(
                        conversation,
                        Err("the SLA policy no longer exists".into()),
                        ctx,
                    ),
                    Err(error) => done(
                        conversation,
                        Err(format!("the database failed: {error}")),
                        ctx,
                    ),
                }),
        );
    }

    fn resolve_by_rule(&mut self, rule: &str, ctx: &mut Context, done: Done) {
        let reason = Some(json!({"automation": rule}));
        let text = format!("resolved by automation {rule}");
        match std::mem::replace(&mut self.state, State::Resolved { by: None }) {
            State::Assigned {
                agent_id,
                agent_name,
                agent,
            } => {
                self.state = State::Assigned {
                    agent_id,
                    agent_name,
                    agent,
                };
                self.finish(agent_id, AuditKind::Resolved, reason, text, ctx);
            }
            previous => {
                if let State::Offered {
                    agent_id,
                    agent,
                    timer,
                    ..
                } = previous
                {
                    ctx.cancel_future(timer);
                    agent.do_send(OfferEnded {
                        conversation_id: self.id(),
                        reason: text.clone(),
                    });
                    self.supervisor.do_send(Release {
                        agent_id,
                        conversation_id: self.id(),
                    });
                }
                // Out of the queue at once, so no offer is made for it meanwhile.
                self.supervisor.do_send(Unqueue {
                    conversation_id: self.id(),
                });
                self.audit(AuditKind::Resolved, None, reason, text);
                self.settle(ctx);
                self.resolved_rules(ctx, |conversation, ctx| {
                    conversation.persist_then(ctx, |conversation, _| conversation.retire());
                });
            }
        }
        done(self, Ok(()), ctx)
    }
}

/// An action as the audit text names it.
fn action_label(action: &Action) -> String {
    match action {
        Action::AssignTeam { team_id } => format!("assign team {team_id}"),
        Action::AssignAgent { agent_id } => format!("assign agent {agent_id}"),
        Action::AddTags { tags } => format!("add tags {}", tags.join(", ")),
        Action::SetPriority { priority } => format!("set priority {priority}"),
        Action::SendText { .. } => "send a text".to_owned(),
        Action::SendTemplate { .. } => "send a template".to_owned(),
        Action::ApplySla { sla_policy_id } => format!("apply SLA policy {sla_policy_id}"),
        Action::Resolve => "resolve".to_owned(),
    }
}
