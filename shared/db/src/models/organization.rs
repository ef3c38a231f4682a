//! Models and queries (see the module list in `models/mod.rs`).
