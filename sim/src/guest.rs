//! The hook through which a simulated guest OS takes part in the KVP exchange.
//!
//! The host side (the agent operations) calls [`Guest::on_event`] after every change a guest
//! could observe: the VM started, the host wrote or removed KVP items, an ISO was attached. A
//! guest implementation reads `vm.host_kvp`, publishes into `vm.guest_kvp` and records what it
//! applied in `vm.applied_config`. It runs under the host lock, so it must not block.
//!
//! No guest is installed by default: the simulator then behaves like a VM whose guest never
//! answers (the worker's readiness wait times out). A guest that implements the full
//! HLVMM/Aether-V exchange (RSA key publication, AES decryption, checksum) plugs in here.

use crate::state::Vm;

/// Something the host did to a VM that its guest may react to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GuestEvent {
    /// The VM was started (or reset).
    Started,
    /// The host wrote these KVP items.
    HostKvpWritten {
        /// Names of the items written.
        keys: Vec<String>,
    },
    /// The host removed these KVP items.
    HostKvpRemoved {
        /// Names of the items removed.
        keys: Vec<String>,
    },
    /// An ISO was inserted into the DVD drive.
    IsoAttached,
}

/// A simulated guest operating system.
pub trait Guest: Send + Sync {
    /// Reacts to a host-side change of `vm`. Must not block.
    fn on_event(&self, vm: &mut Vm, event: &GuestEvent);
}
