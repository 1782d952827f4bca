//! dancu's HTTP server (axum): the officer API over the registry, reference data,
//! OpenAPI document and Swagger UI (embedded, works offline), health and metrics.
//!
//! Architecture invariant: handlers are thin — parse the request, call the registry, render.
//! Business rules live in `dancu-core` and `dancu_store::registry`. Nothing here logs a
//! request path, query or body: they carry personal data. Logs and metrics name the matched
//! route pattern only.

pub mod audit;
pub mod auth;
pub mod cards;
pub mod citizen;
pub mod civil;
pub mod extract;
pub mod intake;
pub mod jose;
pub mod metrics;
pub mod officers;
pub mod oidc;
pub mod partners;
pub mod pdf;
pub mod persons;
pub mod policy;
pub mod problem;
pub mod reference;
pub mod requests;
pub mod residence;
pub mod reviews;
pub mod sharing;
pub mod web;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use dancu_store::registry::Registry;
use utoipa::OpenApi;

use crate::problem::ApiError;

/// Shared state of every handler: a handle to one [`AppStateInner`], so that the clone every
/// extractor and middleware takes is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// What [`AppState`] holds. Set up by the `with_*` methods before the server starts.
#[derive(Clone)]
pub struct AppStateInner {
    pub registry: Registry,
    pub metrics: Arc<metrics::Metrics>,
    pub started: Instant,
    /// Where audit entries go; `None` only when an operator turned auditing off (benchmarks).
    pub audit: Option<dancu_store::audit::AuditWriter>,
    pub auth: Arc<auth::AuthState>,
    /// Seals and opens secrets at rest (officers' TOTP secrets).
    pub secrets: Arc<dancu_keys::SecretBox>,
    /// The route table (`policy::routes`): every route and its policy.
    pub routes: Arc<Vec<policy::RouteSpec>>,
    /// The key residence confirmations are signed with (`None`: confirmations unavailable).
    pub confirmation_key: Option<Arc<dyn dancu_keys::Signer>>,
    /// Data sharing: the signing key of tokens and responses, partner caches, rate limits.
    pub sharing: Arc<sharing::SharingState>,
    /// Citizen login: the channel one-time codes are delivered through.
    pub citizen: Arc<citizen::CitizenState>,
    /// The Document Signer that signs the chips personalized here (`None`: no personalization).
    pub card_signer: Option<Arc<dancu_card::DocumentSigner>>,
    /// The trust anchors of passive authentication on the card verification page: the CSCA
    /// certificates and their CRLs (`None`: no card PKI configured).
    pub card_trust: Option<Arc<cards::CardTrust>>,
    /// The public key (SPKI DER) of the audit checkpoints, for verification from the web
    /// application (`None`: no audit trail on this server).
    pub audit_public_key: Option<Arc<[u8]>>,
    /// The web application's per-server state.
    pub web: Arc<web::pages::WebState>,
    /// Intake uploads: where files and reports are kept, the size limit, the imports running.
    pub intake: Arc<web::intake::IntakeState>,
    /// Set while the store's files are being read into the page cache at start (`/readyz`
    /// answers 503 meanwhile).
    pub warming: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn new(
        registry: Registry,
        audit: Option<dancu_store::audit::AuditWriter>,
        secrets: Arc<dancu_keys::SecretBox>,
    ) -> Self {
        Self::with_auth(registry, audit, auth::AuthConfig::default(), secrets)
    }

    pub fn with_auth(
        registry: Registry,
        audit: Option<dancu_store::audit::AuditWriter>,
        config: auth::AuthConfig,
        secrets: Arc<dancu_keys::SecretBox>,
    ) -> Self {
        AppState(Arc::new(AppStateInner {
            registry,
            metrics: Arc::default(),
            started: Instant::now(),
            audit,
            auth: Arc::new(auth::AuthState::new(config)),
            secrets,
            routes: Arc::new(policy::routes()),
            confirmation_key: None,
            card_signer: None,
            card_trust: None,
            sharing: Arc::new(sharing::SharingState::new(
                Arc::new(dancu_keys::SoftwareKey::generate().expect("the operating system's random source")),
                "http://127.0.0.1:8080",
            )),
            citizen: Arc::new(citizen::CitizenState {
                channel: Arc::new(citizen::NoChannel),
                challenges_per_window: dancu_core::citizen::CHALLENGES_PER_WINDOW,
            }),
            audit_public_key: None,
            web: Arc::default(),
            intake: Arc::default(),
            warming: Arc::default(),
        }))
    }

