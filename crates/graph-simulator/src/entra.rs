//! Entra ID, as a gateway in app-only mode meets it: a tenant's OpenID metadata, its signing keys
//! (JWKS), and the token endpoint's client credentials grant, by secret, by a client assertion
//! signed with a registered certificate, or by a federated token of the simulator's own
//! "cluster" issuer. Tenants are GUIDs and share one set of signing keys, as Entra's do.
//!
//! The signing keys are fixture keys (`keys/`): four in rotation, of which the current one and
//! the one before are published, one "rogue" key that no set lists, and the federated issuer's.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::OnceLock,
    time::Duration,
};

use actix_web::{
    HttpResponse,
    http::{StatusCode, header::RETRY_AFTER},
    web,
};
use base64::Engine as _;
use ring::{
    digest,
    rand::SystemRandom,
    signature::{self, RsaKeyPair, RsaPublicKeyComponents},
};
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Simulator,
    date::{timestamp_now, unix_seconds},
    state::{CALL_LOG_LIMIT, Shared},
};

/// What Graph's app tokens are for, and the only scope the client credentials grant takes here.
const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The audience of a federated token exchanged for an Entra token.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The app roles an app token carries: what the usage reports need.
const APP_ROLES: [&str; 1] = ["Reports.Read.All"];
const DEFAULT_APP_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
/// Clock skew allowed on a client assertion's `exp`, `nbf` and `iat`.
const ASSERTION_LEEWAY: u64 = 60;
/// Seconds a throttled token request is told to wait.
const THROTTLED_RETRY_AFTER: u64 = 1;

/// The app `--demo` registers in app-only mode. Its API and its Graph client are one registration,
/// so callers' v2 tokens carry its client id as `aud`.
const DEMO_CLIENT_ID: &str = "5e1d0c3a-7b2f-4a61-9c8e-2d4f6a8b0c1e";
const DEMO_TENANTS: [&str; 2] = [
    "9a3f6c1e-2b4d-4e8f-a1c3-5d7e9f0b2a4c",
    "c4e8a2f6-1d3b-4c5e-8f7a-9b0d2e4f6a81",
];
/// The calling app of a minted caller token, unless a test names another.
const CALLER_APP_ID: &str = "0f4b8d2c-6e1a-4c3f-9b5d-7a2e4c6f8b10";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// A GUID-shaped id derived from `parts`: the same app in the same tenant has the same object id.
fn derived_guid(parts: &[&str]) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update(&[0]);
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn is_guid(tenant: &str) -> bool {
    uuid::Uuid::try_parse(tenant).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Keys

struct Key {
    pair: RsaKeyPair,
    kid: String,
    n: String,
    e: String,
}

impl Key {
    fn load(pkcs8: &[u8]) -> Key {
        let pair = RsaKeyPair::from_pkcs8(pkcs8).expect("the fixture keys are RSA PKCS#8");
        let public: RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        // Entra's kid is the certificate's SHA-1 thumbprint; the key's own stands in for it.
        let thumbprint = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, pair.public().as_ref());
        Key {
            kid: b64(thumbprint),
            n: b64(&public.n),
            e: b64(&public.e),
            pair,
        }
    }

    fn jwk(&self) -> Value {
        json!({"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid, "n": self.n, "e": self.e})
    }

    /// A compact JWT of `header` (its `alg` set to RS256) and `claims`, signed with this key.
    fn sign(&self, mut header: Value, claims: &Value) -> String {
        header["alg"] = "RS256".into();
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("an RSA key signs");
        format!("{input}.{}", b64(sig))
    }

    fn verifies(&self, input: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.pair.public().as_ref(),
        )
        .verify(input, sig)
        .is_ok()
    }
}

struct Keys {
    rotation: [Key; 4],
    rogue: Key,
    federation: Key,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rotation: [
            Key::load(include_bytes!("../keys/signing-1.pk8")),
            Key::load(include_bytes!("../keys/signing-2.pk8")),
            Key::load(include_bytes!("../keys/signing-3.pk8")),
            Key::load(include_bytes!("../keys/signing-4.pk8")),
        ],
        rogue: Key::load(include_bytes!("../keys/rogue.pk8")),
        federation: Key::load(include_bytes!("../keys/federation.pk8")),
    })
}

