//! The OpenAPI 3 document, generated from the handlers' annotations so it cannot drift.
//!
//! utoipa's annotations cannot say everything: the modifiers here add what applies to every
//! route (the request id the middleware handles) and mark the response headers that are always
//! sent as `required`, so that a client, or schemathesis, may rely on them.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::{
    Modify, OpenApi, PartialSchema, ToSchema,
    openapi::{
        HeaderBuilder, RefOr, Required,
        path::{Operation, ParameterBuilder, ParameterIn},
        schema::{ObjectBuilder, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::{headers, health, metrics, reports};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "skype-gateway",
        description = "Microsoft Graph's Skype for Business activity-count report as cached JSON.\n\n\
            Every error answer is `{\"error\":{\"code\":\"...\",\"message\":\"...\"}}` (schema \
            `ErrorBody`), including those of routes not listed here: any other path answers \
            `404` with code `notFound`, any other method on a listed path `405` with code \
            `methodNotAllowed` and `Allow: GET`. Every answer carries `X-Request-Id`."
    ),
    paths(
        reports::activity_counts,
        health::livez,
        health::healthz,
        health::readyz,
        metrics::metrics,
        openapi_json
    ),
    modifiers(&BearerAuth, &RequestId, &RequiredHeaders, &NoEmptyLicense),
    tags(
        (name = "reports", description = "Graph usage reports"),
        (name = "health", description = "Probes"),
        (name = "operations", description = "Metrics and this document"),
    )
)]
pub struct ApiDoc;

/// utoipa 6 has no `required` for a response header. These headers are sent on every answer
/// that documents them; any other documented header (`Retry-After`) only sometimes.
const ALWAYS_SENT: &[&str] = &[
    "ETag",
    "Cache-Control",
    "Age",
    "Vary",
    "X-Cache-Status",
    "WWW-Authenticate",
    "X-Request-Id",
];

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A Microsoft Graph access token with Reports.Read.All; forwarded to Graph",
                    ))
                    .build(),
            ),
        );
    }
}

/// utoipa fills `info.license` from Cargo.toml, which names none: an empty license says nothing.
struct NoEmptyLicense;

impl Modify for NoEmptyLicense {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if openapi
            .info
            .license
            .as_ref()
            .is_some_and(|l| l.name.is_empty())
        {
            openapi.info.license = None;
        }
    }
}

/// The middleware takes a request id from every request and answers it on every response.
struct RequestId;

impl Modify for RequestId {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for operation in operations(openapi) {
            operation.parameters.get_or_insert_with(Vec::new).push(
                ParameterBuilder::new()
                    .name("X-Request-Id")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Your id for this request, sent on to Graph as `client-request-id` and \
                         answered back; one that is not 1 to 128 of `A-Z a-z 0-9 - _ . :` is \
                         replaced by a generated UUID",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build()
                    .into(),
            );
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.insert(
                        "X-Request-Id".into(),
                        HeaderBuilder::new()
                            .schema(Some(headers::RequestId::schema()))
                            .description(Some("The caller's request id, or a generated one"))
                            .build()
                            .into(),
                    );
                }
            }
        }
    }
}

struct RequiredHeaders;

impl Modify for RequiredHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for operation in operations(openapi) {
            for response in operation.responses.responses.values_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                for (name, header) in &mut response.headers {
                    if let RefOr::T(header) = header
                        && ALWAYS_SENT.contains(&name.as_str())
                    {
                        // A Header Object's fields are a Parameter Object's; utoipa lacks this one.
                        header
                            .extensions
                            .get_or_insert_with(Default::default)
                            .insert("required".into(), true.into());
                    }
                }
            }
        }
    }
}

fn operations(openapi: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// An OpenAPI document: the top-level members every version has.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Document {
    openapi: String,
    info: serde_json::Map<String, serde_json::Value>,
    paths: serde_json::Map<String, serde_json::Value>,
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this gateway", body = inline(Document))))]
pub async fn openapi_json() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::CacheStatus;

    #[test]
    fn x_cache_status_is_documented_as_the_values_the_gateway_sends() {
        let schema = serde_json::to_value(CacheStatus::schema()).unwrap();
        let sent: Vec<_> = CacheStatus::ALL.iter().map(|s| s.header_value()).collect();
        assert_eq!(schema["enum"], serde_json::json!(sent));
    }
}
