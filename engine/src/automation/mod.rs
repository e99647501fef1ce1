//! Automation: rules that run inside the conversation actor, serially with routing (so a rule
//! never races an assignment), and the texts they and agents fill in.
//!
//! - [`rules`]: the pure rule engine: triggers, nestable conditions, ordered actions, parsed
//!   with refusals that name their place, evaluated with a trace (the dry run is the same
//!   evaluation).
//! - [`settings`]: rules as workspace settings (checked, scoped) and [`settings::Automations`],
//!   the cache routing reads them through.
//! - [`marks`]: what a conversation's rules have done, stored with its state.
//! - [`placeholders`]: `{{contact.name}}`-style slots with fallbacks.
//!
//! The actor side (which event runs which rules, how each action is carried out, the timers)
//! is in `routing::automate`.

pub mod marks;
pub mod placeholders;
pub mod rules;
pub mod settings;
