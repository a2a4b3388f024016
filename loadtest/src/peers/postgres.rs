//! PostgreSQL: the hold as shops write it today, a conditional decrement and an insert of the
//! hold in one transaction, acknowledged at commit with `synchronous_commit=on` (the commit
//! record is fsynced before the answer).
//!
//! The two statements go as one (a data-modifying CTE), so each hold is one round trip and one
//! transaction; BEGIN, UPDATE, INSERT, COMMIT as four round trips would only be slower.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tokio_postgres::{Client, NoTls, Statement};

use crate::target::{err, Answer, Error, Level};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, qty bigint NOT NULL CHECK (qty >= 0));
CREATE TABLE IF NOT EXISTS holds (
  id bigserial PRIMARY KEY, sku text NOT NULL, qty bigint NOT NULL,
  expires_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS holds_sku ON holds (sku);
";

/// $1 sku, $2 qty, $3 ttl seconds. A row (the hold id) when held; none when short.
pub const HOLD_SQL: &str = "
WITH taken AS (UPDATE stock SET qty = qty - $2 WHERE sku = $1 AND qty >= $2 RETURNING sku)
INSERT INTO holds (sku, qty, expires_at)
SELECT sku, $2, now() + make_interval(secs => $3) FROM taken RETURNING id";

pub struct PgStore {
    pub conn_str: String,
}

/// Opens one connection; its driver task runs until the client is dropped.
pub async fn connect(conn_str: &str) -> Result<Client, Error> {
    let (client, connection) = tokio_postgres::connect(conn_str, NoTls).await?;
    tokio::spawn(async move {
        // The connection ends when its client is dropped; an error then is nobody's concern.
        let _ = connection.await;
    });
    Ok(client)
}

impl PgStore {
    pub async fn setup(&self, skus: &[String], stock: u64) -> Result<(), Error> {
        let client = connect(&self.conn_str).await?;
        client.batch_execute(SCHEMA).await?;
        client
            .batch_execute("TRUNCATE holds; TRUNCATE stock;")
            .await?;
        let insert = client
            .prepare("INSERT INTO stock (sku, qty) VALUES ($1, $2)")
            .await?;
        let qty = i64::try_from(stock).map_err(|_| err("stock over i64"))?;
        for sku in skus {
            client.execute(&insert, &[sku, &qty]).await?;
        }
        Ok(())
    }

    pub async fn session(&self, skus: Arc<Vec<String>>) -> Result<PgSession, Error> {
        let client = connect(&self.conn_str).await?;
        let hold = client.prepare(HOLD_SQL).await?;
        Ok(PgSession { client, hold, skus })
    }

    pub async fn levels(&self, skus: &[String]) -> Result<Vec<Level>, Error> {
        let client = connect(&self.conn_str).await?;
        let mut levels = Vec::new();
        for sku in skus {
            let row = client
                .query_one(
                    "SELECT s.qty, COALESCE((SELECT sum(h.qty) FROM holds h WHERE h.sku = s.sku), 0)::bigint
                     FROM stock s WHERE s.sku = $1",
                    &[sku],
                )
                .await?;
            let left = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
            let held = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            levels.push(Level {
                sku: sku.clone(),
                on_hand: left + held,
                held,
                allocated: 0,
                available: left,
            });
        }
        Ok(levels)
    }
}

pub struct PgSession {
    client: Client,
    hold: Statement,
    skus: Arc<Vec<String>>,
}

impl PgSession {
    pub async fn reserve(&mut self, sku: usize, qty: u64, ttl_s: u64) -> Answer<String> {
        let (Ok(qty), name) = (i64::try_from(qty), &self.skus[sku]) else {
            return Answer::Failed {
                kind: "invalid".into(),
                in_doubt: false,
            };
        };
        match self
            .client
            .query_opt(&self.hold, &[name, &qty, &(ttl_s as f64)])
            .await
        {
            Ok(Some(row)) => Answer::Ok(format!("H-{}", row.get::<_, i64>(0))),
            Ok(None) => Answer::Refused("insufficient-stock".into()),
            Err(e) => Answer::Failed {
                kind: if e.is_closed() { "closed" } else { "postgres" }.into(),
                in_doubt: true,
            },
        }
    }
}

/// A PostgreSQL cluster the harness made with `initdb` and runs with `pg_ctl`, on loopback,
/// in a temp dir. As root it runs as the `postgres` user: PostgreSQL refuses to run as root.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    as_user: Option<String>,
}

/// The newest `/usr/lib/postgresql/<ver>/bin` (Debian's layout), or the PATH's.
fn bin_dir() -> Result<PathBuf, Error> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| err("PostgreSQL is not installed: apt-get install -y postgresql"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        err("no initdb under /usr/lib/postgresql/*/bin: apt-get install -y postgresql")
    })
}

impl PgServer {
    pub async fn start(dir_in: Option<&Path>) -> Result<PgServer, Error> {
        let bin = bin_dir()?;
        let dir = match dir_in {
            Some(d) => tempfile::Builder::new().prefix("pg-lt-").tempdir_in(d)?,
            None => tempfile::Builder::new().prefix("pg-lt-").tempdir()?,
        };
        // SAFETY: geteuid has no preconditions.
        let as_user = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_owned());
        if let Some(user) = &as_user {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .status()?;
            if !status.success() {
                return Err(err(format!("chown of the PostgreSQL dir to {user} failed")));
            }
        }
        let port = crate::server::free_port()?;
        let server = PgServer {
            bin,
            dir,
            port,
            as_user,
        };
        let data = server.dir.path().join("data");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on \
             -c max_connections=600 -c shared_buffers=256MB",
            server.dir.path().display()
        );
        let log = server.dir.path().join("pg.log");
        server.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        )?;
        Ok(server)
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<(), Error> {
        let path = self.bin.join(tool);
        let mut command = match &self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(err(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }

    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }
}
