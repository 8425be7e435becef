//! User passwords: Argon2id with a random salt, verified off the request
//! threads. A missing user costs the same time as a wrong password.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// The PHC string of `password` (Argon2id, default parameters).
pub fn hash(password: &str) -> Result<String, String> {
    let salt: [u8; 16] = rand::random();
    Argon2::default().hash_password_with_salt(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify(password: &str, hash: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// Argon2id needs 19 MiB a run: at most one run per core at a time, so that
/// a burst of logins queues instead of multiplying memory.
static RUNS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// [`verify`] on the blocking pool, within the concurrency limit.
pub async fn verify_off_thread(password: String, hash: String) -> bool {
    let Ok(_permit) = RUNS.acquire().await else { return false };
    tokio::task::spawn_blocking(move || verify(&password, &hash)).await.unwrap_or(false)
}

/// [`hash`] on the blocking pool, within the concurrency limit.
pub async fn hash_off_thread(password: String) -> Result<String, String> {
    let _permit = RUNS.acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || hash(&password)).await.map_err(|e| e.to_string())?
}

/// A hash that matches nothing, verified when the user does not exist so
/// that the answer takes as long either way.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&crate::keys::random_token()).unwrap_or_default())
}

/// Passwords users may choose: 8 to 1024 characters.
pub fn acceptable(password: &str) -> Result<(), String> {
    match password.chars().count() {
        n if n < 8 => Err("a password needs at least 8 characters".into()),
        n if n > 1024 => Err("a password may have at most 1024 characters".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery staple", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("anything", "not a phc string"));
        assert!(!verify("anything", decoy()));
        assert!(acceptable("short").is_err());
    }
}