    /// The state to set up (copied first if it is already shared, which set-up never is).
    fn setup(&mut self) -> &mut AppStateInner {
        Arc::make_mut(&mut self.0)
    }

    /// `/readyz` answers 503 while `warming` is set (the store's files being read ahead).
    pub fn with_warming(mut self, warming: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.setup().warming = warming;
        self
    }

    /// The audit checkpoints are signed with the key whose public half (SPKI DER) this is.
    pub fn with_audit_key(mut self, public_key_der: Vec<u8>) -> Self {
        self.setup().audit_public_key = Some(public_key_der.into());
        self
    }

    /// Signs residence confirmations with this key.
    pub fn with_confirmation_key(mut self, key: Arc<dyn dancu_keys::Signer>) -> Self {
        self.setup().confirmation_key = Some(key);
        self
    }

    /// Delivers citizens' one-time login codes through `channel`.
    pub fn with_code_channel(mut self, channel: Arc<dyn citizen::CodeChannel>) -> Self {
        let challenges_per_window = self.citizen.challenges_per_window;
        self.setup().citizen = Arc::new(citizen::CitizenState { channel, challenges_per_window });
        self
    }

    /// Allows `n` login codes per personal ID per 15 minutes (tests of many logins).
    pub fn with_codes_per_window(mut self, n: u32) -> Self {
        let channel = self.citizen.channel.clone();
        self.setup().citizen = Arc::new(citizen::CitizenState { channel, challenges_per_window: n });
        self
    }

    /// Accepts intake uploads of at most `max_bytes`, kept (with their error reports) in `dir`.
    pub fn with_intake(mut self, dir: std::path::PathBuf, max_bytes: usize) -> Self {
        self.setup().intake = Arc::new(web::intake::IntakeState::new(dir, max_bytes));
        self
    }

    /// Personalizes chips with this Document Signer.
    pub fn with_card_signer(mut self, signer: Arc<dancu_card::DocumentSigner>) -> Self {
        self.setup().card_signer = Some(signer);
        self
    }

    /// Verifies chips (the web application's verification page) against these CSCA
    /// certificates and CRLs.
    pub fn with_card_trust(
        mut self,
        cscas: Vec<dancu_card::Certificate>,
        crls: Vec<dancu_card::CertificateList>,
    ) -> Self {
        self.setup().card_trust = Some(Arc::new(cards::CardTrust { cscas, crls }));
        self
    }

