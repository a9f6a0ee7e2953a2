//! The OpenAPI contract: the document at `/api/openapi.json` is OpenAPI 3.1, every route it
//! lists is exercised here over real HTTP, and every response (status, content type, and the
//! body against the documented JSON Schema) is one the document allows.

use crate::api::{ApiSite, ADMIN};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// One exercised request: method, the document's path template, the concrete path, the
/// token, the body.
struct Case<'a> {
    method: &'a str,
    template: &'a str,
    path: String,
    token: Option<&'a str>,
    body: Option<Value>,
}

fn case<'a>(
    method: &'a str,
    template: &'a str,
    path: impl Into<String>,
    body: Option<Value>,
) -> Case<'a> {
    Case {
        method,
        template,
        path: path.into(),
        token: Some(ADMIN),
        body,
    }
}

/// Checks one response against the document; returns the body as JSON.
fn check(doc: &Value, c: &Case<'_>, r: &crate::api::Resp) -> Value {
    let op = &doc["paths"][c.template][c.method];
    assert!(
        op.is_object(),
        "{} {} is not in the document",
        c.method,
        c.template
    );
    let resp = &op["responses"][r.status.to_string()];
    assert!(
        resp.is_object(),
        "{} {} answered {} which the document does not list: {}",
        c.method,
        c.path,
        r.status,
        r.text
    );
    let media = r
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let Some(content) = resp["content"].as_object() else {
        return Value::Null;
    };
    let documented = content.get(&media).unwrap_or_else(|| {
        panic!(
            "{} {} answered {} as {media}; documented: {:?}",
            c.method,
            c.path,
            r.status,
            content.keys().collect::<Vec<_>>()
        )
    });
    if media == "text/event-stream" {
        return Value::Null;
    }
    let body: Value = serde_json::from_str(&r.text)
        .unwrap_or_else(|_| panic!("{} {}: not JSON: {}", c.method, c.path, r.text));
    let mut schema = documented["schema"].clone();
    if let Value::Object(m) = &mut schema {
        m.insert("components".into(), doc["components"].clone());
    }
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| {
        panic!(
            "{} {}: the documented schema does not compile: {e}",
            c.method, c.template
        )
    });
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{} {} ({}): the body does not match the document: {errors:?}\n{body:#}",
        c.method,
        c.path,
        r.status
    );
    body
}

async fn run(
    site: &ApiSite,
    doc: &Value,
    c: &Case<'_>,
    seen: &mut BTreeSet<(String, String)>,
) -> Value {
    let method =
        reqwest::Method::from_bytes(c.method.to_ascii_uppercase().as_bytes()).expect("method");
    let r = site
        .call(method, &c.path, c.token, c.body.as_ref(), &[])
        .await;
    seen.insert((c.method.to_string(), c.template.to_string()));
    check(doc, c, &r)
}