fn current_key(rotations: usize) -> &'static Key {
    let keys = &keys().rotation;
    &keys[rotations % keys.len()]
}

fn previous_key(rotations: usize) -> &'static Key {
    let keys = &keys().rotation;
    &keys[(rotations + keys.len() - 1) % keys.len()]
}

/// A compact JWT read without checking anything.
struct Jwt<'a> {
    header: Value,
    claims: Value,
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn parse_jwt(token: &str) -> Option<Jwt<'_>> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, claims) = signing_input.split_once('.')?;
    let json = |part: &str| -> Option<Value> {
        let value: Value = serde_json::from_slice(&b64_decode(part)?).ok()?;
        value.is_object().then_some(value)
    };
    Some(Jwt {
        header: json(header)?,
        claims: json(claims)?,
        signing_input,
        signature: b64_decode(signature)?,
    })
}

// ---------------------------------------------------------------------------------------------
// State

/// A client's registered credentials; each registration adds one, as an app can hold several.
#[derive(Default)]
struct Credentials {
    secrets: Vec<String>,
    /// DER certificates, with the base64url SHA-256 thumbprint a client assertion names.
    certificates: Vec<(String, Vec<u8>)>,
    federated_subjects: Vec<String>,
}

/// Entra ID's part of the simulator's state.
#[derive(Default)]
pub(super) struct EntraState {
    clients: HashMap<String, Credentials>,
    rotations: usize,
    app_token_lifetime: Option<Duration>,
    requests: VecDeque<TokenRequest>,
    token_requests: usize,
    metadata_fetches: HashMap<String, usize>,
    jwks_fetches: HashMap<String, usize>,
    token_faults: VecDeque<(u32, u16)>,
    jwks_faults: VecDeque<(u32, u16)>,
    rejected_apps: HashSet<String>,
}

fn take(faults: &mut VecDeque<(u32, u16)>) -> Option<u16> {
    let (remaining, status) = faults.front_mut()?;
    let status = *status;
    *remaining -= 1;
    if *remaining == 0 {
        faults.pop_front();
    }
    Some(status)
}

impl EntraState {
    pub fn is_app_rejected(&self, app: &str) -> bool {
        self.rejected_apps.contains(app)
    }

    /// Token requests since the start or the last reset, beyond the log's limit too.
    pub fn token_requests(&self) -> usize {
        self.token_requests
    }

    pub fn metadata_fetches(&self) -> usize {
        self.metadata_fetches.values().sum()
    }

    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.values().sum()
    }

    pub fn reset_counters(&mut self) {
        self.token_requests = 0;
        self.requests.clear();
        self.metadata_fetches.clear();
        self.jwks_fetches.clear();
    }

    pub fn clear_faults(&mut self) {
        self.token_faults.clear();
        self.jwks_faults.clear();
    }

    fn record(&mut self, request: TokenRequest) {
        self.token_requests += 1;
        if self.requests.len() == CALL_LOG_LIMIT {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }

    fn client(&mut self, client_id: &str) -> &mut Credentials {
        self.clients.entry(client_id.to_string()).or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Public types

/// Which credential a token request presented, read from its form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CredentialKind {
    /// `client_secret`
    Secret,
    /// A `client_assertion` naming a certificate (`x5t#S256`).
    Certificate,
    /// A `client_assertion` issued by the simulator's federated issuer.
    Federated,
    /// Neither a secret nor an assertion.
    None,
}

/// A request to the token endpoint, as received; no secret or assertion is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// The tenant of the URL, as sent.
    pub tenant: String,
    pub client_id: Option<String>,
    pub credential: CredentialKind,
    /// The status it was answered with.
    pub status: u16,
    /// The form's field names, in the order sent.
    pub fields: Vec<String>,
}

