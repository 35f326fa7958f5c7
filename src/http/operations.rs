//! Edits of a router's OpenAPI operations, made once its document is built:
//! ids named after the router's surface (`admin_create_token`,
//! `settings_create_token`), so that the merged document never has two
//! operations with one id, and request bodies a route may go without.

use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Operation;

/// Calls `f` with every operation of the document and its path.
pub(crate) fn for_each_operation(openapi: &mut OpenApi, mut f: impl FnMut(&str, &mut Operation)) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            f(path, operation);
        }
    }
}

/// Gives every operation of a router's document an id that names its
/// surface (`admin_create_token`, `settings_create_token`), so clients
/// generated from the merged document never see two operations with one id.
pub(crate) fn prefix_operation_ids(openapi: &mut OpenApi, surface: &str) {
    for_each_operation(openapi, |_, operation| {
        if let Some(id) = &mut operation.operation_id
            && !id.starts_with(&format!("{surface}_"))
        {
            *id = format!("{surface}_{id}");
        }
    });
}

/// Marks the request body of `method path` optional: the route takes an
/// empty body (or none) as `{}`.
pub(crate) fn optional_request_body(openapi: &mut OpenApi, path_suffix: &str, method: &str) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        if !path.ends_with(path_suffix) {
            continue;
        }
        let operation = match method {
            "post" => item.post.as_mut(),
            "put" => item.put.as_mut(),
            "patch" => item.patch.as_mut(),
            _ => None,
        };
        if let Some(body) = operation.and_then(|operation| operation.request_body.as_mut()) {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
}
