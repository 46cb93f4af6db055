//! The lpmx test harness: drives the real binaries, as an unprivileged user,
//! against real registries and a fault-injecting one.
//!
//! - [`Env`]: a scratch store and home, and [`Env::tool`] to run a tool there.
//! - [`registry::LocalRegistry`]: Debian's `docker-registry` on a loopback port.
//! - [`faulty::FaultyRegistry`]: a small registry that misbehaves on demand.
//! - [`image`]: builds images (layers, config, manifest, index) in memory.

pub mod env;
pub mod faulty;
pub mod image;
pub mod registry;

pub use env::{Env, Run};
