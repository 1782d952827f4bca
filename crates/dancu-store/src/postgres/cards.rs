//! PostgreSQL: identity-card applications, production centres and their stock, cards.

use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use super::{PgStore, append_audit};
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
    id          uuid PRIMARY KEY,
    number      text NOT NULL UNIQUE,
    person_key  uuid NOT NULL REFERENCES persons (key),
    stage       text NOT NULL,
    is_open     boolean NOT NULL,
    centre      text,
    due_on      date NOT NULL,
    data        jsonb NOT NULL
);
-- One open application per person.
CREATE UNIQUE INDEX card_applications_one_open ON card_applications (person_key) WHERE is_open;
CREATE INDEX card_applications_person ON card_applications (person_key);
CREATE INDEX card_applications_queue ON card_applications (stage, centre, due_on);
CREATE INDEX card_applications_due ON card_applications (is_open, due_on);

CREATE TABLE card_images (
    application_id uuid PRIMARY KEY REFERENCES card_applications (id),
    photo          bytea NOT NULL,
    fingerprints   jsonb NOT NULL
);

CREATE TABLE production_centres (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    stock      bigint NOT NULL CHECK (stock >= 0),
    created_at timestamptz NOT NULL
);

CREATE TABLE production_alerts (
    id          bigserial PRIMARY KEY,
    centre      text NOT NULL REFERENCES production_centres (id),
    message     text NOT NULL,
    raised_at   timestamptz NOT NULL,
    resolved_at timestamptz
);
-- At most one open alert per centre.
CREATE UNIQUE INDEX production_alerts_open ON production_alerts (centre) WHERE resolved_at IS NULL;

CREATE TABLE cards (
    serial         text PRIMARY KEY,
    person_key     uuid NOT NULL REFERENCES persons (key),
    application_id uuid NOT NULL UNIQUE REFERENCES card_applications (id),
    centre         text NOT NULL REFERENCES production_centres (id),
    state          text NOT NULL,
    issued_unix    bigint NOT NULL,
    data           jsonb NOT NULL,
    chip           jsonb NOT NULL
);
CREATE INDEX cards_person ON cards (person_key);
CREATE INDEX cards_centre_time ON cards (centre, issued_unix);
"#;

fn parse_app(v: serde_json::Value) -> Result<CardApplication> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("a stored card application does not parse: {e}")))
}

fn parse_card(v: serde_json::Value) -> Result<Card> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("a stored card does not parse: {e}")))
}

fn value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("card data serializes")
}

fn unique_on(e: &tokio_postgres::Error, constraint: &str) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && e.as_db_error().and_then(|d| d.constraint()).is_some_and(|c| c == constraint)
}

async fn update_app(tx: &deadpool_postgres::Transaction<'_>, app: &CardApplication, expected: Stage) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE card_applications SET stage = $2, is_open = $3, centre = $4, data = $5 WHERE id = $1 AND stage = $6",
            &[&app.id, &app.stage.code(), &app.stage.is_open(), &app.centre, &Json(value(app)), &expected.code()],
        )
        .await?;
    if n == 0 {
        let row = tx.query_opt("SELECT stage FROM card_applications WHERE id = $1", &[&app.id]).await?;
        return Err(match row {
            None => StoreError::NotFound,
            Some(r) => {
                let s: String = r.get(0);
                StoreError::State(format!("the application is {s} now, no longer {}", expected.code()))
            }
        });
    }
    Ok(())
}