/// The version of a caller token, which decides its default issuer and how it names its app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenVersion {
    /// `ver` 1.0: issuer `https://sts.windows.net/{tenant}/`, the app in `appid`.
    V1,
    /// `ver` 2.0: issuer `{authority}/{tenant}/v2.0`, the app in `azp`.
    #[default]
    V2,
}

/// How a caller token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signing {
    /// The current signing key, which the JWKS lists.
    #[default]
    Current,
    /// The key before the current one, which the JWKS lists still.
    Previous,
    /// A key no JWKS lists, under the current key's `kid` unless [`CallerToken::kid`] names one.
    Rogue,
    /// Signed with the current key, then its payload changed (its `exp` an hour later).
    Tampered,
    /// `alg: none` and an empty signature.
    Unsigned,
}

/// A token Entra ID would issue to a caller of the gateway's API, for
/// [`Simulator::mint_caller_token`]. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerToken {
    pub tenant: String,
    /// `aud`: the API's client id (v2) or App ID URI (v1).
    pub audience: String,
    /// `roles`, left out of the token when empty.
    pub roles: Vec<String>,
    /// `scp`, space-separated delegated scopes, left out when `None`.
    pub scp: Option<String>,
    pub version: TokenVersion,
    /// `iss`; `None` is the version's issuer for the tenant.
    pub issuer: Option<String>,
    pub issued_at: u64,
    pub not_before: u64,
    pub expires_at: u64,
    /// The header's `kid`; `None` names the key that signs.
    pub kid: Option<String>,
    pub signing: Signing,
    /// The calling app: `azp` (v2) or `appid` (v1).
    pub app_id: String,
    /// `oid` and `sub`: the calling user or service principal.
    pub object_id: String,
}

impl CallerToken {
    /// A v2 token for `tenant` and `audience` with the role `Reports.Read`, valid for an hour
    /// from now, signed with the current key.
    pub fn new(tenant: &str, audience: &str) -> CallerToken {
        let now = unix_seconds();
        CallerToken {
            tenant: tenant.to_string(),
            audience: audience.to_string(),
            roles: vec!["Reports.Read".to_string()],
            scp: None,
            version: TokenVersion::V2,
            issuer: None,
            issued_at: now,
            not_before: now,
            expires_at: now + 3600,
            kid: None,
            signing: Signing::Current,
            app_id: CALLER_APP_ID.to_string(),
            object_id: derived_guid(&["caller", tenant]),
        }
    }
}

/// The app registration of `--demo` in app-only mode, from [`Simulator::register_demo_app`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoApp {
    pub client_id: String,
    pub client_secret: String,
    /// The `aud` of callers' tokens (v2): the app's own client id.
    pub audience: String,
    /// The tenants it serves, GUIDs.
    pub tenants: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Minting

fn v2_issuer(origin: &str, tenant: &str) -> String {
    format!("{origin}/{tenant}/v2.0")
}

