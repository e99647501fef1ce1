//! Prometheus metrics, served as text at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use waos_engine::ingest::IngestReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    webhook_requests: Family<OutcomeLabel, Counter>,
    ingest_items: Family<OutcomeLabel, Counter>,
    ingest_commit_seconds: Histogram,
}

impl Metrics {
    /// With the routing engine's own metrics, exposed here.
    pub fn new(routing: &waos_engine::routing::RoutingContext) -> Self {
        let mut registry = Registry::with_prefix("waos");
        registry.register(
            "assignment_decision_seconds",
            "Time the supervisor takes to choose an agent for a waiting conversation (pure choice)",
            routing.decision_seconds.clone(),
        );
        registry.register(
            "automation_evaluation_seconds",
            "Time a conversation takes to evaluate its workspace's automation rules for one event (pure evaluation)",
            routing.rules_seconds.clone(),
        );
        registry.register(
            "conversation_actors",
            "Conversation actors running (a quiet assigned conversation's actor stops; the next event rebuilds it)",
            routing.conversation_actors.clone(),
        );
        registry.register(
            "audit_queue_full",
            "Audit events that found the writer's queue full and waited for room (the database is not keeping up)",
            routing.audit.queue_full.clone(),
        );
        let webhook_requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook POSTs by outcome (stored, ignored, bad_signature, too_large, bad_json, unavailable)",
            webhook_requests.clone(),
        );
        let ingest_items = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "ingest_items",
            "Webhook items by what the writer did with them",
            ingest_items.clone(),
        );
        // 50 µs to about 1.6 s.
        let ingest_commit_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "ingest_commit_seconds",
            "Time from a webhook's submission to its commit",
            ingest_commit_seconds.clone(),
        );
        Self {
            registry,
            webhook_requests,
            ingest_items,
            ingest_commit_seconds,
        }
    }

    /// A node of a cluster's own: leases, takeovers, and what it forwards to other nodes.
    pub fn cluster(&mut self, bus: &waos_engine::cluster::bus::BusMetrics) {
        self.registry.register(
            "cluster_leases_held",
            "Workspace leases this node holds (it routes those workspaces)",
            bus.leases_held.clone(),
        );
        self.registry.register(
            "cluster_takeovers",
            "Workspaces this node took over (from nobody, a node that left, or a dead one)",
            bus.takeovers.clone(),
        );
        self.registry.register(
            "cluster_forwards",
            "Calls and sockets forwarded to the node that routes their workspace",
            bus.forwards.clone(),
        );
        self.registry.register(
            "cluster_handoffs",
            "Committed events handed to the node that routes their workspace",
            bus.handoffs.clone(),
        );
        self.registry.register(
            "cluster_forward_seconds",
            "Time a forwarded call takes, the owner's answer included",
            bus.forward_seconds.0.clone(),
        );
        self.registry.register(
            "cluster_handoff_seconds",
            "Time a batch of committed events takes to reach the workspace's owner, its \
             acknowledgement included (the hop a webhook landing on another node adds)",
            bus.handoff_seconds.0.clone(),
        );
    }

    pub fn webhook(&self, outcome: &str) {
        self.webhook_requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn ingested(&self, report: &IngestReport, seconds: f64) {
        self.ingest_commit_seconds.observe(seconds);
        for (outcome, n) in [
            ("message_stored", report.messages_stored),
            ("status_stored", report.statuses_stored),
            ("duplicate", report.duplicates),
            ("unrouted", report.unrouted),
            ("undecodable", report.undecodable),
            ("conversation_opened", report.conversations_opened),
        ] {
            if n > 0 {
                self.ingest_items
                    .get_or_create(&OutcomeLabel {
                        outcome: outcome.to_owned(),
                    })
                    .inc_by(n);
            }
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
