//! What a conversation's rules have done, stored with its routing state so that a restart
//! neither repeats a run nor forgets one: whether its `conversation_created` rules are still
//! to run, and which timer rules fired for which silence.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;

use crate::ids::AutomationId;
use crate::store::entity::conversation;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Marks {
    /// Its `conversation_created` rules have not run yet.
    pub pending: bool,
    /// Timer rules that fired, by automation id: the start of the silence each fired for (a
    /// rule fires once per silence; the other side's next message starts a new one).
    pub fired: BTreeMap<AutomationId, DateTime<Utc>>,
}

impl Marks {
    pub fn from_row(row: &conversation::Model) -> Marks {
        Marks {
            pending: row.automation_pending,
            fired: serde_json::from_str(&row.automation_fired).unwrap_or_default(),
        }
    }

    pub fn write(&self, row: &mut conversation::ActiveModel) {
        row.automation_pending = Set(self.pending);
        row.automation_fired =
            Set(serde_json::to_string(&self.fired).unwrap_or_else(|_| "{}".to_owned()));
    }

    /// Whether `automation_id` already fired for the silence that began at `since`, to the
    /// microsecond (what Postgres keeps of a time read back after a restart).
    pub fn fired_for(&self, automation_id: AutomationId, since: DateTime<Utc>) -> bool {
        self.fired
            .get(&automation_id)
            .is_some_and(|fired| fired.timestamp_micros() == since.timestamp_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fired_timers_survive_the_stored_form() {
        let (rule, since) = (AutomationId::new(), Utc::now());
        let marks = Marks {
            pending: true,
            fired: BTreeMap::from([(rule, since)]),
        };
        let mut row = conversation::ActiveModel::default();
        marks.write(&mut row);
        let stored = row.automation_fired.clone().unwrap();
        assert_eq!(
            stored,
            format!("{{\"{rule}\":{}}}", serde_json::json!(since))
        );
        let back: BTreeMap<AutomationId, DateTime<Utc>> = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, marks.fired);
        assert!(
            Marks {
                fired: back,
                ..Marks::default()
            }
            .fired_for(rule, since)
        );
    }
}
