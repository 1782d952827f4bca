//! SQLite: identity-card applications, production centres and their stock, cards.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, append_audit, day, parse_ts, ts};
use crate::cards::{
    Card, CardApplication, CardApplicationQuery, CardCounts, CardImages, Centre, CentreStatus, ChipRecord,
    Personalized, StockAlert,
};
use crate::{Result, StoreError};
use dancu_card::application::{CardState, Stage};
use dancu_core::audit::AuditEntry;
use dancu_core::sharing::{b64url, b64url_decode};

pub(super) const MIGRATION: &str = r#"
CREATE TABLE card_applications (
    id          TEXT PRIMARY KEY,
    number      TEXT NOT NULL UNIQUE,
    person_key  TEXT NOT NULL REFERENCES persons (key),
    stage       TEXT NOT NULL,
    is_open     INTEGER NOT NULL,
    centre      TEXT,
    due_on      TEXT NOT NULL,
    data        TEXT NOT NULL
) STRICT;
-- One open application per person.
CREATE UNIQUE INDEX card_applications_one_open ON card_applications (person_key) WHERE is_open = 1;
CREATE INDEX card_applications_person ON card_applications (person_key);
CREATE INDEX card_applications_queue ON card_applications (stage, centre, due_on);
CREATE INDEX card_applications_due ON card_applications (is_open, due_on);

CREATE TABLE card_images (
    application_id TEXT PRIMARY KEY REFERENCES card_applications (id),
    photo          BLOB NOT NULL,
    fingerprints   TEXT NOT NULL
) STRICT;

CREATE TABLE production_centres (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    stock      INTEGER NOT NULL CHECK (stock >= 0),
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE production_alerts (
    id          INTEGER PRIMARY KEY,
    centre      TEXT NOT NULL REFERENCES production_centres (id),
    message     TEXT NOT NULL,
    raised_at   TEXT NOT NULL,
    resolved_at TEXT
) STRICT;
-- At most one open alert per centre.
CREATE UNIQUE INDEX production_alerts_open ON production_alerts (centre) WHERE resolved_at IS NULL;

CREATE TABLE cards (
    serial         TEXT PRIMARY KEY,
    person_key     TEXT NOT NULL REFERENCES persons (key),
    application_id TEXT NOT NULL UNIQUE REFERENCES card_applications (id),
    centre         TEXT NOT NULL REFERENCES production_centres (id),
    state          TEXT NOT NULL,
    issued_unix    INTEGER NOT NULL,
    data           TEXT NOT NULL,
    chip           TEXT NOT NULL
) STRICT;
CREATE INDEX cards_person ON cards (person_key);
CREATE INDEX cards_centre_time ON cards (centre, issued_unix);
"#;

fn parse_app(s: &str) -> Result<CardApplication> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("a stored card application does not parse: {e}")))
}

fn parse_card(s: &str) -> Result<Card> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("a stored card does not parse: {e}")))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("card data serializes")
}

fn unique_on(e: &rusqlite::Error, column: &str) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, Some(msg))
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE && msg.contains(column))
}

