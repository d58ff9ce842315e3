//! A second "host" for tests: a network namespace joined to this one by a veth
//! pair with private addresses, made by the test and removed when dropped.
//! Traffic between the two stays on the pair. Needs root and `ip` (iproute2).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace reachable from this one at [`NetNs::ns_ip`]; this side of
/// the pair has [`NetNs::host_ip`].
#[derive(Debug)]
pub struct NetNs {
    name: String,
    host_if: String,
    /// The address of this side (the test's own namespace).
    pub host_ip: Ipv4Addr,
    /// The address inside the namespace.
    pub ns_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`ip` cannot run (install iproute2; tests need root): {e}"));
    assert!(
        out.status.success(),
        "`ip {}` failed (tests need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// Makes a fresh namespace and its veth pair, both sides up, on a private
    /// /30 of 10.231.0.0/16 chosen from the process id and a counter.
    pub fn create() -> NetNs {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{n}", pid % 100_000);
        let name = format!("gpns{tag}");
        let host_if = format!("gph{tag}");
        let ns_if = format!("gpn{tag}");
        let third = (pid % 256) as u8;
        let fourth = ((n % 63) * 4) as u8;
        let host_ip = Ipv4Addr::new(10, 231, third, fourth + 1);
        let ns_ip = Ipv4Addr::new(10, 231, third, fourth + 2);
        ip(&["netns", "add", &name]);
        let made = NetNs {
            name,
            host_if,
            host_ip,
            ns_ip,
        };
        ip(&[
            "link",
            "add",
            &made.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &made.name]);
        ip(&[
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &made.host_if,
        ]);
        ip(&["link", "set", &made.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &made.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        made
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace removes its end of the pair, and with it ours.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
