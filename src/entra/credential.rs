//! The gateway's own credential with Entra ID: a client secret, a certificate whose key signs
//! a client assertion, or a federated token file (workload identity). The form fields of a
//! client-credentials request are built here; nothing here is ever printed.

use std::{fmt, path::PathBuf};

use base64::Engine as _;
use ring::{
    rand::SystemRandom,
    signature::{RSA_PSS_SHA256, RsaKeyPair},
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::json;

use super::http::EntraError;
use crate::config::Secret;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long a signed client assertion is good for: it is used at once, for one request.
const ASSERTION_LIFETIME_SECONDS: u64 = 10 * 60;

/// How the gateway proves it is its app registration.
pub enum Credential {
    /// `--client-secret`: the secret itself.
    Secret(Secret),
    /// `--client-secret-file`: read again for each token request, so a rotated Secret is used
    /// without a restart.
    SecretFile(PathBuf),
    /// `--client-certificate-file`: an assertion signed with the certificate's key.
    Certificate(Box<Certificate>),
    /// `--client-assertion-file`: a token another issuer signed for this app (a Kubernetes
    /// service account's, under workload identity), read again for each token request since it
    /// is rotated under the gateway.
    AssertionFile(PathBuf),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Credential::Secret(<redacted>)"),
            Credential::SecretFile(path) => write!(f, "Credential::SecretFile({path:?})"),
            Credential::Certificate(c) => write!(f, "Credential::Certificate({})", c.x5t_s256),
            Credential::AssertionFile(path) => write!(f, "Credential::AssertionFile({path:?})"),
        }
    }
}

impl Credential {
    /// Reads a file credential once, so that a missing or empty file stops the start-up.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Credential::SecretFile(path) => read_trimmed(path)
                .map(drop)
                .map_err(|e| format!("--client-secret-file {}: {e}", path.display())),
            Credential::AssertionFile(path) => read_trimmed(path)
                .map(drop)
                .map_err(|e| format!("--client-assertion-file {}: {e}", path.display())),
            Credential::Secret(_) | Credential::Certificate(_) => Ok(()),
        }
    }

    /// The credential's fields of a token request to `token_endpoint` by `client_id`.
    pub fn form_fields(
        &self,
        client_id: &str,
        token_endpoint: &str,
    ) -> Result<Vec<(&'static str, String)>, EntraError> {
        let unreadable = |flag: &str, path: &PathBuf, e: String| {
            EntraError::Unavailable(format!("{flag} {}: {e}", path.display()))
        };
        Ok(match self {
            Credential::Secret(secret) => vec![("client_secret", secret_text(secret))],
            Credential::SecretFile(path) => {
                let secret =
                    read_trimmed(path).map_err(|e| unreadable("--client-secret-file", path, e))?;
                vec![("client_secret", secret)]
            }
            Credential::Certificate(certificate) => vec![
                ("client_assertion_type", ASSERTION_TYPE.to_owned()),
                (
                    "client_assertion",
                    certificate.assertion(client_id, token_endpoint)?,
                ),
            ],
            Credential::AssertionFile(path) => {
                let assertion = read_trimmed(path)
                    .map_err(|e| unreadable("--client-assertion-file", path, e))?;
                vec![
                    ("client_assertion_type", ASSERTION_TYPE.to_owned()),
                    ("client_assertion", assertion),
                ]
            }
        })
    }
}

fn secret_text(secret: &Secret) -> String {
    String::from_utf8_lossy(&secret.0).into_owned()
}

/// A file's text without surrounding whitespace; an empty file is an error.
fn read_trimmed(path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".into());
    }
    Ok(text.to_owned())
}

/// A certificate registered with the app, and its private key.
pub struct Certificate {
    key: RsaKeyPair,
    /// `x5t#S256`: how Entra ID finds the certificate among the app's.
    x5t_s256: String,
    rng: SystemRandom,
}

