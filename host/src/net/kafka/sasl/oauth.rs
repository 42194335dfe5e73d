//! OAUTHBEARER (RFC 7628) with JWTs (RFC 7519) validated locally, as Kafka's
//! `OAuthBearerValidatorCallbackHandler` does: the signature against a JWKS file's keys (RS256,
//! RS384, RS512, ES256, ES384), `exp` (required) and `nbf` with a clock skew, `iss` and `aud`
//! when configured; the principal is a configured claim (`sub` by default). Tokens and their
//! content are never logged.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::signature;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One verification key of the JWKS file.
#[derive(Debug)]
struct Key {
    kid: Option<String>,
    kind: KeyKind,
}

#[derive(Debug)]
enum KeyKind {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (0x04 || x || y) on P-256 or P-384.
    Ec {
        curve: &'static str,
        point: Vec<u8>,
    },
}

/// What tokens must satisfy.
#[derive(Debug)]
pub struct Validator {
    keys: Vec<Key>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub principal_claim: String,
    pub clock_skew: Duration,
}

/// A valid token: the principal's name and when the token expires.
#[derive(Debug, PartialEq)]
pub struct Valid {
    pub name: String,
    pub expires: SystemTime,
}

impl Validator {
    /// Read the keys of a JWKS file (`{"keys": [{"kty": "RSA", "n", "e", "kid"}, {"kty": "EC",
    /// "crv", "x", "y"}]}`).
    pub fn load(
        jwks: &Path,
        issuer: Option<String>,
        audience: Vec<String>,
        principal_claim: String,
        clock_skew: Duration,
    ) -> Result<Validator, String> {
        let text = std::fs::read_to_string(jwks).map_err(|e| format!("{}: {e}", jwks.display()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", jwks.display()))?;
        let mut keys = Vec::new();
        for k in doc["keys"].as_array().ok_or_else(|| format!("{}: no \"keys\" array", jwks.display()))? {
            let field = |name: &str| -> Result<Vec<u8>, String> {
                let v = k[name].as_str().ok_or_else(|| format!("a key without \"{name}\""))?;
                B64URL.decode(v.trim_end_matches('=')).map_err(|e| format!("key field {name}: {e}"))
            };
            let kind = match (k["kty"].as_str(), k["crv"].as_str()) {
                (Some("RSA"), _) => KeyKind::Rsa { n: field("n")?, e: field("e")? },
                (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
                    let point = [vec![4u8], field("x")?, field("y")?].concat();
                    KeyKind::Ec { curve: if crv == "P-256" { "P-256" } else { "P-384" }, point }
                }
                // Keys for other uses (encryption, other curves) are not for us.
                _ => continue,
            };
            keys.push(Key { kid: k["kid"].as_str().map(str::to_string), kind });
        }
        if keys.is_empty() {
            return Err(format!("{}: no RSA or EC (P-256, P-384) keys", jwks.display()));
        }
        Ok(Validator { keys, issuer, audience, principal_claim, clock_skew })
    }

    /// Validate `token` (a compact JWS) at `now`; the error says why, without the token.
    pub fn validate(&self, token: &str, now: SystemTime) -> Result<Valid, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a signed JWT (three parts)".into());
        };
        let decode =
            |part: &str, what: &str| B64URL.decode(part).map_err(|_| format!("the {what} is not base64url"));
        let header: serde_json::Value = serde_json::from_slice(&decode(h, "header")?)
            .map_err(|_| "the header is not JSON".to_string())?;
        let claims: serde_json::Value = serde_json::from_slice(&decode(p, "payload")?)
            .map_err(|_| "the payload is not JSON".to_string())?;
        let sig = decode(s, "signature")?;
        let alg = header["alg"].as_str().ok_or("no alg")?;
        let kid = header["kid"].as_str();
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let candidates = self.keys.iter().filter(|k| kid.is_none() || k.kid.as_deref() == kid);
        let mut any = false;
        let mut verified = false;
        for key in candidates {
            any = true;
            if verify(alg, key, signed, &sig)? {
                verified = true;
                break;
            }
        }
        if !any {
            return Err(format!("no key {kid:?} in the JWKS"));
        }
        if !verified {
            return Err("the signature does not verify".into());
        }
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let skew = self.clock_skew.as_secs_f64();
        let exp = claims["exp"].as_f64().ok_or("no exp claim")?;
        if exp + skew <= secs(now) {
            return Err("the token expired".into());
        }
        if let Some(nbf) = claims["nbf"].as_f64()
            && nbf - skew > secs(now)
        {
            return Err("the token is not valid yet (nbf)".into());
        }
        if let Some(iss) = &self.issuer
            && claims["iss"].as_str() != Some(iss.as_str())
        {
            return Err("the issuer (iss) is not the expected one".into());
        }
        if !self.audience.is_empty() {
            let aud: Vec<&str> = match &claims["aud"] {
                serde_json::Value::String(a) => vec![a.as_str()],
                serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
                _ => Vec::new(),
            };
            if !aud.iter().any(|a| self.audience.iter().any(|x| x == a)) {
                return Err("the audience (aud) is not an expected one".into());
            }
        }
        let name = claims[self.principal_claim.as_str()]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("no {} claim", self.principal_claim))?;
        // A far-off (or absurd) exp is capped at a year: no panic on any signed value.
        let expires = Duration::try_from_secs_f64(exp.max(0.0))
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d))
            .unwrap_or(now + Duration::from_secs(365 * 86_400))
            .min(now + Duration::from_secs(365 * 86_400));
        Ok(Valid { name: name.to_string(), expires })
    }
}

