//! A throwaway PostgreSQL server for tests: found on this machine, initialised in a
//! temporary directory and started on 127.0.0.1 (one per test process, a fresh database
//! per test), stopped and deleted when the process exits, however it exits.
//!
//! Shared by the store's unit tests and the integration tests (`tests/support`), so it
//! uses nothing of the crate. PostgreSQL refuses to run as root: as root, the server runs
//! as `nobody` (uid and gid 65534).
//!
//! The server runs under a small shell that holds the read end of a pipe whose write
//! end only this process has: when the process exits (a panic, a kill -9 included), the
//! shell reads end-of-file, stops the server immediately and removes its directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The unprivileged user (and group) the server runs as when we are root.
const NOBODY: u32 = 65534;

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running test server.
pub struct TestPostgres {
    port: u16,
    /// The CA that signed the server's certificate, when it offers TLS.
    ca: Option<PathBuf>,
    /// Dropping it (at exit) stops the server; see the module docs.
    _stop: Mutex<ChildStdin>,
    _shell: Mutex<Child>,
}

impl TestPostgres {
    /// The server of this test process, started on first use. Panics, saying why, if it
    /// cannot start (PostgreSQL not installed, most likely).
    pub fn shared() -> &'static TestPostgres {
        static SERVER: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
        match SERVER.get_or_init(|| TestPostgres::start(false)) {
            Ok(server) => server,
            Err(why) => panic!("cannot start the test PostgreSQL server: {why}"),
        }
    }

    /// Another server of this test process, offering TLS with a certificate for
    /// 127.0.0.1 signed by a CA of its own ([`TestPostgres::ca_file`]); it needs the
    /// `openssl` command.
    pub fn shared_tls() -> &'static TestPostgres {
        static SERVER: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
        match SERVER.get_or_init(|| TestPostgres::start(true)) {
            Ok(server) => server,
            Err(why) => panic!("cannot start the test PostgreSQL server with TLS: {why}"),
        }
    }

    /// The PEM file of the CA that signed the server's certificate, if it offers TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The URL of `database` on this server (superuser `postgres`, no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new empty database and answers its URL.
    pub async fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("t_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect to the test server");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = driver.await;
        self.url(&name)
    }

    /// Initialises a cluster in a new temporary directory and starts it on a free port
    /// (another one if that was taken in between, up to three times).
    fn start(tls: bool) -> Result<TestPostgres, String> {
        let bin = find_binaries()?;
        let mut last = String::new();
        for _ in 0..3 {
            match start_in(&bin, tls) {
                Ok(server) => return Ok(server),
                Err((why, retry)) if retry => last = why,
                Err((why, _)) => return Err(why),
            }
        }
        Err(last)
    }
}

/// The directory of PostgreSQL's server binaries: `$GANTRY_TEST_PG_BIN`, the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), or `PATH`.
fn find_binaries() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("GANTRY_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "GANTRY_TEST_PG_BIN={} holds no initdb and postgres",
                dir.display()
            ))
        };
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u32>> = name.split('.').map(|n| n.parse().ok()).collect();
            Some((version?, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| has_server(dir))
        .ok_or_else(|| {
            "PostgreSQL's server binaries (initdb, postgres) were not found in \
             $GANTRY_TEST_PG_BIN, /usr/lib/postgresql/*/bin or PATH: install PostgreSQL \
             (Debian and Ubuntu: apt-get install postgresql) or point GANTRY_TEST_PG_BIN \
             at the directory holding them"
                .to_owned()
        })
}

/// `program` as a command, run as `nobody` when we are root.
fn command(program: &Path, as_nobody: bool) -> Command {
    let mut command = if as_nobody {
        let mut setpriv = Command::new("setpriv");
        setpriv
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg(program);
        setpriv
    } else {
        Command::new(program)
    };
    command.env("LC_ALL", "C");
    for var in [
        "PGDATA",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGOPTIONS",
    ] {
        command.env_remove(var);
    }
    command
}

