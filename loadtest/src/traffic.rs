//! What each webhook carries: a message from a new customer, a message from one of the ongoing
//! customers, or a delivery-status update. The mix is drawn from a seeded RNG before the run,
//! so the baseline and the target receive byte-for-byte the same bodies.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::arrivals::{Arrivals, Schedule};
use crate::ingest::phone_number_id;

/// The shape of the traffic (shared by `ingest`, `baseline` and `ramp`).
#[derive(Clone, Debug, clap::Args)]
pub struct MixArgs {
    /// WhatsApp numbers (channels) to spread the load over.
    #[arg(long, default_value_t = 4)]
    pub numbers: u64,
    /// Ongoing customers: each message not from a new customer comes from one of these, drawn
    /// at random. Each gets one unmeasured warm-up message first (see --no-warm-up), so their
    /// conversations already exist when the measured run starts.
    #[arg(long, default_value_t = 1000)]
    pub customers: u64,
    /// Fraction (0..=1) of messages from customers never seen before (each opens a new
    /// conversation); the rest come from the ongoing customers.
    #[arg(long, default_value_t = 0.1)]
    pub new_share: f64,
    /// Fraction (0..=1) of webhooks that are delivery-status updates ("delivered", for wamids
    /// that need not exist: the engine keeps them pending) instead of messages.
    #[arg(long, default_value_t = 0.0)]
    pub status_share: f64,
    /// Give the team an SLA policy (first and next response 1 h, resolution 1 day, warning
    /// 10 min), so every conversation arms its clocks (none fires during a run).
    #[arg(long)]
    pub sla: bool,
    /// Give the workspace this many active `message_received` automation rules (keywords,
    /// patterns and nested groups that the generated texts never match: each message is
    /// evaluated against all of them, and none acts), to measure what rule evaluation costs.
    #[arg(long, default_value_t = 0)]
    pub rules: u64,
    /// Do not send the ongoing customers' warm-up messages before the measured run.
    #[arg(long)]
    pub no_warm_up: bool,
    /// Milliseconds to pause after the warm-up, so the engine has opened the warm-up
    /// conversations before the measured run starts.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
}

impl MixArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        for (name, share) in [
            ("--new-share", self.new_share),
            ("--status-share", self.status_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                anyhow::bail!("{name} is a fraction between 0 and 1, not {share}");
            }
        }
        if self.numbers == 0 {
            anyhow::bail!("--numbers must be at least 1");
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        json!({"numbers": self.numbers, "customers": self.customers, "new_share": self.new_share,
               "status_share": self.status_share, "warm_up": !self.no_warm_up, "settle_ms": self.settle_ms,
               "sla": self.sla, "rules": self.rules})
    }
}

/// One webhook of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// A text message from ongoing customer `n` (of `--customers`).
    Ongoing(u64),
    /// A text message from new customer `n` (numbered across the whole run).
    New(u64),
    /// A delivery status for a wamid of ours that was never sent.
    Status,
}

/// Names the customers and wamids of one run and builds its bodies.
#[derive(Clone, Debug)]
pub struct Traffic {
    pub run: String,
    pub numbers: u64,
    pub customers: u64,
    /// A second pass of the same plan in the same run (same numbers and customers) gets wamids
    /// of its own: `wamid.load.<run>.p<pass>.<sequence>`.
    pub pass: u32,
}

fn ongoing_phone(customer: u64) -> String {
    format!("44770{customer:07}")
}

fn new_phone(customer: u64) -> String {
    format!("44771{customer:07}")
}

fn envelope(value: Value) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]})
        .to_string()
        .into_bytes()
}

impl Traffic {
    fn wamid(&self, sequence: u64) -> String {
        match self.pass {
            0 => format!("wamid.load.{}.{sequence}", self.run),
            pass => format!("wamid.load.{}.p{pass}.{sequence}", self.run),
        }
    }

    fn number(&self, sequence: u64) -> String {
        phone_number_id(&self.run, sequence % self.numbers.max(1))
    }

    fn message(
        &self,
        number: String,
        phone: &str,
        name: &str,
        wamid: String,
        text: String,
    ) -> Vec<u8> {
        envelope(json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100123", "phone_number_id": number},
            "contacts": [{"profile": {"name": name}, "wa_id": phone}],
            "messages": [{"from": phone, "id": wamid, "timestamp": "1781600000",
                          "type": "text", "text": {"body": text}}]
        }))
    }

    /// The body of webhook `sequence` (wamids `wamid.load.<run>.<sequence>` and
    /// `wamid.status.<run>.<sequence>`).
    pub fn body(&self, sequence: u64, item: Item) -> Vec<u8> {
        let number = self.number(sequence);
        match item {
            Item::Ongoing(customer) => self.message(
                number,
                &ongoing_phone(customer),
                &format!("Customer {customer}"),
                self.wamid(sequence),
                format!("load message {sequence}"),
            ),
            Item::New(customer) => self.message(
                number,
                &new_phone(customer),
                &format!("New customer {customer}"),
                self.wamid(sequence),
                format!("first message {sequence}"),
            ),
            Item::Status => envelope(json!({
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550100123", "phone_number_id": number},
                "statuses": [{"id": format!("wamid.status.{}.{sequence}", self.run), "status": "delivered",
                              "timestamp": "1781600000", "recipient_id": ongoing_phone(sequence % self.customers.max(1))}]
            })),
        }
    }

    /// The warm-up message of ongoing customer `customer` (`wamid.warm.<run>.<customer>`).
    pub fn warm_up_body(&self, customer: u64) -> Vec<u8> {
        self.message(
            self.number(customer),
            &ongoing_phone(customer),
            &format!("Customer {customer}"),
            format!("wamid.warm.{}.{customer}", self.run),
            "hello".to_owned(),
        )
    }
}

