//! Entra ID's endpoints over real HTTP, and the tokens it issues checked as a verifier would:
//! with ring, against the keys the JWKS publishes.

use actix_web::http::header::CONTENT_TYPE;
use ring::{
    digest,
    rand::SystemRandom,
    signature::{self, RsaKeyPair, RsaPublicKeyComponents},
};
use serde_json::{Value, json};

use super::*;

const TENANT: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";
const OTHER_TENANT: &str = "7b8c9d0e-1f2a-4b3c-9d4e-5f6a7b8c9d0e";
const CLIENT: &str = "11111111-2222-4333-8444-555555555555";
const SECRET: &str = "s3cret~value";
const SCOPE: &str = "https://graph.microsoft.com/.default";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

const CLIENT_CERT: &[u8] = include_bytes!("fixtures/client-cert.der");
const CLIENT_KEY: &[u8] = include_bytes!("fixtures/client-key.pk8");
/// A key whose certificate nobody registered.
const STRANGER_KEY: &[u8] = include_bytes!("../../keys/rogue.pk8");

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(part: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn header_of(token: &str) -> Value {
    b64_json(token.split('.').next().unwrap())
}

fn claims_of(token: &str) -> Value {
    b64_json(token.split('.').nth(1).unwrap())
}

async fn get(url: &str) -> Reply {
    send(client().get(url)).await
}

async fn jwks(sim: &Simulator, tenant: &str) -> Value {
    let reply = get(&format!(
        "{}/{tenant}/discovery/v2.0/keys",
        sim.authority_url()
    ))
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// The claims of `token` if its RS256 signature verifies with the JWKS key its `kid` names.
fn verify(jwks: &Value, token: &str) -> Result<Value, String> {
    let (input, sig) = token.rsplit_once('.').ok_or("not a JWT")?;
    let header = header_of(token);
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .ok_or("unknown kid")?;
    let decode = |field: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key[field].as_str().unwrap())
            .unwrap()
    };
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|e| e.to_string())?;
    RsaPublicKeyComponents {
        n: decode("n"),
        e: decode("e"),
    }
    .verify(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        input.as_bytes(),
        &sig,
    )
    .map_err(|_| "bad signature".to_string())?;
    Ok(claims_of(token))
}

async fn post_form(sim: &Simulator, tenant: &str, form: &[(&str, &str)]) -> Reply {
    let url = format!("{}/{tenant}/oauth2/v2.0/token", sim.authority_url());
    let request = client()
        .post(url)
        .insert_header((CONTENT_TYPE, "application/x-www-form-urlencoded"));
    send_body(request, serde_urlencoded::to_string(form).unwrap()).await
}

async fn secret_grant(sim: &Simulator, tenant: &str, secret: &str) -> Reply {
    post_form(
        sim,
        tenant,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("scope", SCOPE),
            ("client_secret", secret),
        ],
    )
    .await
}

async fn assertion_grant(sim: &Simulator, client_id: &str, assertion: &str) -> Reply {
    post_form(
        sim,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", SCOPE),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ],
    )
    .await
}

/// Entra's error shape, with `code` first in `error_codes` and the description.
fn assert_entra_error(reply: &Reply, status: u16, error: &str, code: u64) -> Value {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{body}"
    );
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(
            body[field].as_str().is_some_and(|v| !v.is_empty()),
            "{body}"
        );
    }
    body
}

struct Assertion<'a> {
    /// The header's `alg`.
    alg: &'a str,
    /// The padding it is signed with: `RS256` (PKCS#1 v1.5) or `PS256`.
    padding: &'a str,
    key: &'a [u8],
    x5t: String,
    audience: String,
    client_id: &'a str,
    exp: u64,
}

impl<'a> Assertion<'a> {
    /// A PS256 assertion by the registered certificate's key, for the token endpoint of TENANT.
    fn good(sim: &Simulator) -> Assertion<'a> {
        Assertion {
            alg: "PS256",
            padding: "PS256",
            key: CLIENT_KEY,
            x5t: b64(digest::digest(&digest::SHA256, CLIENT_CERT)),
            audience: format!("{}/{TENANT}/oauth2/v2.0/token", sim.authority_url()),
            client_id: CLIENT,
            exp: unix_now() + 600,
        }
    }

    fn sign(&self) -> String {
        let header = json!({"alg": self.alg, "typ": "JWT", "x5t#S256": self.x5t});
        let now = unix_now();
        let claims = json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": self.exp,
        });
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let pair = RsaKeyPair::from_pkcs8(self.key).unwrap();
        let padding: &dyn signature::RsaEncoding = match self.padding {
            "RS256" => &signature::RSA_PKCS1_SHA256,
            _ => &signature::RSA_PSS_SHA256,
        };
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .unwrap();
        format!("{input}.{}", b64(sig))
    }
}