fn v1_issuer(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

fn token_endpoint(origin: &str, tenant: &str) -> String {
    format!("{origin}/{tenant}/oauth2/v2.0/token")
}

fn federation_issuer(origin: &str) -> String {
    format!("{origin}/federation")
}

fn mint(origin: &str, rotations: usize, token: &CallerToken) -> String {
    let (issuer, ver, app_claim) = match token.version {
        TokenVersion::V1 => (v1_issuer(&token.tenant), "1.0", "appid"),
        TokenVersion::V2 => (v2_issuer(origin, &token.tenant), "2.0", "azp"),
    };
    let mut claims = json!({
        "aud": token.audience,
        "iss": token.issuer.clone().unwrap_or(issuer),
        "iat": token.issued_at,
        "nbf": token.not_before,
        "exp": token.expires_at,
        app_claim: token.app_id,
        "oid": token.object_id,
        "sub": token.object_id,
        "tid": token.tenant,
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": ver,
    });
    if !token.roles.is_empty() {
        claims["roles"] = json!(token.roles);
    }
    if let Some(scp) = &token.scp {
        claims["scp"] = scp.as_str().into();
    }
    let current = current_key(rotations);
    let key = match token.signing {
        Signing::Previous => previous_key(rotations),
        Signing::Rogue => &keys().rogue,
        Signing::Current | Signing::Tampered | Signing::Unsigned => current,
    };
    let default_kid = match token.signing {
        Signing::Rogue => &current.kid,
        _ => &key.kid,
    };
    let kid = token.kid.as_deref().unwrap_or(default_kid);
    let header = json!({"typ": "JWT", "kid": kid});
    match token.signing {
        Signing::Unsigned => {
            let mut header = header;
            header["alg"] = "none".into();
            format!("{}.{}.", b64(header.to_string()), b64(claims.to_string()))
        }
        Signing::Tampered => {
            let signed = key.sign(header, &claims);
            let (head, rest) = signed.split_once('.').expect("a compact JWT");
            let (_, sig) = rest.split_once('.').expect("a compact JWT");
            claims["exp"] = (token.expires_at + 3600).into();
            format!("{head}.{}.{sig}", b64(claims.to_string()))
        }
        _ => key.sign(header, &claims),
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/{tenant}/v2.0/.well-known/openid-configuration",
        web::get().to(metadata),
    )
    .route("/{tenant}/discovery/v2.0/keys", web::get().to(jwks))
    .route("/{tenant}/oauth2/v2.0/token", web::post().to(token));
}

/// An error as Entra ID's endpoints write it.
struct EntraError {
    status: u16,
    error: &'static str,
    code: u32,
    description: String,
}

impl EntraError {
    fn new(status: u16, error: &'static str, code: u32, description: String) -> EntraError {
        EntraError {
            status,
            error,
            code,
            description,
        }
    }

    fn bad_assertion(reason: &str) -> EntraError {
        EntraError::new(
            401,
            "invalid_client",
            700027,
            format!("Client assertion failed signature validation. [Reason - {reason}]"),
        )
    }

    fn expired_assertion() -> EntraError {
        EntraError::new(
            401,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.".into(),
        )
    }

    fn missing(parameter: &str) -> EntraError {
        EntraError::new(
            400,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{parameter}'."),
        )
    }

    fn of_status(status: u16) -> EntraError {
        if status == 429 {
            EntraError::new(
                429,
                "temporarily_unavailable",
                50196,
                "The server is throttling this client's requests.".into(),
            )
        } else {
            EntraError::new(
                status,
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.".into(),
            )
        }
    }

    fn respond(&self) -> HttpResponse {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let timestamp = format!("{}Z", timestamp_now().replace('T', " "));
        let description = format!(
            "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
            self.code, self.description
        );
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut res = HttpResponse::build(status);
        if self.status == 429 {
            res.insert_header((RETRY_AFTER, THROTTLED_RETRY_AFTER.to_string()));
        }
        res.json(json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        }))
    }
}

fn unknown_tenant(tenant: &str) -> EntraError {
    EntraError::new(
        400,
        "invalid_tenant",
        90002,
        format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
    )
}

