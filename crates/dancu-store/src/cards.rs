//! The identity-card service (an `impl Registry`): card applications and their workflow,
//! production centres with their stock of blank cards, personalization of the chip (through
//! `dancu_card`, signed by the Document Signer the caller hands in) and the cards' states.
//!
//! The rules are `dancu_card::application`'s (kinds, the minimum age, the renewal window, the
//! workflow steps and their roles, the approver ≠ verifier rule, stock, card states) and
//! `dancu_card::validity`'s (expiry); the deadline is 7 working days on the registry's calendar
//! (weekends, public holidays and Tết skipped). Every change is one store transaction with its
//! audit entry; the store holds one open application per person (a unique index) and takes a
//! blank card from the centre's stock in the personalization's own transaction.

use dancu_card::application::{self as rules, ApplicationKind, CardState, Stage, WorkflowError};
use dancu_card::{CardContent, DocumentSigner};
use dancu_core::FieldError;
use dancu_core::audit::AuditEntry;
use dancu_core::auth::Role;
use dancu_core::sharing::{b64url, b64url_decode};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::registry::{Registry, today};
use crate::{PersonRef, StoreError};

/// One step an application went through: to which stage, by whom, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CardStep {
    #[schema(value_type = String)]
    pub stage: Stage,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A card application (hồ sơ cấp thẻ căn cước) and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CardApplication {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    /// Số hồ sơ: what the citizen gets on the receipt and looks the status up with.
    pub number: String,
    #[schema(value_type = String, format = "uuid")]
    pub person_key: Uuid,
    /// `{"kind": "first_issue"}`, `{"kind": "renewal"}`, `{"kind": "replacement", "reason": …}`,
    /// `{"kind": "reissue", "reason": "lost" | "damaged"}`.
    #[schema(value_type = Object)]
    pub kind: ApplicationKind,
    /// A card for a child under 14, requested by the parent or guardian.
    #[serde(default)]
    pub requested_under_14: bool,
    #[schema(value_type = String)]
    pub stage: Stage,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: OffsetDateTime,
    /// 7 working days after receipt.
    #[serde(with = "dancu_core::date::iso_date")]
    #[schema(value_type = String, format = Date)]
    pub due_on: Date,
    /// The officer who verified it (who may not also approve it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    /// The production centre it is queued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centre: Option<String>,
    /// The card made for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_serial: Option<String>,
    /// The face photo's size and pixel dimensions, and how many fingerprint images were taken.
    pub photo_bytes: u32,
    pub photo_width: u16,
    pub photo_height: u16,
    pub fingerprints: u32,
    pub steps: Vec<CardStep>,
}

impl CardApplication {
    pub fn updated_at(&self) -> OffsetDateTime {
        self.steps.last().map(|s| s.at).unwrap_or(self.received_at)
    }
}

/// The intake images of an application: the face photo (JPEG) and the fingerprint images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardImages {
    pub photo: Vec<u8>,
    pub fingerprints: Vec<Vec<u8>>,
}

/// A query over card applications; every given filter must hold. Earliest deadline first.
/// How many card applications of an area are at each stage, and how many are overdue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardCounts {
    /// Stages with at least one application.
    pub by_stage: Vec<(Stage, u64)>,
    /// Open, not yet dispatched, past their due date.
    pub overdue: u64,
}

