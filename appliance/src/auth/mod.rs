//! Who is calling: local users' passwords (argon2id) and the web sessions a sign-in opens.
//! API tokens for systems are in [`crate::tokens`]; client certificates in `http::tls`.

pub mod certificates;
pub mod passwords;
pub mod sessions;
pub mod standing;

pub use sessions::{login, logout, set_password, Session, COOKIE};
