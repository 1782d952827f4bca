//! Authorization in one place: the route table. Every route of the API is declared here with
//! who may call it and on which area, and the router is built from this table only — a route
//! without a policy cannot exist. The [`authorize`] middleware enforces the table before any
//! handler runs; handlers of person routes then check that the person lies in the caller's area
//! ([`crate::auth::Caller::see`]), answering exactly as for a missing record when not.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use dancu_core::auth::{Role, SessionStage, UnitLevel};
use dancu_core::sharing::Service;

use crate::AppState;
use crate::problem::ApiError;
use crate::web::{self, pages};
use crate::{
    audit, auth, cards, citizen, civil, officers, oidc, partners, persons, reference, requests, residence, reviews,
    sharing, webhooks,
};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Anyone: no personal data (reference lists, documentation, health).
    Public,
    /// An officer part-way through logging in (password given, second factor pending) or done.
    Login,
    /// An officer fully logged in holding one of these roles.
    Officer(&'static [Role]),
    /// A partner with an access token whose scope holds this service (not an officer session).
    Partner(Service),
    /// A citizen logged in with their personal ID and a one-time code (not an officer session).
    Citizen,
}

/// On which people (or area) a route acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// No person and no area.
    None,
    /// One person (or people): the handler checks each lies in the caller's unit's area.
    Person,
    /// The whole country: only officers of a ministry-level unit.
    National,
    /// Officer accounts: the handler checks the account's unit lies within the caller's.
    Officers,
}

/// One route of the API and its policy.
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    /// The audited action (`None`: the route touches no personal data and is not audited).
    pub action: Option<&'static str>,
    pub who: Who,
    pub area: Area,
    handler: fn() -> MethodRouter<AppState>,
}

pub const READERS: &[Role] = &[Role::Collector, Role::Verifier, Role::Approver, Role::CardOperator];
pub const EDITORS: &[Role] = &[Role::Collector, Role::Verifier, Role::Approver];
pub const ISSUERS: &[Role] = &[Role::Verifier, Role::Approver];
const HISTORY: &[Role] = &[Role::Collector, Role::Verifier, Role::Approver, Role::CardOperator, Role::Auditor];
const ACCESS_LOG: &[Role] = &[Role::Approver, Role::Auditor];
pub const AUDITORS: &[Role] = &[Role::Auditor];
const ADMINS: &[Role] = &[Role::SystemAdministrator];
pub const CARD_READERS: &[Role] =
    &[Role::Collector, Role::Verifier, Role::Approver, Role::CardOperator, Role::ProductionOperator];
pub const CARD_STEPS: &[Role] = &[Role::Verifier, Role::Approver, Role::CardOperator, Role::ProductionOperator];
pub const CARD_OPERATORS: &[Role] = &[Role::CardOperator];
pub const CARD_PRINTERS: &[Role] = &[Role::CardOperator, Role::ProductionOperator];
pub const PRODUCTION: &[Role] = &[Role::ProductionOperator];
pub const PARTNER_ADMINS: &[Role] = &[Role::PartnerAdministrator];
pub const IMPORTERS: &[Role] = &[Role::Collector];

fn spec(
    method: Method,
    path: &'static str,
    action: Option<&'static str>,
    who: Who,
    area: Area,
    handler: fn() -> MethodRouter<AppState>,
) -> RouteSpec {
    RouteSpec { method, path, action, who, area, handler }
}