#[actix_web::test]
async fn the_openid_metadata_and_the_jwks_are_shaped_as_entras() {
    let sim = simulator().await;
    let authority = sim.authority_url();
    assert_eq!(authority, sim.origin());

    let reply = get(&format!(
        "{authority}/{TENANT}/v2.0/.well-known/openid-configuration"
    ))
    .await;

    assert_eq!(reply.status, StatusCode::OK);
    let metadata = reply.json();
    assert_eq!(metadata["issuer"], format!("{authority}/{TENANT}/v2.0"));
    assert_eq!(
        metadata["jwks_uri"],
        format!("{authority}/{TENANT}/discovery/v2.0/keys")
    );
    assert_eq!(
        metadata["token_endpoint"],
        format!("{authority}/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(
        metadata["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );

    let keys = get(metadata["jwks_uri"].as_str().unwrap()).await.json();
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "the current key and the one before");
    assert_eq!(keys[0]["kid"], sim.signing_kid());
    assert_eq!(keys[1]["kid"], sim.previous_signing_kid());
    for key in keys {
        assert_eq!((&key["kty"], &key["use"]), (&json!("RSA"), &json!("sig")));
        assert_eq!(key["x5t"], key["kid"]);
        assert_eq!(key["e"], "AQAB");
        let n = key["n"].as_str().unwrap();
        assert!(!n.contains(['=', '+', '/']), "base64url: {n}");
        assert_eq!(n.len(), 342, "a 2048-bit modulus");
    }
    assert_eq!(
        jwks(&sim, OTHER_TENANT).await["keys"],
        json!(keys),
        "every tenant has the same keys"
    );
    assert_eq!((sim.metadata_fetches(), sim.jwks_fetches()), (1, 2));
    assert_eq!(
        (
            sim.metadata_fetches_for(TENANT),
            sim.jwks_fetches_for(TENANT)
        ),
        (1, 1)
    );

    let unknown = get(&format!(
        "{authority}/contoso/v2.0/.well-known/openid-configuration"
    ))
    .await;
    assert_entra_error(&unknown, 400, "invalid_tenant", 90002);

    let stats = get(&format!("{authority}/_simulator/stats")).await.json();
    assert_eq!(
        (
            &stats["metadataFetches"],
            &stats["jwksFetches"],
            &stats["tokenRequests"]
        ),
        (&json!(2), &json!(2), &json!(0))
    );

    sim.reset_counters();
    assert_eq!((sim.metadata_fetches(), sim.jwks_fetches()), (0, 0));
}

#[actix_web::test]
async fn a_minted_caller_token_verifies_against_the_published_key() {
    let sim = simulator().await;
    let keys = jwks(&sim, TENANT).await;

    let token = sim.mint_caller_token(&CallerToken::new(TENANT, "api-client-id"));

    assert_eq!(header_of(&token)["kid"], sim.signing_kid());
    let claims = verify(&keys, &token).expect("verifies");
    assert_eq!(claims["aud"], "api-client-id");
    assert_eq!(
        claims["iss"],
        format!("{}/{TENANT}/v2.0", sim.authority_url())
    );
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["roles"], json!(["Reports.Read"]));
    assert!(claims.get("scp").is_none());
    assert!(claims["azp"].is_string() && claims.get("appid").is_none());
    assert!(uuid::Uuid::parse_str(claims["oid"].as_str().unwrap()).is_ok());
    let (iat, nbf, exp) = (&claims["iat"], &claims["nbf"], &claims["exp"]);
    assert_eq!(iat, nbf);
    assert_eq!(exp.as_u64().unwrap() - iat.as_u64().unwrap(), 3600);
    assert!(iat.as_u64().unwrap().abs_diff(unix_now()) <= 5);

    let v1 = sim.mint_caller_token(&CallerToken {
        version: TokenVersion::V1,
        roles: Vec::new(),
        scp: Some("Reports.Read User.Read".into()),
        expires_at: 2_000_000_000,
        not_before: 1_900_000_000,
        ..CallerToken::new(TENANT, "api://skype-gateway")
    });
    let claims = verify(&keys, &v1).expect("verifies");
    assert_eq!(claims["iss"], format!("https://sts.windows.net/{TENANT}/"));
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["scp"], "Reports.Read User.Read");
    assert!(claims.get("roles").is_none());
    assert!(claims["appid"].is_string() && claims.get("azp").is_none());
    assert_eq!(
        (&claims["exp"], &claims["nbf"]),
        (&json!(2_000_000_000), &json!(1_900_000_000))
    );

    let other = sim.mint_caller_token(&CallerToken {
        issuer: Some("https://elsewhere.example/".into()),
        ..CallerToken::new(TENANT, "a")
    });
    assert_eq!(claims_of(&other)["iss"], "https://elsewhere.example/");
}

