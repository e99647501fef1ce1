//! The agent console (`/console`), the supervisor dashboard (`/dashboard`), the reports
//! (`/reports`) and the admin pages (`/admin`): static pages and scripts compiled into the
//! binary (no CDN, nothing fetched at run time), served with a strict Content-Security-Policy.
//! Everything live comes over the websockets; the reports and admin pages speak REST only.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;

/// Scripts only from this origin, sockets to it, images from it or from blobs (media the
/// console fetched with its token); no inline script or style.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' blob: data:; \
    media-src 'self' blob:; style-src 'self'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'; form-action 'self'";

/// (name, content type, body) of every embedded asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/api.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/console.js"),
    ),
    (
        "tools.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/tools.js"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard.js"),
    ),
    (
        "reports.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/reports.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/admin.js"),
    ),
    (
        "admin-forms.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/admin-forms.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/style.css"),
    ),
];

fn page(body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

pub async fn console() -> HttpResponse {
    page(include_str!("../../assets/console.html"))
}

pub async fn dashboard() -> HttpResponse {
    page(include_str!("../../assets/dashboard.html"))
}

pub async fn reports() -> HttpResponse {
    page(include_str!("../../assets/reports.html"))
}

pub async fn admin() -> HttpResponse {
    page(include_str!("../../assets/admin.html"))
}

pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(asset, _, _)| *asset == name.as_str())
        .ok_or_else(|| ApiError::NotFound("asset".to_owned()))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Assets change with the binary; revalidate so an upgrade is seen at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(*body))
}
