//! The command line: one subcommand per scenario, plus `compare` (Conductor and the peers side
//! by side), `fsync` (the disk's fsync latency) and the hidden `peer-service`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "conductor-loadtest",
    version,
    about = "Conductor's load-test harness: prove a flash sale holds before the day"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// N hot SKUs, C buyers reserving 1–k units until sold out or time is up.
    FlashSale(FlashCmd),
    /// Storefront availability reads (single and batch) at a target rate, alongside a flash sale.
    Availability(AvailabilityCmd),
    /// Web orders, pickup in store, cancellations, short picks and returns over a store
    /// network, run to shipped by simulated warehouse workers.
    Omnichannel(OmniCmd),
    /// Kills the server (SIGKILL) at random moments during a flash sale, restarts it, and checks
    /// that every acknowledged hold survived and nothing was oversold.
    Crash(CrashCmd),
    /// Conductor (in-process and HTTP) against Redis-Lua and PostgreSQL, over their own
    /// protocols and behind a checkout service, from the same workload; one table with ratios.
    Compare(CompareCmd),
    /// Measures the fsync latency of the disk under a directory.
    Fsync {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
    /// The peers' checkout service (started by `compare`; not for direct use).
    #[command(hide = true)]
    PeerService {
        #[arg(long)]
        backend: String,
        #[arg(long)]
        url: String,
        #[arg(long)]
        listen: String,
        #[arg(long, default_value_t = 16)]
        pool: usize,
    },
}

/// Where the load goes, how much of it, and where the figures go.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// `in-process` (the actors' handle, no HTTP), `http://host:port` (a running server), or
    /// `embedded` (start `conductor serve` on a free loopback port with a temp data dir).
    #[arg(long, default_value = "embedded")]
    pub target: String,
    /// The `conductor` binary for embedded and crash runs (default: beside this binary).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// API key for `--target http://...` (admin scope: the harness sets up stock).
    #[arg(long, env = "CONDUCTOR_KEY")]
    pub key: Option<String>,
    /// Concurrent workers (buyers).
    #[arg(short = 'c', long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seconds of load (at most; a flash sale stops when sold out).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Open model: requests per second in total, latency from the intended send time. Without
    /// it, the closed model: each worker sends its next request when the last one is answered.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Write every figure to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the latency percentile curve and throughput over time to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Seed of every random choice (default: from the clock; always printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SaleArgs {
    /// Hot SKUs.
    #[arg(long, default_value_t = 1)]
    pub skus: usize,
    /// Units of each SKU at the start.
    #[arg(long, default_value_t = 10_000)]
    pub stock: u64,
    /// Each hold asks for 1..=max-qty units.
    #[arg(long, default_value_t = 1)]
    pub max_qty: u64,
    /// Share of holds confirmed into orders (0–1); the rest stay held until they expire.
    #[arg(long, default_value_t = 0.0)]
    pub confirm_share: f64,
    /// Hold time to live, seconds.
    #[arg(long, default_value_t = 600)]
    pub ttl: u64,
    /// After the load, wait for the unconfirmed holds to expire, and check that their units
    /// came back (available = initial − confirmed).
    #[arg(long)]
    pub wait_expiry: bool,
}

#[derive(Args, Debug, Clone)]
pub struct FlashCmd {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub sale: SaleArgs,
}

#[derive(Args, Debug, Clone)]
pub struct AvailabilityCmd {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub sale: SaleArgs,
    /// Storefront reads per second (open model, always).
    #[arg(long, default_value_t = 2_000.0)]
    pub read_rate: f64,
    /// Concurrent storefront readers.
    #[arg(long, default_value_t = 32)]
    pub readers: usize,
    /// Share of reads that ask for a batch of SKUs rather than one.
    #[arg(long, default_value_t = 0.3)]
    pub batch_share: f64,
}

#[derive(Args, Debug, Clone)]
pub struct OmniCmd {
    #[command(flatten)]
    pub load: LoadArgs,
    /// SKUs in the catalog.
    #[arg(long, default_value_t = 20)]
    pub skus: usize,
    /// Units of each SKU at each stock point.
    #[arg(long, default_value_t = 500)]
    pub stock: u64,
    /// Simulated warehouse workers per stock point.
    #[arg(long, default_value_t = 2)]
    pub pickers: usize,
}

#[derive(Args, Debug, Clone)]
pub struct CrashCmd {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub sale: SaleArgs,
    /// How many times the server is killed.
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Each kill comes at a random moment in 0..=max-uptime seconds of load.
    #[arg(long, default_value_t = 2.0)]
    pub max_uptime: f64,
    /// Seconds between the server's snapshots of itself, so that kills land around them; 0
    /// turns them off.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub checkpoint_every_s: u64,
}

#[derive(Args, Debug, Clone)]
pub struct CompareCmd {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Units of the hot SKU.
    #[arg(long, default_value_t = 200_000)]
    pub stock: u64,
    /// Peers to start: `redis`, `postgres` (comma separated); none runs Conductor alone.
    #[arg(long, value_delimiter = ',', default_value = "redis,postgres")]
    pub peers: Vec<String>,
    /// Repetitions of every configuration, interleaved (at least 2 for a fair table).
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// Connections in the PostgreSQL service's pool (16 was PostgreSQL's best on this machine).
    #[arg(long, default_value_t = 16)]
    pub pg_pool: usize,
    /// Multiplexed connections in the Redis service.
    #[arg(long, default_value_t = 8)]
    pub redis_pool: usize,
    /// Skip Redis with `appendfsync everysec` (non-durable, reported apart).
    #[arg(long)]
    pub durable_only: bool,
    /// Run only the systems whose label contains one of these words (e.g. `in-process,redis`).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}