impl PgStore {
    pub(crate) async fn card_application_insert_impl(
        &self,
        app: &CardApplication,
        images: &CardImages,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO card_applications (id, number, person_key, stage, is_open, centre, due_on, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &app.id,
                &app.number,
                &app.person_key,
                &app.stage.code(),
                &app.stage.is_open(),
                &app.centre,
                &app.due_on,
                &Json(value(app)),
            ],
        )
        .await
        .map_err(|e| {
            if unique_on(&e, "card_applications_one_open") {
                StoreError::Duplicate("an open card application of this person".into())
            } else if unique_on(&e, "card_applications_number_key") {
                StoreError::Duplicate("application number".into())
            } else {
                e.into()
            }
        })?;
        let prints: Vec<String> = images.fingerprints.iter().map(|f| b64url(f)).collect();
        tx.execute(
            "INSERT INTO card_images (application_id, photo, fingerprints) VALUES ($1, $2, $3)",
            &[&app.id, &images.photo, &Json(value(&prints))],
        )
        .await?;
        if let Some(e) = audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn card_application_get_impl(&self, id: Uuid) -> Result<Option<CardApplication>> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT data FROM card_applications WHERE id = $1", &[&id]).await?;
        row.map(|r| parse_app(r.get::<_, Json<serde_json::Value>>(0).0)).transpose()
    }

    pub(crate) async fn card_application_by_number_impl(&self, number: &str) -> Result<Option<CardApplication>> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT data FROM card_applications WHERE number = $1", &[&number]).await?;
        row.map(|r| parse_app(r.get::<_, Json<serde_json::Value>>(0).0)).transpose()
    }

    pub(crate) async fn card_applications_impl(&self, q: &CardApplicationQuery) -> Result<Vec<CardApplication>> {
        let client = self.pool.get().await?;
        let mut sql = "SELECT data FROM card_applications WHERE true".to_string();
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(s) = q.stage {
            args.push(Box::new(s.code().to_string()));
            sql += &format!(" AND stage = ${}", args.len());
        }
        if let Some(d) = q.overdue_on {
            args.push(Box::new(d));
            sql += &format!(" AND is_open AND stage NOT IN ('dispatched') AND due_on < ${}", args.len());
        }
        if let Some(c) = &q.centre {
            args.push(Box::new(c.clone()));
            sql += &format!(" AND centre = ${}", args.len());
        }
        if let Some(k) = q.person_key {
            args.push(Box::new(k));
            sql += &format!(" AND person_key = ${}", args.len());
        }
        if let Some(a) = &q.area {
            args.push(Box::new(a.clone()));
            sql += &format!(" AND person_key IN (SELECT person_key FROM person_areas WHERE area = ${})", args.len());
        }
        args.push(Box::new(i64::from(q.limit)));
        args.push(Box::new(i64::from(q.offset)));
        sql += &format!(" ORDER BY due_on, id LIMIT ${} OFFSET ${}", args.len() - 1, args.len());
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = client.query(&sql, &refs).await?;
        rows.into_iter().map(|r| parse_app(r.get::<_, Json<serde_json::Value>>(0).0)).collect()
    }

    pub(crate) async fn card_application_counts_impl(
        &self,
        area: Option<&str>,
        overdue_on: time::Date,
    ) -> Result<CardCounts> {
        let client = self.pool.get().await?;
        let mut sql =
            "SELECT stage, COUNT(*), COUNT(*) FILTER (WHERE is_open AND stage <> 'dispatched' AND due_on < $1) \
                       FROM card_applications"
                .to_string();
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(overdue_on)];
        if let Some(a) = area {
            args.push(Box::new(a.to_string()));
            sql += " WHERE person_key IN (SELECT person_key FROM person_areas WHERE area = $2)";
        }
        sql += " GROUP BY stage";
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        let mut counts = CardCounts::default();
        for row in client.query(&sql, &refs).await? {
            let stage: String = row.get(0);
            let stage = Stage::from_code(&stage)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown card application stage {stage:?}")))?;
            counts.by_stage.push((stage, row.get::<_, i64>(1) as u64));
            counts.overdue += row.get::<_, i64>(2) as u64;
        }
        Ok(counts)
    }

    pub(crate) async fn card_application_step_impl(
        &self,
        app: &CardApplication,
        expected: Stage,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        update_app(&tx, app, expected).await?;
        if let Some(e) = audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn card_images_impl(&self, id: Uuid) -> Result<Option<CardImages>> {
        let client = self.pool.get().await?;
        let Some(row) =
            client.query_opt("SELECT photo, fingerprints FROM card_images WHERE application_id = $1", &[&id]).await?
        else {
            return Ok(None);
        };
        let Json(prints): Json<Vec<String>> =
            row.try_get(1).map_err(|_| StoreError::Corrupt("stored fingerprint images do not parse".into()))?;
        let fingerprints = prints
            .iter()
            .map(|p| b64url_decode(p).ok_or_else(|| StoreError::Corrupt("a stored fingerprint image".into())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(CardImages { photo: row.get(0), fingerprints }))
    }

    pub(crate) async fn card_personalize_impl(
        &self,
        app: &CardApplication,
        card: &Card,
        chip: &ChipRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<Personalized> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The centre's row is the lock: concurrent runs take blank cards one after the other.
        let row =
            tx.query_opt("SELECT stock FROM production_centres WHERE id = $1 FOR UPDATE", &[&card.centre]).await?;
        let stock: i64 = row.ok_or(StoreError::NotFound)?.get(0);
        if let Err(e) = dancu_card::application::take_blank(&card.centre, stock) {
            tx.execute(
                "INSERT INTO production_alerts (centre, message, raised_at) VALUES ($1, $2, $3)
                 ON CONFLICT (centre) WHERE resolved_at IS NULL DO NOTHING",
                &[&card.centre, &e.to_string(), &crate::now()],
            )
            .await?;
            tx.commit().await?;
            return Ok(Personalized::OutOfStock);
        }
        update_app(&tx, app, Stage::Queued).await?;
        tx.execute("UPDATE production_centres SET stock = stock - 1 WHERE id = $1", &[&card.centre]).await?;
        let previous = tx
            .query(
                "SELECT serial, data FROM cards WHERE person_key = $1 AND state IN ('active', 'retained') FOR UPDATE",
                &[&card.person_key],
            )
            .await?;
        for r in previous {
            let serial: String = r.get(0);
            let mut old = parse_card(r.get::<_, Json<serde_json::Value>>(1).0)?;
            old.state = CardState::Replaced;
            old.replaced_by = Some(card.serial.clone());
            old.state_changed_at = Some(card.issued_at);
            tx.execute(
                "UPDATE cards SET state = 'replaced', data = $2 WHERE serial = $1",
                &[&serial, &Json(value(&old))],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO cards (serial, person_key, application_id, centre, state, issued_unix, data, chip)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &card.serial,
                &card.person_key,
                &card.application_id,
                &card.centre,
                &card.state.code(),
                &card.issued_at.unix_timestamp(),
                &Json(value(card)),
                &Json(value(chip)),
            ],
        )
        .await
        .map_err(|e| {
            if unique_on(&e, "cards_pkey") { StoreError::Duplicate("card serial".into()) } else { e.into() }
        })?;
        if let Some(e) = audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(Personalized::Done)
    }

    pub(crate) async fn centre_insert_impl(&self, c: &Centre, audit: Option<&AuditEntry>) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO production_centres (id, name, stock, created_at) VALUES ($1, $2, $3, $4)",
            &[&c.id, &c.name, &c.stock, &crate::now()],
        )
        .await
        .map_err(|e| {
            if unique_on(&e, "production_centres_pkey") {
                StoreError::Duplicate(format!("production centre {}", c.id))
            } else {
                e.into()
            }
        })?;
        if let Some(e) = audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn centres_impl(&self, now: OffsetDateTime) -> Result<Vec<CentreStatus>> {
        let (hour, dayago) =
            ((now - time::Duration::HOUR).unix_timestamp(), (now - time::Duration::DAY).unix_timestamp());
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT c.id, c.name, c.stock,
                        (SELECT count(*) FROM card_applications a WHERE a.stage = 'queued' AND a.centre = c.id),
                        (SELECT count(*) FROM cards k WHERE k.centre = c.id AND k.issued_unix >= $1),
                        (SELECT count(*) FROM cards k WHERE k.centre = c.id AND k.issued_unix >= $2),
                        (SELECT count(*) FROM cards k WHERE k.centre = c.id),
                        al.message, al.raised_at
                 FROM production_centres c
                 LEFT JOIN production_alerts al ON al.centre = c.id AND al.resolved_at IS NULL
                 ORDER BY c.id",
                &[&hour, &dayago],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let id: String = r.get(0);
                let message: Option<String> = r.get(7);
                let raised: Option<OffsetDateTime> = r.get(8);
                let alert = message.zip(raised).map(|(message, raised_at)| StockAlert {
                    centre: id.clone(),
                    message,
                    raised_at,
                });
                CentreStatus {
                    id,
                    name: r.get(1),
                    stock: r.get(2),
                    backlog: r.get::<_, i64>(3) as u64,
                    personalized_last_hour: r.get::<_, i64>(4) as u64,
                    personalized_last_day: r.get::<_, i64>(5) as u64,
                    personalized_total: r.get::<_, i64>(6) as u64,
                    alert,
                }
            })
            .collect())
    }

    pub(crate) async fn centre_restock_impl(&self, id: &str, add: i64, audit: Option<&AuditEntry>) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx.execute("UPDATE production_centres SET stock = stock + $2 WHERE id = $1", &[&id, &add]).await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            "UPDATE production_alerts SET resolved_at = $2 WHERE centre = $1 AND resolved_at IS NULL",
            &[&id, &crate::now()],
        )
        .await?;
        if let Some(e) = audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn cards_of_impl(&self, person_key: Uuid) -> Result<Vec<Card>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT data FROM cards WHERE person_key = $1 ORDER BY issued_unix DESC, serial DESC",
                &[&person_key],
            )
            .await?;
        rows.into_iter().map(|r| parse_card(r.get::<_, Json<serde_json::Value>>(0).0)).collect()
    }

    pub(crate) async fn card_get_impl(&self, serial: &str) -> Result<Option<Card>> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT data FROM cards WHERE serial = $1", &[&serial]).await?;
        row.map(|r| parse_card(r.get::<_, Json<serde_json::Value>>(0).0)).transpose()
    }

    pub(crate) async fn card_chip_impl(&self, serial: &str) -> Result<Option<ChipRecord>> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT chip FROM cards WHERE serial = $1", &[&serial]).await?;
        row.map(|r| {
            serde_json::from_value(r.get::<_, Json<serde_json::Value>>(0).0)
                .map_err(|_| StoreError::Corrupt("stored chip files do not parse".into()))
        })
        .transpose()
    }

    pub(crate) async fn card_set_state_impl(
        &self,
        card: &Card,
        expected: CardState,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE cards SET state = $2, data = $3 WHERE serial = $1 AND state = $4",
                &[&card.serial, &card.state.code(), &Json(value(card)), &expected.code()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::State(format!("the card is no longer {}", expected.code())));
        }
        if let Some(e) = audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
