//! Unit tests of `Config::from_toml`: each error names its key.
