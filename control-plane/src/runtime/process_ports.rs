//! Ports of the process runtime's HTTP-mode instances and warm servers: picked free by
//! the kernel and leased, so two instances starting together never get the same one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// A port nobody listens on now (the kernel picks it; the runtime binds it right after).
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Ports handed to live HTTP-mode instances. Between [`free_port`] and the runtime's
/// own bind the port is free again, so the kernel could offer it to a second instance
/// starting at the same time, whose watchdog would then talk to the first one's runtime.
#[derive(Clone, Default)]
pub(super) struct PortLeases(Arc<Mutex<HashSet<u16>>>);

/// A port leased to one instance until it is dropped.
pub(super) struct PortLease {
    pub(super) port: u16,
    leases: PortLeases,
}

impl PortLeases {
    /// A free port that no live instance holds.
    pub(super) fn lease(&self) -> std::io::Result<PortLease> {
        for _ in 0..64 {
            let port = free_port()?;
            let mut leased = self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if leased.insert(port) {
                return Ok(PortLease {
                    port,
                    leases: self.clone(),
                });
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "every free port the kernel offered is held by another instance",
        ))
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut leased = self
            .leases
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        leased.remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leased_port_is_never_leased_twice_until_dropped() {
        let leases = PortLeases::default();
        let held: Vec<PortLease> = (0..20).map(|_| leases.lease().unwrap()).collect();
        let ports: HashSet<u16> = held.iter().map(|lease| lease.port).collect();
        assert_eq!(ports.len(), held.len(), "every live lease has its own port");
        drop(held);
        assert!(
            leases.0.lock().unwrap().is_empty(),
            "dropping a lease frees its port"
        );
    }
}