/// One try at starting a server; the error says whether another port may do.
fn start_in(bin: &Path, tls: bool) -> Result<TestPostgres, (String, bool)> {
    let fail = |why: String| (why, false);
    let as_nobody = nix::unistd::geteuid().is_root();
    let root = new_root(as_nobody).map_err(fail)?;
    let data = root.join("data");
    let initdb = command(&bin.join("initdb"), as_nobody)
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| fail(format!("cannot run initdb: {err}")))?;
    if !initdb.status.success() {
        let _ = std::fs::remove_dir_all(&root);
        return Err(fail(format!(
            "initdb failed ({}): {}{}",
            initdb.status,
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        )));
    }
    let ca = if tls {
        Some(make_certificates(&root, &data, as_nobody).map_err(fail)?)
    } else {
        None
    };
    let port = free_port().map_err(fail)?;
    // `$1` the directory, `$2` the port, `$3` the postgres binary, `$4` on or off (TLS).
    let script = r#"
        "$3" -D "$1/data" -p "$2" -k "$1" -h 127.0.0.1 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=200 -c shared_buffers=16MB -c "ssl=$4" \
            </dev/null >>"$1/postgres.log" 2>&1 &
        server=$!
        read -r _ignored
        kill -QUIT "$server" 2>/dev/null
        wait "$server"
        rm -rf "$1"
    "#;
    let mut shell = command(Path::new("/bin/sh"), as_nobody)
        .arg("-c")
        .arg(script)
        .arg("gantry-test-postgres")
        .arg(&root)
        .arg(port.to_string())
        .arg(bin.join("postgres"))
        .arg(if tls { "on" } else { "off" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| fail(format!("cannot start postgres: {err}")))?;
    let stop = shell
        .stdin
        .take()
        .ok_or_else(|| fail("no pipe to the server's shell".into()))?;
    let server = TestPostgres {
        port,
        ca,
        _stop: Mutex::new(stop),
        _shell: Mutex::new(shell),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if is_ready(&data) {
            return Ok(server);
        }
        let log = read_log(&root);
        if log.contains("FATAL") || Instant::now() > deadline {
            // Dropping `server` stops what started and removes the directory.
            let retry = log.contains("could not bind") || log.contains("in use");
            return Err((format!("postgres did not start; its log:\n{log}"), retry));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes a CA (`ca.crt` in `root`) and a certificate for 127.0.0.1 it signs, with its
/// key, where the server looks for them (`server.crt` and `server.key` in `data`);
/// answers the CA's file.
fn make_certificates(root: &Path, data: &Path, as_nobody: bool) -> Result<PathBuf, String> {
    let openssl = |args: &[&str]| -> Result<(), String> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("cannot run openssl (install it): {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-new",
                "-days",
                "2",
                "-subj",
                "/CN=gantry test CA",
            ][..],
            &key,
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req", "-new", "-subj", "/CN=127.0.0.1"][..],
            &key,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    )?;
    std::fs::write(
        root.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n\
         basicConstraints = CA:FALSE\n\
         extendedKeyUsage = serverAuth\n",
    )
    .map_err(|err| format!("cannot write the certificate's extensions: {err}"))?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ])?;
    for name in ["server.crt", "server.key"] {
        use std::os::unix::fs::PermissionsExt;
        let to = data.join(name);
        std::fs::rename(root.join(name), &to)
            .map_err(|err| format!("cannot move {name} into the data directory: {err}"))?;
        // PostgreSQL refuses a key others may read.
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
            .map_err(|err| format!("cannot make {name} private: {err}"))?;
        if as_nobody {
            let (id, group) = (
                Some(nix::unistd::Uid::from_raw(NOBODY)),
                Some(nix::unistd::Gid::from_raw(NOBODY)),
            );
            nix::unistd::chown(&to, id, group)
                .map_err(|err| format!("cannot give {name} to nobody: {err}"))?;
        }
    }
    Ok(root.join("ca.crt"))
}

/// A new private directory for the cluster (owned by `nobody` when it runs as that).
fn new_root(as_nobody: bool) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    // `nobody` must reach it: as root, under /tmp rather than a TMPDIR that may be
    // private.
    let base = if as_nobody {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let root = base.join(format!("gantry-pg-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&root)
        .map_err(|err| format!("cannot create {}: {err}", root.display()))?;
    if as_nobody {
        let id = Some(nix::unistd::Uid::from_raw(NOBODY));
        let group = Some(nix::unistd::Gid::from_raw(NOBODY));
        nix::unistd::chown(&root, id, group)
            .map_err(|err| format!("cannot give {} to nobody: {err}", root.display()))?;
    }
    Ok(root)
}

/// A TCP port on 127.0.0.1 that is free now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("cannot find a free port: {err}"))
}

/// Whether the server accepts connections: what `pg_ctl` checks too (the status line
/// of `postmaster.pid`).
fn is_ready(data: &Path) -> bool {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .map(|pid_file| pid_file.lines().nth(7).map(str::trim) == Some("ready"))
        .unwrap_or(false)
}

/// The server's log so far.
fn read_log(root: &Path) -> String {
    let mut log = String::new();
    if let Ok(mut file) = std::fs::File::open(root.join("postgres.log")) {
        let _ = file.read_to_string(&mut log);
    }
    log
}
