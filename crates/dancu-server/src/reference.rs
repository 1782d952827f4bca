//! Reference data endpoints: administrative units, conversions, code tables.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use dancu_core::FieldError;
use dancu_core::reference::{self, Commune, Conversion, Country, Ethnicity, IdProvince, Province, Religion, Scheme};
use serde::Serialize;

use crate::extract::QueryPairs;
use crate::problem::{ApiError, ApiResult, Problem};

fn scheme_param(q: &QueryPairs) -> ApiResult<Scheme> {
    match q.get("scheme") {
        None => Ok(Scheme::Y2025),
        Some(s) => Scheme::from_code(s).ok_or_else(|| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "validation",
                "Invalid query parameter",
                FieldError::new("scheme", "unknown_scheme", "the list is '2025' or 'legacy'").with_value(s),
            )
        }),
    }
}

/// Provinces of the 2025 list (default) or the legacy list.
#[utoipa::path(get, path = "/api/v1/reference/provinces", tag = "reference",
    params(("scheme" = Option<String>, Query, description = "'2025' (default) or 'legacy'")),
    responses((status = 200, body = Vec<Province>), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn provinces(q: QueryPairs) -> ApiResult<Json<&'static [Province]>> {
    q.check(&["scheme"])?;
    Ok(Json(reference::provinces(scheme_param(&q)?)))
}

/// Communes of a list, optionally of one province.
#[utoipa::path(get, path = "/api/v1/reference/communes", tag = "reference",
    params(("scheme" = Option<String>, Query, description = "'2025' (default) or 'legacy'"),
           ("province" = Option<String>, Query, description = "province code of that list")),
    responses((status = 200, body = Vec<Commune>), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn communes(q: QueryPairs) -> ApiResult<Json<Vec<&'static Commune>>> {
    q.check(&["scheme", "province"])?;
    let scheme = scheme_param(&q)?;
    let province = q.get("province");
    if let Some(p) = province
        && reference::province(scheme, p).is_none()
    {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "validation",
            "Invalid query parameter",
            FieldError::new("province", "unknown_code", format!("not a province code of the {} list", scheme.code()))
                .with_value(p),
        ));
    }
    Ok(Json(reference::communes(scheme).iter().filter(|c| province.is_none_or(|p| c.province_code == p)).collect()))
}

/// A commune and, for a legacy commune, where it went on 1 July 2025.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CommuneDetail {
    pub commune: &'static Commune,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub became: Vec<&'static Conversion>,
}

/// One commune by list and code.
#[utoipa::path(get, path = "/api/v1/reference/communes/{scheme}/{code}", tag = "reference",
    params(("scheme" = String, Path, description = "'2025' or 'legacy'"), ("code" = String, Path, description = "commune code")),
    responses((status = 200, body = CommuneDetail), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn commune(Path((scheme, code)): Path<(String, String)>) -> ApiResult<Json<CommuneDetail>> {
    let scheme = Scheme::from_code(&scheme).ok_or_else(ApiError::not_found)?;
    let commune = reference::commune(scheme, &code).ok_or_else(ApiError::not_found)?;
    let became = if scheme == Scheme::Legacy { reference::conversions_from(&code) } else { Vec::new() };
    Ok(Json(CommuneDetail { commune, became }))
}

#[utoipa::path(get, path = "/api/v1/reference/ethnicities", tag = "reference", responses((status = 200, body = Vec<Ethnicity>)))]
pub async fn ethnicities() -> Json<&'static [Ethnicity]> {
    Json(reference::ethnicities())
}

#[utoipa::path(get, path = "/api/v1/reference/religions", tag = "reference", responses((status = 200, body = Vec<Religion>)))]
pub async fn religions() -> Json<&'static [Religion]> {
    Json(reference::religions())
}

#[utoipa::path(get, path = "/api/v1/reference/countries", tag = "reference", responses((status = 200, body = Vec<Country>)))]
pub async fn countries() -> Json<&'static [Country]> {
    Json(reference::countries())
}

/// The province prefixes of personal ID numbers (the 63 legacy provinces; valid forever).
#[utoipa::path(get, path = "/api/v1/reference/id-provinces", tag = "reference", responses((status = 200, body = Vec<IdProvince>)))]
pub async fn id_provinces() -> Json<&'static [IdProvince]> {
    Json(reference::id_provinces())
}