/// The route table.
pub fn routes() -> Vec<RouteSpec> {
    use Area as A;
    use Who::{Citizen, Login, Officer, Partner, Public};
    vec![
        // persons
        spec(Method::POST, "/api/v1/persons", Some("person.create"), Officer(EDITORS), A::Person, || {
            post(persons::create)
        }),
        spec(Method::GET, "/api/v1/persons", Some("person.search"), Officer(READERS), A::Person, || {
            get(persons::search)
        }),
        spec(
            Method::GET,
            "/api/v1/persons/by-legacy-id/{number}",
            Some("person.read"),
            Officer(READERS),
            A::Person,
            || get(persons::get_by_legacy),
        ),
        spec(Method::GET, "/api/v1/persons/{ref}", Some("person.read"), Officer(READERS), A::Person, || {
            get(persons::get)
        }),
        spec(Method::PUT, "/api/v1/persons/{ref}", Some("person.update"), Officer(EDITORS), A::Person, || {
            put(persons::update)
        }),
        spec(
            Method::POST,
            "/api/v1/persons/{ref}/activate",
            Some("person.activate"),
            Officer(ISSUERS),
            A::Person,
            || post(persons::activate),
        ),
        spec(Method::GET, "/api/v1/persons/{ref}/history", Some("person.history"), Officer(HISTORY), A::Person, || {
            get(persons::history)
        }),
        spec(
            Method::GET,
            "/api/v1/persons/{ref}/access-log",
            Some("person.access_log"),
            Officer(ACCESS_LOG),
            A::Person,
            || get(audit::access_log),
        ),
        // maker-checker
        spec(Method::GET, "/api/v1/change-requests", Some("change_request.list"), Officer(EDITORS), A::Person, || {
            get(requests::list)
        }),
        spec(
            Method::GET,
            "/api/v1/change-requests/{id}",
            Some("change_request.read"),
            Officer(EDITORS),
            A::Person,
            || get(requests::get),
        ),
        spec(
            Method::POST,
            "/api/v1/change-requests/{id}/decision",
            Some("change_request.decide"),
            Officer(EDITORS),
            A::Person,
            || post(requests::decide),
        ),
        // clerical review of possible duplicates (record linkage)
        spec(Method::GET, "/api/v1/review-pairs", Some("review_pair.list"), Officer(ISSUERS), A::Person, || {
            get(reviews::list)
        }),
        spec(Method::GET, "/api/v1/review-pairs/{id}", Some("review_pair.read"), Officer(ISSUERS), A::Person, || {
            get(reviews::get)
        }),
        spec(
            Method::POST,
            "/api/v1/review-pairs/{id}/decision",
            Some("review_pair.decide"),
            Officer(ISSUERS),
            A::Person,
            || post(reviews::decide),
        ),
        // residence
        spec(
            Method::POST,
            "/api/v1/residence/applications",
            Some("residence.submit"),
            Officer(EDITORS),
            A::Person,
            || post(residence::submit),
        ),
        spec(
            Method::GET,
            "/api/v1/residence/applications",
            Some("residence.list"),
            Officer(READERS),
            A::Person,
            || get(residence::list),
        ),
        spec(
            Method::GET,
            "/api/v1/residence/applications/{id}",
            Some("residence.read"),
            Officer(READERS),
            A::Person,
            || get(residence::get),
        ),
        spec(
            Method::POST,
            "/api/v1/residence/applications/{id}/receive",
            Some("residence.receive"),
            Officer(EDITORS),
            A::Person,
            || post(residence::receive),
        ),
        spec(
            Method::POST,
            "/api/v1/residence/applications/{id}/decision",
            Some("residence.decide"),
            Officer(ISSUERS),
            A::Person,
            || post(residence::decide),
        ),
        spec(Method::GET, "/api/v1/households/{id}", Some("household.read"), Officer(READERS), A::Person, || {
            get(residence::household)
        }),
        spec(
            Method::GET,
            "/api/v1/persons/{ref}/residences",
            Some("person.residences"),
            Officer(READERS),
            A::Person,
            || get(residence::residences),
        ),
        spec(
            Method::GET,
            "/api/v1/residence/at-address",
            Some("residence.at_address"),
            Officer(READERS),
            A::Person,
            || get(residence::at_address),
        ),
        spec(
            Method::GET,
            "/api/v1/persons/{ref}/residence-confirmation",
            Some("residence.confirmation"),
            Officer(EDITORS),
            A::Person,
            || get(residence::confirmation),
        ),
        spec(Method::GET, "/api/v1/residence-confirmations/verify", Some("residence.verify"), Public, A::None, || {
            get(residence::verify)
        }),
        // identity cards: applications, production, cards
        spec(Method::POST, "/api/v1/card-applications", Some("card.apply"), Officer(CARD_OPERATORS), A::Person, || {
            post(cards::apply)
        }),
        spec(Method::GET, "/api/v1/card-applications", Some("card.list"), Officer(CARD_READERS), A::Person, || {
            get(cards::list)
        }),
        spec(
            Method::GET,
            "/api/v1/card-applications/{id}",
            Some("card.read"),
            Officer(CARD_READERS),
            A::Person,
            || get(cards::get),
        ),
        spec(
            Method::POST,
            "/api/v1/card-applications/{id}/steps",
            Some("card.step"),
            Officer(CARD_STEPS),
            A::Person,
            || post(cards::step),
        ),
        spec(Method::GET, "/api/v1/card-status/{number}", Some("card.status"), Public, A::None, || get(cards::status)),
        spec(Method::GET, "/api/v1/production/centres", None, Officer(PRODUCTION), A::National, || get(cards::centres)),
        spec(
            Method::POST,
            "/api/v1/production/centres",
            Some("production.centre_add"),
            Officer(PRODUCTION),
            A::National,
            || post(cards::add_centre),
        ),
        spec(
            Method::POST,
            "/api/v1/production/centres/{id}/restock",
            Some("production.restock"),
            Officer(PRODUCTION),
            A::National,
            || post(cards::restock),
        ),
        spec(
            Method::POST,
            "/api/v1/production/centres/{id}/run",
            Some("card.personalize"),
            Officer(PRODUCTION),
            A::National,
            || post(cards::run),
        ),
        spec(Method::GET, "/api/v1/persons/{ref}/cards", Some("card.list"), Officer(CARD_READERS), A::Person, || {
            get(cards::person_cards)
        }),
        spec(Method::GET, "/api/v1/cards/{serial}", Some("card.read"), Officer(CARD_READERS), A::Person, || {
            get(cards::card)
        }),
        spec(
            Method::POST,
            "/api/v1/cards/{serial}/state",
            Some("card.state"),
            Officer(CARD_OPERATORS),
            A::Person,
            || post(cards::set_state),
        ),
        spec(Method::GET, "/api/v1/cards/{serial}/chip", Some("card.chip"), Officer(PRODUCTION), A::Person, || {
            get(cards::chip)
        }),
        spec(
            Method::GET,
            "/api/v1/cards/{serial}/faces/{side}",
            Some("card.face"),
            Officer(CARD_PRINTERS),
            A::Person,
            || get(cards::face),
        ),
        spec(
            Method::GET,
            "/api/v1/persons/{ref}/residence-confirmation.pdf",
            Some("residence.confirmation"),
            Officer(EDITORS),
            A::Person,
            || get(residence::confirmation_pdf),
        ),
        spec(Method::GET, "/api/v1/address-reviews", Some("address_review.list"), Officer(READERS), A::Person, || {
            get(residence::address_reviews)
        }),
        spec(
            Method::POST,
            "/api/v1/persons/{ref}/address-reviews/{field}",
            Some("address_review.resolve"),
            Officer(ISSUERS),
            A::Person,
            || post(residence::resolve_address_review),
        ),
        // audit trail
        spec(Method::GET, "/api/v1/audit", Some("audit.query"), Officer(AUDITORS), A::National, || get(audit::query)),
        // login and the officer's own session
        spec(Method::POST, "/api/v1/auth/login", Some("auth.login"), Public, A::None, || post(auth::login)),
        spec(Method::POST, "/api/v1/auth/mfa", Some("auth.mfa"), Login, A::None, || post(auth::mfa)),
        spec(Method::POST, "/api/v1/auth/totp", Some("auth.totp_enrol"), Login, A::None, || post(auth::totp_enrol)),
        spec(Method::POST, "/api/v1/auth/totp/confirm", Some("auth.totp_confirm"), Login, A::None, || {
            post(auth::totp_confirm)
        }),
        spec(Method::POST, "/api/v1/auth/logout", Some("auth.logout"), Login, A::None, || post(auth::logout)),
        spec(Method::GET, "/api/v1/auth/session", None, Login, A::None, || get(auth::session)),
        // officer accounts
        spec(Method::GET, "/api/v1/officers", Some("officer.list"), Officer(ADMINS), A::Officers, || {
            get(officers::list)
        }),
        spec(Method::POST, "/api/v1/officers", Some("officer.create"), Officer(ADMINS), A::Officers, || {
            post(officers::create)
        }),
        spec(Method::GET, "/api/v1/officers/{username}", Some("officer.read"), Officer(ADMINS), A::Officers, || {
            get(officers::get)
        }),
        spec(Method::PUT, "/api/v1/officers/{username}", Some("officer.update"), Officer(ADMINS), A::Officers, || {
            put(officers::update)
        }),
        // partners (administration) and citizens' consents to them
        spec(Method::GET, "/api/v1/partners", Some("partner.list"), Officer(PARTNER_ADMINS), A::National, || {
            get(partners::list)
        }),
        spec(Method::POST, "/api/v1/partners", Some("partner.create"), Officer(PARTNER_ADMINS), A::National, || {
            post(partners::create)
        }),
        spec(Method::GET, "/api/v1/partners/{id}", Some("partner.read"), Officer(PARTNER_ADMINS), A::National, || {
            get(partners::get)
        }),
        spec(
            Method::PUT,
            "/api/v1/partners/{id}",
            Some("partner.update"),
            Officer(PARTNER_ADMINS),
            A::National,
            || put(partners::update),
        ),
        spec(
            Method::POST,
            "/api/v1/partners/{id}/status",
            Some("partner.status"),
            Officer(PARTNER_ADMINS),
            A::National,
            || post(partners::set_status),
        ),
        spec(
            Method::GET,
            "/api/v1/partners/{id}/webhook",
            Some("partner.webhook_read"),
            Officer(PARTNER_ADMINS),
            A::National,
            || get(webhooks::admin_status),
        ),
        spec(Method::GET, "/api/v1/persons/{ref}/consents", Some("consent.list"), Officer(EDITORS), A::Person, || {
            get(partners::consents)
        }),
        spec(
            Method::POST,
            "/api/v1/persons/{ref}/consents",
            Some("consent.grant"),
            Officer(EDITORS),
            A::Person,
            || post(partners::grant),
        ),
        spec(
            Method::POST,
            "/api/v1/persons/{ref}/consents/{id}/revoke",
            Some("consent.revoke"),
            Officer(EDITORS),
            A::Person,
            || post(partners::revoke),
        ),
        // data sharing: partner authentication and services
        spec(Method::POST, "/api/v1/oauth/token", Some("partner.token"), Public, A::None, || post(sharing::token)),
        spec(Method::GET, "/.well-known/jwks.json", None, Public, A::None, || get(sharing::jwks)),
        spec(Method::GET, "/.well-known/oauth-authorization-server", None, Public, A::None, || get(sharing::metadata)),
        spec(Method::POST, "/api/v1/sharing/verify", Some("partner.verify"), Partner(Service::Verify), A::None, || {
            post(sharing::verify)
        }),
        spec(
            Method::POST,
            "/api/v1/sharing/verify/batch",
            Some("partner.batch_verify"),
            Partner(Service::BatchVerify),
            A::None,
            sharing::batch_route,
        ),
        spec(
            Method::GET,
            "/api/v1/sharing/persons/{personal_id}",
            Some("partner.retrieve"),
            Partner(Service::Retrieve),
            A::None,
            || get(sharing::retrieve),
        ),
        spec(
            Method::GET,
            "/api/v1/sharing/pseudonyms/{personal_id}",
            Some("partner.pseudonym"),
            Partner(Service::Pseudonym),
            A::None,
            || get(sharing::pseudonym),
        ),
        spec(
            Method::POST,
            "/api/v1/sharing/card-validity",
            Some("partner.card_validity"),
            Partner(Service::CardValidity),
            A::None,
            || post(cards::validity),
        ),
        spec(Method::GET, "/api/v1/sharing/events", Some("partner.events"), Partner(Service::Events), A::None, || {
            get(sharing::events)
        }),
        // citizens: login, their own data, consents, who accessed their data
        spec(Method::POST, "/api/v1/citizen/login", Some("citizen.login"), Public, A::None, || post(citizen::login)),
        spec(Method::POST, "/api/v1/citizen/login/verify", Some("citizen.login_verify"), Public, A::None, || {
            post(citizen::verify)
        }),
        spec(Method::POST, "/api/v1/citizen/logout", None, Citizen, A::None, || post(citizen::logout)),
        spec(Method::GET, "/api/v1/citizen/me", Some("citizen.read"), Citizen, A::None, || get(citizen::me)),
        spec(Method::GET, "/api/v1/citizen/me/applications", Some("citizen.applications"), Citizen, A::None, || {
            get(citizen::applications)
        }),
        spec(Method::GET, "/api/v1/citizen/me/consents", Some("citizen.consents"), Citizen, A::None, || {
            get(citizen::consents)
        }),
        spec(Method::POST, "/api/v1/citizen/me/consents", Some("citizen.consent_grant"), Citizen, A::None, || {
            post(citizen::grant)
        }),
        spec(
            Method::POST,
            "/api/v1/citizen/me/consents/{id}/revoke",
            Some("citizen.consent_revoke"),
            Citizen,
            A::None,
            || post(citizen::revoke),
        ),
        spec(Method::GET, "/api/v1/citizen/me/access-log", Some("citizen.access_log"), Citizen, A::None, || {
            get(citizen::access_log)
        }),
        // OpenID Connect provider for e-government portals (clients authenticate in the handlers)
        spec(Method::GET, "/.well-known/openid-configuration", None, Public, A::None, || get(oidc::discovery)),
        spec(Method::GET, "/oidc/authorize", None, Public, A::None, || get(oidc::authorize)),
        spec(Method::POST, "/oidc/authorize", Some("oidc.login"), Public, A::None, || post(oidc::authorize_post)),
        spec(Method::POST, "/oidc/token", Some("oidc.token"), Public, A::None, || post(oidc::token)),
        spec(Method::GET, "/oidc/userinfo", Some("oidc.userinfo"), Public, A::None, || get(oidc::userinfo)),
        spec(Method::GET, "/oidc/logout", Some("oidc.logout"), Public, A::None, || get(oidc::logout)),
        spec(Method::POST, "/oidc/logout", Some("oidc.logout"), Public, A::None, || post(oidc::logout)),
        spec(
            Method::PUT,
            "/api/v1/sharing/webhook",
            Some("partner.webhook_register"),
            Partner(Service::Events),
            A::None,
            || put(webhooks::register),
        ),
        spec(
            Method::GET,
            "/api/v1/sharing/webhook",
            Some("partner.webhook_status"),
            Partner(Service::Events),
            A::None,
            || get(webhooks::partner_status),
        ),
        spec(
            Method::POST,
            "/api/v1/sharing/civil-events",
            Some("partner.civil_event"),
            Partner(Service::CivilEvents),
            A::None,
            || post(civil::receive),
        ),
        spec(
            Method::GET,
            "/api/v1/sharing/civil-events/{source_id}",
            Some("partner.civil_event_read"),
            Partner(Service::CivilEvents),
            A::None,
            || get(civil::get),
        ),
        // reference data (public lists)
        spec(Method::GET, "/api/v1/reference/provinces", None, Public, A::None, || get(reference::provinces)),
        spec(Method::GET, "/api/v1/reference/communes", None, Public, A::None, || get(reference::communes)),
        spec(Method::GET, "/api/v1/reference/communes/{scheme}/{code}", None, Public, A::None, || {
            get(reference::commune)
        }),
        spec(Method::GET, "/api/v1/reference/ethnicities", None, Public, A::None, || get(reference::ethnicities)),
        spec(Method::GET, "/api/v1/reference/religions", None, Public, A::None, || get(reference::religions)),
        spec(Method::GET, "/api/v1/reference/countries", None, Public, A::None, || get(reference::countries)),
        spec(Method::GET, "/api/v1/reference/id-provinces", None, Public, A::None, || get(reference::id_provinces)),
        // the officers' web application (HTML pages; same roles and areas as the API)
        spec(Method::GET, "/ui/assets/{asset}", None, Public, A::None, || get(web::asset)),
        spec(Method::GET, "/ui/lang/{lang}", None, Public, A::None, || get(web::switch_lang)),
        spec(Method::GET, "/ui/login", None, Public, A::None, || get(pages::login_page)),
        spec(Method::POST, "/ui/login", Some("auth.login"), Public, A::None, || post(pages::login)),
        spec(Method::GET, "/ui/mfa", None, Login, A::None, || get(pages::mfa_page)),
        spec(Method::POST, "/ui/mfa", Some("auth.mfa"), Login, A::None, || post(pages::mfa)),
        spec(Method::GET, "/ui/totp", None, Login, A::None, || get(pages::totp_page)),
        spec(Method::POST, "/ui/totp", Some("auth.totp_enrol"), Login, A::None, || post(pages::totp_start)),
        spec(Method::POST, "/ui/totp/confirm", Some("auth.totp_confirm"), Login, A::None, || post(pages::totp_confirm)),
        spec(Method::POST, "/ui/logout", Some("auth.logout"), Login, A::None, || post(pages::logout)),
        spec(Method::GET, "/ui", None, Officer(&Role::ALL), A::None, || get(pages::dashboard)),
        spec(Method::GET, "/ui/persons", Some("person.search"), Officer(READERS), A::Person, || get(pages::persons)),
        spec(Method::GET, "/ui/persons/{ref}", Some("person.read"), Officer(READERS), A::Person, || get(pages::person)),
        spec(Method::GET, "/ui/persons/{ref}/edit", Some("person.read"), Officer(EDITORS), A::Person, || {
            get(pages::edit_page)
        }),
        spec(Method::POST, "/ui/persons/{ref}/edit", Some("person.update"), Officer(EDITORS), A::Person, || {
            post(pages::edit)
        }),
        spec(Method::GET, "/ui/reviews", Some("review_pair.list"), Officer(ISSUERS), A::Person, || get(pages::reviews)),
        spec(Method::GET, "/ui/reviews/{id}", Some("review_pair.read"), Officer(ISSUERS), A::Person, || {
            get(pages::review)
        }),
        spec(Method::POST, "/ui/reviews/{id}", Some("review_pair.decide"), Officer(ISSUERS), A::Person, || {
            post(pages::review_decide)
        }),
        spec(Method::GET, "/ui/residence", Some("residence.list"), Officer(READERS), A::Person, || {
            get(web::residence::residence)
        }),
        spec(Method::GET, "/ui/residence/temporary", None, Officer(EDITORS), A::Person, || {
            get(web::residence::temporary_page)
        }),
        spec(Method::POST, "/ui/residence/temporary", Some("residence.submit"), Officer(EDITORS), A::Person, || {
            post(web::residence::temporary)
        }),
        spec(Method::GET, "/ui/audit", Some("audit.query"), Officer(AUDITORS), A::National, || get(pages::audit)),
        spec(Method::POST, "/ui/audit/verify", Some("audit.verify"), Officer(AUDITORS), A::National, || {
            post(pages::audit_verify)
        }),
        // identity cards: intake, workflow board, production centres, cards, chip verification
        spec(
            Method::GET,
            "/ui/persons/{ref}/card-application",
            Some("person.read"),
            Officer(CARD_OPERATORS),
            A::Person,
            || get(web::cards::intake_page),
        ),
        spec(
            Method::POST,
            "/ui/persons/{ref}/card-application",
            Some("card.apply"),
            Officer(CARD_OPERATORS),
            A::Person,
            || post(web::cards::intake).layer(axum::extract::DefaultBodyLimit::max(web::cards::INTAKE_MAX_BYTES)),
        ),
        spec(Method::GET, "/ui/cards", Some("card.list"), Officer(CARD_READERS), A::Person, || get(web::cards::board)),
        spec(Method::GET, "/ui/cards/applications/{id}", Some("card.read"), Officer(CARD_READERS), A::Person, || {
            get(web::cards::application)
        }),
        spec(
            Method::POST,
            "/ui/cards/applications/{id}/steps",
            Some("card.step"),
            Officer(CARD_STEPS),
            A::Person,
            || post(web::cards::step),
        ),
        spec(Method::GET, "/ui/production", None, Officer(PRODUCTION), A::National, || get(web::cards::production)),
        spec(
            Method::POST,
            "/ui/production/{id}/restock",
            Some("production.restock"),
            Officer(PRODUCTION),
            A::National,
            || post(web::cards::restock),
        ),
        spec(
            Method::POST,
            "/ui/production/{id}/run",
            Some("card.personalize"),
            Officer(PRODUCTION),
            A::National,
            || post(web::cards::run),
        ),
        spec(Method::GET, "/ui/cards/verify", None, Officer(CARD_READERS), A::None, || get(web::cards::verify_page)),
        spec(Method::POST, "/ui/cards/verify", None, Officer(CARD_READERS), A::None, || post(web::cards::verify)),
        spec(Method::GET, "/ui/cards/{serial}", Some("card.read"), Officer(CARD_READERS), A::Person, || {
            get(web::cards::card)
        }),
        spec(Method::GET, "/ui/cards/{serial}/chip/{file}", Some("card.chip"), Officer(PRODUCTION), A::Person, || {
            get(web::cards::chip_file)
        }),
        // web: intake uploads, change-request approval, partner administration
        spec(Method::GET, "/ui/intake", None, Officer(EDITORS), A::Person, || get(web::intake::list)),
        spec(Method::POST, "/ui/intake", Some("import.upload"), Officer(IMPORTERS), A::Person, || {
            post(web::intake::upload)
        }),
        spec(Method::GET, "/ui/intake/{id}", None, Officer(EDITORS), A::Person, || get(web::intake::batch)),
        spec(Method::GET, "/ui/intake/{id}/report.csv", Some("import.report"), Officer(EDITORS), A::Person, || {
            get(web::intake::report)
        }),
        spec(Method::GET, "/ui/requests", Some("change_request.list"), Officer(EDITORS), A::Person, || {
            get(web::requests::list)
        }),
        spec(Method::GET, "/ui/requests/{id}", Some("change_request.read"), Officer(EDITORS), A::Person, || {
            get(web::requests::request)
        }),
        spec(Method::POST, "/ui/requests/{id}", Some("change_request.decide"), Officer(EDITORS), A::Person, || {
            post(web::requests::decide)
        }),
        spec(Method::GET, "/ui/partners", Some("partner.list"), Officer(PARTNER_ADMINS), A::National, || {
            get(web::partners::list)
        }),
        spec(Method::POST, "/ui/partners", Some("partner.create"), Officer(PARTNER_ADMINS), A::National, || {
            post(web::partners::create)
        }),
        spec(Method::GET, "/ui/partners/{id}", Some("partner.read"), Officer(PARTNER_ADMINS), A::National, || {
            get(web::partners::partner)
        }),
        spec(
            Method::POST,
            "/ui/partners/{id}/status",
            Some("partner.status"),
            Officer(PARTNER_ADMINS),
            A::National,
            || post(web::partners::set_status),
        ),
        // residence: every procedure as a form, one application and its steps, address reviews
        spec(Method::GET, "/ui/residence/new", None, Officer(EDITORS), A::Person, || get(web::residence::new_index)),
        spec(Method::GET, "/ui/residence/new/{kind}", None, Officer(EDITORS), A::Person, || {
            get(web::residence::new_page)
        }),
        spec(Method::POST, "/ui/residence/new/{kind}", Some("residence.submit"), Officer(EDITORS), A::Person, || {
            post(web::residence::new_submit)
        }),
        spec(
            Method::GET,
            "/ui/residence/applications/{id}",
            Some("residence.read"),
            Officer(READERS),
            A::Person,
            || get(web::residence::application),
        ),
        spec(
            Method::POST,
            "/ui/residence/applications/{id}/receive",
            Some("residence.receive"),
            Officer(EDITORS),
            A::Person,
            || post(web::residence::receive),
        ),
        spec(
            Method::POST,
            "/ui/residence/applications/{id}/decision",
            Some("residence.decide"),
            Officer(ISSUERS),
            A::Person,
            || post(web::residence::decide),
        ),
        spec(Method::GET, "/ui/address-reviews", Some("address_review.list"), Officer(READERS), A::Person, || {
            get(web::residence::address_reviews)
        }),
        spec(
            Method::POST,
            "/ui/address-reviews/{ref}/{field}",
            Some("address_review.resolve"),
            Officer(ISSUERS),
            A::Person,
            || post(web::residence::resolve_address_review),
        ),
        // documentation and operations
        spec(Method::GET, "/api/openapi.json", None, Public, A::None, || get(crate::openapi)),
        spec(Method::GET, "/api/docs", None, Public, A::None, || get(crate::docs_page)),
        spec(Method::GET, "/api/docs/{asset}", None, Public, A::None, || get(crate::docs_asset)),
        spec(Method::GET, "/healthz", None, Public, A::None, || get(crate::healthz)),
        spec(Method::GET, "/readyz", None, Public, A::None, || get(crate::readyz)),
        spec(Method::GET, "/metrics", None, Public, A::None, || get(crate::metrics_text)),
        spec(Method::GET, "/", None, Public, A::None, || get(crate::root)),
    ]
}

