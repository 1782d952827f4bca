//! Webhooks: a partner with the events service registers a URL, and a background worker POSTs it
//! every change event in its scope (the same events, with the same ids, as the change feed
//! `GET /api/v1/sharing/events`).
//!
//! Each round the worker (1) reads the change feed after the partner's cursor and, in one store
//! transaction, queues the partner's events and moves the cursor; (2) sends the partner's pending
//! deliveries oldest first, one at a time. A delivery that fails (no connection, a timeout, an
//! answer other than 2xx) is tried again after a back-off doubling from `backoff_base` up to
//! `backoff_max`, and the deliveries behind it wait: events arrive in feed order, so in order per
//! person. Queue and delivery state live in the store: a restart loses nothing and resumes.
//!
//! Each request carries `X-Dancu-Event-Id` (receivers deduplicate by it: after a crash between a
//! receiver's 2xx and the store recording it, the event is sent again), `X-Dancu-Delivery-Attempt`,
//! and two signatures over the body as sent:
//! - `X-Dancu-Webhook-Signature: v1=<hex>` — HMAC-SHA256 under the partner's webhook secret of
//!   `{X-Dancu-Webhook-Timestamp}.{event id}.{body}` ([`dancu_core::sharing::webhook_signature`]):
//!   what a receiver checks first (the secret is the partner's own);
//! - `X-Dancu-Signature` — a detached JWS (ES256) with the registry's key (`kid` in
//!   `/.well-known/jwks.json`), like every partner response: proof of what the registry said.
//!
//! Invariants: only an active, unexpired partner holding the events service gets events queued
//! or sent (a suspended partner's queue waits; a revoked one gets nothing more); a delivery is
//! marked delivered once (the store refuses a second mark) and only after the receiver answered
//! 2xx and the disclosure is in the audit trail (one `partner.webhook` entry per person, so the
//! citizen's access log shows it). Targets are `https://` URLs (the receiver's certificate checked
//! against the system's CAs and `--webhook-ca`), or `http://` ones inside a secured network.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dancu_core::FieldError;
use dancu_core::sharing::{self as share, Service};
use dancu_store::{Attempt, Delivery, DeliveryState, NewDelivery, StoreError, Webhook};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::extract::{ApiJson, QueryPairs, bad_param};
use crate::jose;
use crate::problem::{ApiError, ApiResult};
use crate::sharing::{PartnerCaller, partner_events, pseudonym_key, record_each, rfc3339, unix_now};

/// The header naming the event a delivery carries.
pub const EVENT_ID_HEADER: &str = "x-dancu-event-id";
/// The header with the HMAC signature of a delivery.
pub const HMAC_HEADER: &str = "x-dancu-webhook-signature";
/// The header with the time (unix seconds) the HMAC signature binds.
pub const TIMESTAMP_HEADER: &str = "x-dancu-webhook-timestamp";
/// The header counting the tries of a delivery (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-dancu-delivery-attempt";

/// Feed versions read per step when queueing.
const FEED_STEP: u32 = 500;
/// Pending deliveries read per step when sending.
const SEND_STEP: u32 = 100;
/// How much of a receiver's answer is read (and ignored).
const ANSWER_MAX_BYTES: usize = 64 * 1024;

/// The worker's timing and the certificate authorities it trusts for `https://` receivers.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Pause between rounds.
    pub poll: Duration,
    /// Wait after the first failure of a delivery (doubled after each further one).
    pub backoff_base: Duration,
    /// The longest wait between tries.
    pub backoff_max: Duration,
    /// How long one request may take (connect, send, answer).
    pub timeout: Duration,
    /// TLS for `https://` receivers ([`client_tls`]).
    pub tls: Arc<rustls::ClientConfig>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            poll: Duration::from_secs(1),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            tls: client_tls(None).expect("TLS with the system's certificate authorities alone"),
        }
    }
}

/// Where Linux distributions keep the bundle of trusted certificate authorities (PEM); the
/// `SSL_CERT_FILE` variable, when set, names another.
const SYSTEM_CA_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// TLS for `https://` receivers: the system's certificate authorities, plus `extra_ca_pem` (e.g.
/// the government network's own CA, `--webhook-ca`). TLS 1.2 and 1.3 with rustls' safe defaults;
/// the receiver's certificate must name the URL's host. Errors name what in `extra_ca_pem` is wrong.
pub fn client_tls(extra_ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(SYSTEM_CA_BUNDLES.iter().map(std::path::PathBuf::from))
        .find_map(|p| std::fs::read(p).ok());
    if let Some(pem) = bundle {
        // A bundle may hold certificates webpki does not accept as anchors: those are skipped.
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(|c| c.ok()));
    }
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for (i, ca) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let ca = ca.map_err(|e| format!("webhook CA, certificate {}: {e}", i + 1))?;
            roots.add(ca).map_err(|e| format!("webhook CA, certificate {}: {e}", i + 1))?;
            added += 1;
        }
        if added == 0 {
            return Err("webhook CA: no CERTIFICATE block".into());
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Starts the delivery worker: a round every `config.poll` until the task is aborted. Several
/// workers on one database are safe (the cursor moves by compare-and-set; a delivery is marked
/// once) but may send an event twice; receivers deduplicate by event id.
pub fn spawn(st: AppState, config: WebhookConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&st, &config).await {
                tracing::warn!(error = %e, "webhook round failed; retried next round");
            }
        }
    })
}

