//! Inbound civil-status events from the civil registration system (Ministry of Justice), a
//! partner holding the `civil_events` service:
//! - `birth`: the child's record is created pending; once an officer activates it (the existing
//!   activation path), the event's answer carries the personal ID — the registrar reads it with
//!   `GET /api/v1/sharing/civil-events/{source_id}` (Vietnam's joined-up birth → residence →
//!   health-insurance procedure);
//! - `death`, `marriage`, `divorce`: a change request (status, marital status) for an approving
//!   officer — the maker-checker path of `requests.rs`; applied only when approved.
//!
//! Invariants: every event is idempotent by its source id (per sending partner): the same id
//! with the same body gets the same answer and changes nothing more; the same id with another
//! body is refused (409). The record or request and the event are stored in one transaction,
//! with the audit entry of the call. Each field of a malformed event is named in the answer.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dancu_core::person::MaritalStatus;
use dancu_core::sharing::sha256_hex;
use dancu_core::{FieldError, PartialDate, PersonInput, PersonStatus, PersonalId, ValidationErrors};
use dancu_store::registry::RegistryError;
use dancu_store::{ChangeMeta, CivilEvent, PersonRef, RequestState};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::audit::{self, AuditRecorded, AuditTarget, RequestContext};
use crate::extract::ApiJson;
use crate::problem::{ApiError, ApiResult};
use crate::sharing::{PartnerCaller, rfc3339, unix_now};

const KINDS: [&str; 4] = ["birth", "death", "marriage", "divorce"];

/// The fields an event of each kind may have.
fn allowed(kind: &str) -> &'static [&'static str] {
    match kind {
        "birth" => &["source_id", "kind", "registered_on", "person"],
        _ => &["source_id", "kind", "registered_on", "personal_id", "date"],
    }
}

fn err(field: &str, code: &'static str, reason: &str) -> FieldError {
    FieldError::new(field, code, reason)
}

/// An event's checked fields.
struct Parsed {
    source_id: String,
    kind: &'static str,
    person: Option<PersonInput>,
    personal_id: Option<PersonalId>,
    date: Option<PartialDate>,
}

fn parse(body: &Value) -> Result<Parsed, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let Some(obj) = body.as_object() else {
        return Err(ValidationErrors::single(err("", "not_an_object", "the event is a JSON object")));
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str);
    let source_id = match obj.get("source_id") {
        None => {
            errors.push(err("source_id", "required", "the civil registration system's id of the event"));
            String::new()
        }
        Some(Value::String(s))
            if (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b)) =>
        {
            s.clone()
        }
        Some(v) => {
            errors.push(
                err("source_id", "invalid_source_id", "1-64 characters: letters, digits and - _ . : /")
                    .with_value(v.to_string()),
            );
            String::new()
        }
    };
    let kind = match text("kind") {
        Some(k) => match KINDS.iter().find(|x| **x == k) {
            Some(k) => *k,
            None => {
                errors.push(err("kind", "invalid_kind", "birth, death, marriage or divorce").with_value(k));
                return Err(errors);
            }
        },
        None => {
            errors.push(err("kind", "required", "birth, death, marriage or divorce"));
            return Err(errors);
        }
    };
    for k in obj.keys() {
        if !allowed(kind).contains(&k.as_str()) {
            errors.push(err(
                k,
                "unknown_field",
                &format!("a {kind} event has the fields {}", allowed(kind).join(", ")),
            ));
        }
    }
    if let Some(v) = obj.get("registered_on")
        && v.as_str().and_then(|s| PartialDate::parse(s).ok()).is_none()
    {
        errors.push(err("registered_on", "invalid_date", "a date, e.g. 2026-11-20").with_value(v.to_string()));
    }
    let mut parsed = Parsed { source_id, kind, person: None, personal_id: None, date: None };
    if kind == "birth" {
        match obj.get("person") {
            None => errors.push(err("person", "required", "the child's record as registered")),
            Some(v) => match serde_path_to_error::deserialize::<_, PersonInput>(v) {
                Ok(p) => parsed.person = Some(p),
                Err(e) => {
                    let path = e.path().to_string();
                    let reason = e.into_inner().to_string();
                    // A missing field is reported at its parent: name the field itself.
                    let missing = reason.strip_prefix("missing field `").and_then(|r| r.split('`').next());
                    let field = match (path.as_str(), missing) {
                        (".", Some(m)) => format!("person.{m}"),
                        (".", None) => "person".to_string(),
                        (p, Some(m)) => format!("person.{p}.{m}"),
                        (p, None) => format!("person.{p}"),
                    };
                    let code = if missing.is_some() { "required" } else { "invalid_value" };
                    errors.push(FieldError::new(field, code, reason));
                }
            },
        }
    } else {
        match text("personal_id") {
            None => errors.push(err("personal_id", "required", "the 12-digit personal ID of the person concerned")),
            Some(s) => match PersonalId::parse(s) {
                Ok(id) => parsed.personal_id = Some(id),
                Err(e) => errors.push(err("personal_id", "invalid_personal_id", &e.to_string()).with_value(s)),
            },
        }
        match text("date") {
            None => errors.push(err("date", "required", &format!("the date of the {kind}, e.g. 2026-11-20"))),
            Some(s) => match PartialDate::parse(s) {
                Ok(d) => parsed.date = Some(d),
                Err(e) => errors.push(err("date", "invalid_date", &e.to_string()).with_value(s)),
            },
        }
    }
    if errors.0.is_empty() { Ok(parsed) } else { Err(errors) }
}