/// The webhooks of one run: when each is due and what it is.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The rate asked for (arrivals a second).
    pub rate: f64,
    pub duration: Duration,
    pub offsets: Vec<Duration>,
    pub items: Vec<Item>,
    /// The sequence number of the first webhook (wamids stay unique across a ramp's steps).
    pub first_sequence: u64,
}

/// Draws plans one after another, keeping wamids and new customers unique across them.
pub struct Planner {
    arrivals: Arrivals,
    rng: StdRng,
    seed: u64,
    mix: MixArgs,
    next_sequence: u64,
    next_new_customer: u64,
}

impl Planner {
    pub fn new(arrivals: Arrivals, seed: u64, mix: &MixArgs) -> Planner {
        Planner {
            arrivals,
            // The mix's draws are independent of the schedule's.
            rng: StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            seed,
            mix: mix.clone(),
            next_sequence: 0,
            next_new_customer: 0,
        }
    }

    /// `rate` webhooks a second for `duration`.
    pub fn plan(&mut self, rate: f64, duration: Duration) -> Plan {
        let schedule_seed = self.seed.wrapping_add(self.next_sequence);
        let offsets = Schedule::new(self.arrivals, rate, schedule_seed).within(duration);
        let items = (0..offsets.len()).map(|_| self.item()).collect();
        let plan = Plan {
            rate,
            duration,
            first_sequence: self.next_sequence,
            items,
            offsets,
        };
        self.next_sequence += plan.offsets.len() as u64;
        plan
    }

    fn item(&mut self) -> Item {
        if self.rng.random_bool(self.mix.status_share.clamp(0.0, 1.0)) {
            return Item::Status;
        }
        if self.mix.customers == 0 || self.rng.random_bool(self.mix.new_share.clamp(0.0, 1.0)) {
            let customer = self.next_new_customer;
            self.next_new_customer += 1;
            return Item::New(customer);
        }
        Item::Ongoing(self.rng.random_range(0..self.mix.customers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(new_share: f64, status_share: f64) -> MixArgs {
        MixArgs {
            numbers: 2,
            customers: 50,
            new_share,
            status_share,
            no_warm_up: false,
            settle_ms: 0,
            sla: false,
            rules: 0,
        }
    }

    #[test]
    fn the_mix_follows_the_shares() {
        let mut planner = Planner::new(Arrivals::Constant, 3, &mix(0.2, 0.25));
        let plan = planner.plan(10_000.0, Duration::from_secs(1));
        let statuses = plan.items.iter().filter(|i| **i == Item::Status).count();
        let new = plan
            .items
            .iter()
            .filter(|i| matches!(i, Item::New(_)))
            .count();
        assert_eq!(plan.items.len(), 10_000);
        assert!((2_300..=2_700).contains(&statuses), "{statuses}");
        // 20% of the 75% that are messages.
        assert!((1_300..=1_700).contains(&new), "{new}");
        let next = planner.plan(100.0, Duration::from_secs(1));
        assert_eq!(next.first_sequence, 10_000);
        let first_new = next.items.iter().find_map(|i| match i {
            Item::New(n) => Some(*n),
            _ => None,
        });
        assert!(
            first_new.is_some_and(|n| n as usize >= new),
            "new customers stay new"
        );
    }

    #[test]
    fn bodies_are_meta_envelopes() {
        let traffic = Traffic {
            run: "r1".into(),
            numbers: 2,
            customers: 5,
            pass: 0,
        };
        let status: Value = serde_json::from_slice(&traffic.body(7, Item::Status)).unwrap();
        let value = &status["entry"][0]["changes"][0]["value"];
        assert_eq!(value["statuses"][0]["status"], "delivered");
        assert_eq!(value["statuses"][0]["id"], "wamid.status.r1.7");
        assert_eq!(
            value["metadata"]["phone_number_id"],
            phone_number_id("r1", 1)
        );
        let message: Value = serde_json::from_slice(&traffic.body(8, Item::New(3))).unwrap();
        let value = &message["entry"][0]["changes"][0]["value"];
        assert_eq!(value["messages"][0]["from"], "447710000003");
        assert_eq!(value["messages"][0]["id"], "wamid.load.r1.8");
        assert_ne!(
            traffic.body(8, Item::New(3)),
            traffic.body(8, Item::Ongoing(3))
        );
    }

    #[test]
    fn out_of_range_shares_are_refused() {
        assert!(mix(1.5, 0.0).check().is_err());
        assert!(mix(0.5, -0.1).check().is_err());
        assert!(mix(1.0, 1.0).check().is_ok());
    }
}
