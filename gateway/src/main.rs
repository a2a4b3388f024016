//! The `conductor` binary: `serve`, and offline `wal inspect|verify` of a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Blocks are allocated on request threads and freed on the log's thread; mimalloc's
/// per-thread free lists keep that cheap where glibc malloc contends.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use conductor_gateway::config::{resolve, Flags};

#[derive(Parser)]
#[command(
    name = "conductor",
    version,
    about = "Conductor: real-time order orchestration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP API until SIGINT or SIGTERM.
    Serve {
        /// Where the write-ahead log and keys live [default: ./conductor-data].
        #[arg(long, env = "CONDUCTOR_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "CONDUCTOR_LISTEN")]
        listen: Option<SocketAddr>,
        /// A JSON config file (wave window, workers, WAL batching, timeouts).
        #[arg(long, env = "CONDUCTOR_CONFIG")]
        config: Option<PathBuf>,
        /// Seeds a demo network into an empty store and runs simulated workers and shoppers.
        #[arg(long, env = "CONDUCTOR_DEMO")]
        demo: bool,
        /// Tokio worker threads [default: one fewer than the cores, at least one: the log's
        /// threads need a core of their own].
        #[arg(long, env = "CONDUCTOR_RUNTIME_THREADS")]
        runtime_threads: Option<usize>,
    },
    /// Offline tools over a stopped server's data directory.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
}

#[derive(Subcommand)]
enum WalCommand {
    /// Prints every record and snapshot.
    Inspect { dir: PathBuf },
    /// Checks every checksum; exits 1 on damage.
    Verify { dir: PathBuf },
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONDUCTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal; log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

fn main() -> ExitCode {
    conductor_actors::process::prepare();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            config,
            demo,
            runtime_threads,
        } => {
            init_logs();
            let flags = Flags {
                data_dir,
                listen,
                config,
                demo,
                admin_key: std::env::var("CONDUCTOR_ADMIN_KEY").ok(),
                runtime_threads,
            };
            let options = match resolve(flags) {
                Ok(options) => options,
                Err(e) => {
                    eprintln!("conductor: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(options.runtime_threads)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("conductor: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(conductor_gateway::server::serve(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "server failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Wal {
            command: WalCommand::Inspect { dir },
        } => {
            let mut out = std::io::stdout().lock();
            match conductor_persistence::inspect::<conductor_engine::state::Event>(&dir, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("conductor wal inspect: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Wal {
            command: WalCommand::Verify { dir },
        } => match conductor_persistence::verify(&dir) {
            Ok(report) => {
                println!(
                    "records {} events {} bytes {} snapshots {} corrupt {}",
                    report.records,
                    report.events,
                    report.bytes,
                    report.snapshots,
                    report.corrupt_total
                );
                for (seq, error) in &report.corrupt {
                    println!("corrupt record {seq:?}: {error}");
                }
                for (name, error) in &report.corrupt_snapshots {
                    println!("corrupt snapshot {name}: {error}");
                }
                if report.is_ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("conductor wal verify: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