/// One round over every registered webhook: queue new events, send what is due. Partners are
/// served concurrently; one slow receiver does not hold the others up.
pub async fn run_once(st: &AppState, config: &WebhookConfig) -> Result<(), StoreError> {
    let hooks = st.registry.store().webhooks().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for w in hooks {
        let (st, config) = (st.clone(), config.clone());
        tasks.spawn(async move { serve_partner(&st, &config, w).await });
    }
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => tracing::error!(error = %e, "a webhook task panicked"),
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn secret_context(partner_id: &str) -> String {
    format!("webhook:{partner_id}")
}

fn unix_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

async fn serve_partner(st: &AppState, config: &WebhookConfig, w: Webhook) -> Result<(), StoreError> {
    let store = st.registry.store();
    let Some(p) = store.partner_get(&w.partner_id).await? else { return Ok(()) };
    if p.refusal(unix_now()).is_some() || !p.allows(Service::Events) {
        return Ok(());
    }
    let Some(secret) = st.secrets.open(&w.secret_sealed, &secret_context(&p.id)) else {
        tracing::error!(partner = %p.id, "a webhook secret does not open: wrong secrets key, or an edited row");
        return Ok(());
    };
    let pseudonyms = if p.allows(Service::Pseudonym) {
        match pseudonym_key(st, &p) {
            Ok(k) => Some(k),
            Err(_) => return Ok(()),
        }
    } else {
        None
    };
    // Queue.
    let mut cursor = w.cursor;
    loop {
        let items = store.change_feed(cursor, FEED_STEP).await?;
        let Some(last) = items.last() else { break };
        let to = last.position;
        let now = unix_now();
        let mut events = Vec::new();
        for item in &items {
            for (id, ev) in partner_events(&p, pseudonyms.as_deref(), item) {
                events.push(NewDelivery {
                    event_id: id,
                    position: item.position,
                    person_key: item.key.to_string(),
                    payload: ev.to_string(),
                    created_at: now,
                });
            }
        }
        if !store.webhook_enqueue(&p.id, cursor, to, &events).await? {
            break; // another worker moved the cursor first
        }
        cursor = to;
        if items.len() < FEED_STEP as usize {
            break;
        }
    }
    // Send, oldest first; the first failure stops the line until its retry is due.
    let p = Arc::new(p);
    loop {
        let due = store.webhook_pending(&p.id, SEND_STEP).await?;
        if due.is_empty() {
            return Ok(());
        }
        for d in &due {
            let now_ms = unix_ms();
            if d.next_attempt_ms > now_ms {
                return Ok(());
            }
            match send(st, config, &w.url, secret.as_bytes(), d).await {
                Ok(status) if (200..300).contains(&status) => {
                    let caller = PartnerCaller {
                        partner: p.clone(),
                        service: Service::Events,
                        purpose: format!("webhook {}", d.event_id),
                    };
                    if record_each(st, &caller, "partner.webhook", vec![d.person_key.clone()]).await.is_err() {
                        // Not recorded, so not marked: sent again later (the receiver deduplicates).
                        return Ok(());
                    }
                    let done = Attempt::Delivered { at: unix_now(), status: i64::from(status) };
                    store.webhook_attempt(&p.id, &d.event_id, &done).await?;
                }
                answer => {
                    let (status, error) = match answer {
                        Ok(s) => (Some(i64::from(s)), format!("the receiver answered HTTP {s}")),
                        Err(e) => (None, e),
                    };
                    let wait = share::backoff_ms(
                        d.attempts + 1,
                        config.backoff_base.as_millis() as u64,
                        config.backoff_max.as_millis() as u64,
                    );
                    let failed = Attempt::Failed { status, error, retry_at_ms: now_ms + wait as i64 };
                    store.webhook_attempt(&p.id, &d.event_id, &failed).await?;
                    return Ok(());
                }
            }
        }
    }
}

/// A webhook target: `http[s]://host[:port][/path][?query]`.
struct Target {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn url_error(reason: &str, value: &str) -> FieldError {
    FieldError::new("url", "invalid_url", reason).with_value(value)
}

fn parse_target(url: &str) -> Result<Target, FieldError> {
    if url.len() > 2048 {
        return Err(FieldError::new("url", "too_long", "at most 2048 characters"));
    }
    let uri: Uri =
        url.parse().map_err(|_| url_error("not a URL; e.g. https://receiver.example.vn/dancu/events", url))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(url_error("an absolute https:// (or http://) URL is required", url)),
    };
    let Some(auth) = uri.authority() else { return Err(url_error("the URL has no host", url)) };
    if auth.as_str().contains('@') {
        return Err(url_error("credentials in the URL are not allowed; authenticate by the signature", url));
    }
    if auth.host().is_empty() {
        return Err(url_error("the URL has no host", url));
    }
    let host = auth.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).filter(|p| !p.is_empty());
    Ok(Target {
        tls,
        host,
        port: auth.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        authority: auth.as_str().to_string(),
        path: path.unwrap_or_else(|| "/".into()),
    })
}