/// The policy of a request's route (HEAD is answered by the GET route).
pub fn find<'a>(table: &'a [RouteSpec], method: &Method, path: &str) -> Option<&'a RouteSpec> {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    table.iter().find(|r| r.path == path && r.method == *method)
}

/// Adds every route of the table to a router.
pub fn add_routes(mut router: axum::Router<AppState>, table: &[RouteSpec]) -> axum::Router<AppState> {
    for r in table {
        router = router.route(r.path, (r.handler)());
    }
    router
}

/// Enforces the route table: authenticates, checks the session has finished logging in, the
/// roles and the national scope; hands the [`auth::Caller`] to the handler and names the
/// officer for the audit entry.
pub async fn authorize(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let Some(spec) = path.and_then(|p| find(&st.routes, req.method(), &p)) else {
        return next.run(req).await; // no such method here: the router answers 405
    };
    if spec.who == Who::Public {
        return next.run(req).await;
    }
    if spec.who == Who::Citizen {
        // Citizens authenticate with their own sessions, never with officer sessions.
        return citizen::authorize(&st, req, next).await;
    }
    if let Who::Partner(service) = spec.who {
        // Partners authenticate with access tokens, never with officer sessions.
        return sharing::authorize_partner(&st, service, req, next).await;
    }
    let page = spec.path.starts_with("/ui");
    let lang = web::lang_of(req.uri(), req.headers());
    let mut caller = match auth::authenticate(&st, req.headers()).await {
        Ok(c) => c,
        Err(e) if page => return web::refusal(None, lang, e),
        Err(e) => return e.into_response(),
    };
    let refuse = |e: ApiError, stage: Option<SessionStage>| {
        if page { web::refusal(stage, lang, e) } else { e.into_response() }
    };
    if let Who::Officer(roles) = spec.who {
        if caller.stage != SessionStage::Complete {
            let mut res = refuse(auth::login_unfinished(caller.stage), Some(caller.stage));
            res.extensions_mut().insert(caller.audit_actor());
            return res;
        }
        let acting: Vec<Role> = caller.officer.roles.iter().copied().filter(|r| roles.contains(r)).collect();
        if acting.is_empty() {
            let needed: Vec<&str> = roles.iter().map(|r| r.code()).collect();
            let mut res = refuse(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "Not permitted",
                    format!("this action needs one of the roles: {}", needed.join(", ")),
                ),
                None,
            );
            res.extensions_mut().insert(caller.audit_actor());
            return res;
        }
        caller.acting = acting;
    }
    if spec.area == Area::National && caller.officer.unit.level != UnitLevel::Ministry {
        let mut res = refuse(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Not permitted",
                "this route acts on the whole country (the audit trail, partners, card production): ministry-level \
                 officers only; provincial and commune auditors read a person's access log",
            ),
            None,
        );
        res.extensions_mut().insert(caller.audit_actor());
        return res;
    }
    let actor = caller.audit_actor();
    req.extensions_mut().insert(caller);
    let mut res = next.run(req).await;
    if res.extensions().get::<audit::AuditActor>().is_none() {
        res.extensions_mut().insert(actor);
    }
    res
}