    /// Signs partner tokens and responses with `signer` (its key id is published at
    /// `/.well-known/jwks.json`); `issuer` is the server's public base URL.
    pub fn with_sharing(mut self, signer: Arc<dyn dancu_keys::Signer>, issuer: &str) -> Self {
        self.setup().sharing = Arc::new(sharing::SharingState::new(signer, issuer));
        self
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dancu API",
        description = "Cơ sở dữ liệu quốc gia về dân cư — national population registry. \
                       Errors are RFC 9457 problem+json with field-level detail.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        persons::create, persons::search, persons::get, persons::get_by_legacy, persons::update,
        persons::activate, persons::history, audit::access_log, audit::query,
        requests::list, requests::get, requests::decide,
        reviews::list, reviews::get, reviews::decide,
        residence::submit, residence::list, residence::get, residence::receive, residence::decide,
        residence::household, residence::residences, residence::at_address, residence::confirmation,
        cards::apply, cards::list, cards::get, cards::step, cards::status, cards::centres, cards::add_centre,
        cards::restock, cards::run, cards::person_cards, cards::card, cards::set_state, cards::chip, cards::face,
        cards::validity,
        residence::verify, residence::confirmation_pdf, residence::address_reviews, residence::resolve_address_review,
        auth::login, auth::mfa, auth::totp_enrol, auth::totp_confirm, auth::logout, auth::session,
        officers::list, officers::create, officers::get, officers::update,
        partners::list, partners::create, partners::get, partners::update, partners::set_status,
        partners::consents, partners::grant, partners::revoke,
        sharing::token, sharing::verify, sharing::verify_batch, sharing::retrieve, sharing::pseudonym,
        citizen::login, citizen::verify, citizen::logout, citizen::me, citizen::applications, citizen::consents,
        citizen::grant, citizen::revoke, citizen::access_log,
        sharing::events, webhooks::register, webhooks::partner_status, webhooks::admin_status,
        civil::receive, civil::get,
        reference::provinces, reference::communes, reference::commune, reference::ethnicities,
        reference::religions, reference::countries, reference::id_provinces,
        healthz, readyz,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "persons", description = "Người — the population records"),
        (name = "reference", description = "Danh mục — reference data"),
        (name = "audit", description = "Nhật ký truy cập — the audit trail"),
        (name = "residence", description = "Cư trú — residence procedures, households, confirmations"),
        (name = "cards", description = "Thẻ căn cước — card applications, production, cards and their states"),
        (name = "maker-checker", description = "Phê duyệt thay đổi — changes awaiting a second officer"),
        (name = "review", description = "Xem xét trùng lặp — possible duplicates awaiting a clerk's decision"),
        (name = "auth", description = "Đăng nhập — login, second factor, sessions"),
        (name = "officers", description = "Tài khoản cán bộ — officer accounts"),
        (name = "partners", description = "Đối tác khai thác — partner registration (partner administrators)"),
        (name = "sharing", description = "Chia sẻ dữ liệu — partner services (OAuth 2.0 client credentials, \
                                          private_key_jwt; responses signed, see /.well-known/jwks.json)"),
        (name = "citizen", description = "Công dân — a citizen's own data, applications, consents and who accessed \
                                          their data (login: personal ID and a one-time code)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token scheme of the API (login: `POST /api/v1/auth/login`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

static OPENAPI_JSON: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"));

/// The OpenAPI 3.1 document, generated from the handlers' annotations.
pub fn openapi_json() -> &'static str {
    &OPENAPI_JSON
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let api = policy::add_routes(Router::new(), &state.routes)
        .route_layer(middleware::from_fn_with_state(state.clone(), policy::authorize));
    api.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Request id, security headers, metrics and a log line without personal data.
async fn observe(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_string)
        .unwrap_or_else(next_request_id);
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    // The entry is built from the request's headers now (no copy of them kept) and completed below.
    let action = policy::find(&st.routes, &method, &route).and_then(|r| r.action);
    let pending = match (action, &st.audit) {
        (Some(action), Some(_)) => Some(audit::entry(action, req.headers(), None, &request_id, client.clone(), 0)),
        _ => None,
    };
    req.extensions_mut().insert(audit::RequestContext { request_id: request_id.clone(), client });
    let mut res = next.run(req).await;
    let already = res.extensions().get::<audit::AuditRecorded>().is_some();
    if let (Some(mut e), Some(writer), false) = (pending, &st.audit, already) {
        e.target = res.extensions().get::<audit::AuditTarget>().map(|t| t.0.clone());
        if let Some(actor) = res.extensions().get::<audit::AuditActor>() {
            actor.fill(&mut e);
        }
        if let Some(p) = res.extensions().get::<audit::AuditPurpose>() {
            e.purpose = Some(p.0.clone());
        }
        e.outcome = res.status().as_u16().to_string();
        e.at = audit::now_rfc3339();
        if let Err(err) = writer.record(e).await {
            tracing::error!(error = %err, route, request_id, "audit trail unavailable: response withheld");
            res = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit-unavailable",
                "The audit trail cannot be written",
                "the request was not answered because it could not be recorded; try again later",
            )
            .into_response();
        }
    }
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    st.metrics.observe(method.as_str(), &route, status, elapsed);
    if status >= 500 && res.extensions().get::<Expected>().is_none() {
        tracing::warn!(%method, route, status, micros = elapsed.as_micros() as u64, request_id, "request failed");
    } else {
        tracing::debug!(%method, route, status, micros = elapsed.as_micros() as u64, request_id, "request");
    }
    res
}