#[tokio::test(flavor = "multi_thread")]
async fn api_every_route_and_response_matches_the_openapi_document() {
    let site = ApiSite::start(1).await;
    let r = site.get("/api/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let mut seen = BTreeSet::new();
    let unknown = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let managed = json!({"values": {"vm_name": "c-01", "gb_ram": 4, "cpu_cores": 2, "target_host": "hv01",
        "image_name": "Ubuntu 24.04", "network": "prod", "guest_la_uid": "ops", "guest_la_pw": "C0ntract-Pw!"}});
    let body = run(
        &site,
        &doc,
        &case(
            "post",
            "/api/v1/managed-deployments",
            "/api/v1/managed-deployments",
            Some(managed),
        ),
        &mut seen,
    )
    .await;
    let job = body["job_id"].as_str().expect("job").to_string();
    let done = site.finished(&job, "succeeded").await;
    let vm_id = done["result"]["vm_id"].as_str().expect("vm_id").to_string();
    let vm = site
        .until_status(&format!("/api/v1/resources/vms/{vm_id}"), 200)
        .await
        .json();
    let disk_id = vm["disks"][0]["id"].as_str().expect("disk").to_string();
    let nic_id = vm["nics"][0]["id"].as_str().expect("nic").to_string();
    let cases = vec![
        case("get", "/healthz", "/healthz", None),
        case("get", "/readyz", "/readyz", None),
        case("get", "/api/openapi.json", "/api/openapi.json", None),
        case("get", "/api/v1/inventory", "/api/v1/inventory", None),
        case("get", "/api/v1/hosts", "/api/v1/hosts", None),
        Case {
            token: None,
            ..case("get", "/api/v1/hosts", "/api/v1/hosts", None)
        },
        case("get", "/api/v1/vms", "/api/v1/vms?host=hv01", None),
        case(
            "get",
            "/api/v1/schema/{id}",
            "/api/v1/schema/managed-deployment",
            None,
        ),
        case("get", "/api/v1/schema/{id}", "/api/v1/schema/nope", None),
        case("get", "/api/v1/jobs", "/api/v1/jobs?limit=5", None),
        case("get", "/api/v1/jobs", "/api/v1/jobs?state=nope", None),
        case(
            "get",
            "/api/v1/jobs/{id}",
            format!("/api/v1/jobs/{job}"),
            None,
        ),
        case(
            "get",
            "/api/v1/jobs/{id}",
            format!("/api/v1/jobs/{unknown}"),
            None,
        ),
        case(
            "get",
            "/api/v1/jobs/{id}/events",
            format!("/api/v1/jobs/{job}/events"),
            None,
        ),
        case(
            "get",
            "/api/v1/jobs/{id}/events",
            format!("/api/v1/jobs/{unknown}/events"),
            None,
        ),
        case(
            "delete",
            "/api/v1/jobs/{id}",
            format!("/api/v1/jobs/{job}"),
            None,
        ),
        case(
            "delete",
            "/api/v1/jobs/{id}",
            format!("/api/v1/jobs/{unknown}"),
            None,
        ),
        case(
            "get",
            "/api/v1/resources/vms/{id}",
            format!("/api/v1/resources/vms/{vm_id}"),
            None,
        ),
        case(
            "get",
            "/api/v1/resources/vms/{id}",
            format!("/api/v1/resources/vms/{unknown}"),
            None,
        ),
        case(
            "get",
            "/api/v1/resources/disks/{id}",
            format!("/api/v1/resources/disks/{disk_id}"),
            None,
        ),
        case(
            "get",
            "/api/v1/resources/nics/{id}",
            format!("/api/v1/resources/nics/{nic_id}"),
            None,
        ),
        case(
            "post",
            "/api/v1/resources/vms",
            "/api/v1/resources/vms",
            Some(
                json!({"values": {"vm_name": "c-02", "gb_ram": 2, "cpu_cores": 1, "target_host": "hv01"}}),
            ),
        ),
        case(
            "post",
            "/api/v1/resources/vms",
            "/api/v1/resources/vms",
            Some(json!({"values": {}})),
        ),
        case(
            "post",
            "/api/v1/resources/vms",
            "/api/v1/resources/vms",
            Some(
                json!({"values": {"vm_name": "c-01", "gb_ram": 2, "cpu_cores": 1, "target_host": "hv01"}}),
            ),
        ),
        case(
            "post",
            "/api/v1/resources/disks",
            "/api/v1/resources/disks",
            Some(json!({"values": {"vm_id": vm_id, "disk_size_gb": 20}})),
        ),
        case(
            "post",
            "/api/v1/resources/nics",
            "/api/v1/resources/nics",
            Some(json!({"values": {"vm_id": vm_id, "network": "dev"}})),
        ),
        case(
            "patch",
            "/api/v1/resources/disks/{id}",
            format!("/api/v1/resources/disks/{disk_id}"),
            Some(json!({"values": {"disk_size_gb": 200}})),
        ),
        case(
            "patch",
            "/api/v1/resources/nics/{id}",
            format!("/api/v1/resources/nics/{nic_id}"),
            Some(json!({"values": {"network": "dev"}})),
        ),
        case(
            "post",
            "/api/v1/resources/vms/{id}/power",
            format!("/api/v1/resources/vms/{vm_id}/power"),
            Some(json!({"values": {"action": "stop"}})),
        ),
        case(
            "patch",
            "/api/v1/resources/vms/{id}",
            format!("/api/v1/resources/vms/{vm_id}"),
            Some(json!({"values": {"cpu_cores": 4}})),
        ),
        case(
            "post",
            "/api/v1/resources/vms/{id}/initialize",
            format!("/api/v1/resources/vms/{vm_id}/initialize"),
            Some(
                json!({"values": {"os_family": "linux", "guest_la_uid": "ops", "guest_la_pw": "An0ther-Pw!"}}),
            ),
        ),
        case(
            "delete",
            "/api/v1/resources/nics/{id}",
            format!("/api/v1/resources/nics/{nic_id}"),
            None,
        ),
        case(
            "delete",
            "/api/v1/resources/disks/{id}",
            format!("/api/v1/resources/disks/{disk_id}"),
            None,
        ),
        case(
            "delete",
            "/api/v1/resources/vms/{id}",
            format!("/api/v1/resources/vms/{vm_id}"),
            None,
        ),
        case(
            "delete",
            "/api/v1/resources/vms/{id}",
            format!("/api/v1/resources/vms/{unknown}"),
            None,
        ),
    ];
    for c in &cases {
        run(&site, &doc, c, &mut seen).await;
    }
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .filter(|m| ["get", "post", "patch", "delete", "put"].contains(&m.as_str()))
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "routes in the document not exercised: {missed:?}"
    );
    site.stop().await;
}