#[actix_web::test]
async fn badly_signed_caller_tokens_do_not_verify() {
    let sim = simulator().await;
    let keys = jwks(&sim, TENANT).await;
    // One set of times for all, so that only the signing tells the tokens apart.
    let base = CallerToken::new(TENANT, "a");
    let mint = |signing: Signing, kid: Option<&str>| {
        sim.mint_caller_token(&CallerToken {
            signing,
            kid: kid.map(str::to_string),
            ..base.clone()
        })
    };

    let previous = mint(Signing::Previous, None);
    assert_eq!(header_of(&previous)["kid"], sim.previous_signing_kid());
    assert!(verify(&keys, &previous).is_ok(), "a published key");

    let rogue = mint(Signing::Rogue, None);
    assert_eq!(header_of(&rogue)["kid"], sim.signing_kid());
    assert_eq!(verify(&keys, &rogue), Err("bad signature".into()));
    let rogue = mint(Signing::Rogue, Some("rogue-kid"));
    assert_eq!(header_of(&rogue)["kid"], "rogue-kid");
    assert_eq!(verify(&keys, &rogue), Err("unknown kid".into()));

    let tampered = mint(Signing::Tampered, None);
    assert_eq!(verify(&keys, &tampered), Err("bad signature".into()));
    let honest = claims_of(&mint(Signing::Current, None));
    assert_eq!(
        claims_of(&tampered)["exp"].as_u64().unwrap(),
        honest["exp"].as_u64().unwrap() + 3600
    );

    let unsigned = mint(Signing::Unsigned, None);
    assert_eq!(header_of(&unsigned)["alg"], "none");
    assert!(unsigned.ends_with('.'));
    assert!(verify(&keys, &unsigned).is_err());

    let unknown = mint(Signing::Current, Some("unknown"));
    assert_eq!(verify(&keys, &unknown), Err("unknown kid".into()));
}

#[actix_web::test]
async fn a_rotation_publishes_the_new_key_beside_the_one_it_replaces() {
    let sim = simulator().await;
    let first = sim.signing_kid();
    let before = sim.mint_caller_token(&CallerToken::new(TENANT, "a"));

    let second = sim.rotate_signing_key();

    assert_ne!(second, first);
    assert_eq!(sim.signing_kid(), second);
    let keys = jwks(&sim, TENANT).await;
    let kids: Vec<&Value> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(kids, [&json!(second), &json!(first)]);
    let after = sim.mint_caller_token(&CallerToken::new(TENANT, "a"));
    assert_eq!(header_of(&after)["kid"], second);
    assert!(verify(&keys, &after).is_ok());
    assert!(
        verify(&keys, &before).is_ok(),
        "the previous key is still listed"
    );

    sim.rotate_signing_key();
    let keys = jwks(&sim, TENANT).await;
    assert_eq!(verify(&keys, &before), Err("unknown kid".into()));

    let mut seen = vec![first.clone(), second];
    for _ in 0..2 {
        seen.push(sim.signing_kid());
        sim.rotate_signing_key();
    }
    seen.dedup();
    assert_eq!(seen.len(), 4, "four keys in rotation: {seen:?}");
    assert_eq!(sim.signing_kid(), first, "the rotation cycles");
}