/// The answer about an event: the same for a first call, a replay and a later read (except
/// that it follows what became of the record or request).
async fn view(st: &AppState, e: &CivilEvent) -> ApiResult<Value> {
    let mut v = Map::new();
    v.insert("source_id".into(), json!(e.source_id));
    v.insert("kind".into(), json!(e.kind));
    v.insert("received_at".into(), json!(rfc3339(e.received_at)));
    v.insert("record_key".into(), json!(e.person_key));
    if e.kind == "birth" {
        let rec = st.registry.get(&PersonRef::Key(e.person_key)).await?;
        v.insert("person_status".into(), json!(rec.person.status));
        v.insert("personal_id".into(), json!(rec.person.personal_id));
    }
    if let Some(id) = e.change_request {
        let r = st.registry.store().change_request_get(id).await?.ok_or_else(ApiError::internal)?;
        v.insert("change_request".into(), json!(id));
        v.insert("request_state".into(), json!(r.state));
        if r.state != RequestState::Pending {
            v.insert("decision_note".into(), json!(r.decision_note));
        }
    }
    Ok(Value::Object(v))
}

fn prefixed(e: RegistryError, prefix: &str) -> ApiError {
    match e {
        RegistryError::Invalid(mut v) => {
            for f in v.0.iter_mut() {
                if !matches!(f.field.as_str(), "actor" | "reason" | "legal_basis" | "personal_id") {
                    f.field = format!("{prefix}{}", f.field);
                }
            }
            ApiError::validation(v)
        }
        other => other.into(),
    }
}

/// The unit whose approvers decide a change of this person: the commune of their permanent
/// residence (2025 list), else the ministry.
fn deciding_unit(p: &dancu_core::Person) -> String {
    p.record
        .permanent_residence
        .as_ref()
        .filter(|a| a.scheme == dancu_core::reference::Scheme::Y2025)
        .map(|a| format!("commune:{}", a.commune_code))
        .filter(|u| dancu_core::auth::Unit::parse(u).is_ok())
        .unwrap_or_else(|| "ministry".into())
}

/// The answer to a received event: 409 when its source id came with another body.
async fn answer(st: &AppState, e: CivilEvent, created: bool, hash: &str) -> ApiResult<Response> {
    if e.body_hash != hash {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "civil-event-conflict",
            "Mã sự kiện đã dùng cho sự kiện khác / Source id used for another event",
            format!(
                "source_id {:?} was received on {} with another body; an event is sent again unchanged",
                e.source_id,
                rfc3339(e.received_at)
            ),
        ));
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let mut res = (status, Json(view(st, &e).await?)).into_response();
    res.extensions_mut().insert(AuditTarget(e.person_key.to_string()));
    if created {
        res.extensions_mut().insert(AuditRecorded);
    }
    Ok(res)
}

