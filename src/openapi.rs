//! The OpenAPI 3.1 document of the admin API and the demo API, at `GET /openapi.json`.

use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use utoipa::OpenApi;

/// The OpenAPI description of the server.
#[derive(OpenApi)]
#[openapi(info(
    title = "tokengate",
    description = "API tokens and the gate in front of the API"
))]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| String::from("{}"))
}

pub(crate) async fn serve() -> Response {
    let mut response = document().into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
