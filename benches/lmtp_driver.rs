//! LMTP driver for benches/lmtp.sh: sends every message of a corpus list
//! over K concurrent sessions to an LMTP socket (a UNIX path or
//! host:port), one recipient per transaction, MAIL/RCPT/DATA pipelined as
//! Postfix's lmtp(8) client sends them, and checks that every reply is 2xx
//! (354 after DATA).
//!
//! usage: lmtp_driver SOCKET LIST [--sessions K] [--rcpt ADDR] [--pid PID]
//!
//! Prints msgs/s, its own CPU per message, and with --pid the service's:
//! user + system time of PID and every process under it, each with the
//! time of its children that ended (/proc/*/stat, before and after).
//! deliver lmtp is one process; dovecot's master counts its lmtp, auth and
//! other processes, also those that ended during the run.
//!
//! Written in Rust, not Python, so that the client takes little of the
//! machine's CPU: a Python client took about 0.4 ms of CPU a message,
//! as much as the service it measured (BENCHMARKS.md).
//!
//! Build: cargo build --release --example lmtp_driver

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

/// A connection: both halves, for a reader and a writer.
fn connect(addr: &str) -> std::io::Result<(Box<dyn Read + Send>, Box<dyn Write + Send>)> {
    if !addr.starts_with('/') && addr.contains(':') {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok((Box::new(s.try_clone()?), Box::new(s)))
    } else {
        let s = UnixStream::connect(addr)?;
        Ok((Box::new(s.try_clone()?), Box::new(s)))
    }
}

/// A message as DATA sends it: without local(8)'s From_ line, CRLF line
/// ends, dot-stuffed, with the final `.` line.
fn data(raw: &[u8]) -> Vec<u8> {
    let raw = match raw.starts_with(b"From ") {
        true => raw
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&raw[raw.len()..], |i| &raw[i + 1..]),
        false => raw,
    };
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32 + 8);
    if !raw.is_empty() {
        for line in raw.split(|&b| b == b'\n') {
            if line.starts_with(b".") {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// (user, system) CPU seconds of `root` and its descendants, with the time
/// of their children that ended.
fn cpu(root: Option<u32>) -> (f64, f64) {
    let Some(root) = root else {
        return (0.0, 0.0);
    };
    let mut procs: HashMap<u32, (u32, u64, u64)> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ppid = n(1) as u32;
        procs.insert(pid, (ppid, n(11) + n(13), n(12) + n(14)));
    }
    let mut tree = HashSet::from([root]);
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for (&c, &(pp, _, _)) in &procs {
            if pp == p && tree.insert(c) {
                todo.push(c);
            }
        }
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) } as f64;
    let (u, s) = tree
        .iter()
        .filter_map(|p| procs.get(p))
        .fold((0, 0), |(u, s), &(_, pu, ps)| (u + pu, s + ps));
    (u as f64 / hz, s as f64 / hz)
}

/// This process's own (user, system) CPU seconds.
fn own_cpu() -> (f64, f64) {
    // SAFETY: getrusage writes the struct it is given.
    let mut u: nix::libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { nix::libc::getrusage(nix::libc::RUSAGE_SELF, &mut u) };
    let t = |tv: nix::libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(u.ru_utime), t(u.ru_stime))
}

struct Session {
    r: BufReader<Box<dyn Read + Send>>,
    w: Box<dyn Write + Send>,
    line: Vec<u8>,
}

impl Session {
    fn open(addr: &str) -> Result<Session, String> {
        let (r, w) = connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let mut s = Session {
            r: BufReader::with_capacity(16 * 1024, r),
            w,
            line: Vec::new(),
        };
        s.expect("greeting", b"220")?;
        s.send(b"LHLO driver\r\n")?;
        s.expect("LHLO", b"250")?;
        Ok(s)
    }

    fn send(&mut self, b: &[u8]) -> Result<(), String> {
        self.w.write_all(b).map_err(|e| format!("send: {e}"))
    }

