//! `idle`: what an idle population costs the server in memory. Three phases, each followed by
//! a settle pause and a measurement of the server's RSS (the median of 5 reads, 200 ms apart):
//!
//! 1. before: the run's workspace exists, nothing else of it;
//! 2. after M open conversations: M new customers write once each to a number whose team has
//!    no agent, so every conversation stays open and queued;
//! 3. after N agent websockets: agents of *another* team (never offered anything) connect and
//!    stay idle, answering the server's pings.
//!
//! Bytes per conversation = (2 - 1) / M; bytes per socket = (3 - 2) / N. RSS is what the
//! allocator holds, not what the engine uses: small populations drown in allocator noise (use
//! thousands), and memory the allocator keeps after a phase is not given back. In particular,
//! signing agents in costs the server an argon2 hash each (19 MiB by default) and glibc keeps
//! those blocks resident and reuses them, which hides the first tens of MiB of any later
//! growth: run the server with `MALLOC_MMAP_THRESHOLD_=131072` for this scenario (the report
//! warns when set-up left more than the deltas it measures). For the same reason, measure a
//! freshly started server: what an earlier run freed stays resident and is reused.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::generator::Sender;
use crate::ingest::{Target, set_up_world};
use crate::procstat::{Sampler, ServerSamples, rss_bytes};
use crate::report::{self, ReportArgs, header};
use crate::route::{Socket, create_agent, open_socket};
use crate::traffic::{Item, Traffic};

#[derive(Clone, Debug, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: Target,
    /// Agent websockets to hold open (N).
    #[arg(long, default_value_t = 1000)]
    pub sockets: u64,
    /// Sockets per agent (each agent signs in once; creating and signing in agents costs an
    /// argon2 hash each, so many sockets per agent makes large N quick to set up).
    #[arg(long, default_value_t = 1)]
    pub sockets_per_agent: u64,
    /// Open conversations to create (M), one new customer each.
    #[arg(long, default_value_t = 1000)]
    pub conversations: u64,
    /// Give the queue's team an SLA policy, so every open conversation has its clocks armed.
    #[arg(long)]
    pub sla: bool,
    /// Pause before each RSS measurement, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub settle_ms: u64,
    /// Set-up requests (agent creation, webhooks, socket opens) in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug)]
pub struct IdleReport {
    pub rss_before: u64,
    pub rss_with_conversations: u64,
    pub rss_with_sockets: u64,
    /// Signed: allocator noise can make a small population's delta negative.
    pub bytes_per_conversation: f64,
    pub bytes_per_socket: f64,
    pub open_files_limit: u64,
    pub server: ServerSamples,
    pub json: Value,
}

/// The median RSS of 5 reads 200 ms apart, after `settle`.
async fn settled_rss(pid: u32, settle: Duration) -> anyhow::Result<u64> {
    tokio::time::sleep(settle).await;
    let mut reads = Vec::with_capacity(5);
    for index in 0..5 {
        if index > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        reads.push(rss_bytes(pid)?);
    }
    reads.sort_unstable();
    Ok(reads[reads.len() / 2])
}

/// Keeps a socket alive: reads (so pings are answered) until it closes.
async fn hold(mut socket: Socket) {
    while let Some(Ok(_)) = socket.next().await {}
}