/// Request ids: a random per-process prefix and a counter (unique, no syscall per request).
fn next_request_id() -> String {
    static PREFIX: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{:x}", *PREFIX, COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found", "no such resource; see /api/docs")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this resource does not support the method",
    )
}

async fn root() -> Html<&'static str> {
    Html(
        "<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>dancu</title>\
         <h1>dancu — Cơ sở dữ liệu quốc gia về dân cư</h1>\
         <p>National population registry. <a href=\"/api/docs\">Tài liệu API / API documentation</a> · \
         <a href=\"/api/openapi.json\">OpenAPI</a> · <a href=\"/healthz\">healthz</a></p></html>",
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=300")], openapi_json())
        .into_response()
}

const SWAGGER_JS: &[u8] = include_bytes!("../assets/vendor/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("../assets/vendor/swagger-ui/swagger-ui.css");
const DOCS_INIT: &str = "window.onload = () => { window.ui = SwaggerUIBundle({ url: '/api/openapi.json', dom_id: '#swagger-ui', deepLinking: true }); };";

async fn docs_page() -> Response {
    let html = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dancu API</title>\
        <link rel=\"stylesheet\" href=\"/api/docs/swagger-ui.css\"></head>\
        <body><div id=\"swagger-ui\"></div><script src=\"/api/docs/swagger-ui-bundle.js\"></script>\
        <script src=\"/api/docs/init.js\"></script></body></html>";
    let mut res = Html(html).into_response();
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"),
    );
    res
}