    /// One transaction, pipelined as Postfix's lmtp client sends it.
    fn transaction(&mut self, envelope: &[u8], data: &[u8]) -> Result<(), String> {
        self.send(envelope)?;
        self.expect("MAIL", b"250")?;
        self.expect("RCPT", b"250")?;
        self.expect("DATA", b"354")?;
        self.send(data)?;
        self.expect("message", b"250")
    }

    /// Reads one reply (its last line) and checks its code.
    fn expect(&mut self, what: &str, code: &[u8]) -> Result<(), String> {
        loop {
            self.line.clear();
            let n = self
                .r
                .read_until(b'\n', &mut self.line)
                .map_err(|e| format!("{what}: {e}"))?;
            if n == 0 {
                return Err(format!("{what}: the connection closed"));
            }
            if self.line.get(3) != Some(&b'-') {
                break;
            }
        }
        match self.line.starts_with(code) {
            true => Ok(()),
            false => Err(format!(
                "{what}: {}",
                String::from_utf8_lossy(&self.line).trim_end()
            )),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let (mut sessions, mut rcpt, mut pid) = (1usize, "alice@example.test".to_string(), None);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--sessions" => sessions = val().parse().unwrap_or_else(|_| die("bad --sessions")),
            "--rcpt" => rcpt = val(),
            "--pid" => pid = Some(val().parse().unwrap_or_else(|_| die("bad --pid"))),
            _ if a.starts_with("--") => die(&format!("unknown option {a}")),
            _ => pos.push(a),
        }
    }
    let [addr, list] = &pos[..] else {
        die("usage: lmtp_driver SOCKET LIST [--sessions K] [--rcpt ADDR] [--pid PID]");
    };
    let paths = std::fs::read_to_string(list).unwrap_or_else(|e| die(&format!("{list}: {e}")));
    let msgs: Vec<Vec<u8>> = paths
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|p| data(&std::fs::read(p).unwrap_or_else(|e| die(&format!("{p}: {e}")))))
        .collect();
    let envelope = format!("MAIL FROM:<sender@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
    let msgs = Arc::new(msgs);
    // Every session connects and says LHLO before the clock starts.
    let start = Arc::new(Barrier::new(sessions + 1));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..sessions)
        .map(|k| {
            let (msgs, start, errors) =
                (Arc::clone(&msgs), Arc::clone(&start), Arc::clone(&errors));
            let (addr, envelope) = (addr.clone(), envelope.clone());
            std::thread::spawn(move || {
                let s = Session::open(&addr);
                start.wait();
                let r = s.and_then(|mut s| {
                    for m in msgs.iter().skip(k).step_by(sessions) {
                        s.transaction(envelope.as_bytes(), m)?;
                    }
                    s.send(b"QUIT\r\n")
                });
                if let Err(e) = r {
                    errors.lock().unwrap().push(e);
                }
            })
        })
        .collect();
    let (c0, o0) = (cpu(pid), own_cpu());
    start.wait();
    let t = Instant::now();
    for th in threads {
        th.join().unwrap();
    }
    let dt = t.elapsed().as_secs_f64();
    let (c1, o1) = (cpu(pid), own_cpu());
    let errors = errors.lock().unwrap();
    if !errors.is_empty() {
        eprintln!(
            "ERRORS: {}: {:?}",
            errors.len(),
            &errors[..errors.len().min(3)]
        );
        std::process::exit(1);
    }
    let n = msgs.len() as f64;
    let ms = |a: f64, b: f64| (a - b) / n * 1000.0;
    let own = ms(o1.0 + o1.1, o0.0 + o0.1);
    let service = match pid {
        Some(_) => {
            let (u, s) = (ms(c1.0, c0.0), ms(c1.1, c0.1));
            format!(
                ", service CPU {:.3} ms/msg (user {u:.3}, system {s:.3})",
                u + s
            )
        }
        None => String::new(),
    };
    println!(
        "lmtp K={sessions} N={}: {:.0} msgs/s, {:.3} ms per message, driver CPU {own:.3} ms/msg{service}",
        msgs.len(),
        n / dt,
        dt / n * 1000.0
    );
}

fn die(m: &str) -> ! {
    eprintln!("lmtp_driver: {m}");
    std::process::exit(2)
}