impl Certificate {
    /// A PEM file holding the certificate and its RSA private key (PKCS#8 or PKCS#1), in
    /// either order. The key must be the certificate's: a signature made with it is checked
    /// against the certificate here, not at Entra ID's first refusal.
    pub fn from_pem(pem: &[u8]) -> Result<Certificate, String> {
        let certificate = CertificateDer::from_pem_slice(pem)
            .map_err(|e| format!("holds no PEM certificate ({e})"))?;
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("holds no PEM private key ({e})"))?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => return Err("its private key is not an RSA key (PKCS#8 or PKCS#1)".into()),
        }
        .map_err(|e| format!("its private key is not a usable RSA key: {e}"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, certificate.as_ref());
        let certificate_checked = Certificate {
            key,
            x5t_s256: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
            rng: SystemRandom::new(),
        };
        certificate_checked.matches(&certificate)?;
        Ok(certificate_checked)
    }

    /// Whether the key is the one the certificate certifies.
    fn matches(&self, certificate: &CertificateDer<'_>) -> Result<(), String> {
        let parsed = webpki::EndEntityCert::try_from(certificate)
            .map_err(|e| format!("its certificate does not parse: {e:?}"))?;
        let probe = b"skype-gateway certificate check";
        let signature = self
            .sign(probe)
            .map_err(|_| "its private key cannot sign".to_owned())?;
        parsed
            .verify_signature(
                webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
                probe,
                &signature,
            )
            .map_err(|_| "its private key is not the certificate's".to_owned())
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PSS_SHA256, &self.rng, message, &mut signature)?;
        Ok(signature)
    }

    /// A client assertion for one token request: a JWT signed PS256, naming the certificate by
    /// its SHA-256 thumbprint, for the token endpoint it is sent to.
    pub fn assertion(&self, client_id: &str, token_endpoint: &str) -> Result<String, EntraError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = crate::cache::unix_now();
        let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.x5t_s256});
        let claims = json!({
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
        });
        let signed = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let signature = self.sign(signed.as_bytes()).map_err(|_| {
            EntraError::Unavailable("the client certificate's key could not sign".into())
        })?;
        Ok(format!("{signed}.{}", b64.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS8_AFTER: &[u8] = include_bytes!("../../tests/fixtures/client-certificate.pem");
    const PKCS1_BEFORE: &[u8] = include_bytes!("../../tests/fixtures/client-certificate-pkcs1.pem");

    #[test]
    fn a_certificate_file_reads_with_its_key_in_either_order_and_format() {
        let a = Certificate::from_pem(PKCS8_AFTER).unwrap();
        let b = Certificate::from_pem(PKCS1_BEFORE).unwrap();
        assert_eq!(a.x5t_s256, b.x5t_s256);
        assert_eq!(a.x5t_s256.len(), 43, "base64url of 32 bytes");
    }

    #[test]
    fn a_certificate_with_another_key_or_none_is_refused() {
        let text = std::str::from_utf8(PKCS8_AFTER).unwrap();
        let certificate_only = &text[..text.find("-----BEGIN PRIVATE KEY").unwrap()];
        let err = Certificate::from_pem(certificate_only.as_bytes())
            .err()
            .unwrap();
        assert!(err.contains("no PEM private key"), "{err}");
        let key_only = &text[text.find("-----BEGIN PRIVATE KEY").unwrap()..];
        let err = Certificate::from_pem(key_only.as_bytes()).err().unwrap();
        assert!(err.contains("no PEM certificate"), "{err}");
        let unrelated = include_str!("../../tests/fixtures/unrelated-key.pem");
        let err = Certificate::from_pem(format!("{certificate_only}{unrelated}").as_bytes())
            .err()
            .unwrap();
        assert!(err.contains("not the certificate's"), "{err}");
    }

    #[test]
    fn an_assertion_is_a_ps256_jwt_for_the_token_endpoint_verified_by_the_certificate() {
        let certificate = Certificate::from_pem(PKCS8_AFTER).unwrap();
        let assertion = certificate
            .assertion("client-1", "https://login.example/t/oauth2/v2.0/token")
            .unwrap();
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["x5t#S256"], certificate.x5t_s256);
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://login.example/t/oauth2/v2.0/token");
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert!(claims["exp"].as_u64().unwrap() > claims["nbf"].as_u64().unwrap());
        let der = CertificateDer::from_pem_slice(PKCS8_AFTER).unwrap();
        let parsed = webpki::EndEntityCert::try_from(&der).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        parsed
            .verify_signature(
                webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
                signed.as_bytes(),
                &b64.decode(parts[2]).unwrap(),
            )
            .expect("the certificate verifies the assertion");
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        let credential = Credential::Secret(Secret(b"hunter2-hunter2".to_vec()));
        assert!(!format!("{credential:?}").contains("hunter2"));
    }
}