fn verify(alg: &str, key: &Key, signed: &[u8], sig: &[u8]) -> Result<bool, String> {
    let ok = match (&key.kind, alg) {
        (KeyKind::Rsa { n, e }, "RS256" | "RS384" | "RS512") => {
            let params = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            };
            signature::RsaPublicKeyComponents { n, e }.verify(params, signed, sig).is_ok()
        }
        (KeyKind::Ec { curve: "P-256", point }, "ES256") => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
        (KeyKind::Ec { curve: "P-384", point }, "ES384") => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
        (_, "RS256" | "RS384" | "RS512" | "ES256" | "ES384") => false,
        (_, other) => return Err(format!("the algorithm {other} is not accepted")),
    };
    Ok(ok)
}

/// The token of an OAUTHBEARER initial client response (`gs2-header %x01 auth=Bearer TOKEN
/// %x01 ... %x01`).
pub fn bearer_token(response: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(response).map_err(|_| "not UTF-8".to_string())?;
    let (gs2, rest) = text.split_once('\u{1}').ok_or("no key-value pairs")?;
    if !(gs2.starts_with("n,") || gs2.starts_with("y,")) {
        return Err("channel binding is not supported".into());
    }
    let auth = rest.split('\u{1}').find_map(|kv| kv.strip_prefix("auth=")).ok_or("no auth value")?;
    let (scheme, token) = auth.split_once(' ').ok_or("the auth value is not \"Bearer TOKEN\"")?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err("the auth value is not \"Bearer TOKEN\"".into());
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn es256() -> (EcdsaKeyPair, Validator) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        let key = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..])}]});
        std::fs::write(&jwks, key.to_string()).unwrap();
        let v = Validator::load(
            &jwks,
            Some("issuer".into()),
            vec!["kafka".into()],
            "sub".into(),
            Duration::from_secs(30),
        )
        .unwrap();
        (pair, v)
    }

    fn sign(pair: &EcdsaKeyPair, header: serde_json::Value, claims: serde_json::Value) -> String {
        let signed = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
        let sig = pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", B64URL.encode(sig.as_ref()))
    }

    #[test]
    fn tokens_are_checked_for_signature_expiry_issuer_and_audience() {
        let (pair, v) = es256();
        let now = SystemTime::now();
        let t = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let h = serde_json::json!({"alg": "ES256", "kid": "k1"});
        let good =
            serde_json::json!({"sub": "alice", "iss": "issuer", "aud": ["x", "kafka"], "exp": t + 600});
        let valid = v.validate(&sign(&pair, h.clone(), good.clone()), now).unwrap();
        assert_eq!(valid.name, "alice");
        let refused =
            |claims: serde_json::Value| v.validate(&sign(&pair, h.clone(), claims), now).unwrap_err();
        assert!(
            refused(serde_json::json!({"sub": "a", "iss": "issuer", "aud": "kafka", "exp": t - 60}))
                .contains("expired")
        );
        assert!(
            refused(serde_json::json!({"sub": "a", "iss": "other", "aud": "kafka", "exp": t + 60}))
                .contains("iss")
        );
        assert!(
            refused(serde_json::json!({"sub": "a", "iss": "issuer", "aud": "web", "exp": t + 60}))
                .contains("aud")
        );
        assert!(refused(serde_json::json!({"iss": "issuer", "aud": "kafka", "exp": t + 60})).contains("sub"));
        assert!(refused(serde_json::json!({"sub": "a", "iss": "issuer", "aud": "kafka"})).contains("exp"));
        // Another key's signature, a changed payload, an unknown kid, "none".
        let (other, _) = es256();
        assert!(v.validate(&sign(&other, h.clone(), good.clone()), now).unwrap_err().contains("signature"));
        let token = sign(&pair, h.clone(), good.clone());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64URL.encode(serde_json::json!({"sub": "root", "exp": t + 60}).to_string()),
            parts[2]
        );
        assert!(v.validate(&forged, now).unwrap_err().contains("signature"));
        assert!(
            v.validate(&sign(&pair, serde_json::json!({"alg": "ES256", "kid": "k9"}), good.clone()), now)
                .is_err()
        );
        let none = format!("{}.{}.", B64URL.encode(r#"{"alg":"none"}"#), B64URL.encode(good.to_string()));
        assert!(v.validate(&none, now).is_err());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_client_response() {
        assert_eq!(bearer_token(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(), "abc.def.ghi");
        assert_eq!(bearer_token(b"n,a=alice,\x01host=x\x01auth=bearer t\x01\x01").unwrap(), "t");
        assert!(bearer_token(b"n,,\x01auth=Basic x\x01\x01").is_err());
        assert!(bearer_token(b"p=x,,\x01auth=Bearer t\x01\x01").is_err());
        assert!(bearer_token(b"garbage").is_err());
    }
}
