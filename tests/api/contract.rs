//! The OpenAPI document as a contract: what `/openapi.json` serves is a valid OpenAPI 3.1
//! document, it names the routes, parameters, statuses, headers and schemas the README
//! documents, and real answers of the gateway (bodies, content types and headers, errors
//! included) match it. Schemas are checked with the `jsonschema` crate, `$ref`s resolved into
//! the document's own components.
//!
//! `schemas/openapi-3.1.json` is the OpenAPI Initiative's schema of 3.1 documents
//! (`$id` `https://spec.openapis.org/oas/3.1/schema/2022-10-07`, Apache-2.0) as shipped in the
//! PyPI package openapi-spec-validator 0.9.0, vendored so that the test needs no network.

use std::{collections::BTreeSet, time::Duration};

use graph_simulator::{Fault, Simulator};
use serde_json::{Value, json};

use crate::helpers::{Answer, GatewayProcess, TestApp, spawn_app, spawn_app_with, token_of};

const REPORT: &str = "/skype/activity-counts/{period}";
const OPENAPI_3_1_SCHEMA: &str = include_str!("schemas/openapi-3.1.json");

struct Contract {
    doc: Value,
}

impl Contract {
    async fn served_by(app: &TestApp) -> Contract {
        let answer = app.get("/openapi.json", &[]).await;
        assert_eq!(answer.status, 200);
        Contract { doc: answer.json() }
    }

    fn operation(&self, path: &str) -> &Value {
        let operation = &self.doc["paths"][path]["get"];
        assert!(operation.is_object(), "GET {path} is not documented");
        operation
    }

    /// `value`, or what its `$ref` into this document points at.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(target) => self
                .doc
                .pointer(target.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{target} does not resolve")),
            None => value,
        }
    }

    /// A validator for `schema`, a part of the document, whose `#/components/...` references
    /// resolve against the document's components.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let Value::Object(schema) = schema else {
            panic!("not a schema object: {schema}");
        };
        let mut root = schema.clone();
        root.insert("components".into(), self.doc["components"].clone());
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .unwrap_or_else(|e| panic!("the schema does not compile ({e}): {schema:?}"))
    }

    fn violations(&self, schema: &Value, instance: &Value) -> Vec<String> {
        self.validator(schema)
            .iter_errors(instance)
            .map(|e| format!("{e} (at {})", e.instance_path()))
            .collect()
    }

    /// Every way `answer` to `GET path` departs from the document: a status it does not list,
    /// a content type or body its response does not describe, a required header missing, or a
    /// header value that the header's schema refuses.
    fn check(&self, path: &str, answer: &Answer) -> Vec<String> {
        let status = answer.status.as_u16();
        let Some(response) = self.operation(path)["responses"].get(status.to_string()) else {
            return vec![format!("status {status} is not documented")];
        };
        let mut problems = Vec::new();
        match response.get("content").and_then(Value::as_object) {
            None if answer.body.is_empty() => {}
            None => problems.push("a body where the document describes none".to_owned()),
            Some(content) => {
                let received = answer.header("content-type").unwrap_or_default();
                match content
                    .iter()
                    .find(|(documented, _)| essence(documented) == essence(received))
                {
                    None => problems.push(format!(
                        "content type {received:?} is not one of {:?}",
                        content.keys().collect::<Vec<_>>()
                    )),
                    Some((media_type, entry)) => {
                        let body = if essence(media_type) == "application/json" {
                            serde_json::from_slice(&answer.decoded())
                                .unwrap_or_else(|e| Value::String(format!("not JSON: {e}")))
                        } else {
                            Value::String(String::from_utf8_lossy(&answer.body).into_owned())
                        };
                        problems.extend(
                            self.violations(&entry["schema"], &body)
                                .into_iter()
                                .map(|v| format!("body: {v}")),
                        );
                    }
                }
            }
        }
        let headers = response.get("headers").and_then(Value::as_object);
        for (name, header) in headers.into_iter().flatten() {
            match answer.header(name) {
                None if header["required"] == true => {
                    problems.push(format!("required header {name} is missing"));
                }
                None => {}
                Some(text) => problems.extend(
                    self.violations(&header["schema"], &typed(text, &header["schema"]))
                        .into_iter()
                        .map(|v| format!("header {name}: {v}")),
                ),
            }
        }
        problems
    }

    fn assert_conforms(&self, path: &str, answer: &Answer) {
        let problems = self.check(path, answer);
        assert!(
            problems.is_empty(),
            "GET {path} answered {} as the document does not describe:\n  {}\nheaders: {:?}\nbody: {}",
            answer.status,
            problems.join("\n  "),
            answer.headers,
            String::from_utf8_lossy(&answer.body)
        );
    }
}