/// Receives a civil-status event (birth, death, marriage, divorce) from the civil registration
/// system. 201 when it was new; 200 with the same answer when the same event comes again.
#[utoipa::path(post, path = "/api/v1/sharing/civil-events", tag = "sharing",
    request_body(content = Object, description = "`{source_id, kind: birth, registered_on?, person: {…}}` or \
        `{source_id, kind: death|marriage|divorce, registered_on?, personal_id, date}`"),
    params(("X-Dancu-Purpose" = String, Header, description = "why (e.g. the register book)")),
    responses(
        (status = 201, description = "recorded: a pending person (birth) or a change request (signed)"),
        (status = 200, description = "the same event again: the same answer (signed)"),
        (status = 409, description = "the source id was used for another event"),
        (status = 422, description = "invalid fields, each named"),
    ))]
pub async fn receive(
    State(st): State<AppState>,
    caller: PartnerCaller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let ev = parse(&body).map_err(ApiError::validation)?;
    let p = &caller.partner;
    let hash = sha256_hex(body.to_string().as_bytes());
    let store = st.registry.store();
    if let Some(seen) = store.civil_event_get(&p.id, &ev.source_id).await? {
        return answer(&st, seen, false, &hash).await;
    }
    let event = CivilEvent {
        partner_id: p.id.clone(),
        source_id: ev.source_id.clone(),
        kind: ev.kind.to_string(),
        body_hash: hash.clone(),
        person_key: uuid::Uuid::nil(),
        change_request: None,
        received_at: unix_now(),
    };
    let reason = match ev.kind {
        "birth" => "đăng ký khai sinh",
        "death" => "đăng ký khai tử",
        "marriage" => "đăng ký kết hôn",
        _ => "ghi chú ly hôn",
    };
    let mut meta = ChangeMeta::new(
        format!("partner:{}", p.id),
        format!("{reason} — {}", ev.source_id),
        Some(p.legal_basis.clone()),
    );
    let audit_entry = |target: Option<String>, status: StatusCode| {
        st.audit.as_ref().map(|_| {
            let mut e = audit::entry(
                "partner.civil_event",
                &headers,
                target,
                &ctx.request_id,
                ctx.client.clone(),
                status.as_u16(),
            );
            caller.audit_actor().fill(&mut e);
            e
        })
    };
    let (stored, created) = if let Some(person) = ev.person {
        meta.audit = audit_entry(None, StatusCode::CREATED);
        st.registry.civil_birth(event, person, &meta).await.map_err(|e| prefixed(e, "person."))?
    } else {
        let id = ev.personal_id.expect("checked");
        let date = ev.date.expect("checked");
        let rec = match st.registry.get(&PersonRef::PersonalId(id)).await {
            Ok(r) => r,
            Err(RegistryError::NotFound) => {
                return Err(ApiError::validation(ValidationErrors::single(
                    err("personal_id", "unknown_person", "no person holds this personal ID").with_value(id.to_string()),
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let (status, marital) = match ev.kind {
            "death" => (Some((PersonStatus::Dead, date)), None),
            "marriage" => (None, Some(MaritalStatus::Married)),
            _ => (None, Some(MaritalStatus::Divorced)),
        };
        meta.audit = audit_entry(Some(rec.key.to_string()), StatusCode::CREATED);
        let event = CivilEvent { person_key: rec.key, ..event };
        let unit = deciding_unit(&rec.person);
        st.registry.civil_change(event, status, marital, &meta, &unit).await.map_err(|e| prefixed(e, ""))?
    };
    answer(&st, stored, created, &hash).await
}

/// What became of an event this partner sent: for a birth, the personal ID once the record was
/// activated; for the others, the change request's state.
#[utoipa::path(get, path = "/api/v1/sharing/civil-events/{source_id}", tag = "sharing",
    params(("source_id" = String, Path, description = "the event's id in the civil registration system"),
           ("X-Dancu-Purpose" = String, Header, description = "why")),
    responses((status = 200, description = "the event's answer (signed)"),
              (status = 404, description = "this partner sent no event with this id")))]
pub async fn get(
    State(st): State<AppState>,
    caller: PartnerCaller,
    Path(source_id): Path<String>,
) -> ApiResult<Response> {
    let Some(e) = st.registry.store().civil_event_get(&caller.partner.id, &source_id).await? else {
        return Err(ApiError::not_found());
    };
    let mut res = Json(view(&st, &e).await?).into_response();
    res.extensions_mut().insert(AuditTarget(e.person_key.to_string()));
    Ok(res)
}
