//! The SSH tests' own OpenSSH server: one real `/usr/sbin/sshd` per test binary, started on first use
//! on a free port of 127.0.0.1 with a configuration, host key and authorized key of its own in a
//! temporary directory (never /etc/ssh), letting in only the test account (`proctor-ssh`, which
//! `.ci/sshd-setup.sh` makes) with the client key made here or with the account's password. It is
//! stopped, and its directory removed, when the test binary exits; if the binary is killed, the
//! kernel stops it (parent-death signal). It needs root, as sshd and a second account do.
//!
//! What a test gets: [`Sshd::address`], [`Sshd::host_key`] to pin it, [`Sshd::client_key`] as the
//! upstream credential, [`Sshd::user`] and [`Sshd::password`], the clients' options to reach it
//! directly ([`Sshd::direct_ssh_args`]), a password given to `ssh`, `scp` or `sftp` without a terminal
//! ([`Sshd::askpass`]), a directory of the account's for files ([`Sshd::scratch_dir`]) and the server's
//! log ([`Sshd::log`]).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The account the server lets in; `PROCTOR_TEST_SSH_USER` overrides it (`.ci/run` sets it to the one
/// `.ci/sshd-setup.sh` prepared).
pub const DEFAULT_SSH_USER: &str = "proctor-ssh";
/// The account's password, as `.ci/sshd-setup.sh` sets it; `PROCTOR_TEST_SSH_PASSWORD` overrides it.
pub const DEFAULT_SSH_PASSWORD: &str = "ssh-secret-pw";

const SSHD: &str = "/usr/sbin/sshd";

/// The test binary's sshd, started on the first call.
pub fn sshd() -> &'static Sshd {
    static SSHD_OF_BINARY: OnceLock<Sshd> = OnceLock::new();
    let sshd = SSHD_OF_BINARY.get_or_init(Sshd::start);
    static AT_EXIT: OnceLock<()> = OnceLock::new();
    AT_EXIT.get_or_init(|| {
        extern "C" fn stop() {
            if let Some(sshd) = SSHD_OF_BINARY.get() {
                sshd.stop();
            }
        }
        // SAFETY: `stop` is an `extern "C" fn()` that lives as long as the program.
        unsafe {
            libc::atexit(stop);
        }
    });
    sshd
}

pub struct Sshd {
    /// The server's host key as a client pins it: `ssh-ed25519 AAAA...` (no comment).
    pub host_key: String,
    /// The client's private key (ed25519, no passphrase, root's, 0600) that the server accepts for
    /// the account: the upstream credential Proctor is given.
    pub client_key: PathBuf,
    /// The public half of `client_key`, `ssh-ed25519 AAAA...`.
    pub client_public_key: String,
    /// The directory of its configuration, keys, pid file and log.
    pub dir: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
    user: String,
    password: String,
    home: PathBuf,
    uid: u32,
    gid: u32,
}