fn update_app(tx: &rusqlite::Transaction<'_>, app: &CardApplication, expected: Stage) -> Result<()> {
    let n = tx.execute(
        "UPDATE card_applications SET stage = ?2, is_open = ?3, centre = ?4, data = ?5 WHERE id = ?1 AND stage = ?6",
        params![app.id.to_string(), app.stage.code(), app.stage.is_open(), app.centre, json(app), expected.code()],
    )?;
    if n == 0 {
        let exists: Option<String> = tx
            .query_row("SELECT stage FROM card_applications WHERE id = ?1", [app.id.to_string()], |r| r.get(0))
            .optional()?;
        return Err(match exists {
            None => StoreError::NotFound,
            Some(s) => StoreError::State(format!("the application is {s} now, no longer {}", expected.code())),
        });
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn card_application_insert_impl(
        &self,
        app: &CardApplication,
        images: &CardImages,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (app, images, audit) = (app.clone(), images.clone(), audit.cloned());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO card_applications (id, number, person_key, stage, is_open, centre, due_on, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    app.id.to_string(),
                    app.number,
                    app.person_key.to_string(),
                    app.stage.code(),
                    app.stage.is_open(),
                    app.centre,
                    day(app.due_on),
                    json(&app)
                ],
            )
            .map_err(|e| {
                if unique_on(&e, "person_key") {
                    StoreError::Duplicate("an open card application of this person".into())
                } else if unique_on(&e, "number") {
                    StoreError::Duplicate("application number".into())
                } else {
                    e.into()
                }
            })?;
            let prints: Vec<String> = images.fingerprints.iter().map(|f| b64url(f)).collect();
            tx.execute(
                "INSERT INTO card_images (application_id, photo, fingerprints) VALUES (?1, ?2, ?3)",
                params![app.id.to_string(), images.photo, json(&prints)],
            )?;
            if let Some(e) = &audit {
                append_audit(&tx, std::slice::from_ref(e))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn card_application_get_impl(&self, id: Uuid) -> Result<Option<CardApplication>> {
        self.read(move |conn| {
            let data: Option<String> = conn
                .prepare_cached("SELECT data FROM card_applications WHERE id = ?1")?
                .query_row([id.to_string()], |r| r.get(0))
                .optional()?;
            data.as_deref().map(parse_app).transpose()
        })
        .await
    }

    pub(crate) async fn card_application_by_number_impl(&self, number: &str) -> Result<Option<CardApplication>> {
        let number = number.to_string();
        self.read(move |conn| {
            let data: Option<String> = conn
                .prepare_cached("SELECT data FROM card_applications WHERE number = ?1")?
                .query_row([number], |r| r.get(0))
                .optional()?;
            data.as_deref().map(parse_app).transpose()
        })
        .await
    }

    pub(crate) async fn card_applications_impl(&self, q: &CardApplicationQuery) -> Result<Vec<CardApplication>> {
        let q = q.clone();
        self.read(move |conn| {
            let mut sql = "SELECT data FROM card_applications WHERE 1 = 1".to_string();
            let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
            if let Some(s) = q.stage {
                args.push(Box::new(s.code()));
                sql += &format!(" AND stage = ?{}", args.len());
            }
            if let Some(d) = q.overdue_on {
                args.push(Box::new(day(d)));
                sql += &format!(" AND is_open = 1 AND stage NOT IN ('dispatched') AND due_on < ?{}", args.len());
            }
            if let Some(c) = q.centre {
                args.push(Box::new(c));
                sql += &format!(" AND centre = ?{}", args.len());
            }
            if let Some(k) = q.person_key {
                args.push(Box::new(k.to_string()));
                sql += &format!(" AND person_key = ?{}", args.len());
            }
            if let Some(a) = q.area {
                args.push(Box::new(a));
                sql +=
                    &format!(" AND person_key IN (SELECT person_key FROM person_areas WHERE area = ?{})", args.len());
            }
            args.push(Box::new(i64::from(q.limit)));
            args.push(Box::new(i64::from(q.offset)));
            sql += &format!(" ORDER BY due_on, id LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len());
            let mut stmt = conn.prepare(&sql)?;
            let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
            let rows = stmt.query_map(refs.as_slice(), |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(parse_app(&r?)?);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn card_application_counts_impl(
        &self,
        area: Option<&str>,
        overdue_on: time::Date,
    ) -> Result<CardCounts> {
        let area = area.map(str::to_string);
        self.read(move |conn| {
            let mut sql = "SELECT stage, COUNT(*), \
                           SUM(CASE WHEN is_open = 1 AND stage <> 'dispatched' AND due_on < ?1 THEN 1 ELSE 0 END) \
                           FROM card_applications"
                .to_string();
            let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(day(overdue_on))];
            if let Some(a) = area {
                args.push(Box::new(a));
                sql += " WHERE person_key IN (SELECT person_key FROM person_areas WHERE area = ?2)";
            }
            sql += " GROUP BY stage";
            let mut stmt = conn.prepare(&sql)?;
            let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
            let rows = stmt.query_map(refs.as_slice(), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })?;
            let mut counts = CardCounts::default();
            for row in rows {
                let (stage, n, late) = row?;
                let stage = Stage::from_code(&stage)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown card application stage {stage:?}")))?;
                counts.by_stage.push((stage, n as u64));
                counts.overdue += late as u64;
            }
            Ok(counts)
        })
        .await
    }

    pub(crate) async fn card_application_step_impl(
        &self,
        app: &CardApplication,
        expected: Stage,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (app, audit) = (app.clone(), audit.cloned());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            update_app(&tx, &app, expected)?;
            if let Some(e) = &audit {
                append_audit(&tx, std::slice::from_ref(e))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn card_images_impl(&self, id: Uuid) -> Result<Option<CardImages>> {
        self.read(move |conn| {
            let row: Option<(Vec<u8>, String)> = conn
                .prepare_cached("SELECT photo, fingerprints FROM card_images WHERE application_id = ?1")?
                .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((photo, prints)) = row else { return Ok(None) };
            let prints: Vec<String> = serde_json::from_str(&prints)
                .map_err(|_| StoreError::Corrupt("stored fingerprint images do not parse".into()))?;
            let fingerprints = prints
                .iter()
                .map(|p| b64url_decode(p).ok_or_else(|| StoreError::Corrupt("a stored fingerprint image".into())))
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(CardImages { photo, fingerprints }))
        })
        .await
    }

    pub(crate) async fn card_personalize_impl(
        &self,
        app: &CardApplication,
        card: &Card,
        chip: &ChipRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<Personalized> {
        let (app, card, chip, audit) = (app.clone(), card.clone(), chip.clone(), audit.cloned());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stock: i64 = tx
                .query_row("SELECT stock FROM production_centres WHERE id = ?1", [&card.centre], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound)?;
            if let Err(e) = dancu_card::application::take_blank(&card.centre, stock) {
                tx.execute(
                    "INSERT OR IGNORE INTO production_alerts (centre, message, raised_at) VALUES (?1, ?2, ?3)",
                    params![card.centre, e.to_string(), ts(crate::now())],
                )?;
                tx.commit()?;
                return Ok(Personalized::OutOfStock);
            }
            update_app(&tx, &app, Stage::Queued)?;
            tx.execute("UPDATE production_centres SET stock = stock - 1 WHERE id = ?1", [&card.centre])?;
            let previous: Vec<(String, String)> = tx
                .prepare_cached(
                    "SELECT serial, data FROM cards WHERE person_key = ?1 AND state IN ('active', 'retained')",
                )?
                .query_map([card.person_key.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (serial, data) in previous {
                let mut old = parse_card(&data)?;
                old.state = CardState::Replaced;
                old.replaced_by = Some(card.serial.clone());
                old.state_changed_at = Some(card.issued_at);
                tx.execute(
                    "UPDATE cards SET state = 'replaced', data = ?2 WHERE serial = ?1",
                    params![serial, json(&old)],
                )?;
            }
            tx.execute(
                "INSERT INTO cards (serial, person_key, application_id, centre, state, issued_unix, data, chip)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    card.serial,
                    card.person_key.to_string(),
                    card.application_id.to_string(),
                    card.centre,
                    card.state.code(),
                    card.issued_at.unix_timestamp(),
                    json(&card),
                    json(&chip)
                ],
            )
            .map_err(|e| {
                if unique_on(&e, "serial") { StoreError::Duplicate("card serial".into()) } else { e.into() }
            })?;
            if let Some(e) = &audit {
                append_audit(&tx, std::slice::from_ref(e))?;
            }
            tx.commit()?;
            Ok(Personalized::Done)
        })
        .await
    }

    pub(crate) async fn centre_insert_impl(&self, c: &Centre, audit: Option<&AuditEntry>) -> Result<()> {
        let (c, audit) = (c.clone(), audit.cloned());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO production_centres (id, name, stock, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![c.id, c.name, c.stock, ts(crate::now())],
            )
            .map_err(|e| {
                if matches!(&e, rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
                {
                    StoreError::Duplicate(format!("production centre {}", c.id))
                } else {
                    e.into()
                }
            })?;
            if let Some(e) = &audit {
                append_audit(&tx, std::slice::from_ref(e))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn centres_impl(&self, now: OffsetDateTime) -> Result<Vec<CentreStatus>> {
        let (hour, dayago) =
            ((now - time::Duration::HOUR).unix_timestamp(), (now - time::Duration::DAY).unix_timestamp());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.id, c.name, c.stock,
                        (SELECT count(*) FROM card_applications a WHERE a.stage = 'queued' AND a.centre = c.id),
                        (SELECT count(*) FROM cards k WHERE k.centre = c.id AND k.issued_unix >= ?1),
                        (SELECT count(*) FROM cards k WHERE k.centre = c.id AND k.issued_unix >= ?2),
                        (SELECT count(*) FROM cards k WHERE k.centre = c.id),
                        al.message, al.raised_at
                 FROM production_centres c
                 LEFT JOIN production_alerts al ON al.centre = c.id AND al.resolved_at IS NULL
                 ORDER BY c.id",
            )?;
            let rows = stmt.query_map(params![hour, dayago], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    [r.get::<_, i64>(3)?, r.get::<_, i64>(4)?, r.get::<_, i64>(5)?, r.get::<_, i64>(6)?],
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (id, name, stock, n, message, raised) = r?;
                let alert = match (message, raised) {
                    (Some(message), Some(raised)) => {
                        Some(StockAlert { centre: id.clone(), message, raised_at: parse_ts(&raised)? })
                    }
                    _ => None,
                };
                out.push(CentreStatus {
                    id,
                    name,
                    stock,
                    backlog: n[0] as u64,
                    personalized_last_hour: n[1] as u64,
                    personalized_last_day: n[2] as u64,
                    personalized_total: n[3] as u64,
                    alert,
                });
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn centre_restock_impl(&self, id: &str, add: i64, audit: Option<&AuditEntry>) -> Result<()> {
        let (id, audit) = (id.to_string(), audit.cloned());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute("UPDATE production_centres SET stock = stock + ?2 WHERE id = ?1", params![id, add])?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            tx.execute(
                "UPDATE production_alerts SET resolved_at = ?2 WHERE centre = ?1 AND resolved_at IS NULL",
                params![id, ts(crate::now())],
            )?;
            if let Some(e) = &audit {
                append_audit(&tx, std::slice::from_ref(e))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn cards_of_impl(&self, person_key: Uuid) -> Result<Vec<Card>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT data FROM cards WHERE person_key = ?1 ORDER BY issued_unix DESC, serial DESC",
            )?;
            let rows = stmt.query_map([person_key.to_string()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(parse_card(&r?)?);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn card_get_impl(&self, serial: &str) -> Result<Option<Card>> {
        let serial = serial.to_string();
        self.read(move |conn| {
            let data: Option<String> = conn
                .prepare_cached("SELECT data FROM cards WHERE serial = ?1")?
                .query_row([serial], |r| r.get(0))
                .optional()?;
            data.as_deref().map(parse_card).transpose()
        })
        .await
    }

    pub(crate) async fn card_chip_impl(&self, serial: &str) -> Result<Option<ChipRecord>> {
        let serial = serial.to_string();
        self.read(move |conn| {
            let data: Option<String> = conn
                .prepare_cached("SELECT chip FROM cards WHERE serial = ?1")?
                .query_row([serial], |r| r.get(0))
                .optional()?;
            data.map(|d| {
                serde_json::from_str(&d).map_err(|_| StoreError::Corrupt("stored chip files do not parse".into()))
            })
            .transpose()
        })
        .await
    }

    pub(crate) async fn card_set_state_impl(
        &self,
        card: &Card,
        expected: CardState,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (card, audit) = (card.clone(), audit.cloned());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE cards SET state = ?2, data = ?3 WHERE serial = ?1 AND state = ?4",
                params![card.serial, card.state.code(), json(&card), expected.code()],
            )?;
            if n == 0 {
                return Err(StoreError::State(format!("the card is no longer {}", expected.code())));
            }
            if let Some(e) = &audit {
                append_audit(&tx, std::slice::from_ref(e))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
