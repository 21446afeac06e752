//! Server cores: registrar, location service, stateful proxy (sans-IO).

pub mod config;
pub mod core;
pub mod dispatch;
pub mod domains;
pub mod forward;
pub mod guard;
pub mod local;
pub mod location;
pub mod ng;
pub mod offline;
pub mod outbound;
pub mod path;
pub mod presence;
pub mod proxy;
pub mod registrar;
pub mod relay;
pub mod reply;
pub mod shard;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod relay_tests;
