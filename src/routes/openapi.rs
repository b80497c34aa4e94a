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

use super::{headers, health, index, metrics, reports};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "skype-gateway",
        description = "Microsoft Graph's Microsoft 365 usage reports as cached JSON: every report of \
            the catalog (`GET /reports`) at its own route, each with its own row schema.\n\n\
            Every error answer is `{\"error\":{\"code\":\"...\",\"message\":\"...\"}}` (schema \
            `ErrorBody`), including those of routes not listed here: any other path answers \
            `404` with code `notFound`, any other method on a listed path `405` with code \
            `methodNotAllowed` and `Allow: GET, HEAD`. Every route answers HEAD as it answers \
            GET, with the same status and headers (`Content-Length` included) and no body. Every \
            answer carries `X-Request-Id`."
    ),
    paths(
        index::index,
        reports::activity_counts,
        reports::catalog_json,
        health::livez,
        health::healthz,
        health::readyz,
        metrics::metrics,
        openapi_json
    ),
    modifiers(
        &CatalogPaths,
        &BearerAuth,
        &RequestId,
        &RequiredHeaders,
        &HeadOperations,
        &NoEmptyLicense
    ),
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

/// Every catalog report gets the mission route's operation (parameters, answers, headers) at
/// its own path, with its own body schema: the row of that report, each field of its kind and
/// nullable, as the parser writes them.
struct CatalogPaths;

impl Modify for CatalogPaths {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let template = openapi
            .paths
            .paths
            .remove(MISSION_PATH)
            .expect("the report operation is documented");
        let components = openapi.components.get_or_insert_with(Default::default);
        for spec in crate::catalog::all() {
            let path = spec.route_template();
            let mut item = template.clone();
            let operation = item.get.as_mut().expect("a GET");
            operation.operation_id = Some(spec.function.to_owned());
            operation.summary = Some(format!("Graph's {} report", spec.function));
            let name = format!("{}Report", spec.function);
            // The mission's report keeps the schema it was documented with (`Report`, whose
            // rows are `ReportRow`): clients generated from it keep working.
            let mission = path == MISSION_PATH;
            if let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200")
                && !mission
                && let Some(RefOr::T(json)) = ok.content.get_mut("application/json")
            {
                json.schema = Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(&name)));
                json.example = None;
                json.examples.clear();
            }
            if spec.parameter == crate::catalog::Parameter::PeriodOrDate {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let RefOr::T(parameter) = parameter
                        && parameter.name == "period"
                    {
                        parameter.description = Some(
                            "Report period (any letter case), or a day `YYYY-MM-DD`: the \
                             report of that day"
                                .into(),
                        );
                        parameter.schema = Some(schema(serde_json::json!({"anyOf": [
                            {"$ref": "#/components/schemas/Period"},
                            {"type": "string", "format": "date"}
                        ]})));
                    }
                }
            }
            if !mission {
                components.schemas.insert(name, report_schema(spec));
            }
            openapi.paths.paths.insert(path, item);
        }
    }
}

/// The documented path of the report operation, which [`CatalogPaths`] repeats per report.
const MISSION_PATH: &str = "/skype/activity-counts/{period}";

fn schema(value: serde_json::Value) -> RefOr<utoipa::openapi::schema::Schema> {
    serde_json::from_value(value).expect("a schema")
}

/// The answer of one catalog report: its period (or day), refresh date, and rows.
fn report_schema(spec: &crate::catalog::ReportSpec) -> RefOr<utoipa::openapi::schema::Schema> {
    use crate::catalog::Kind;
    use serde_json::json;
    let mut properties = serde_json::Map::new();
    for column in spec.columns {
        let value = match column.kind {
            Kind::Integer => json!({"type": ["integer", "null"], "minimum": 0}),
            Kind::Date => json!({"type": ["string", "null"], "format": "date"}),
            Kind::Boolean => json!({"type": ["boolean", "null"]}),
            Kind::String => json!({"type": ["string", "null"]}),
            Kind::List => json!({"type": ["array", "null"], "items": {"type": "string"}}),
            Kind::Duration => json!({"type": ["string", "null"], "pattern": "^P"}),
        };
        let mut value = value;
        value["description"] = json!(format!("CSV column `{}`", column.csv));
        if column.deprecated {
            value["deprecated"] = json!(true);
        }
        properties.insert(column.json.to_owned(), value);
        // A missing optional or deprecated column is answered `null` like an empty cell, so
        // every field is present.
    }
    let required: Vec<&str> = spec.columns.iter().map(|c| c.json).collect();
    let row = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    let (window, window_schema) = match spec.parameter {
        crate::catalog::Parameter::Period => (
            json!({"required": ["period"]}),
            json!({"period": {"$ref": "#/components/schemas/Period"}}),
        ),
        crate::catalog::Parameter::PeriodOrDate => (
            json!({"oneOf": [{"required": ["period"]}, {"required": ["date"]}]}),
            json!({
                "period": {"$ref": "#/components/schemas/Period"},
                "date": {"type": "string", "format": "date", "description": "The day asked for"}
            }),
        ),
    };
    let mut properties = window_schema.as_object().cloned().unwrap_or_default();
    properties.insert(
        "reportRefreshDate".into(),
        json!({"type": ["string", "null"], "format": "date",
               "description": "The refresh date of the rows; null when the report has no rows"}),
    );
    properties.insert(
        "value".into(),
        json!({"type": "array", "items": row,
        "description": match spec.rows {
            crate::catalog::Rows::PerEntity => "The rows, in Graph's order",
            _ => "The rows, newest first",
        }}),
    );
    let mut report = json!({
        "type": "object",
        "description": format!("Graph's `{}` report", spec.function),
        "properties": properties,
        "required": ["reportRefreshDate", "value"],
        "additionalProperties": false,
    });
    for (key, value) in window.as_object().into_iter().flatten() {
        if key == "required" {
            // A report that takes only a period always answers with it.
            let required = report["required"].as_array_mut().expect("a list");
            required.extend(value.as_array().into_iter().flatten().cloned());
        } else {
            report[key] = value.clone();
        }
    }
    schema(report)
}

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

/// Every GET operation again as HEAD: the same parameters, statuses and headers, no content.
/// Runs after the modifiers that complete the GET operations, so the copies have it all.
struct HeadOperations;

impl Modify for HeadOperations {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let Some(get) = &item.get else { continue };
            let mut head = get.clone();
            head.operation_id = get.operation_id.as_ref().map(|id| format!("{id}Head"));
            head.summary =
                Some("The status and headers of the GET answer, without its body".to_owned());
            for response in head.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.content.clear();
                }
            }
            item.head = Some(head);
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
