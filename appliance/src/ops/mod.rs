//! Operating an installation: the signed deploy bundle, backups and restores (and the
//! archive format they share), and the readiness check the install scripts wait on.

pub mod archive;
pub mod backup;
pub mod bundle;
pub mod ready;