/// One POST of a delivery; the receiver's status, or why there was none.
async fn send(st: &AppState, config: &WebhookConfig, url: &str, secret: &[u8], d: &Delivery) -> Result<u16, String> {
    let target = parse_target(url).map_err(|e| e.reason.to_string())?;
    let body = Bytes::from(d.payload.clone());
    let ts = unix_now();
    let hmac = share::webhook_signature(secret, ts, &d.event_id, &body);
    let jws = jose::sign_detached(st.sharing.signer.as_ref(), &[("iat", json!(ts)), ("eid", json!(d.event_id))], &body)
        .map_err(|e| format!("signing failed: {e}"))?;
    let request = hyper::Request::post(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "dancu-webhooks/1")
        .header(EVENT_ID_HEADER, d.event_id.as_str())
        .header(ATTEMPT_HEADER, (d.attempts + 1).to_string())
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(HMAC_HEADER, hmac)
        .header(crate::sharing::SIGNATURE_HEADER, jws)
        .body(Full::new(body))
        .map_err(|e| format!("the request could not be built: {e}"))?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("no connection to {}: {e}", target.authority))?;
        if !target.tls {
            return post(stream, request).await;
        }
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| format!("{} is not a TLS server name: {e}", target.host))?;
        let stream = tokio_rustls::TlsConnector::from(config.tls.clone())
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {} failed: {e}", target.authority))?;
        post(stream, request).await
    };
    tokio::time::timeout(config.timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", config.timeout.as_millis())))
}

/// Sends `request` over an open connection (plain or TLS); the answer's status.
async fn post<S>(stream: S, request: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(conn);
    let res = sender.send_request(request).await.map_err(|e| format!("no answer: {e}"))?;
    let status = res.status().as_u16();
    let _ = Limited::new(res.into_body(), ANSWER_MAX_BYTES).collect().await;
    driver.abort();
    Ok(status)
}

// ---- the partner's registration --------------------------------------------------------------

/// A webhook registration.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// `https://host[:port]/path` (or `http://`) the events are POSTed to. An https receiver's
    /// certificate must chain to a CA the server trusts (the system's, or `--webhook-ca`).
    pub url: String,
    /// The HMAC secret (32-256 printable ASCII characters). Omitted: a new registration gets one
    /// generated (shown once, in this answer); a replaced one keeps its secret.
    pub secret: Option<String>,
}

fn check_secret(s: &str) -> Result<(), FieldError> {
    if !(32..=256).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldError::new("secret", "invalid_secret", "32 to 256 printable ASCII characters, no spaces"));
    }
    Ok(())
}

fn unprocessable(e: FieldError) -> ApiError {
    ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "validation", "The request has invalid fields", e)
}

