//! Rules as workspace settings: stored, checked (every id an action names must be one of the
//! workspace's), listed in position order, and read by routing through [`Automations`], a
//! cache the routes clear when a rule changes. Also the dry run.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin::{find_workspace, non_empty, require_admin};
use crate::auth::Principal;
use crate::automation::rules::{
    self, Action, DryRun, Facts, MessageFacts, Reference, Rule, RuleError, RuleSet,
};
use crate::error::EngineError;
use crate::ids::{AutomationId, WorkspaceId};
use crate::store::entity::{agent, automation, channel, contact, team};

impl From<RuleError> for EngineError {
    fn from(error: RuleError) -> Self {
        EngineError::Validation(error.to_string())
    }
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAutomation {
    pub name: String,
    #[serde(default = "yes")]
    pub active: bool,
    /// Rules run in ascending position; by default after every existing rule.
    pub position: Option<i32>,
    /// `{event}`, or `{event, after_secs}` for `no_agent_reply` and `no_customer_reply`.
    #[schema(value_type = Object, example = json!({"event": "message_received"}))]
    pub trigger: Value,
    /// `{all:[...]}` or `{any:[...]}` of `{field, op, value}`; by default always true.
    #[schema(value_type = Option<Object>, example = json!({"all": [{"field": "message.text", "op": "equals", "value": "2"}]}))]
    pub conditions: Option<Value>,
    #[schema(value_type = Vec<Object>, example = json!([{"type": "assign_team", "team_id": "..."}]))]
    pub actions: Value,
    #[serde(default)]
    pub stop_after: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutomationPatch {
    pub name: Option<String>,
    pub active: Option<bool>,
    pub position: Option<i32>,
    #[schema(value_type = Option<Object>)]
    pub trigger: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub conditions: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub actions: Option<Value>,
    pub stop_after: Option<bool>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AutomationView {
    pub id: AutomationId,
    pub workspace_id: crate::ids::WorkspaceId,
    pub name: String,
    pub active: bool,
    pub position: i32,
    #[schema(value_type = Object)]
    pub trigger: Value,
    #[schema(value_type = Object)]
    pub conditions: Value,
    #[schema(value_type = Vec<Object>)]
    pub actions: Value,
    pub stop_after: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn stored_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

impl From<automation::Model> for AutomationView {
    fn from(row: automation::Model) -> Self {
        AutomationView {
            trigger: stored_json(&row.trigger),
            conditions: stored_json(&row.conditions),
            actions: stored_json(&row.actions),
            id: row.id,
            workspace_id: row.workspace_id,
            name: row.name,
            active: row.active,
            position: row.position,
            stop_after: row.stop_after,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A stored row back as a rule; `None` (with a warning) if it no longer parses, which only a
/// hand-edited row could do.
fn stored_rule(row: &automation::Model) -> Option<Rule> {
    let parsed = (|| -> Result<Rule, RuleError> {
        Ok(Rule {
            id: row.id,
            name: row.name.clone(),
            position: row.position,
            trigger: rules::parse_trigger(&stored_json(&row.trigger))?,
            conditions: rules::parse_conditions(&stored_json(&row.conditions))?,
            actions: rules::parse_actions(&stored_json(&row.actions))?,
            stop_after: row.stop_after,
        })
    })();
    match parsed {
        Ok(rule) => Some(rule),
        Err(error) => {
            tracing::warn!(automation_id = %row.id, %error, "stored automation does not parse; skipped");
            None
        }
    }
}

/// Every id an action names must be the workspace's own (a rule never reaches another's).
async fn check_actions(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    actions: &[Action],
) -> Result<(), EngineError> {
    for (i, action) in actions.iter().enumerate() {
        let Some(reference) = action.reference() else {
            continue;
        };
        let (found, id) = match reference {
            Reference::Team(id) => (
                team::Entity::find_by_id(id)
                    .filter(team::Column::WorkspaceId.eq(workspace_id))
                    .count(db)
                    .await?
                    > 0,
                id.to_string(),
            ),
            Reference::Agent(id) => (
                agent::Entity::find_by_id(id)
                    .filter(agent::Column::WorkspaceId.eq(workspace_id))
                    .count(db)
                    .await?
                    > 0,
                id.to_string(),
            ),
            Reference::SlaPolicy(id) => (
                crate::time::settings::has_sla_policy(db, workspace_id, id).await?,
                id.to_string(),
            ),
        };
        if !found {
            return Err(EngineError::Validation(format!(
                "`actions[{i}].{}`: {id:?} names nothing in this workspace",
                reference.field()
            )));
        }
    }
    Ok(())
}

/// The checked JSON of a rule's parts, as stored.
struct Checked {
    trigger: String,
    conditions: String,
    actions: String,
}

async fn check(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    trigger: &Value,
    conditions: &Value,
    actions: &Value,
) -> Result<Checked, EngineError> {
    rules::parse_trigger(trigger)?;
    rules::parse_conditions(conditions)?;
    let parsed = rules::parse_actions(actions)?;
    check_actions(db, workspace_id, &parsed).await?;
    let text = |value: &Value| value.to_string();
    Ok(Checked {
        trigger: text(trigger),
        conditions: text(conditions),
        actions: text(actions),
    })
}

pub async fn create_automation(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    input: NewAutomation,
) -> Result<AutomationView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let existing = automation::Entity::find()
        .filter(automation::Column::WorkspaceId.eq(workspace_id.to_string()))
        .order_by_desc(automation::Column::Position)
        .all(db)
        .await?;
    if existing.len() >= rules::MAX_RULES {
        return Err(EngineError::Validation(format!(
            "a workspace holds at most {} automations",
            rules::MAX_RULES
        )));
    }
    let conditions = input.conditions.unwrap_or_else(|| json!({"all": []}));
    let checked = check(
        db,
        workspace_id,
        &input.trigger,
        &conditions,
        &input.actions,
    )
    .await?;
    let position = input.position.unwrap_or_else(|| {
        existing
            .first()
            .map_or(1, |last| last.position.saturating_add(1))
    });
    let now = Utc::now();
    let row = automation::ActiveModel {
        id: Set(AutomationId::new()),
        workspace_id: Set(workspace_id),
        name: Set(non_empty("name", &input.name)?),
        active: Set(input.active),
        position: Set(position),
        trigger: Set(checked.trigger),
        conditions: Set(checked.conditions),
        actions: Set(checked.actions),
        stop_after: Set(input.stop_after),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(row.insert(db).await?.into())
}

pub async fn list_automations(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
) -> Result<Vec<AutomationView>, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    let rows = automation::Entity::find()
        .filter(automation::Column::WorkspaceId.eq(workspace_id.to_string()))
        .order_by_asc(automation::Column::Position)
        .order_by_asc(automation::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

async fn find_automation(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: AutomationId,
) -> Result<automation::Model, EngineError> {
    automation::Entity::find_by_id(id)
        .filter(automation::Column::WorkspaceId.eq(workspace_id.to_string()))
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("automation"))
}

pub async fn update_automation(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: AutomationId,
    patch: AutomationPatch,
) -> Result<AutomationView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let found = find_automation(db, workspace_id, id).await?;
    let trigger = patch.trigger.unwrap_or_else(|| stored_json(&found.trigger));
    let conditions = patch
        .conditions
        .unwrap_or_else(|| stored_json(&found.conditions));
    let actions = patch.actions.unwrap_or_else(|| stored_json(&found.actions));
    let checked = check(db, workspace_id, &trigger, &conditions, &actions).await?;
    let mut row = found.into_active_model();
    if let Some(name) = patch.name {
        row.name = Set(non_empty("name", &name)?);
    }
    if let Some(active) = patch.active {
        row.active = Set(active);
    }
    if let Some(position) = patch.position {
        row.position = Set(position);
    }
    if let Some(stop_after) = patch.stop_after {
        row.stop_after = Set(stop_after);
    }
    row.trigger = Set(checked.trigger);
    row.conditions = Set(checked.conditions);
    row.actions = Set(checked.actions);
    row.updated_at = Set(Utc::now());
    Ok(row.update(db).await?.into())
}

pub async fn delete_automation(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: AutomationId,
) -> Result<(), EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let found = find_automation(db, workspace_id, id).await?;
    automation::Entity::delete_by_id(found.id).exec(db).await?;
    Ok(())
}

/// The dry run's input: a message as a customer would send it, on a channel, from a phone.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunInput {
    pub message: DryRunMessage,
    pub channel_id: String,
    pub contact_phone: Option<String>,
    /// The conversation's tags (none by default).
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunMessage {
    pub text: Option<String>,
    pub kind: Option<String>,
    pub button_payload: Option<String>,
}

/// What the rule would do for this message, changing nothing: the facts are the ones routing
/// would see (the channel's team and its hours now, whether the phone is a known contact).
pub async fn test_automation(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: AutomationId,
    input: DryRunInput,
) -> Result<DryRun, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    let found = find_automation(db, workspace_id, id).await?;
    let rule = stored_rule(&found).ok_or_else(|| {
        EngineError::Conflict("the stored automation no longer parses; update it".into())
    })?;
    let channel = match input.channel_id.parse::<crate::ids::ChannelId>() {
        Ok(channel_id) => {
            channel::Entity::find_by_id(channel_id)
                .filter(channel::Column::WorkspaceId.eq(workspace_id))
                .one(db)
                .await?
        }
        Err(_) => None,
    };
    let channel = channel.ok_or_else(|| {
        EngineError::Validation(format!(
            "`channel_id` {:?} names nothing in this workspace",
            input.channel_id
        ))
    })?;
    let known = match &input.contact_phone {
        Some(phone) => {
            contact::Entity::find()
                .filter(contact::Column::WorkspaceId.eq(workspace_id.to_string()))
                .filter(contact::Column::Phone.eq(phone.clone()))
                .one(db)
                .await?
        }
        None => None,
    };
    let within_hours = crate::time::settings::load_team_time(
        db,
        channel.team_id,
        std::time::Duration::from_secs(1),
    )
    .await?
    .is_open(Utc::now());
    let facts = Facts {
        message: Some(MessageFacts {
            text: input.message.text,
            kind: input.message.kind.unwrap_or_else(|| "text".to_owned()),
            button_payload: input.message.button_payload,
        }),
        channel_id: channel.id.to_string(),
        team_id: channel.team_id.to_string(),
        contact_phone: input.contact_phone,
        contact_name: known.as_ref().and_then(|c| c.name.clone()),
        contact_is_new: known.is_none(),
        tags: input.tags,
        priority: 0,
        within_hours,
        folded_text: Default::default(),
    };
    Ok(rules::dry_run(&rule, &facts))
}

// ---------- a workspace's rules, for routing ----------

/// Loads a workspace's active rules.
pub async fn load_rules(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
) -> Result<RuleSet, DbErr> {
    let rows = automation::Entity::find()
        .filter(automation::Column::WorkspaceId.eq(workspace_id.to_string()))
        .filter(automation::Column::Active.eq(true))
        .all(db)
        .await?;
    Ok(RuleSet::new(rows.iter().filter_map(stored_rule).collect()))
}

/// Workspaces' rules, loaded once and shared by every conversation of the workspace until a
/// rule changes ([`Automations::forget`]); one load per workspace at a time.
#[derive(Default)]
pub struct Automations {
    workspaces: crate::cache::OnceMap<WorkspaceId, RuleSet>,
}

impl Automations {
    pub async fn get(
        &self,
        db: &DatabaseConnection,
        workspace_id: WorkspaceId,
    ) -> Result<Arc<RuleSet>, DbErr> {
        self.workspaces
            .get(workspace_id, || load_rules(db, workspace_id))
            .await
    }

    pub fn forget(&self) {
        self.workspaces.forget();
    }
}
