//! Bearer-token authentication of admin requests.

use subtle::ConstantTimeEq;

/// Checks `Authorization: Bearer <token>` against the configured token in
/// constant time.
pub fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header else {
        return false;
    };
    let Some(presented) = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))
    else {
        return false;
    };
    bool::from(presented.ct_eq(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let token = "s3cret-token-0123456789";
        assert!(authorized(Some(b"Bearer s3cret-token-0123456789"), token));
        assert!(!authorized(Some(b"Bearer s3cret-token-012345678"), token));
        assert!(!authorized(Some(b"Basic s3cret-token-0123456789"), token));
        assert!(!authorized(Some(b"s3cret-token-0123456789"), token));
        assert!(!authorized(None, token));
    }
}
