//! Automation rules, pure: parsed and checked from their JSON (every refusal names its place),
//! and evaluated against a conversation's facts with a trace of every condition. The same
//! [`RuleSet::evaluate`] runs inside the conversation actor and behind the dry-run endpoint.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::automation::placeholders;
use crate::ids::{AgentId, AutomationId, SlaPolicyId, TeamId};

/// Most rules a workspace may hold.
pub const MAX_RULES: usize = 200;
/// Most conditions (leaves and groups) in one rule, and deepest nesting.
pub const MAX_CONDITIONS: usize = 50;
pub const MAX_DEPTH: usize = 5;
/// Most actions in one rule.
pub const MAX_ACTIONS: usize = 10;
/// Longest `matches` pattern, in characters, and the most memory its compiled form may take.
pub const MAX_PATTERN_CHARS: usize = 500;
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Longest `in` list and value.
pub const MAX_LIST: usize = 100;
pub const MAX_VALUE_CHARS: usize = 1000;
/// Placeholders an automated text may use.
pub const TEXT_PLACEHOLDERS: &[&str] = &[
    "contact.name",
    "contact.phone",
    "team.name",
    "expected_wait",
];

/// A problem with a rule, naming where it is (`conditions.all[1].op`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{at}`: {why}")]
pub struct RuleError {
    pub at: String,
    pub why: String,
}

fn refuse<T>(at: &str, why: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError {
        at: at.to_owned(),
        why: why.into(),
    })
}

/// What makes a rule run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ConversationCreated,
    MessageReceived,
    ConversationResolved,
    NoAgentReply,
    NoCustomerReply,
}

impl EventKind {
    fn parse(name: &str) -> Option<EventKind> {
        Some(match name {
            "conversation_created" => EventKind::ConversationCreated,
            "message_received" => EventKind::MessageReceived,
            "conversation_resolved" => EventKind::ConversationResolved,
            "no_agent_reply" => EventKind::NoAgentReply,
            "no_customer_reply" => EventKind::NoCustomerReply,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ConversationCreated => "conversation_created",
            EventKind::MessageReceived => "message_received",
            EventKind::ConversationResolved => "conversation_resolved",
            EventKind::NoAgentReply => "no_agent_reply",
            EventKind::NoCustomerReply => "no_customer_reply",
        }
    }

    pub fn is_timer(self) -> bool {
        matches!(self, EventKind::NoAgentReply | EventKind::NoCustomerReply)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub event: EventKind,
    /// For the timers: seconds of silence.
    pub after_secs: Option<i32>,
}

/// A fact a condition reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    MessageText,
    MessageKind,
    MessageButtonPayload,
    ChannelId,
    TeamId,
    ContactPhone,
    ContactName,
    ContactIsNew,
    ConversationTags,
    ConversationPriority,
    WithinHours,
}

impl Field {
    const ALL: &[(&'static str, Field)] = &[
        ("message.text", Field::MessageText),
        ("message.kind", Field::MessageKind),
        ("message.button_payload", Field::MessageButtonPayload),
        ("channel_id", Field::ChannelId),
        ("team_id", Field::TeamId),
        ("contact.phone", Field::ContactPhone),
        ("contact.name", Field::ContactName),
        ("contact.is_new", Field::ContactIsNew),
        ("conversation.tags", Field::ConversationTags),
        ("conversation.priority", Field::ConversationPriority),
        ("within_hours", Field::WithinHours),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }

    fn is_flag(self) -> bool {
        matches!(self, Field::ContactIsNew | Field::WithinHours)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    Contains,
    StartsWith,
    Matches,
    In,
    IsTrue,
    IsFalse,
}

impl Op {
    const ALL: &[(&'static str, Op)] = &[
        ("equals", Op::Equals),
        ("not_equals", Op::NotEquals),
        ("contains", Op::Contains),
        ("starts_with", Op::StartsWith),
        ("matches", Op::Matches),
        ("in", Op::In),
        ("is_true", Op::IsTrue),
        ("is_false", Op::IsFalse),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map_or("", |(n, _)| n)
    }
}

/// What a test compares with, prepared once when the rule is loaded.
#[derive(Clone, Debug)]
enum Operand {
    None,
    Text(String),
    /// Lower-cased, for the case-insensitive ops.
    Folded(String),
    List(Vec<String>),
    Number(i64),
    Pattern(Arc<regex::Regex>),
}

#[derive(Clone, Debug)]
pub struct Test {
    pub field: Field,
    pub op: Op,
    /// As written, for the trace.
    pub value: Value,
    operand: Operand,
}

#[derive(Clone, Debug)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Test(Test),
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    AssignTeam {
        team_id: TeamId,
    },
    AssignAgent {
        agent_id: AgentId,
    },
    AddTags {
        tags: Vec<String>,
    },
    SetPriority {
        priority: i32,
    },
    SendText {
        text: String,
    },
    SendTemplate {
        #[schema(value_type = Object)]
        template: Value,
    },
    ApplySla {
        sla_policy_id: SlaPolicyId,
    },
    Resolve,
}

/// Another setting an action names, which must be of the rule's own workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    Team(TeamId),
    Agent(AgentId),
    SlaPolicy(SlaPolicyId),
}

impl Reference {
    /// The action's field that names it.
    pub fn field(self) -> &'static str {
        match self {
            Reference::Team(_) => "team_id",
            Reference::Agent(_) => "agent_id",
            Reference::SlaPolicy(_) => "sla_policy_id",
        }
    }
}

impl Action {
    /// The other setting it names, for the workspace check.
    pub fn reference(&self) -> Option<Reference> {
        match self {
            Action::AssignTeam { team_id } => Some(Reference::Team(*team_id)),
            Action::AssignAgent { agent_id } => Some(Reference::Agent(*agent_id)),
            Action::ApplySla { sla_policy_id } => Some(Reference::SlaPolicy(*sla_policy_id)),
            _ => None,
        }
    }
}

/// One stored rule, parsed.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: AutomationId,
    pub name: String,
    pub position: i32,
    pub trigger: Trigger,
    pub conditions: Condition,
    pub actions: Vec<Action>,
    pub stop_after: bool,
}