pub async fn run(args: IdleArgs) -> anyhow::Result<IdleReport> {
    let target = &args.target;
    target.check_loopback()?;
    let Some(pid) = args.report.server_pid else {
        bail!("idle measures the server's memory: give --server-pid <pid of the engine>");
    };
    let open_files_limit = crate::raise_open_files_limit();
    let needed = args.sockets + args.concurrency as u64 + 64;
    if open_files_limit < needed {
        bail!(
            "{} sockets need an open-files limit of about {needed}; this process has {open_files_limit}: \
             raise it with `ulimit -n {needed}` (and the server's, before starting it)",
            args.sockets
        );
    }
    let concurrency = args.concurrency.max(1);
    let sender = Sender::new(target.webhook_endpoints(), &target.app_secret, concurrency)?;
    let client = sender.client.clone();
    let run_id = crate::ingest::run_id();
    let (workspace, _queue_team) = set_up_world(
        &client,
        &target.url,
        &target.admin_token,
        1,
        &run_id,
        false,
        crate::ingest::Extras {
            sla: args.sla,
            rules: 0,
        },
    )
    .await?;
    // The agents' team has no number: nothing is ever offered to them.
    let idle_team: Value = client
        .post(format!(
            "{}/api/v1/workspaces/{workspace}/teams",
            target.url
        ))
        .bearer_auth(&target.admin_token)
        .json(&json!({"name": "idle"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let idle_team = idle_team["id"].as_str().context("team id")?.to_owned();
    // Signing agents in costs an argon2 hash each (19 MiB by default), which the allocator may
    // keep resident afterwards and hand out again: the report shows how much set-up left.
    let rss_before_set_up = rss_bytes(pid)?;
    let per_agent = args.sockets_per_agent.max(1);
    let agents = args.sockets.div_ceil(per_agent);
    let tokens: Vec<String> = futures_util::stream::iter(0..agents)
        .map(|index| {
            let (client, workspace, idle_team, run_id) = (&client, &workspace, &idle_team, &run_id);
            async move {
                let email = format!("idle{index}.{}@loadtest.example", run_id);
                create_agent(client, target, workspace, &[idle_team], 1, &email).await
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;

    let epoch = Instant::now();
    let sampler = Sampler::start(pid, epoch)?;
    let settle = Duration::from_millis(args.settle_ms);
    let rss_before = settled_rss(pid, settle).await?;
    let t_before = epoch.elapsed().as_secs_f64();

    // M conversations, one new customer each, on the queue team's number.
    let traffic = Traffic {
        run: run_id.clone(),
        numbers: 1,
        customers: 0,
        pass: 0,
    };
    let bodies = (0..args.conversations)
        .map(|n| traffic.body(n, Item::New(n)))
        .collect();
    let failed = sender.send_all(bodies, concurrency).await?;
    if failed > 0 {
        bail!(
            "{failed} of {} conversations' webhooks failed",
            args.conversations
        );
    }
    let rss_with_conversations = settled_rss(pid, settle).await?;
    let t_conversations = epoch.elapsed().as_secs_f64();

    // N sockets.
    let url = &target.url;
    let sockets: Vec<Socket> = futures_util::stream::iter(0..args.sockets)
        .map(|index| {
            let token = &tokens[(index / per_agent) as usize];
            async move { open_socket(url, token).await.map(|(socket, _)| socket) }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let holders: Vec<_> = sockets.into_iter().map(|s| tokio::spawn(hold(s))).collect();
    let rss_with_sockets = settled_rss(pid, settle).await?;
    let t_sockets = epoch.elapsed().as_secs_f64();
    let still_open = holders.iter().filter(|h| !h.is_finished()).count() as u64;
    for holder in holders {
        holder.abort();
    }
    let server = sampler.finish().await;
    if still_open < args.sockets {
        bail!(
            "only {still_open} of {} sockets were still open at the measurement",
            args.sockets
        );
    }

    let per = |after: u64, before: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            (after as f64 - before as f64) / n as f64
        }
    };
    let bytes_per_conversation = per(rss_with_conversations, rss_before, args.conversations);
    let bytes_per_socket = per(rss_with_sockets, rss_with_conversations, args.sockets);
    let residue = rss_before.saturating_sub(rss_before_set_up);
    let smallest_delta = rss_with_conversations
        .abs_diff(rss_before)
        .min(rss_with_sockets.abs_diff(rss_with_conversations));
    let warning = (residue > 16 << 20 || residue > smallest_delta).then(|| {
        format!(
            "set-up (argon2 sign-ins) left {:.1} MiB resident in the server, which its allocator \
             hands out again: deltas smaller than that are underestimated. Start the server with \
             MALLOC_MMAP_THRESHOLD_=131072 (glibc then returns large blocks at once) and use \
             thousands of sockets and conversations.",
            residue as f64 / 1_048_576.0
        )
    });
    if let Some(warning) = &warning {
        eprintln!("warning: {warning}");
    }
    let settings = json!({"url": target.url, "sockets": args.sockets, "sockets_per_agent": per_agent,
        "agents": agents, "conversations": args.conversations, "settle_ms": args.settle_ms,
        "concurrency": concurrency, "run_id": run_id});
    let mut json = header("idle", settings);
    json["result"] = json!({
        "rss_bytes": {"before_set_up": rss_before_set_up, "before": rss_before, "with_conversations": rss_with_conversations, "with_sockets": rss_with_sockets},
        "measured_at_s": {"before": t_before, "with_conversations": t_conversations, "with_sockets": t_sockets},
        "bytes_per_conversation": bytes_per_conversation,
        "bytes_per_socket": bytes_per_socket,
        "sockets_open_at_measurement": still_open,
        "set_up_residue_bytes": residue,
        "warning": warning,
        "generator_open_files_limit": open_files_limit,
    });
    json["server"] = server.to_json();
    if let Some(folder) = &args.report.report {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1_048_576.0);
        let summary = vec![
            ("RSS before".to_owned(), mib(rss_before)),
            (
                format!("RSS with {} open conversations", args.conversations),
                mib(rss_with_conversations),
            ),
            (
                format!("RSS with {} idle sockets too", args.sockets),
                mib(rss_with_sockets),
            ),
            (
                "bytes per conversation".to_owned(),
                format!("{bytes_per_conversation:.0}"),
            ),
            (
                "bytes per socket".to_owned(),
                format!("{bytes_per_socket:.0}"),
            ),
        ];
        let charts = report::server_charts(Some(&server));
        report::write(
            folder,
            &json,
            &report::html("waos-loadtest idle", &summary, &charts),
        )?;
    }
    Ok(IdleReport {
        rss_before,
        rss_with_conversations,
        rss_with_sockets,
        bytes_per_conversation,
        bytes_per_socket,
        open_files_limit,
        server,
        json,
    })
}