async fn docs_asset(axum::extract::Path(asset): axum::extract::Path<String>) -> Response {
    let (body, ct): (&'static [u8], &str) = match asset.as_str() {
        "swagger-ui-bundle.js" => (SWAGGER_JS, "text/javascript; charset=utf-8"),
        "swagger-ui.css" => (SWAGGER_CSS, "text/css; charset=utf-8"),
        "init.js" => (DOCS_INIT.as_bytes(), "text/javascript; charset=utf-8"),
        _ => return not_found().await.into_response(),
    };
    ([(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub backend: &'static str,
}

/// Marks an answer of 5xx that is not a failed request: the health checks' own answers, which
/// log the cause themselves when there is one (a server still warming up is expected at start,
/// and a load balancer asks many times).
#[derive(Clone, Copy)]
struct Expected;

/// `503 Service Unavailable` with the health state, marked [`Expected`].
fn unavailable(health: Health) -> Response {
    let mut res = (StatusCode::SERVICE_UNAVAILABLE, Json(health)).into_response();
    res.extensions_mut().insert(Expected);
    res
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(st): State<AppState>) -> Response {
    let backend = st.registry.store().backend();
    match st.registry.store().ping().await {
        Ok(()) => Json(Health { status: "ok", backend }).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            unavailable(Health { status: "database unreachable", backend })
        }
    }
}

/// Readiness: 200 once the server answers at full speed — the database answers and the store's
/// files are in the page cache (`serve --warm-cache`); 503 while they are being read, so that a
/// load balancer sends a restarted server no traffic before then.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    let backend = st.registry.store().backend();
    if st.warming.load(std::sync::atomic::Ordering::Acquire) {
        return unavailable(Health { status: "warming", backend });
    }
    match st.registry.store().ping().await {
        Ok(()) => Json(Health { status: "ready", backend }).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check: database unreachable");
            unavailable(Health { status: "database unreachable", backend })
        }
    }
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    let uptime = st.started.elapsed().as_secs_f64();
    let body = st.metrics.render(&[("dancu_uptime_seconds", "Seconds since the server started.", uptime)]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The client certificate a mutual-TLS connection presented (verified against the partner CA),
/// as the SHA-256 of its DER in lowercase hex: what a partner registration names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub sha256: String,
}

/// The TLS configuration of the mutual-TLS port: the server's certificate chain and key (PEM),
/// the CA certificates (PEM) that partners' client certificates must chain to, and optionally
/// the CAs' certificate revocation lists (PEM): a client certificate they revoke is refused at
/// the handshake. A client certificate is required; TLS 1.2 and 1.3 with rustls' safe defaults.
pub fn mtls_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
    crl_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server certificate: {e}"))?;
    if chain.is_empty() {
        return Err("server certificate: no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("server key: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem) {
        roots.add(ca.map_err(|e| format!("partner CA: {e}"))?).map_err(|e| format!("partner CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("partner CA: no CERTIFICATE block".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if let Some(pem) = crl_pem {
        let crls = CertificateRevocationListDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("revocation list: {e}"))?;
        if crls.is_empty() {
            return Err("revocation list: no X509 CRL block".into());
        }
        verifier = verifier.with_crls(crls);
    }
    let verifier = verifier.build().map_err(|e| format!("partner CA or revocation list: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate and key: {e}"))?;
    Ok(Arc::new(config))
}

/// The files of the mutual-TLS port (PEM), read again when one of them changes: a renewed server
/// certificate or a new revocation list takes effect without a restart.
#[derive(Debug, Clone)]
pub struct MtlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub client_ca: std::path::PathBuf,
    pub crl: Option<std::path::PathBuf>,
}

impl MtlsFiles {
    /// Reads the files into a TLS configuration ([`mtls_config`]); errors name the file.
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
        let crl = self.crl.as_deref().map(read).transpose()?;
        mtls_config(&read(&self.cert)?, &read(&self.key)?, &read(&self.client_ca)?, crl.as_deref())
    }

    fn stamp(&self) -> Vec<Option<(std::time::SystemTime, u64)>> {
        [Some(&self.cert), Some(&self.key), Some(&self.client_ca), self.crl.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
            .collect()
    }

    /// The configuration now, and a channel that gets a new one whenever a file changed (looked
    /// at every `period`). A change that does not load (e.g. a half-written file) is logged and
    /// the running configuration kept; it is tried again at the next change.
    pub fn watch(
        self,
        period: std::time::Duration,
    ) -> Result<tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>, String> {
        let (tx, rx) = tokio::sync::watch::channel(self.load()?);
        tokio::spawn(async move {
            let mut seen = self.stamp();
            loop {
                tokio::time::sleep(period).await;
                let now = self.stamp();
                if now == seen {
                    continue;
                }
                seen = now;
                match self.load() {
                    Ok(config) => {
                        tracing::info!("mutual-TLS certificates or revocation list reloaded");
                        if tx.send(config).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "mutual-TLS files changed but do not load; kept the running ones")
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// Serves the API over TLS with client certificates (mutual TLS) until `shutdown`: the same
/// router and route table; partner routes accept the connection's certificate instead of a
/// bearer token ([`ClientCert`] on each request). Handshakes that fail (no certificate, one not
/// from the partner CA, one revoked) end the connection. Each connection uses the latest
/// configuration in `tls` ([`MtlsFiles::watch`]).
pub async fn serve_mtls(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::ServiceExt;
    let app = router(state);
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a TLS connection failed");
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let (acceptor, app) = (tokio_rustls::TlsAcceptor::from(tls.borrow().clone()), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, %addr, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| ClientCert { sha256: dancu_core::sharing::sha256_hex(c.as_ref()) });
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                if let Some(c) = &cert {
                    req.extensions_mut().insert(c.clone());
                }
                req.extensions_mut().insert(ConnectInfo(addr));
                app.clone().oneshot(req)
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(error = %e, %addr, "TLS connection ended with an error");
            }
        });
    }
}