// ---------- parsing ----------

fn object<'a>(at: &str, value: &'a Value) -> Result<&'a serde_json::Map<String, Value>, RuleError> {
    value
        .as_object()
        .map_or_else(|| refuse(at, "must be an object"), Ok)
}

fn only_keys(
    at: &str,
    map: &serde_json::Map<String, Value>,
    allowed: &[&str],
) -> Result<(), RuleError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return refuse(
                at,
                format!("unknown field `{key}`; expected {}", allowed.join(", ")),
            );
        }
    }
    Ok(())
}

fn text_at(at: &str, map: &serde_json::Map<String, Value>, key: &str) -> Result<String, RuleError> {
    match map.get(key) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(_) => refuse(&format!("{at}.{key}"), "must be a non-empty string"),
        None => refuse(at, format!("`{key}` is required")),
    }
}

/// The id `key` of `map` (a setting of the workspace's, checked by the caller).
fn id_at<T: std::str::FromStr>(
    at: &str,
    map: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<T, RuleError> {
    text_at(at, map, key)?
        .trim()
        .parse()
        .map_or_else(|_| refuse(&format!("{at}.{key}"), "must be an id"), Ok)
}

/// Parses a trigger: `{event}` or `{event, after_secs}` for the timers.
pub fn parse_trigger(value: &Value) -> Result<Trigger, RuleError> {
    let map = object("trigger", value)?;
    only_keys("trigger", map, &["event", "after_secs"])?;
    let name = text_at("trigger", map, "event")?;
    let event = EventKind::parse(&name).map_or_else(
        || {
            refuse(
                "trigger.event",
                format!("unknown event `{name}`; expected conversation_created, message_received, conversation_resolved, no_agent_reply or no_customer_reply"),
            )
        },
        Ok,
    )?;
    let after_secs = match (event.is_timer(), map.get("after_secs")) {
        (true, Some(Value::Number(n))) => match n.as_i64() {
            Some(secs)
                if (1..=i64::from(crate::time::settings::MAX_TARGET_SECS)).contains(&secs) =>
            {
                Some(secs as i32)
            }
            _ => {
                return refuse(
                    "trigger.after_secs",
                    "must be a whole number of seconds from 1 to a year",
                );
            }
        },
        (true, _) => return refuse("trigger", format!("`{name}` needs `after_secs`")),
        (false, Some(_)) => {
            return refuse(
                "trigger.after_secs",
                format!("`{name}` takes no `after_secs`"),
            );
        }
        (false, None) => None,
    };
    Ok(Trigger { event, after_secs })
}

/// Parses a condition tree: `{all:[...]}`, `{any:[...]}` or `{field, op, value}`.
pub fn parse_conditions(value: &Value) -> Result<Condition, RuleError> {
    let mut count = 0;
    parse_condition("conditions", value, 0, &mut count)
}

fn parse_condition(
    at: &str,
    value: &Value,
    depth: usize,
    count: &mut usize,
) -> Result<Condition, RuleError> {
    *count += 1;
    if *count > MAX_CONDITIONS {
        return refuse(
            at,
            format!("a rule has at most {MAX_CONDITIONS} conditions"),
        );
    }
    let map = object(at, value)?;
    for (group, all) in [("all", true), ("any", false)] {
        let Some(list) = map.get(group) else { continue };
        only_keys(at, map, &[group])?;
        if depth >= MAX_DEPTH {
            return refuse(at, format!("conditions nest at most {MAX_DEPTH} deep"));
        }
        let list = list
            .as_array()
            .map_or_else(|| refuse(&format!("{at}.{group}"), "must be a list"), Ok)?;
        let children = list
            .iter()
            .enumerate()
            .map(|(i, child)| {
                parse_condition(&format!("{at}.{group}[{i}]"), child, depth + 1, count)
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if all {
            Condition::All(children)
        } else {
            Condition::Any(children)
        });
    }
    only_keys(at, map, &["field", "op", "value"])?;
    let field = named(at, map, "field", Field::ALL)?;
    let op = named(at, map, "op", Op::ALL)?;
    let value = map.get("value").cloned().unwrap_or(Value::Null);
    let operand = operand(&format!("{at}.value"), field, op, &value)?;
    Ok(Condition::Test(Test {
        field,
        op,
        value,
        operand,
    }))
}

/// The `key` of `map`, one of the names of `table`.
fn named<T: Copy>(
    at: &str,
    map: &serde_json::Map<String, Value>,
    key: &str,
    table: &[(&str, T)],
) -> Result<T, RuleError> {
    let name = text_at(at, map, key)?;
    match table.iter().find(|(n, _)| *n == name) {
        Some((_, found)) => Ok(*found),
        None => refuse(
            &format!("{at}.{key}"),
            format!(
                "unknown {key} `{name}`; expected {}",
                table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

fn short_text(at: &str, value: &Value) -> Result<String, RuleError> {
    match value {
        Value::String(text) if text.chars().count() <= MAX_VALUE_CHARS => Ok(text.clone()),
        Value::String(_) => refuse(at, format!("at most {MAX_VALUE_CHARS} characters")),
        Value::Number(n) => Ok(n.to_string()),
        _ => refuse(at, "must be a string"),
    }
}

fn operand(at: &str, field: Field, op: Op, value: &Value) -> Result<Operand, RuleError> {
    let flag_op = matches!(op, Op::IsTrue | Op::IsFalse);
    if field.is_flag() != flag_op {
        return refuse(
            at.trim_end_matches(".value"),
            if field.is_flag() {
                format!("`{}` is yes or no: use is_true or is_false", field.name())
            } else {
                format!(
                    "`{}` works only on within_hours and contact.is_new",
                    op.name()
                )
            },
        );
    }
    Ok(match op {
        Op::IsTrue | Op::IsFalse => {
            if !value.is_null() {
                return refuse(at, format!("`{}` takes no value", op.name()));
            }
            Operand::None
        }
        Op::Equals | Op::NotEquals if field == Field::ConversationPriority => {
            match value.as_i64() {
                Some(n) => Operand::Number(n),
                None => return refuse(at, "conversation.priority compares with a whole number"),
            }
        }
        Op::Equals | Op::NotEquals => Operand::Text(short_text(at, value)?.trim().to_owned()),
        Op::Contains | Op::StartsWith => {
            let text = short_text(at, value)?;
            if text.is_empty() {
                return refuse(at, "must not be empty");
            }
            Operand::Folded(text.to_lowercase())
        }
        Op::In => {
            let list = value
                .as_array()
                .map_or_else(|| refuse(at, "`in` takes a list of strings"), Ok)?;
            if list.is_empty() || list.len() > MAX_LIST {
                return refuse(at, format!("`in` takes 1 to {MAX_LIST} values"));
            }
            Operand::List(
                list.iter()
                    .enumerate()
                    .map(|(i, item)| {
                        short_text(&format!("{at}[{i}]"), item).map(|t| t.trim().to_owned())
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        Op::Matches => {
            let Value::String(pattern) = value else {
                return refuse(at, "`matches` takes a regular expression as a string");
            };
            if pattern.is_empty() || pattern.chars().count() > MAX_PATTERN_CHARS {
                return refuse(
                    at,
                    format!("a pattern has 1 to {MAX_PATTERN_CHARS} characters"),
                );
            }
            let compiled = regex::RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|error| RuleError {
                    at: at.to_owned(),
                    why: match error {
                        regex::Error::CompiledTooBig(_) => format!(
                            "the pattern compiles to more than the {} KiB allowed",
                            REGEX_SIZE_LIMIT / 1024
                        ),
                        other => format!("not a valid pattern: {other}"),
                    },
                })?;
            Operand::Pattern(Arc::new(compiled))
        }
    })
}

/// Parses the actions (1 to [`MAX_ACTIONS`]), checking each one's shape and texts.
pub fn parse_actions(value: &Value) -> Result<Vec<Action>, RuleError> {
    let list = value
        .as_array()
        .map_or_else(|| refuse("actions", "must be a list"), Ok)?;
    if list.is_empty() || list.len() > MAX_ACTIONS {
        return refuse("actions", format!("a rule has 1 to {MAX_ACTIONS} actions"));
    }
    list.iter()
        .enumerate()
        .map(|(i, action)| parse_action(&format!("actions[{i}]"), action))
        .collect()
}

fn parse_action(at: &str, value: &Value) -> Result<Action, RuleError> {
    let map = object(at, value)?;
    let kind = text_at(at, map, "type")?;
    let keys = |allowed: &[&str]| {
        let mut with_type = vec!["type"];
        with_type.extend_from_slice(allowed);
        only_keys(at, map, &with_type)
    };
    Ok(match kind.as_str() {
        "assign_team" => {
            keys(&["team_id"])?;
            Action::AssignTeam {
                team_id: id_at(at, map, "team_id")?,
            }
        }
        "assign_agent" => {
            keys(&["agent_id"])?;
            Action::AssignAgent {
                agent_id: id_at(at, map, "agent_id")?,
            }
        }
        "add_tags" => {
            keys(&["tags"])?;
            let tags: Vec<String> = map
                .get("tags")
                .and_then(|t| serde_json::from_value(t.clone()).ok())
                .map_or_else(
                    || refuse(&format!("{at}.tags"), "must be a list of strings"),
                    Ok,
                )?;
            let tags = crate::annotations::normalise_tags(&tags).map_err(|e| RuleError {
                at: format!("{at}.tags"),
                why: e.to_string(),
            })?;
            if tags.is_empty() {
                return refuse(&format!("{at}.tags"), "name at least one tag");
            }
            Action::AddTags { tags }
        }
        "set_priority" => {
            keys(&["priority"])?;
            match map.get("priority").and_then(Value::as_i64) {
                Some(p) if (-100..=100).contains(&p) => Action::SetPriority { priority: p as i32 },
                _ => {
                    return refuse(
                        &format!("{at}.priority"),
                        "must be a whole number from -100 to 100",
                    );
                }
            }
        }
        "send_text" => {
            keys(&["text"])?;
            let text = text_at(at, map, "text")?;
            placeholders::check("text", &text, TEXT_PLACEHOLDERS).map_err(|e| RuleError {
                at: format!("{at}.text"),
                why: e.to_string(),
            })?;
            Action::SendText { text }
        }
        "send_template" => {
            keys(&["template"])?;
            let template = map.get("template").cloned().unwrap_or(Value::Null);
            if let Err(why) = crate::templates::TemplateRequest::parse(template.clone()) {
                return refuse(&format!("{at}.template"), why);
            }
            Action::SendTemplate { template }
        }
        "apply_sla" => {
            keys(&["sla_policy_id"])?;
            Action::ApplySla {
                sla_policy_id: id_at(at, map, "sla_policy_id")?,
            }
        }
        "resolve" => {
            keys(&[])?;
            Action::Resolve
        }
        other => {
            return refuse(
                &format!("{at}.type"),
                format!(
                    "unknown action `{other}`; expected assign_team, assign_agent, add_tags, set_priority, send_text, send_template, apply_sla or resolve"
                ),
            );
        }
    })
}

// ---------- evaluation ----------

/// A message as conditions see it.
#[derive(Clone, Debug, Default)]
pub struct MessageFacts {
    pub text: Option<String>,
    pub kind: String,
    pub button_payload: Option<String>,
}

/// What conditions read about a conversation at the moment of the event.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub message: Option<MessageFacts>,
    pub channel_id: String,
    pub team_id: String,
    pub contact_phone: Option<String>,
    pub contact_name: Option<String>,
    pub contact_is_new: bool,
    pub tags: Vec<String>,
    pub priority: i32,
    pub within_hours: bool,
    /// The message's text lower-cased, made once for every `contains` and `starts_with`.
    pub(crate) folded_text: std::cell::OnceCell<String>,
}

enum Fact<'a> {
    Missing,
    Text(&'a str),
    Texts(&'a [String]),
    Number(i64),
    Flag(bool),
}

impl Facts {
    /// `text` lower-cased: the message's text from the cache, anything else made now.
    fn folded<'a>(&'a self, field: Field, text: &'a str) -> std::borrow::Cow<'a, str> {
        match field {
            Field::MessageText => self.folded_text.get_or_init(|| text.to_lowercase()).into(),
            _ => text.to_lowercase().into(),
        }
    }

    fn get(&self, field: Field) -> Fact<'_> {
        fn text(value: Option<&String>) -> Fact<'_> {
            value.map_or(Fact::Missing, |v| Fact::Text(v))
        }
        match field {
            Field::MessageText => text(self.message.as_ref().and_then(|m| m.text.as_ref())),
            Field::MessageKind => text(self.message.as_ref().map(|m| &m.kind)),
            Field::MessageButtonPayload => text(
                self.message
                    .as_ref()
                    .and_then(|m| m.button_payload.as_ref()),
            ),
            Field::ChannelId => Fact::Text(&self.channel_id),
            Field::TeamId => Fact::Text(&self.team_id),
            Field::ContactPhone => text(self.contact_phone.as_ref()),
            Field::ContactName => text(self.contact_name.as_ref()),
            Field::ContactIsNew => Fact::Flag(self.contact_is_new),
            Field::ConversationTags => Fact::Texts(&self.tags),
            Field::ConversationPriority => Fact::Number(i64::from(self.priority)),
            Field::WithinHours => Fact::Flag(self.within_hours),
        }
    }
}

impl Test {
    fn holds(&self, facts: &Facts) -> bool {
        let fact = facts.get(self.field);
        let one = |text: &str| -> bool {
            match (&self.op, &self.operand) {
                (Op::Equals, Operand::Text(want)) => text.trim() == want,
                (Op::NotEquals, Operand::Text(want)) => text.trim() != want,
                (Op::Contains, Operand::Folded(want)) => {
                    facts.folded(self.field, text).contains(want.as_str())
                }
                (Op::StartsWith, Operand::Folded(want)) => facts
                    .folded(self.field, text)
                    .trim_start()
                    .starts_with(want.as_str()),
                (Op::In, Operand::List(list)) => list.iter().any(|item| item == text.trim()),
                (Op::Matches, Operand::Pattern(pattern)) => pattern.is_match(text),
                _ => false,
            }
        };
        match fact {
            Fact::Missing => self.op == Op::NotEquals,
            Fact::Text(text) => one(text),
            // Tags: equals/contains/in hold when any tag does; not_equals when none equals.
            Fact::Texts(tags) => match self.op {
                Op::NotEquals => !tags.iter().any(|tag| {
                    matches!(&self.operand, Operand::Text(want) if tag.eq_ignore_ascii_case(want))
                }),
                Op::Equals => tags.iter().any(|tag| {
                    matches!(&self.operand, Operand::Text(want) if tag.eq_ignore_ascii_case(want))
                }),
                _ => tags.iter().any(|tag| one(tag)),
            },
            Fact::Number(n) => match (&self.op, &self.operand) {
                (Op::Equals, Operand::Number(want)) => n == *want,
                (Op::NotEquals, Operand::Number(want)) => n != *want,
                _ => one(&n.to_string()),
            },
            Fact::Flag(flag) => match self.op {
                Op::IsTrue => flag,
                Op::IsFalse => !flag,
                _ => false,
            },
        }
    }
}

/// One condition's outcome, in the trace.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ConditionTrace {
    pub field: &'static str,
    pub op: &'static str,
    #[schema(value_type = Object)]
    pub value: Value,
    pub result: bool,
}

impl Condition {
    /// Evaluates every test (no short cut: the trace shows each one), leaves in order.
    fn evaluate(&self, facts: &Facts, trace: &mut Option<&mut Vec<ConditionTrace>>) -> bool {
        match self {
            // Without a trace, the first test that decides a group ends it (a rule whose
            // keyword is absent costs one `contains`); with one, every test is evaluated so
            // that the trace shows each.
            Condition::All(children) if trace.is_none() => {
                children.iter().all(|c| c.evaluate(facts, &mut None))
            }
            Condition::Any(children) if trace.is_none() => {
                children.is_empty() || children.iter().any(|c| c.evaluate(facts, &mut None))
            }
            Condition::All(children) => {
                let held: Vec<bool> = children.iter().map(|c| c.evaluate(facts, trace)).collect();
                held.iter().all(|h| *h)
            }
            Condition::Any(children) => {
                let held: Vec<bool> = children.iter().map(|c| c.evaluate(facts, trace)).collect();
                held.is_empty() || held.iter().any(|h| *h)
            }
            Condition::Test(test) => {
                let result = test.holds(facts);
                if let Some(trace) = trace.as_mut() {
                    trace.push(ConditionTrace {
                        field: test.field.name(),
                        op: test.op.name(),
                        value: test.value.clone(),
                        result,
                    });
                }
                result
            }
        }
    }

    /// Whether it holds, without a trace.
    pub fn holds(&self, facts: &Facts) -> bool {
        self.evaluate(facts, &mut None)
    }

    /// Whether it holds, and each test's result.
    pub fn trace(&self, facts: &Facts) -> (bool, Vec<ConditionTrace>) {
        let mut trace = Vec::new();
        let matched = self.evaluate(facts, &mut Some(&mut trace));
        (matched, trace)
    }
}

/// The event a run is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ConversationCreated,
    MessageReceived,
    ConversationResolved,
    /// One timer rule's silence ran out.
    Timer {
        automation_id: AutomationId,
    },
}

/// A rule whose conditions held: its actions, to run in order.
#[derive(Clone, Debug)]
pub struct Fired {
    pub automation_id: AutomationId,
    pub name: String,
    pub actions: Vec<Action>,
    pub trace: Vec<ConditionTrace>,
}

/// A workspace's active rules in position order.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    pub fn new(mut rules: Vec<Rule>) -> RuleSet {
        rules.sort_by(|a, b| (a.position, &a.id).cmp(&(b.position, &b.id)));
        RuleSet { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule runs on `event`.
    pub fn listens(&self, event: EventKind) -> bool {
        self.rules.iter().any(|r| r.trigger.event == event)
    }

    /// The timer rules, for arming.
    pub fn timers(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.trigger.event.is_timer())
    }

    /// The rules that fire on `event`, in position order, up to the first matching
    /// `stop_after`. Each rule appears at most once.
    pub fn evaluate(&self, event: &Event, facts: &Facts) -> Vec<Fired> {
        let mut fired = Vec::new();
        for rule in &self.rules {
            let applies = match event {
                Event::ConversationCreated => rule.trigger.event == EventKind::ConversationCreated,
                Event::MessageReceived => rule.trigger.event == EventKind::MessageReceived,
                Event::ConversationResolved => {
                    rule.trigger.event == EventKind::ConversationResolved
                }
                Event::Timer { automation_id } => rule.id == *automation_id,
            };
            if !applies {
                continue;
            }
            // The trace is made only for a rule that matched (the dry run makes its own).
            if !rule.conditions.holds(facts) {
                continue;
            }
            let (_, trace) = rule.conditions.trace(facts);
            fired.push(Fired {
                automation_id: rule.id,
                name: rule.name.clone(),
                actions: rule.actions.clone(),
                trace,
            });
            if rule.stop_after {
                break;
            }
        }
        fired
    }
}

/// The dry run's answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DryRun {
    pub matched: bool,
    pub conditions: Vec<ConditionTrace>,
    pub actions: Vec<Action>,
}

/// What one rule would do for these facts (the same evaluation as a live run).
pub fn dry_run(rule: &Rule, facts: &Facts) -> DryRun {
    let (matched, conditions) = rule.conditions.trace(facts);
    DryRun {
        matched,
        conditions,
        actions: if matched {
            rule.actions.clone()
        } else {
            Vec::new()
        },
    }
}

/// A timer rule's next firing: `after` past the silence's start.
pub fn timer_due(since: DateTime<Utc>, after_ms: i64) -> DateTime<Utc> {
    since + chrono::Duration::milliseconds(after_ms)
}

/// The audit reason of a run.
pub fn run_reason(fired: &Fired, event: &Event) -> Value {
    json!({
        "automation_id": fired.automation_id,
        "name": fired.name,
        "event": match event {
            Event::ConversationCreated => "conversation_created",
            Event::MessageReceived => "message_received",
            Event::ConversationResolved => "conversation_resolved",
            Event::Timer { .. } => "timer",
        },
        "matched": true,
        "actions": fired.actions,
        "conditions": fired.trace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule's id from a short name, the same for the same name.
    fn id(name: &str) -> AutomationId {
        AutomationId(uuid::Uuid::from_u128(
            name.bytes().fold(0, |id, b| id << 8 | u128::from(b)),
        ))
    }

    fn rule(
        id: &str,
        position: i32,
        event: &str,
        conditions: Value,
        actions: Value,
        stop_after: bool,
    ) -> Rule {
        Rule {
            id: self::id(id),
            name: format!("rule {id}"),
            position,
            trigger: parse_trigger(&json!({"event": event})).unwrap(),
            conditions: parse_conditions(&conditions).unwrap(),
            actions: parse_actions(&actions).unwrap(),
            stop_after,
        }
    }

    fn message(text: &str) -> Facts {
        Facts {
            message: Some(MessageFacts {
                text: Some(text.into()),
                kind: "text".into(),
                button_payload: None,
            }),
            team_id: "sales".into(),
            channel_id: "ch".into(),
            contact_phone: Some("971500000001".into()),
            within_hours: true,
            ..Facts::default()
        }
    }

    #[test]
    fn ops_compare_as_documented() {
        let holds = |field: &str, op: &str, value: Value, facts: &Facts| {
            parse_conditions(&json!({"field": field, "op": op, "value": value}))
                .unwrap()
                .holds(facts)
        };
        let facts = message("  2 ");
        assert!(holds("message.text", "equals", json!("2"), &facts));
        assert!(holds("message.text", "equals", json!(2), &facts));
        assert!(!holds("message.text", "not_equals", json!("2"), &facts));
        assert!(holds("message.text", "in", json!(["1", "2"]), &facts));
        let facts = message("I want a REFUND now");
        assert!(holds("message.text", "contains", json!("refund"), &facts));
        assert!(holds(
            "message.text",
            "starts_with",
            json!("i want"),
            &facts
        ));
        assert!(holds(
            "message.text",
            "matches",
            json!(r"\brefund\b"),
            &facts
        ));
        assert!(!holds("message.text", "matches", json!(r"^refund"), &facts));
        assert!(holds("within_hours", "is_true", Value::Null, &facts));
        assert!(holds("contact.is_new", "is_false", Value::Null, &facts));
        assert!(holds("contact.phone", "starts_with", json!("971"), &facts));
        // A missing fact: only not_equals holds.
        assert!(!holds(
            "message.button_payload",
            "equals",
            json!("x"),
            &facts
        ));
        assert!(holds(
            "message.button_payload",
            "not_equals",
            json!("x"),
            &facts
        ));
        let tagged = Facts {
            tags: vec!["VIP".into(), "billing".into()],
            ..facts
        };
        assert!(holds("conversation.tags", "equals", json!("vip"), &tagged));
        assert!(holds(
            "conversation.tags",
            "in",
            json!(["billing"]),
            &tagged
        ));
        assert!(!holds(
            "conversation.tags",
            "not_equals",
            json!("vip"),
            &tagged
        ));
    }

    #[test]
    fn groups_nest_and_the_trace_shows_each_test() {
        let conditions = parse_conditions(&json!({"all": [
            {"field": "team_id", "op": "equals", "value": "sales"},
            {"any": [
                {"field": "message.text", "op": "contains", "value": "refund"},
                {"field": "message.text", "op": "contains", "value": "money back"},
            ]},
        ]}))
        .unwrap();
        let (matched, trace) = conditions.trace(&message("where is my money back?"));
        assert!(matched);
        assert_eq!(
            trace.iter().map(|t| t.result).collect::<Vec<_>>(),
            [true, false, true]
        );
        let (matched, trace) = conditions.trace(&message("hello"));
        assert!(!matched);
        assert_eq!(trace[1].field, "message.text");
        assert!(!trace[1].result && !trace[2].result);
        // Empty groups: all of nothing holds, any of nothing holds (no condition).
        assert!(
            parse_conditions(&json!({"all": []}))
                .unwrap()
                .holds(&message("x"))
        );
        assert!(
            parse_conditions(&json!({"any": []}))
                .unwrap()
                .holds(&message("x"))
        );
    }

    #[test]
    fn rules_run_in_position_order_until_a_matching_stop_after() {
        let tag = |t: &str| json!([{"type": "add_tags", "tags": [t]}]);
        let everything = json!({"all": []});
        let set = RuleSet::new(vec![
            rule(
                "c",
                3,
                "message_received",
                everything.clone(),
                tag("third"),
                false,
            ),
            rule(
                "a",
                1,
                "message_received",
                everything.clone(),
                tag("first"),
                false,
            ),
            rule(
                "b",
                2,
                "message_received",
                json!({"field": "message.text", "op": "equals", "value": "stop"}),
                tag("second"),
                true,
            ),
            rule(
                "d",
                0,
                "conversation_created",
                everything.clone(),
                tag("created"),
                false,
            ),
        ]);
        let names = |fired: Vec<Fired>| {
            fired
                .into_iter()
                .map(|f| f.automation_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(set.evaluate(&Event::MessageReceived, &message("hi"))),
            [id("a"), id("c")]
        );
        assert_eq!(
            names(set.evaluate(&Event::MessageReceived, &message("stop"))),
            [id("a"), id("b")]
        );
        assert_eq!(
            names(set.evaluate(&Event::ConversationCreated, &message("hi"))),
            [id("d")]
        );
        assert!(set.listens(EventKind::ConversationCreated));
        assert!(!set.listens(EventKind::ConversationResolved));
    }

    #[test]
    fn refusals_name_the_place_and_the_problem() {
        let at = |value: Value| parse_conditions(&value).unwrap_err();
        let error = at(json!({"all": [{"field": "message.txt", "op": "equals", "value": "x"}]}));
        assert_eq!(error.at, "conditions.all[0].field");
        assert!(error.why.contains("message.txt"));
        let error = at(json!({"field": "message.text", "op": "like", "value": "x"}));
        assert_eq!(error.at, "conditions.op");
        let error = at(json!({"field": "message.text", "op": "equals", "value": "x", "extra": 1}));
        assert!(error.why.contains("extra"), "{error}");
        let error = at(json!({"field": "within_hours", "op": "equals", "value": "x"}));
        assert!(error.why.contains("is_true"), "{error}");
        // A pattern whose automaton is too big is refused, not compiled.
        let error =
            at(json!({"field": "message.text", "op": "matches", "value": r"\w{500}\w{500}"}));
        assert!(error.why.contains("KiB"), "{error}");
        let error = at(json!({"field": "message.text", "op": "matches", "value": "(unclosed"}));
        assert!(error.why.contains("not a valid pattern"), "{error}");
        let deep = (0..7).fold(
            json!({"field": "team_id", "op": "equals", "value": "x"}),
            |inner, _| json!({"all": [inner]}),
        );
        assert!(at(deep).why.contains("deep"));

        let error = parse_trigger(&json!({"event": "no_agent_reply"})).unwrap_err();
        assert!(error.why.contains("after_secs"), "{error}");
        let error = parse_trigger(&json!({"event": "message_sent"})).unwrap_err();
        assert_eq!(error.at, "trigger.event");
        let error = parse_actions(&json!([{"type": "send_text", "text": "Hi {{contact.email}}"}]))
            .unwrap_err();
        assert_eq!(error.at, "actions[0].text");
        let error = parse_actions(&json!([{"type": "explode"}])).unwrap_err();
        assert_eq!(error.at, "actions[0].type");
        let error = parse_actions(&json!([{"type": "resolve", "now": true}])).unwrap_err();
        assert!(error.why.contains("now"), "{error}");
        let error =
            parse_actions(&json!([{"type": "assign_team", "team_id": "refunds"}])).unwrap_err();
        assert_eq!(
            (error.at.as_str(), error.why.as_str()),
            ("actions[0].team_id", "must be an id")
        );
        assert!(parse_actions(&json!([])).is_err());
    }

    #[test]
    fn the_dry_run_is_the_live_evaluation() {
        let refunds = rule(
            "r",
            1,
            "message_received",
            json!({"all": [
                {"field": "message.text", "op": "equals", "value": "2"},
                {"field": "within_hours", "op": "is_true"},
            ]}),
            json!([{"type": "assign_team", "team_id": TeamId::new()}]),
            false,
        );
        let facts = Facts {
            within_hours: false,
            ..message("2")
        };
        let run = dry_run(&refunds, &facts);
        assert!(!run.matched);
        assert!(run.conditions[0].result && !run.conditions[1].result);
        assert!(run.actions.is_empty());
        let set = RuleSet::new(vec![refunds.clone()]);
        assert!(set.evaluate(&Event::MessageReceived, &facts).is_empty());
        let open = message("2");
        assert!(dry_run(&refunds, &open).matched);
        assert_eq!(
            set.evaluate(&Event::MessageReceived, &open)[0].actions,
            refunds.actions
        );
    }
}