#[actix_web::test]
async fn a_registered_secret_gets_a_graph_app_token_and_a_wrong_one_is_refused() {
    let sim = simulator().await;
    sim.register_client_secret(CLIENT, SECRET);

    let reply = secret_grant(&sim, TENANT, SECRET).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        (&body["expires_in"], &body["ext_expires_in"]),
        (&json!(3599), &json!(3599))
    );
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(header_of(token)["kid"], sim.signing_kid());
    let claims = verify(&jwks(&sim, TENANT).await, token).expect("verifies");
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["iss"], format!("https://sts.windows.net/{TENANT}/"));
    assert_eq!(
        (&claims["tid"], &claims["appid"], &claims["azp"]),
        (&json!(TENANT), &json!(CLIENT), &json!(CLIENT))
    );
    assert_eq!(claims["roles"], json!(["Reports.Read.All"]));
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3599
    );
    assert_eq!(claims["nbf"], claims["iat"]);

    let wrong = secret_grant(&sim, TENANT, "guess").await;
    let error = assert_entra_error(&wrong, 401, "invalid_client", 7000215);
    assert!(!error.to_string().contains("guess"));

    let grant = [("grant_type", "client_credentials"), ("client_id", CLIENT)];
    let refused = [
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "99999999-0000-4000-8000-000000000000"),
                ("scope", SCOPE),
                ("client_secret", SECRET),
            ],
            400,
            "unauthorized_client",
            700016,
        ),
        (
            [
                &grant[..],
                &[("scope", "https://graph.microsoft.com/Reports.Read.All")],
                &[("client_secret", SECRET)],
            ]
            .concat(),
            400,
            "invalid_scope",
            1002012,
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", CLIENT),
                ("scope", SCOPE),
            ],
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            [&grant[..], &[("scope", SCOPE)]].concat(),
            401,
            "invalid_client",
            7000216,
        ),
    ];
    for (form, status, error, code) in refused {
        let reply = post_form(&sim, TENANT, &form).await;
        assert_entra_error(&reply, status, error, code);
    }

    let requests = sim.token_requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 401, 400, 400, 400, 401]
    );
    assert_eq!(
        requests[0],
        TokenRequest {
            tenant: TENANT.into(),
            client_id: Some(CLIENT.into()),
            credential: CredentialKind::Secret,
            status: 200,
            fields: vec![
                "grant_type".into(),
                "client_id".into(),
                "scope".into(),
                "client_secret".into()
            ],
        }
    );
    assert_eq!(requests[5].credential, CredentialKind::None);
    assert!(!format!("{requests:?}").contains(SECRET));
    let stats = get(&format!("{}/_simulator/stats", sim.origin()))
        .await
        .json();
    assert_eq!(stats["tokenRequests"], 6);
    sim.reset_counters();
    assert!(sim.token_requests().is_empty());
}

#[actix_web::test]
async fn the_app_token_lifetime_can_be_set() {
    let sim = simulator().await;
    sim.register_client_secret(CLIENT, SECRET);
    sim.set_app_token_lifetime(Duration::from_secs(10));

    let body = secret_grant(&sim, TENANT, SECRET).await.json();

    assert_eq!(body["expires_in"], 10);
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        10
    );
}

#[actix_web::test]
async fn a_certificate_assertion_is_verified_for_real() {
    let sim = simulator().await;
    sim.register_client_certificate(CLIENT, CLIENT_CERT);

    let good = assertion_grant(&sim, CLIENT, &Assertion::good(&sim).sign()).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.text());
    let claims = claims_of(good.json()["access_token"].as_str().unwrap());
    assert_eq!(
        (&claims["appid"], &claims["appidacr"]),
        (&json!(CLIENT), &json!("2"))
    );
    let rs256 = Assertion {
        alg: "RS256",
        padding: "RS256",
        ..Assertion::good(&sim)
    };
    let reply = assertion_grant(&sim, CLIENT, &rs256.sign()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let refused = [
        (
            "signed by another key",
            Assertion {
                key: STRANGER_KEY,
                ..Assertion::good(&sim)
            },
            700027,
        ),
        (
            "another certificate's thumbprint",
            Assertion {
                x5t: b64(digest::digest(&digest::SHA256, b"another certificate")),
                ..Assertion::good(&sim)
            },
            700027,
        ),
        (
            "PKCS#1 padding under PS256",
            Assertion {
                padding: "RS256",
                ..Assertion::good(&sim)
            },
            700027,
        ),
        (
            "an HMAC algorithm",
            Assertion {
                alg: "HS256",
                ..Assertion::good(&sim)
            },
            700027,
        ),
        (
            "another tenant's token endpoint",
            Assertion {
                audience: format!("{}/{OTHER_TENANT}/oauth2/v2.0/token", sim.authority_url()),
                ..Assertion::good(&sim)
            },
            700027,
        ),
        (
            "another client's",
            Assertion {
                client_id: "99999999-0000-4000-8000-000000000000",
                ..Assertion::good(&sim)
            },
            700027,
        ),
        (
            "expired",
            Assertion {
                exp: unix_now() - 120,
                ..Assertion::good(&sim)
            },
            700024,
        ),
    ];
    for (why, assertion, code) in refused {
        let reply = assertion_grant(&sim, CLIENT, &assertion.sign()).await;
        assert_entra_error(&reply, 401, "invalid_client", code);
        eprintln!("refused as expected: {why}");
    }
    let not_a_jwt = assertion_grant(&sim, CLIENT, "not-a-jwt").await;
    assert_entra_error(&not_a_jwt, 401, "invalid_client", 700027);

    let kinds: Vec<CredentialKind> = sim.token_requests().iter().map(|r| r.credential).collect();
    assert!(
        kinds.iter().all(|k| *k == CredentialKind::Certificate),
        "{kinds:?}"
    );
    assert_eq!(
        sim.token_requests()[0].fields,
        [
            "grant_type",
            "client_id",
            "scope",
            "client_assertion_type",
            "client_assertion"
        ]
    );
}