async fn metadata(tenant: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    let tenant = tenant.into_inner();
    *shared
        .lock()
        .entra
        .metadata_fetches
        .entry(tenant.clone())
        .or_default() += 1;
    if !is_guid(&tenant) {
        return unknown_tenant(&tenant).respond();
    }
    let origin = shared.origin();
    HttpResponse::Ok().json(json!({
        "issuer": v2_issuer(origin, &tenant),
        "authorization_endpoint": format!("{origin}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint": token_endpoint(origin, &tenant),
        "jwks_uri": format!("{origin}/{tenant}/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "ver", "roles", "scp", "azp"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    }))
}

async fn jwks(tenant: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    let tenant = tenant.into_inner();
    let (fault, rotations) = {
        let mut state = shared.lock();
        *state.entra.jwks_fetches.entry(tenant.clone()).or_default() += 1;
        (take(&mut state.entra.jwks_faults), state.entra.rotations)
    };
    if let Some(status) = fault {
        return EntraError::of_status(status).respond();
    }
    if !is_guid(&tenant) {
        return unknown_tenant(&tenant).respond();
    }
    let published = [current_key(rotations), previous_key(rotations)];
    HttpResponse::Ok().json(json!({"keys": published.map(Key::jwk)}))
}

async fn token(
    tenant: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let tenant = tenant.into_inner();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let credential = credential_kind(shared.origin(), &form);
    let fault = take(&mut shared.lock().entra.token_faults);
    let answer = match fault {
        Some(status) => Err(EntraError::of_status(status)),
        None => issue(&shared, &tenant, &field),
    };
    let status = answer.as_ref().map_or_else(|error| error.status, |_| 200);
    shared.lock().entra.record(TokenRequest {
        tenant,
        client_id: field("client_id").map(str::to_string),
        credential,
        status,
        fields: form.iter().map(|(key, _)| key.clone()).collect(),
    });
    match answer {
        Ok(body) => HttpResponse::Ok()
            .insert_header(("cache-control", "no-store, no-cache"))
            .json(body),
        Err(error) => error.respond(),
    }
}

fn credential_kind(origin: &str, form: &[(String, String)]) -> CredentialKind {
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, v)| v);
    if field("client_secret").is_some() {
        return CredentialKind::Secret;
    }
    let Some(assertion) = field("client_assertion") else {
        return CredentialKind::None;
    };
    let federated = parse_jwt(assertion)
        .is_some_and(|jwt| jwt.claims["iss"].as_str() == Some(&federation_issuer(origin)));
    if federated {
        CredentialKind::Federated
    } else {
        CredentialKind::Certificate
    }
}

/// The client credentials grant, checked in the order Entra ID reports problems.
fn issue<'a>(
    shared: &Shared,
    tenant: &str,
    field: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Value, EntraError> {
    if !is_guid(tenant) {
        return Err(unknown_tenant(tenant));
    }
    match field("grant_type") {
        None => return Err(EntraError::missing("grant_type")),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(EntraError::new(
                400,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            ));
        }
    }
    let client_id = field("client_id").ok_or_else(|| EntraError::missing("client_id"))?;
    let scope = field("scope").ok_or_else(|| EntraError::missing("scope"))?;
    if scope != GRAPH_SCOPE {
        return Err(EntraError::new(
            400,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    let origin = shared.origin();
    let state = shared.lock();
    let rotations = state.entra.rotations;
    let lifetime = state
        .entra
        .app_token_lifetime
        .unwrap_or(DEFAULT_APP_TOKEN_LIFETIME);
    let Some(client) = state.entra.clients.get(client_id) else {
        return Err(EntraError::new(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
            ),
        ));
    };
    let acr = if let Some(secret) = field("client_secret") {
        if !client.secrets.iter().any(|known| known == secret) {
            return Err(EntraError::new(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'.".replace("{client_id}", client_id),
            ));
        }
        "1"
    } else if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type") != Some(JWT_BEARER) {
            return Err(EntraError::new(
                400,
                "invalid_request",
                7000219,
                format!("'client_assertion_type' must be '{JWT_BEARER}'."),
            ));
        }
        let audience = token_endpoint(origin, tenant);
        check_assertion(origin, &audience, client_id, client, assertion)?;
        "2"
    } else {
        return Err(EntraError::new(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.".into(),
        ));
    };
    drop(state);

    let now = unix_seconds();
    let seconds = lifetime.as_secs();
    let object_id = derived_guid(&["app", tenant, client_id]);
    let claims = json!({
        "aud": GRAPH_AUDIENCE,
        "iss": v1_issuer(tenant),
        "iat": now,
        "nbf": now,
        "exp": now + seconds,
        "appid": client_id,
        "azp": client_id,
        "appidacr": acr,
        "idp": v1_issuer(tenant),
        "idtyp": "app",
        "oid": object_id,
        "sub": object_id,
        "roles": APP_ROLES,
        "tid": tenant,
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": "1.0",
    });
    let key = current_key(rotations);
    let access_token = key.sign(
        json!({"typ": "JWT", "kid": key.kid, "x5t": key.kid}),
        &claims,
    );
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": seconds,
        "ext_expires_in": seconds,
        "access_token": access_token,
    }))
}