impl CardCounts {
    pub fn count(&self, stage: Stage) -> u64 {
        self.by_stage.iter().find(|(s, _)| *s == stage).map_or(0, |(_, n)| *n)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardApplicationQuery {
    pub stage: Option<Stage>,
    /// Only applications still being worked on (received … quality-checked) due before this day.
    pub overdue_on: Option<Date>,
    pub centre: Option<String>,
    pub person_key: Option<Uuid>,
    /// Only applications of people lying in this area.
    pub area: Option<String>,
    pub offset: u32,
    pub limit: u32,
}

/// An identity card as issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Card {
    /// Số thẻ (the card's serial, in DG13).
    pub serial: String,
    #[schema(value_type = String, format = "uuid")]
    pub person_key: Uuid,
    pub personal_id: String,
    #[schema(value_type = String, format = "uuid")]
    pub application_id: Uuid,
    pub centre: String,
    /// As stored; `expired` is computed on reading (see [`Card::state_on`]).
    #[schema(value_type = String)]
    pub state: CardState,
    #[serde(with = "dancu_core::date::iso_date")]
    #[schema(value_type = String, format = Date)]
    pub issue_date: Date,
    /// None: the card does not expire (issued at 60 or later).
    #[serde(with = "dancu_core::date::iso_date::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub expiry: Option<Date>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: OffsetDateTime,
    /// The 3 lines of the machine-readable zone.
    pub mrz: Vec<String>,
    /// The Document Signer that signed EF.SOD (certificate subject).
    pub signed_by: String,
    /// The card that replaced this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// Why the state last changed, by whom and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_changed_by: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub state_changed_at: Option<OffsetDateTime>,
}

impl Card {
    /// The state on `day`: an active card past its expiry is expired.
    pub fn state_on(&self, day: Date) -> CardState {
        rules::validity_now(self.state, self.expiry, day).1
    }
}

/// The chip's files of a card (base64url), as written to the chip by the encoder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChipRecord {
    pub ef_com: String,
    pub dg1: String,
    pub dg2: String,
    pub dg13: String,
    pub ef_sod: String,
}

impl ChipRecord {
    fn of(files: &dancu_card::ChipFiles) -> Self {
        ChipRecord {
            ef_com: b64url(&files.ef_com),
            dg1: b64url(&files.dg1),
            dg2: b64url(&files.dg2),
            dg13: b64url(&files.dg13),
            ef_sod: b64url(&files.ef_sod),
        }
    }
    /// The decoded files: (name, bytes), as `dancu card verify` reads them from a folder.
    pub fn files(&self) -> Option<Vec<(&'static str, Vec<u8>)>> {
        Some(vec![
            ("ef_com.bin", b64url_decode(&self.ef_com)?),
            ("dg1.bin", b64url_decode(&self.dg1)?),
            ("dg2.bin", b64url_decode(&self.dg2)?),
            ("dg13.bin", b64url_decode(&self.dg13)?),
            ("ef_sod.bin", b64url_decode(&self.ef_sod)?),
        ])
    }
}

/// A production centre (trung tâm sản xuất thẻ) and its stock of blank cards (with chip).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Centre {
    pub id: String,
    pub name: String,
    pub stock: i64,
}

/// Raised when a centre's queue stopped for lack of blank cards; resolved by a restock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StockAlert {
    pub centre: String,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub raised_at: OffsetDateTime,
}

/// A centre for the production dashboard: stock, backlog, throughput, its open alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CentreStatus {
    pub id: String,
    pub name: String,
    pub stock: i64,
    /// Applications queued at the centre.
    pub backlog: u64,
    /// Cards personalized in the last hour and the last 24 hours.
    pub personalized_last_hour: u64,
    pub personalized_last_day: u64,
    pub personalized_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<StockAlert>,
}

/// What a personalization transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personalized {
    Done,
    /// No blank card left: nothing changed but the centre's alert, raised (once).
    OutOfStock,
}

/// Why a card operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CardServiceError {
    #[error("no such record")]
    NotFound,
    /// A field of the input (photo, fingerprints, kind…): 422, naming it.
    #[error("{}: {}", .0.field, .0.reason)]
    Invalid(FieldError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// The Document Signer cannot sign now (outside its key usage period, or none configured).
    #[error("{0}")]
    Signer(String),
    /// The card data could not be built from the record.
    #[error(transparent)]
    Card(#[from] dancu_card::CardError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::registry::RegistryError> for CardServiceError {
    fn from(e: crate::registry::RegistryError) -> Self {
        match e {
            crate::registry::RegistryError::NotFound => CardServiceError::NotFound,
            crate::registry::RegistryError::Store(s) => CardServiceError::Store(s),
            other => CardServiceError::Store(StoreError::Backend(other.to_string())),
        }
    }
}

pub type CardResult<T> = std::result::Result<T, CardServiceError>;

/// A new application as taken at the counter.
#[derive(Debug, Clone)]
pub struct NewCardApplication {
    pub person: PersonRef,
    pub kind: ApplicationKind,
    pub requested_under_14: bool,
    pub photo: Vec<u8>,
    pub fingerprints: Vec<Vec<u8>>,
}

/// The most fingerprint images one application takes (ten fingers).
pub const MAX_FINGERPRINTS: usize = 10;

fn random_digits(n: u32) -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the operating system's random source");
    let v = u64::from_le_bytes(b) % 10u64.pow(n);
    format!("{v:0width$}", width = n as usize)
}