#[actix_web::test]
async fn a_federated_assertion_of_the_registered_subject_is_accepted() {
    let sim = simulator().await;
    let subject = "system:serviceaccount:reports:skype-gateway";
    sim.register_client_federated(CLIENT, subject);
    let assertion = sim.federated_assertion(subject, Duration::from_secs(3600));
    let claims = claims_of(&assertion);
    assert_eq!(claims["aud"], json!([FEDERATED_AUDIENCE]));
    assert_eq!(claims["sub"], subject);

    let reply = assertion_grant(&sim, CLIENT, &assertion).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        claims_of(reply.json()["access_token"].as_str().unwrap())["tid"],
        TENANT
    );

    let stranger =
        sim.federated_assertion("system:serviceaccount:other:app", Duration::from_secs(3600));
    let reply = assertion_grant(&sim, CLIENT, &stranger).await;
    assert_entra_error(&reply, 401, "invalid_client", 700213);

    // The federated issuer's claims under a key that is not its own.
    let (head, rest) = assertion.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let forged = sim.mint_caller_token(&CallerToken::new(TENANT, "a"));
    let forged_sig = forged.rsplit_once('.').unwrap().1;
    let reply = assertion_grant(&sim, CLIENT, &format!("{head}.{payload}.{forged_sig}")).await;
    assert_entra_error(&reply, 401, "invalid_client", 700027);

    let kinds: Vec<CredentialKind> = sim.token_requests().iter().map(|r| r.credential).collect();
    assert_eq!(kinds, [CredentialKind::Federated; 3]);
}

#[actix_web::test]
async fn token_and_jwks_faults_answer_entra_errors_then_run_out() {
    let sim = simulator().await;
    sim.register_client_secret(CLIENT, SECRET);
    sim.fail_token_endpoint(2, 503);
    sim.fail_token_endpoint(1, 429);

    for _ in 0..2 {
        let reply = secret_grant(&sim, TENANT, SECRET).await;
        assert_entra_error(&reply, 503, "temporarily_unavailable", 90033);
        assert_eq!(reply.header("retry-after"), None);
    }
    let throttled = secret_grant(&sim, TENANT, SECRET).await;
    assert_eq!(throttled.status.as_u16(), 429);
    assert_eq!(throttled.header("retry-after"), Some("1"));
    assert_eq!(
        secret_grant(&sim, TENANT, SECRET).await.status,
        StatusCode::OK
    );
    assert_eq!(
        sim.token_requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [503, 503, 429, 200]
    );

    sim.fail_jwks(1, 500);
    let url = format!("{}/{TENANT}/discovery/v2.0/keys", sim.authority_url());
    assert_entra_error(&get(&url).await, 500, "temporarily_unavailable", 90033);
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(sim.jwks_fetches(), 2, "failed fetches count");

    sim.fail_token_endpoint(5, 500);
    sim.fail_jwks(5, 500);
    sim.clear_faults();
    assert_eq!(
        secret_grant(&sim, TENANT, SECRET).await.status,
        StatusCode::OK
    );
    assert_eq!(get(&url).await.status, StatusCode::OK);
}