/// The `aud` claim is `expected`, alone or in a list.
fn audience_is(claims: &Value, expected: &str) -> bool {
    match &claims["aud"] {
        Value::String(aud) => aud == expected,
        Value::Array(auds) => auds.iter().any(|aud| aud.as_str() == Some(expected)),
        _ => false,
    }
}

/// `exp` ahead of now and `nbf`, `iat` (when present) not after it, within the leeway.
fn in_time(claims: &Value, now: u64) -> bool {
    let Some(exp) = claims["exp"].as_u64() else {
        return false;
    };
    let not_future = |name: &str| match &claims[name] {
        Value::Null => true,
        value => value.as_u64().is_some_and(|t| t <= now + ASSERTION_LEEWAY),
    };
    exp + ASSERTION_LEEWAY > now && not_future("nbf") && not_future("iat")
}

fn check_assertion(
    origin: &str,
    audience: &str,
    client_id: &str,
    client: &Credentials,
    assertion: &str,
) -> Result<(), EntraError> {
    let jwt = parse_jwt(assertion)
        .ok_or_else(|| EntraError::bad_assertion("The client assertion is not a JWT."))?;
    let now = unix_seconds();
    if jwt.claims["iss"].as_str() == Some(&federation_issuer(origin)) {
        if jwt.header["alg"] != "RS256"
            || !keys()
                .federation
                .verifies(jwt.signing_input.as_bytes(), &jwt.signature)
        {
            return Err(EntraError::bad_assertion(
                "The federated token's signature does not verify.",
            ));
        }
        if !audience_is(&jwt.claims, FEDERATED_AUDIENCE) {
            return Err(EntraError::bad_assertion(&format!(
                "The federated token's audience is not '{FEDERATED_AUDIENCE}'."
            )));
        }
        if !in_time(&jwt.claims, now) {
            return Err(EntraError::expired_assertion());
        }
        let subject = jwt.claims["sub"].as_str().unwrap_or_default();
        if !client.federated_subjects.iter().any(|s| s == subject) {
            return Err(EntraError::new(
                401,
                "invalid_client",
                700213,
                format!(
                    "No matching federated identity record found for presented assertion subject '{subject}'."
                ),
            ));
        }
        return Ok(());
    }

    let algorithm: &dyn rustls_pki_types::SignatureVerificationAlgorithm =
        match jwt.header["alg"].as_str() {
            Some("PS256") => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            Some("RS256") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            _ => {
                return Err(EntraError::bad_assertion(
                    "The algorithm is neither PS256 nor RS256.",
                ));
            }
        };
    let thumbprint = jwt.header["x5t#S256"].as_str().unwrap_or_default();
    let (_, der) = client
        .certificates
        .iter()
        .find(|(known, _)| known == thumbprint)
        .ok_or_else(|| {
            EntraError::bad_assertion(&format!(
                "The key was not found., Thumbprint of key used by client: '{thumbprint}'"
            ))
        })?;
    let der = rustls_pki_types::CertificateDer::from(der.as_slice());
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|_| EntraError::bad_assertion("The registered certificate does not parse."))?;
    cert.verify_signature(algorithm, jwt.signing_input.as_bytes(), &jwt.signature)
        .map_err(|_| EntraError::bad_assertion("The signature does not verify."))?;
    if !audience_is(&jwt.claims, audience) {
        return Err(EntraError::bad_assertion(&format!(
            "The audience is not '{audience}'."
        )));
    }
    if jwt.claims["iss"].as_str() != Some(client_id)
        || jwt.claims["sub"].as_str() != Some(client_id)
    {
        return Err(EntraError::bad_assertion(
            "The issuer and subject must be the client id.",
        ));
    }
    if !in_time(&jwt.claims, now) {
        return Err(EntraError::expired_assertion());
    }
    if jwt.claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err(EntraError::bad_assertion("The assertion has no jti."));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The test-facing API