fn check_images(photo: &[u8], fingerprints: &[Vec<u8>]) -> CardResult<dancu_card::photo::JpegInfo> {
    let field = |e: dancu_card::CardError, field: String| match e {
        dancu_card::CardError::Field { value, reason, .. } => {
            CardServiceError::Invalid(FieldError::new(field, "invalid_image", reason).with_value(value))
        }
        other => CardServiceError::Invalid(FieldError::new(field, "invalid_image", other.to_string())),
    };
    let info = dancu_card::photo::check_face_photo(photo).map_err(|e| field(e, "photo".into()))?;
    if fingerprints.len() > MAX_FINGERPRINTS {
        return Err(CardServiceError::Invalid(
            FieldError::new("fingerprints", "too_many", format!("at most {MAX_FINGERPRINTS} fingerprint images"))
                .with_value(fingerprints.len().to_string()),
        ));
    }
    for (i, f) in fingerprints.iter().enumerate() {
        dancu_card::photo::check_fingerprint(f).map_err(|e| field(e, format!("fingerprints[{i}]")))?;
    }
    Ok(info)
}

fn store_now() -> OffsetDateTime {
    crate::now()
}

impl Registry {
    /// Takes a card application: the person must hold a personal ID and lie where `may`
    /// allows; the images are checked; the kind's rules (minimum age, renewal window) apply
    /// against the person's current card; one open application per person.
    pub async fn card_apply(
        &self,
        new: NewCardApplication,
        by: &str,
        may: impl Fn(&[String]) -> bool,
        audit: Option<AuditEntry>,
    ) -> CardResult<CardApplication> {
        let info = check_images(&new.photo, &new.fingerprints)?;
        let rec = self.store().get_person(&new.person).await?.ok_or(CardServiceError::NotFound)?;
        if !may(&rec.person.areas()) {
            return Err(CardServiceError::NotFound);
        }
        if rec.person.personal_id.is_none() {
            return Err(CardServiceError::Invalid(FieldError::new(
                "person",
                "no_personal_id",
                "the person has no personal ID yet: activate the record first",
            )));
        }
        if rec.person.status != dancu_core::PersonStatus::Active {
            return Err(CardServiceError::Invalid(
                FieldError::new("person", "not_active", "cards are issued to living persons on the register only")
                    .with_value(rec.person.status.code()),
            ));
        }
        let day = today();
        let open = self
            .store()
            .card_applications(&CardApplicationQuery { person_key: Some(rec.key), limit: 50, ..Default::default() })
            .await?
            .into_iter()
            .find(|a| a.stage.is_open());
        let current = self.store().cards_of(rec.key).await?.into_iter().find(|c| c.state == CardState::Active);
        rules::check_new(
            new.kind,
            &rec.person.record.birth_date,
            day,
            new.requested_under_14,
            open.as_ref().map(|a| a.number.as_str()),
            current.as_ref().map(|c| c.expiry),
        )?;
        let now = store_now();
        let images = CardImages { photo: new.photo, fingerprints: new.fingerprints };
        let mut app = CardApplication {
            id: crate::new_key(),
            number: String::new(),
            person_key: rec.key,
            kind: new.kind,
            requested_under_14: new.requested_under_14,
            stage: Stage::Received,
            received_at: now,
            due_on: self.calendar().deadline(day, rules::DEADLINE_WORKING_DAYS),
            verified_by: None,
            centre: None,
            card_serial: None,
            photo_bytes: images.photo.len() as u32,
            photo_width: info.width,
            photo_height: info.height,
            fingerprints: images.fingerprints.len() as u32,
            steps: vec![CardStep { stage: Stage::Received, by: by.to_string(), at: now, note: None }],
        };
        let mut audit = audit;
        if let Some(e) = audit.as_mut() {
            e.target = Some(rec.key.to_string());
        }
        // A number taken already (1 in 10^12) draws again; a concurrent open application of the
        // same person is refused by the store's unique index.
        for _ in 0..3 {
            app.number = random_digits(12);
            match self.store().card_application_insert(&app, &images, audit.as_ref()).await {
                Ok(()) => return Ok(app),
                Err(StoreError::Duplicate(what)) if what.contains("open") => {
                    return Err(WorkflowError::OpenApplication("a concurrent application".into()).into());
                }
                Err(StoreError::Duplicate(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Backend("no free application number after 3 draws".into()).into())
    }

    pub async fn card_application(&self, id: Uuid) -> CardResult<CardApplication> {
        self.store().card_application_get(id).await?.ok_or(CardServiceError::NotFound)
    }

    /// One workflow step (not personalization, which production does: [`Registry::card_produce`]).
    /// `centre` is required to queue.
    #[allow(clippy::too_many_arguments)]
    pub async fn card_step(
        &self,
        id: Uuid,
        to: Stage,
        by: &str,
        roles: &[Role],
        note: Option<String>,
        centre: Option<String>,
        audit: Option<AuditEntry>,
    ) -> CardResult<CardApplication> {
        let mut app = self.card_application(id).await?;
        if to == Stage::Personalized {
            return Err(WorkflowError::Invalid(
                "an application is personalized by production (POST /api/v1/production/centres/{id}/run), not by \
                 hand"
                    .into(),
            )
            .into());
        }
        rules::check_step(app.stage, to, by, roles, app.verified_by.as_deref())?;
        if matches!(to, Stage::Cancelled | Stage::Returned) && note.is_none() {
            return Err(CardServiceError::Invalid(FieldError::new(
                "note",
                "required",
                "a cancellation or a return needs its reason",
            )));
        }
        if to == Stage::Queued {
            let centre = centre.ok_or_else(|| {
                CardServiceError::Invalid(FieldError::new("centre", "required", "queue at which production centre?"))
            })?;
            if !self.store().centres(store_now()).await?.iter().any(|c| c.id == centre) {
                return Err(CardServiceError::Invalid(
                    FieldError::new("centre", "unknown_centre", "no such production centre").with_value(centre),
                ));
            }
            app.centre = Some(centre);
        } else if centre.is_some() {
            return Err(CardServiceError::Invalid(FieldError::new(
                "centre",
                "unexpected",
                "a centre is given only to queue an application",
            )));
        }
        let expected = app.stage;
        if to == Stage::Verified {
            app.verified_by = Some(by.to_string());
        }
        app.stage = to;
        app.steps.push(CardStep { stage: to, by: by.to_string(), at: store_now(), note });
        self.store().card_application_step(&app, expected, audit.as_ref()).await?;
        Ok(app)
    }

    /// Runs a centre's queue: personalizes up to `max` queued applications, earliest deadline
    /// first, each in its own transaction that also takes a blank card from the stock and
    /// replaces the holder's previous card. Stops when the stock runs out (the rest stay
    /// queued; the centre's alert is raised). Returns the cards made and whether it stopped
    /// for lack of stock. `audit` gives the entry template (its target is set per person).
    pub async fn card_produce(
        &self,
        centre: &str,
        max: u32,
        signer: &DocumentSigner,
        by: &str,
        audit: Option<AuditEntry>,
    ) -> CardResult<(Vec<Card>, bool)> {
        let now = store_now();
        if !self.store().centres(now).await?.iter().any(|c| c.id == centre) {
            return Err(CardServiceError::NotFound);
        }
        signer.check_usable(now).map_err(|e| CardServiceError::Signer(e.to_string()))?;
        let queue = self
            .store()
            .card_applications(&CardApplicationQuery {
                stage: Some(Stage::Queued),
                centre: Some(centre.to_string()),
                limit: max,
                ..Default::default()
            })
            .await?;
        let mut made = Vec::new();
        for mut app in queue {
            let rec = self
                .store()
                .get_person(&PersonRef::Key(app.person_key))
                .await?
                .ok_or(CardServiceError::Store(StoreError::Corrupt("an application's person is missing".into())))?;
            let images =
                self.store().card_images(app.id).await?.ok_or(CardServiceError::Store(StoreError::Corrupt(
                    "an application's images are missing".into(),
                )))?;
            let now = store_now();
            let issue = now.to_offset(crate::registry::VIETNAM_OFFSET).date();
            let expiry = rules::card_expiry(&rec.person.record.birth_date, issue);
            let serial = random_digits(12);
            let content = CardContent::from_person(&rec.person, issue, expiry, Some(serial.clone()), images.photo)?;
            let files = dancu_card::personalize(&content, signer, now).map_err(|e| match e {
                dancu_card::CardError::Key(k) => CardServiceError::Signer(k),
                other => CardServiceError::Card(other),
            })?;
            let card = Card {
                serial: serial.clone(),
                person_key: app.person_key,
                personal_id: content.personal_id.to_string(),
                application_id: app.id,
                centre: centre.to_string(),
                state: CardState::Active,
                issue_date: issue,
                expiry,
                issued_at: now,
                mrz: files.mrz.to_vec(),
                signed_by: signer.certificate().tbs_certificate.subject.to_string(),
                replaced_by: None,
                state_note: None,
                state_changed_by: None,
                state_changed_at: None,
            };
            app.stage = Stage::Personalized;
            app.card_serial = Some(serial);
            app.steps.push(CardStep { stage: Stage::Personalized, by: by.to_string(), at: now, note: None });
            let mut entry = audit.clone();
            if let Some(e) = entry.as_mut() {
                e.target = Some(app.person_key.to_string());
            }
            match self.store().card_personalize(&app, &card, &ChipRecord::of(&files), entry.as_ref()).await? {
                Personalized::Done => made.push(card),
                Personalized::OutOfStock => return Ok((made, true)),
            }
        }
        Ok((made, false))
    }

    /// Registers a production centre.
    pub async fn centre_add(&self, c: &Centre, audit: Option<AuditEntry>) -> CardResult<()> {
        if c.id.is_empty() || c.id.len() > 32 || !c.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(CardServiceError::Invalid(
                FieldError::new("id", "invalid_id", "1-32 letters, digits or '-'").with_value(c.id.clone()),
            ));
        }
        if c.name.trim().is_empty() {
            return Err(CardServiceError::Invalid(FieldError::new("name", "required", "the centre's name")));
        }
        if c.stock < 0 {
            return Err(CardServiceError::Invalid(
                FieldError::new("stock", "negative", "a stock is 0 or more").with_value(c.stock.to_string()),
            ));
        }
        self.store().centre_insert(c, audit.as_ref()).await?;
        Ok(())
    }

    /// Adds blank cards to a centre's stock; resolves its alert (the queue runs again).
    pub async fn centre_restock(&self, id: &str, add: i64, audit: Option<AuditEntry>) -> CardResult<()> {
        if !(1..=10_000_000).contains(&add) {
            return Err(CardServiceError::Invalid(
                FieldError::new("cards", "out_of_range", "between 1 and 10,000,000 blank cards")
                    .with_value(add.to_string()),
            ));
        }
        self.store().centre_restock(id, add, audit.as_ref()).await?;
        Ok(())
    }

    /// Changes a card's state by hand (retained, revoked, lost, or active again after retention).
    pub async fn card_set_state(
        &self,
        serial: &str,
        to: CardState,
        note: Option<String>,
        by: &str,
        audit: Option<AuditEntry>,
    ) -> CardResult<Card> {
        let mut card = self.store().card_get(serial).await?.ok_or(CardServiceError::NotFound)?;
        let from = card.state_on(today());
        if !rules::card_state_allowed(from, to) {
            return Err(WorkflowError::Transition { from: from.code(), to: to.code() }.into());
        }
        let note = note.ok_or_else(|| {
            CardServiceError::Invalid(FieldError::new("note", "required", "the reason or legal basis of the change"))
        })?;
        let expected = card.state;
        card.state = to;
        card.state_note = Some(note);
        card.state_changed_by = Some(by.to_string());
        card.state_changed_at = Some(store_now());
        let mut audit = audit;
        if let Some(e) = audit.as_mut() {
            e.target = Some(card.person_key.to_string());
        }
        self.store().card_set_state(&card, expected, audit.as_ref()).await?;
        Ok(card)
    }
}