impl Sshd {
    fn start() -> Sshd {
        let user =
            std::env::var("PROCTOR_TEST_SSH_USER").unwrap_or_else(|_| DEFAULT_SSH_USER.to_owned());
        let password = std::env::var("PROCTOR_TEST_SSH_PASSWORD")
            .unwrap_or_else(|_| DEFAULT_SSH_PASSWORD.to_owned());
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            panic!(
                "the SSH tests need root: they run their own sshd (which must be root) and log in to \
                 it as the account {user}; run them as root (as CI does), after `bash .ci/sshd-setup.sh`"
            );
        }
        for program in [SSHD, "/usr/bin/ssh-keygen"] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install openssh-server and openssh-client (`bash .ci/run` \
                 does), then run `bash .ci/sshd-setup.sh`"
            );
        }
        let (uid, gid, home) = account(&user).unwrap_or_else(|| {
            panic!("there is no account {user} for the SSH tests: run `bash .ci/sshd-setup.sh` as root")
        });
        // sshd's privilege separation directory; .ci/sshd-setup.sh makes it, but /run is emptied
        // at boot.
        if !Path::new("/run/sshd").is_dir() {
            std::fs::create_dir_all("/run/sshd").unwrap();
            std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        let dir = tempfile::Builder::new()
            .prefix("proctor-test-sshd-")
            .tempdir()
            .unwrap()
            .keep();
        // The server reads the authorized keys as the account, which must reach them.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        let host_key = keygen(&dir.join("host_key"));
        let client_key = dir.join("client_key");
        let client_public_key = keygen(&client_key);
        let authorized_keys = dir.join("authorized_keys");
        std::fs::write(&authorized_keys, format!("{client_public_key}\n")).unwrap();
        std::fs::set_permissions(&authorized_keys, std::fs::Permissions::from_mode(0o644)).unwrap();
        let askpass = dir.join("askpass");
        std::fs::write(
            &askpass,
            "#!/bin/sh\nprintf '%s\\n' \"$PROCTOR_TEST_ASKPASS\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();

        let mut sshd = Sshd {
            host_key,
            client_key,
            client_public_key,
            dir,
            port: 0,
            child: Mutex::new(None),
            user,
            password,
            home,
            uid,
            gid,
        };
        // A port free now may be taken before sshd binds it: then sshd exits, and another port is
        // tried.
        for _ in 0..20 {
            let port = super::free_port();
            if let Some(child) = sshd.listen(port) {
                sshd.port = port;
                sshd.child = Mutex::new(Some(child));
                return sshd;
            }
        }
        panic!("sshd found no free port in 20 tries: {}", sshd.log());
    }

    /// Starts sshd on `port` and waits until it listens; None if the port was taken.
    fn listen(&self, port: u16) -> Option<Child> {
        let config = self.dir.join("sshd_config");
        let dir = self.dir.display();
        // Not the machine's /etc/ssh/sshd_config: only these options and sshd's defaults. StrictModes
        // is off because the authorized keys lie in a directory under /tmp, which is world-writable;
        // without PAM, sshd checks the password against /etc/shadow itself.
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1:{port}
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
AllowUsers {user}
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitEmptyPasswords no
UsePAM no
AllowTcpForwarding yes
X11Forwarding no
PermitTTY yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100:30:200
MaxSessions 100
",
                user = self.user
            ),
        )
        .unwrap();
        let log_path = self.dir.join("sshd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(SSHD);
        command
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = spawn_tied_to_process(command);
        let ready = format!("Server listening on 127.0.0.1 port {port}.");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains(&ready) {
                return Some(child);
            }
            if let Some(status) = child.try_wait().unwrap() {
                if log.contains("Address already in use") {
                    return None;
                }
                panic!("sshd exited during start ({status}): {log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sshd did not listen on port {port} within 20 s: {log}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&self) {
        let Some(mut child) = self.child.lock().ok().and_then(|mut child| child.take()) else {
            return;
        };
        super::signal(child.id() as i32, libc::SIGTERM);
        // Reaped here rather than left to whoever inherits it; killed if it lingers.
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Where it listens, `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The account it lets in.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The account's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The account's home directory (on this machine: a test can look at what arrived there).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `user@127.0.0.1`, the destination of `ssh` (and `user@127.0.0.1:PATH` of `scp`).
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// The options with which `ssh`, `scp` and `sftp` (and `rsync -e "ssh ..."`) reach this server
    /// directly with the client key: [`client_options`], no password prompt (`BatchMode`), the key and
    /// the port (as `-o Port=`, which all three take; `scp` and `sftp` read `-p` otherwise).
    pub fn direct_ssh_args(&self) -> Vec<String> {
        let mut args = client_options();
        args.extend([
            "-o".to_owned(),
            "BatchMode=yes".to_owned(),
            "-o".to_owned(),
            "IdentitiesOnly=yes".to_owned(),
            "-i".to_owned(),
            self.client_key.display().to_string(),
            "-o".to_owned(),
            format!("Port={}", self.port),
        ]);
        args
    }

    /// Makes `ssh`, `scp` or `sftp` read `password` from a program rather than from a terminal
    /// (`SSH_ASKPASS`, forced). For the account's password here, or a token through Proctor. The
    /// client must not be in `BatchMode`, which allows no password: `sftp -b` asks ssh for it, so
    /// give `sftp` `-o BatchMode=no` before `-b` (ssh keeps the first value of an option).
    pub fn askpass<'a>(&self, command: &'a mut Command, password: &str) -> &'a mut Command {
        command
            .env("SSH_ASKPASS", self.dir.join("askpass"))
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("PROCTOR_TEST_ASKPASS", password)
    }

    /// A `[[connection]]` of kind `ssh` for Proctor's configuration: this server, as the account,
    /// with the client key and the pinned host key.
    pub fn connection_config(&self, name: &str, allow: &str) -> String {
        format!(
            r#"
[[connection]]
name = "{name}"
kind = "ssh"
address = "{}"
user = "{}"
private_key_file = "{}"
host_key = "{}"
allow = ["{allow}"]
"#,
            self.address(),
            self.user,
            self.client_key.display(),
            self.host_key
        )
    }

    /// What the server logged so far (`LogLevel VERBOSE`: each connection, authentication and
    /// session, with the client's address and port).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// A new directory in the account's home, the account's, removed when dropped: its absolute
    /// path names the same files on both ends.
    pub fn scratch_dir(&self, name: &str) -> ScratchDir {
        let path = self
            .home
            .join(format!("proctor-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)).unwrap();
        ScratchDir { path }
    }
}

/// A directory of the test account's; removed when dropped.
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    /// A path inside it, as a string (for the clients' command lines).
    pub fn join(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The options every client of the tests passes, to the test sshd or through Proctor: no user or
/// system configuration, no known_hosts (the host key is not checked), only errors on stderr, and a
/// connection timeout.
pub fn client_options() -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `uid`, `gid` and home directory of `user`, from the account database.
fn account(user: &str) -> Option<(u32, u32, PathBuf)> {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).ok()?;
    let fields: Vec<&str> = line.trim().split(':').collect();
    match fields[..] {
        [_, _, uid, gid, _, home, _] => Some((uid.parse().ok()?, gid.parse().ok()?, home.into())),
        _ => None,
    }
}

/// Makes an ed25519 key pair without a passphrase at `path` (and `path.pub`); returns the public key
/// as `ssh-ed25519 AAAA...`.
fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", super::stderr(&out));
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Spawns `command` from a thread that lives as long as the test binary, with a parent-death signal
/// (SIGTERM): the kernel sends it when the spawning thread ends, which for a test's own thread would
/// be as soon as that test returns, and for this thread is when the process ends, however it ends.
pub fn spawn_tied_to_process(mut command: Command) -> Child {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, received) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("spawner".to_owned())
            .spawn(move || {
                for (mut command, reply) in received {
                    let _ = reply.send(command.spawn());
                }
                // The senders live in a static: this is never reached while the process runs.
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        Mutex::new(requests)
    });
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl, getppid and _exit are async-signal-safe, as code between fork and exec must be.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The parent may have died before the signal was asked for.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply, result) = mpsc::channel();
    spawner
        .lock()
        .unwrap()
        .send((command, reply))
        .expect("the spawner thread runs");
    result
        .recv()
        .expect("the spawner thread replies")
        .unwrap_or_else(|e| panic!("spawn failed: {e}"))
}

/// `count` bytes from /dev/urandom in a new file.
pub fn random_file(path: &Path, count: u64) {
    let mut bytes = Vec::new();
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .take(count)
        .read_to_end(&mut bytes)
        .unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The SHA-256 of a file, as `sha256sum` prints it.
pub fn sha256(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", super::stderr(&out));
    super::stdout(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}
