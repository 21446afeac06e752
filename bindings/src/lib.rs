//! UniFFI bindings over [`rvoip_sdk`]. The UniFFI issue fills this crate (listener callback
//! interfaces, Swift/Kotlin/Python generation); for now it only links the engine.

/// The engine version, e.g. `"0.1.0"`.
pub fn version() -> &'static str {
    rvoip_sdk::VERSION
}