fn assert_error_status(status: u16) {
    assert!(
        (400..=599).contains(&status),
        "status {status} is not an error status (400-599)"
    );
}

impl Simulator {
    /// The origin as an authority (`--authority-url`): Entra ID's endpoints live on the same
    /// server as Graph, under `/{tenant}/`.
    pub fn authority_url(&self) -> String {
        self.origin()
    }

    fn register(&self, client_id: &str, add: impl FnOnce(&mut Credentials)) {
        add(self.shared.lock().entra.client(client_id));
    }

    /// Adds `secret` to the credentials of `client_id`, registering the app.
    pub fn register_client_secret(&self, client_id: &str, secret: &str) {
        self.register(client_id, |c| c.secrets.push(secret.to_string()));
    }

    /// Adds a certificate (DER) to the credentials of `client_id`: client assertions whose
    /// `x5t#S256` is its SHA-256 thumbprint are checked against its key.
    ///
    /// # Panics
    /// If `certificate_der` is not an X.509 certificate.
    pub fn register_client_certificate(&self, client_id: &str, certificate_der: &[u8]) {
        let der = rustls_pki_types::CertificateDer::from(certificate_der);
        webpki::EndEntityCert::try_from(&der).expect("a DER X.509 certificate");
        let thumbprint = b64(digest::digest(&digest::SHA256, certificate_der));
        self.register(client_id, |c| {
            c.certificates.push((thumbprint, certificate_der.to_vec()));
        });
    }

    /// Adds a federated credential to `client_id`: tokens of the simulator's federated issuer
    /// for `subject` (see [`Simulator::federated_assertion`]) are accepted as its assertion.
    pub fn register_client_federated(&self, client_id: &str, subject: &str) {
        self.register(client_id, |c| {
            c.federated_subjects.push(subject.to_string());
        });
    }

    /// A token of the simulator's federated issuer (a cluster's, as a workload identity token
    /// file holds) for `subject`, audience `api://AzureADTokenExchange`, valid for `lifetime`.
    pub fn federated_assertion(&self, subject: &str, lifetime: Duration) -> String {
        let now = unix_seconds();
        let claims = json!({
            "aud": [FEDERATED_AUDIENCE],
            "iss": federation_issuer(&self.origin()),
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime.as_secs(),
        });
        let key = &keys().federation;
        key.sign(json!({"typ": "JWT", "kid": key.kid}), &claims)
    }

