//! Server cores: registrar, location service, stateful proxy (sans-IO).

pub mod location;