#[actix_web::test]
async fn graph_refuses_the_app_tokens_of_a_rejected_app() {
    let sim = simulator().await;
    sim.register_client_secret(CLIENT, SECRET);
    let body = secret_grant(&sim, TENANT, SECRET).await.json();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        send(report(&sim, token, "D7")).await.status,
        StatusCode::FOUND
    );

    sim.reject_app(CLIENT);

    assert_graph_error(
        &send(report(&sim, token, "D7")).await,
        401,
        "InvalidAuthenticationToken",
    );
    let other = test_app_token(TENANT, "another-app", None);
    assert_eq!(
        send(report(&sim, &other, "D7")).await.status,
        StatusCode::FOUND
    );
}

#[actix_web::test]
async fn the_demo_app_gets_tokens_for_each_of_its_tenants() {
    let sim = simulator().await;

    let demo = sim.register_demo_app();

    assert_eq!(demo.tenants.len(), 2);
    for tenant in &demo.tenants {
        assert!(uuid::Uuid::parse_str(tenant).is_ok(), "{tenant}");
        let reply = post_form(
            &sim,
            tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &demo.client_id),
                ("scope", SCOPE),
                ("client_secret", &demo.client_secret),
            ],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let caller = sim.mint_caller_token(&CallerToken::new(&demo.tenants[0], &demo.audience));
    assert!(verify(&jwks(&sim, &demo.tenants[0]).await, &caller).is_ok());
}

#[actix_web::test]
async fn the_control_api_mints_caller_tokens() {
    let sim = simulator().await;
    let demo = sim.register_demo_app();
    let url = format!("{}/_simulator/caller-tokens", sim.origin());
    let mint = |body: &'static str| send_body(client().post(&url), body);

    let reply = mint(r#"{"tenant":"3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"}"#).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["expiresIn"], 3600);
    let claims = verify(
        &jwks(&sim, TENANT).await,
        body["accessToken"].as_str().unwrap(),
    )
    .expect("verifies");
    assert_eq!(
        (&claims["tid"], &claims["aud"]),
        (&json!(TENANT), &json!(demo.audience))
    );
    assert_eq!(claims["roles"], json!(["Reports.Read"]));

    let reply = mint(
        r#"{"tenant":"3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b","audience":"api://x","roles":["Other"]}"#,
    )
    .await;
    let claims = claims_of(reply.json()["accessToken"].as_str().unwrap());
    assert_eq!(
        (&claims["aud"], &claims["roles"]),
        (&json!("api://x"), &json!(["Other"]))
    );
    let default_oid = claims["oid"].clone();

    let reply =
        mint(r#"{"tenant":"3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b","objectId":"user-7"}"#).await;
    let claims = verify(
        &jwks(&sim, TENANT).await,
        reply.json()["accessToken"].as_str().unwrap(),
    )
    .expect("verifies");
    assert_eq!(
        (&claims["oid"], &claims["sub"]),
        (&json!("user-7"), &json!("user-7"))
    );
    assert_ne!(claims["oid"], default_oid);

    for bad in [
        r#"{"tenant":"contoso"}"#,
        r#"{"audience":"api://x"}"#,
        r#"{"tenant":"3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b","scp":"x"}"#,
        r#"{"tenant":"3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b","objectId":""}"#,
        "not json",
    ] {
        let reply = mint(bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(reply.json()["error"].is_string(), "{bad}");
    }
}

#[actix_web::test]
async fn the_control_api_registers_the_demo_app_for_scripts() {
    let sim = simulator().await;
    let url = format!("{}/_simulator/demo-app", sim.origin());

    let first = send_body(client().post(&url), "").await;
    let second = send_body(client().post(&url), "").await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let (first, second) = (first.json(), second.json());
    let demo = sim.register_demo_app();
    assert_eq!(
        (&first["clientId"], &first["audience"], &first["tenants"]),
        (
            &json!(demo.client_id),
            &json!(demo.audience),
            &json!(demo.tenants)
        )
    );
    assert_ne!(first["clientSecret"], second["clientSecret"]);
    for answer in [&first, &second] {
        for tenant in demo.tenants.iter() {
            let reply = post_form(
                &sim,
                tenant,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &demo.client_id),
                    ("scope", SCOPE),
                    ("client_secret", answer["clientSecret"].as_str().unwrap()),
                ],
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        }
    }
}