/// Registers (201) or replaces (200) the calling partner's webhook. Events queued from now on
/// (a new registration starts at the head of the change feed; a replaced one keeps its queue).
#[utoipa::path(put, path = "/api/v1/sharing/webhook", tag = "sharing",
    request_body = WebhookInput,
    params(("X-Dancu-Purpose" = String, Header, description = "why")),
    responses(
        (status = 201, description = "registered; `secret` present when generated (signed)"),
        (status = 200, description = "replaced (signed)"),
        (status = 422, description = "an invalid URL or secret", body = crate::problem::Problem,
         content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(st): State<AppState>,
    caller: PartnerCaller,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<Response> {
    let url = input.url.trim().to_string();
    parse_target(&url).map_err(unprocessable)?;
    if let Some(s) = &input.secret {
        check_secret(s).map_err(unprocessable)?;
    }
    let p = &caller.partner;
    let store = st.registry.store();
    let existing = store.webhook_get(&p.id).await?;
    let (secret, generated) = match (&input.secret, &existing) {
        (Some(s), _) => (Some(s.clone()), false),
        (None, Some(_)) => (None, false),
        (None, None) => {
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw).map_err(|_| ApiError::internal())?;
            (Some(share::b64url(&raw)), true)
        }
    };
    let sealed = match (&secret, &existing) {
        (Some(s), _) => st.secrets.seal(s, &secret_context(&p.id)).map_err(|_| ApiError::internal())?,
        (None, Some(w)) => w.secret_sealed.clone(),
        (None, None) => unreachable!("a new registration always has a secret"),
    };
    let now = unix_now();
    let cursor = match &existing {
        Some(w) => w.cursor,
        None => store.feed_head().await?,
    };
    let w = Webhook { partner_id: p.id.clone(), url, secret_sealed: sealed, cursor, created_at: now, updated_at: now };
    let stored = store.webhook_put(&w).await?;
    let mut body = json!({
        "url": stored.url,
        "registered_at": rfc3339(stored.created_at),
        "updated_at": rfc3339(stored.updated_at),
        "signature": {"hmac": HMAC_HEADER, "timestamp": TIMESTAMP_HEADER, "jws": crate::sharing::SIGNATURE_HEADER,
                      "event_id": EVENT_ID_HEADER},
    });
    if generated {
        body["secret"] = json!(secret);
    }
    let status = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(body)).into_response())
}

fn delivery_view(d: &Delivery) -> Value {
    json!({
        "seq": d.seq,
        "event_id": d.event_id,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": (d.state == DeliveryState::Pending)
            .then(|| rfc3339(d.next_attempt_ms.div_euclid(1000))),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "queued_at": rfc3339(d.created_at),
        "delivered_at": d.delivered_at.map(rfc3339),
    })
}

/// The webhook of a partner and its deliveries (`state`, `after`, `limit` from the query).
async fn status(st: &AppState, partner_id: &str, q: &QueryPairs) -> ApiResult<Response> {
    q.check(&["state", "after", "limit"])?;
    let state = match q.get("state") {
        None => None,
        Some(s) => Some(
            DeliveryState::from_code(s)
                .ok_or_else(|| bad_param("state", "invalid_state", "pending or delivered", s))?,
        ),
    };
    let after = q.int("after", 0..=i64::MAX)?.unwrap_or(0);
    let limit = q.int("limit", 1..=500)?.unwrap_or(100) as u32;
    let store = st.registry.store();
    let Some(w) = store.webhook_get(partner_id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Chưa đăng ký webhook / No webhook registered",
            "register one with PUT /api/v1/sharing/webhook",
        ));
    };
    let (pending, delivered) = store.webhook_counts(partner_id).await?;
    let list = store.webhook_deliveries(partner_id, state, after, limit).await?;
    let next = list.last().map_or(after, |d| d.seq);
    Ok(Json(json!({
        "partner_id": w.partner_id,
        "url": w.url,
        "registered_at": rfc3339(w.created_at),
        "updated_at": rfc3339(w.updated_at),
        "pending": pending,
        "delivered": delivered,
        "deliveries": list.iter().map(delivery_view).collect::<Vec<_>>(),
        "next": next,
    }))
    .into_response())
}

/// The calling partner's webhook and its deliveries, in queue order (no event bodies).
#[utoipa::path(get, path = "/api/v1/sharing/webhook", tag = "sharing",
    params(("state" = Option<String>, Query, description = "pending or delivered"),
           ("after" = Option<i64>, Query, description = "deliveries after this `seq`"),
           ("limit" = Option<u32>, Query, description = "1-500 (default 100)"),
           ("X-Dancu-Purpose" = String, Header, description = "why")),
    responses((status = 200, description = "registration, counts and deliveries (signed)"),
              (status = 404, description = "no webhook registered")))]
pub async fn partner_status(State(st): State<AppState>, caller: PartnerCaller, q: QueryPairs) -> ApiResult<Response> {
    status(&st, &caller.partner.id, &q).await
}

/// A partner's webhook and its deliveries, for the partner administrators.
#[utoipa::path(get, path = "/api/v1/partners/{id}/webhook", tag = "partners",
    params(("id" = String, Path, description = "partner id"),
           ("state" = Option<String>, Query, description = "pending or delivered"),
           ("after" = Option<i64>, Query, description = "deliveries after this `seq`"),
           ("limit" = Option<u32>, Query, description = "1-500 (default 100)")),
    responses((status = 200, description = "registration, counts and deliveries"),
              (status = 404, description = "no such partner, or no webhook registered")))]
pub async fn admin_status(State(st): State<AppState>, Path(id): Path<String>, q: QueryPairs) -> ApiResult<Response> {
    status(&st, &id, &q).await
}