    /// The `expires_in` of app tokens issued from now on (default 3599 s).
    pub fn set_app_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().entra.app_token_lifetime = Some(lifetime);
    }

    /// The last 1000 token requests, most recent last.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared.lock().entra.requests.iter().cloned().collect()
    }

    /// Fetches of any tenant's OpenID metadata.
    pub fn metadata_fetches(&self) -> usize {
        self.shared.lock().entra.metadata_fetches()
    }

    /// Fetches of `tenant`'s OpenID metadata.
    pub fn metadata_fetches_for(&self, tenant: &str) -> usize {
        let state = self.shared.lock();
        state
            .entra
            .metadata_fetches
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }

    /// Fetches of any tenant's JWKS, failed ones included.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.lock().entra.jwks_fetches()
    }

    /// Fetches of `tenant`'s JWKS, failed ones included.
    pub fn jwks_fetches_for(&self, tenant: &str) -> usize {
        let state = self.shared.lock();
        state.entra.jwks_fetches.get(tenant).copied().unwrap_or(0)
    }

    /// Rotates the signing keys: the next fixture key signs from now on, and the JWKS lists it
    /// and the one it replaces. Returns the new key's `kid`.
    pub fn rotate_signing_key(&self) -> String {
        let mut state = self.shared.lock();
        state.entra.rotations += 1;
        current_key(state.entra.rotations).kid.clone()
    }

    /// The `kid` of the key that signs now.
    pub fn signing_kid(&self) -> String {
        current_key(self.shared.lock().entra.rotations).kid.clone()
    }

    /// The `kid` of the key before the current one, still published.
    pub fn previous_signing_kid(&self) -> String {
        previous_key(self.shared.lock().entra.rotations).kid.clone()
    }

    /// The next `times` token requests answer `status` with an Entra-shaped error
    /// (`temporarily_unavailable`); a `429` carries `Retry-After: 1`.
    ///
    /// # Panics
    /// If `status` is not an error status (400-599).
    pub fn fail_token_endpoint(&self, times: u32, status: u16) {
        assert_error_status(status);
        if times > 0 {
            let mut state = self.shared.lock();
            state.entra.token_faults.push_back((times, status));
        }
    }

    /// The next `times` JWKS fetches answer `status` with an Entra-shaped error.
    ///
    /// # Panics
    /// If `status` is not an error status (400-599).
    pub fn fail_jwks(&self, times: u32, status: u16) {
        assert_error_status(status);
        if times > 0 {
            let mut state = self.shared.lock();
            state.entra.jwks_faults.push_back((times, status));
        }
    }

    /// Report calls with a token of the app `client_id` (its `appid` or `azp`) answer
    /// `401 InvalidAuthenticationToken`, as Graph does for an app token it refuses.
    pub fn reject_app(&self, client_id: &str) {
        let mut state = self.shared.lock();
        state.entra.rejected_apps.insert(client_id.to_string());
    }

    /// `token` as a compact JWT, signed as its [`CallerToken::signing`] says.
    pub fn mint_caller_token(&self, token: &CallerToken) -> String {
        let rotations = self.shared.lock().entra.rotations;
        mint(&self.origin(), rotations, token)
    }

    /// Registers the app of `--demo` in app-only mode (a fresh secret each call) and returns it.
    pub fn register_demo_app(&self) -> DemoApp {
        register_demo_app(&self.shared)
    }
}

/// [`Simulator::register_demo_app`], for the control API too.
pub(super) fn register_demo_app(shared: &Shared) -> DemoApp {
    let secret = format!("demo~{:032x}", rand::random::<u128>());
    let mut state = shared.lock();
    state
        .entra
        .client(DEMO_CLIENT_ID)
        .secrets
        .push(secret.clone());
    DemoApp {
        client_id: DEMO_CLIENT_ID.to_string(),
        client_secret: secret,
        audience: DEMO_CLIENT_ID.to_string(),
        tenants: DEMO_TENANTS.iter().map(|t| t.to_string()).collect(),
    }
}

/// A caller token for the control API: `tenant`, the demo app's audience unless given, the
/// roles given (default `Reports.Read`) and the caller's object id given (default one per
/// tenant), valid an hour. `Err` names what is wrong.
pub(super) fn control_caller_token(
    shared: &Shared,
    tenant: &str,
    audience: Option<&str>,
    roles: Option<Vec<String>>,
    object_id: Option<String>,
) -> Result<(String, u64), String> {
    if !is_guid(tenant) {
        return Err(format!("tenant {tenant:?} is not a GUID"));
    }
    let mut token = CallerToken::new(tenant, audience.unwrap_or(DEMO_CLIENT_ID));
    if let Some(roles) = roles {
        token.roles = roles;
    }
    if let Some(object_id) = object_id {
        if object_id.is_empty() {
            return Err("objectId must not be empty".into());
        }
        token.object_id = object_id;
    }
    let rotations = shared.lock().entra.rotations;
    let lifetime = token.expires_at - token.issued_at;
    Ok((mint(shared.origin(), rotations, &token), lifetime))
}