/// A media type without its parameters, lower case.
fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A header's text as the JSON value its schema describes: a number for an integer header.
fn typed(text: &str, schema: &Value) -> Value {
    let integer = schema["type"] == "integer"
        || schema["type"]
            .as_array()
            .is_some_and(|types| types.contains(&json!("integer")));
    match text.parse::<i64>() {
        Ok(n) if integer => json!(n),
        _ => Value::String(text.to_owned()),
    }
}

/// Every `$ref` in `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target.clone());
            }
            map.values().for_each(|v| references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

fn openapi_3_1_violations(doc: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(OPENAPI_3_1_SCHEMA).unwrap();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the OpenAPI 3.1 schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect()
}

#[actix_web::test]
async fn the_document_is_valid_openapi_3_1() {
    let app = spawn_app().await;
    let contract = Contract::served_by(&app).await;

    let violations = openapi_3_1_violations(&contract.doc);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    assert!(
        contract.doc["openapi"]
            .as_str()
            .unwrap()
            .starts_with("3.1.")
    );
    // The OpenAPI schema looks neither at references nor into Schema Objects.
    let mut targets = Vec::new();
    references(&contract.doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        assert!(target.starts_with("#/components/"), "{target}");
        assert!(
            contract.doc.pointer(&target[1..]).is_some(),
            "{target} does not resolve"
        );
    }
    // Compiling a schema validates it against JSON Schema 2020-12's meta-schema.
    for schema in contract.doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .values()
    {
        contract.validator(schema);
    }
}

#[actix_web::test]
async fn a_broken_document_is_not_valid_openapi_3_1() {
    let app = spawn_app().await;
    let contract = Contract::served_by(&app).await;

    let mut without_info = contract.doc.clone();
    without_info.as_object_mut().unwrap().remove("info");
    let mut bad_parameter = contract.doc.clone();
    bad_parameter["paths"][REPORT]["get"]["parameters"][0]["in"] = json!("body");
    let mut bad_status = contract.doc.clone();
    bad_status["paths"]["/livez"]["get"]["responses"]["20x"] = json!({"description": "?"});

    for broken in [without_info, bad_parameter, bad_status] {
        assert!(!openapi_3_1_violations(&broken).is_empty());
    }
}

#[actix_web::test]
async fn the_document_describes_what_the_design_promises() {
    let app = spawn_app().await;
    let contract = Contract::served_by(&app).await;
    let doc = &contract.doc;
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let set =
        |items: &[&str]| -> BTreeSet<String> { items.iter().map(|s| s.to_string()).collect() };

    let mut paths = set(&[
        "/",
        "/livez",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/reports",
    ]);
    paths.extend(skype_gateway::catalog::all().map(|spec| spec.route_template()));
    assert!(paths.contains(REPORT));
    assert_eq!(
        keys(&doc["paths"]),
        paths,
        "every catalog report and the probes"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        let (get, head) = (&item["get"], &item["head"]);
        assert!(head.is_object(), "HEAD {path} is not documented");
        assert_eq!(
            keys(&head["responses"]),
            keys(&get["responses"]),
            "HEAD {path}"
        );
        for (status, response) in head["responses"].as_object().unwrap() {
            assert!(
                response.get("content").is_none(),
                "HEAD {path} {status} has content"
            );
            assert_eq!(
                response["headers"], get["responses"][status]["headers"],
                "HEAD {path} {status}"
            );
        }
    }

    let report = contract.operation(REPORT);
    let parameter = |name: &str| {
        report["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    };
    let period = parameter("period");
    assert_eq!(
        (&period["in"], &period["required"]),
        (&json!("path"), &json!(true))
    );
    assert_eq!(
        contract.resolve(&period["schema"])["enum"],
        json!(["D7", "D30", "D90", "D180"])
    );
    for name in ["If-None-Match", "X-Request-Id"] {
        let header = parameter(name);
        assert_eq!(
            (&header["in"], &header["required"]),
            (&json!("header"), &json!(false))
        );
    }
    assert_eq!(report["security"], json!([{"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer",
               "description": doc["components"]["securitySchemes"]["bearer"]["description"]})
    );

    let responses = &report["responses"];
    assert_eq!(
        keys(responses),
        set(&[
            "200", "304", "400", "401", "403", "429", "431", "502", "503", "504"
        ])
    );
    for status in ["400", "401", "403", "429", "431", "502", "503", "504"] {
        assert_eq!(
            responses[status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{status}"
        );
    }
    let required = |status: &str, header: &str| &responses[status]["headers"][header]["required"];
    for status in ["200", "304"] {
        for header in [
            "ETag",
            "Cache-Control",
            "Age",
            "Vary",
            "X-Cache-Status",
            "X-Request-Id",
        ] {
            assert_eq!(required(status, header), &json!(true), "{status} {header}");
        }
    }
    assert_eq!(required("401", "WWW-Authenticate"), &json!(true));
    // Sent only with a compressed body.
    assert_eq!(required("200", "Content-Encoding"), &Value::Null);
    assert_eq!(
        responses["200"]["headers"]["Vary"]["schema"]["pattern"],
        "^Accept-Encoding, Authorization(, [A-Za-z-]+)*$"
    );
    let parameters = &report["parameters"];
    assert!(
        parameters
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Accept-Encoding" && p["in"] == "header"),
        "{parameters}"
    );
    assert_eq!(
        responses["429"]["headers"]["Retry-After"]["schema"]["type"],
        "integer"
    );

    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["ErrorBody"]["required"], json!(["error"]));
    assert_eq!(
        schemas["ErrorDetail"]["required"],
        json!(["code", "message"])
    );
    let report_schema = &schemas["Report"];
    let row = &schemas["ReportRow"];
    for count in ["peerToPeer", "organized", "participated"] {
        assert_eq!(
            row["properties"][count]["type"],
            json!(["integer", "null"]),
            "{count}"
        );
    }
    assert_eq!(row["required"].as_array().unwrap().len(), 6);
    assert_eq!(
        report_schema["properties"]["reportRefreshDate"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(
        report_schema["required"],
        json!(["period", "reportRefreshDate", "value"])
    );
    // Every other catalog report has its own row schema, its columns under their JSON names.
    for spec in skype_gateway::catalog::all().skip(1) {
        let schema = &schemas[format!("{}Report", spec.function)];
        let row = &schema["properties"]["value"]["items"]["properties"];
        for column in spec.columns {
            assert!(
                row[column.json].is_object(),
                "{}: {}",
                spec.function,
                column.json
            );
        }
        let path = spec.route_template();
        let ok = &contract.operation(&path)["responses"]["200"]["content"]["application/json"];
        assert_eq!(
            ok["schema"]["$ref"],
            format!("#/components/schemas/{}Report", spec.function)
        );
    }
    assert_eq!(
        keys(&contract.operation("/readyz")["responses"]),
        set(&["200", "503"])
    );
}

#[actix_web::test]
async fn the_documents_examples_match_its_schemas() {
    let app = spawn_app().await;
    let contract = Contract::served_by(&app).await;
    let mut checked = 0;

    for schema in contract.doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .values()
    {
        if let Some(example) = schema.get("example") {
            let violations = contract.violations(schema, example);
            assert!(violations.is_empty(), "{example}: {violations:?}");
            checked += 1;
        }
    }
    for item in contract.doc["paths"].as_object().unwrap().values() {
        for response in item["get"]["responses"].as_object().unwrap().values() {
            for media in response["content"]
                .as_object()
                .into_iter()
                .flat_map(|c| c.values())
            {
                if let Some(example) = media.get("example") {
                    let violations = contract.violations(&media["schema"], example);
                    assert!(violations.is_empty(), "{example}: {violations:?}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 5, "only {checked} examples");
}

#[actix_web::test]
async fn report_answers_match_the_document() {
    let app = spawn_app().await;
    let contract = Contract::served_by(&app).await;
    let token = token_of("contoso");

    let miss = app
        .report_with("D90", &token, &[("X-Request-Id", "contract-1")])
        .await;
    assert_eq!((miss.status.as_u16(), miss.cache_status()), (200, "MISS"));
    assert_eq!(miss.header("x-request-id"), Some("contract-1"));
    // The nullable counts are exercised: the simulator leaves some cells empty.
    let rows = miss.json()["value"].as_array().unwrap().clone();
    assert!(rows.iter().any(|row| row["peerToPeer"].is_null()));
    contract.assert_conforms(REPORT, &miss);

    let hit = app.report("d90", &token).await;
    assert_eq!((hit.status.as_u16(), hit.cache_status()), (200, "HIT"));
    contract.assert_conforms(REPORT, &hit);

    let etag = miss.header("etag").unwrap();
    let not_modified = app
        .report_with("D90", &token, &[("If-None-Match", etag)])
        .await;
    assert_eq!(not_modified.status, 304);
    contract.assert_conforms(REPORT, &not_modified);

    for coding in ["gzip", "br"] {
        let compressed = app
            .report_with("D90", &token, &[("Accept-Encoding", coding)])
            .await;
        assert_eq!(compressed.header("content-encoding"), Some(coding));
        contract.assert_conforms(REPORT, &compressed);
        let etag = compressed.header("etag").unwrap();
        let not_modified = app
            .report_with(
                "D90",
                &token,
                &[("Accept-Encoding", coding), ("If-None-Match", etag)],
            )
            .await;
        assert_eq!(not_modified.status, 304);
        contract.assert_conforms(REPORT, &not_modified);
    }
}

#[actix_web::test]
async fn error_answers_match_the_document() {
    let app = spawn_app_with(|c| {
        c.max_retries = 0;
        c.upstream_timeout = Duration::from_millis(300);
    })
    .await;
    let contract = Contract::served_by(&app).await;
    let token = token_of("contoso");
    let status = |status, retry_after| Fault::Status {
        status,
        retry_after,
    };

    let mut answers = vec![
        (400, "invalidPeriod", app.report("D8", &token).await),
        (
            401,
            "missingToken",
            app.get("/skype/activity-counts/D7", &[]).await,
        ),
    ];
    let refused = token_of("fabrikam");
    app.sim.reject_token(&refused);
    answers.push((
        401,
        "InvalidAuthenticationToken",
        app.report("D7", &refused).await,
    ));
    // A token of its own for each: Graph's refusal and its 429 are remembered for the token
    // (and its app) that met them.
    for (fault, code, expected) in [
        (status(429, Some(120)), "throttled", 429),
        (status(500, None), "upstreamUnavailable", 502),
        (Fault::MalformedCsv, "invalidReport", 502),
        (Fault::MissingLocation, "untrustedRedirect", 502),
        (Fault::Delay(Duration::from_secs(2)), "upstreamTimeout", 504),
        (status(403, None), "Forbidden", 403),
    ] {
        app.sim.fail_next(1, fault);
        answers.push((expected, code, app.report("D7", &token_of("contoso")).await));
    }

    for (expected, code, answer) in &answers {
        assert_eq!(
            (answer.status.as_u16(), answer.error_code()),
            (*expected, code.to_string())
        );
        contract.assert_conforms(REPORT, answer);
    }
    let throttled = &answers.iter().find(|(s, ..)| *s == 429).unwrap().2;
    assert_eq!(throttled.header("retry-after"), Some("120"));
}

#[actix_web::test]
async fn probes_metrics_and_the_document_itself_match_the_document() {
    let app = spawn_app().await;
    let contract = Contract::served_by(&app).await;

    for path in [
        "/",
        "/livez",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        let answer = app.get(path, &[]).await;
        assert_eq!(answer.status, 200, "{path}");
        contract.assert_conforms(path, &answer);
    }
}

#[actix_web::test]
async fn readiness_while_shutting_down_matches_the_document() {
    let sim = Simulator::start().await.unwrap();
    let gateway = GatewayProcess::start(&sim, &["--shutdown-drain", "2s"], "info");
    let app = TestApp {
        address: gateway.address.clone(),
        sim,
        http: awc::Client::default(),
    };
    // Served first: a SIGTERM in the instant after the port is logged, before the gateway
    // has installed its handler, kills the process outright.
    let contract = Contract::served_by(&app).await;
    gateway.signal("TERM");

    let mut answer = app.get("/readyz", &[]).await;
    for _ in 0..50 {
        if answer.status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        answer = app.get("/readyz", &[]).await;
    }

    assert_eq!(answer.status, 503);
    contract.assert_conforms("/readyz", &answer);
    gateway.stop();
}

/// The checks above can fail: a document that says something else about the same real answers
/// is caught, whether it is wrong about the body, a header, or the status.
#[actix_web::test]
async fn the_check_catches_a_document_that_is_wrong_about_an_answer() {
    let app = spawn_app().await;
    let served = Contract::served_by(&app).await;
    let report = app.report("D90", &token_of("contoso")).await;
    let unauthorized = app.get("/skype/activity-counts/D7", &[]).await;
    assert!(served.check(REPORT, &report).is_empty());
    assert!(served.check(REPORT, &unauthorized).is_empty());
    let rows = report.json()["value"].as_array().unwrap().clone();
    assert!(rows.iter().any(|row| row["peerToPeer"].is_null()));

    // Changes `pointer` in a copy of the served document; the check of `answer` must name `what`.
    let assert_noticed =
        |answer: &Answer, pointer: &str, what: &str, change: &dyn Fn(&mut Value)| {
            let mut doc = served.doc.clone();
            change(
                doc.pointer_mut(pointer)
                    .unwrap_or_else(|| panic!("no {pointer}")),
            );
            let problems = Contract { doc }.check(REPORT, answer);
            assert!(
                problems.iter().any(|p| p.contains(what)),
                "a document wrong about {what} went unnoticed: {problems:?}"
            );
        };
    let row = "/components/schemas/ReportRow/properties";
    let responses = "/paths/~1skype~1activity-counts~1{period}/get/responses";
    let ok = &format!("{responses}/200/headers");

    assert_noticed(&report, row, "organized", &|p| {
        p["organized"]["type"] = json!("string")
    });
    assert_noticed(&report, row, "peerToPeer", &|p| {
        p["peerToPeer"]["type"] = json!("integer")
    });
    assert_noticed(&report, row, "reportDate", &|p| {
        p["reportDate"]["format"] = json!("date-time")
    });
    assert_noticed(&report, ok, "X-Cache-Status", &|h| {
        h["X-Cache-Status"]["schema"] = json!({"enum": ["HIT"]})
    });
    assert_noticed(&report, ok, "Vary", &|h| {
        h["Vary"]["schema"]["pattern"] = json!("^Authorization$")
    });
    assert_noticed(&report, ok, "X-Missing", &|h| {
        h["X-Missing"] = json!({"schema": {"type": "string"}, "required": true})
    });
    assert_noticed(&report, responses, "status 200", &|r| {
        r.as_object_mut().unwrap().remove("200");
    });
    let unauthorized_headers = &format!("{responses}/401/headers");
    assert_noticed(
        &unauthorized,
        unauthorized_headers,
        "WWW-Authenticate",
        &|h| h["WWW-Authenticate"]["schema"]["pattern"] = json!("^Basic"),
    );
}
