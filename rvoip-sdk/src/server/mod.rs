//! Server cores: registrar, location service, stateful proxy (sans-IO).

pub mod location;
pub mod registrar;
pub mod config;
pub mod core;
pub mod local;
pub mod proxy;

#[cfg(test)]
mod tests;
