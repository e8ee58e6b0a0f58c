//! The example plugins built into the binary (by `build.rs`, from `plugins/`), so that
//! `passthru serve` runs a demo with nothing else on disk.

const BUILTINS: &[(&str, &[u8])] = &[
    ("ivr-menu", include_bytes!(env!("PASSTHRU_PLUGIN_IVR_MENU"))),
    (
        "vip-caller",
        include_bytes!(env!("PASSTHRU_PLUGIN_VIP_CALLER")),
    ),
    (
        "call-logger",
        include_bytes!(env!("PASSTHRU_PLUGIN_CALL_LOGGER")),
    ),
];

/// The names `builtin:NAME` accepts.
pub const BUILTIN_NAMES: &[&str] = &["ivr-menu", "vip-caller", "call-logger"];

/// The bytes of a built-in example plugin, by name.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_has_bytes() {
        for name in super::BUILTIN_NAMES {
            assert!(
                super::builtin(name).is_some_and(|b| b.starts_with(b"\0asm")),
                "{name}"
            );
        }
        assert!(super::builtin("nope").is_none());
    }
}
