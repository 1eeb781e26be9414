//! Go's names for the machine this runs on (`GOOS`, `GOARCH`), used in the
//! buildlet's banner and in default host and builder types.

/// Go's `runtime.GOOS` for this build.
pub fn goos() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// Go's `runtime.GOARCH` for this build.
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "loongarch64" => "loong64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_go_spellings() {
        assert!(!super::goos().is_empty());
        assert_ne!(super::goarch(), "x86_64");
        assert_ne!(super::goarch(), "aarch64");
    }
}
