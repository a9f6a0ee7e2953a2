//! The OpenAPI 3.1 document, generated from the routes' annotations and the documents'
//! types (utoipa); served at `/api/openapi.json`.

use crate::docs;
use crate::problem::{FieldProblem, Problem};
use crate::routes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The bearer token scheme (configured tokens and OIDC access tokens alike).
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A configured API token (`api.tokens`) or an OIDC access token",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Aether-V API",
        description = "Hyper-V VMs, disks and network adapters through the bot's gate: every write is a job (202 + Location), approvals happen in chat.",
        version = "1"
    ),
    paths(
        routes::healthz,
        routes::readyz,
        routes::openapi_json,
        routes::inventory,
        routes::hosts,
        routes::vms,
        routes::schema,
        routes::list_jobs,
        routes::get_job,
        routes::cancel_job,
        routes::job_events,
        routes::create_managed,
        routes::create_vm,
        routes::create_disk,
        routes::create_nic,
        routes::get_vm,
        routes::update_vm,
        routes::delete_vm,
        routes::get_disk,
        routes::update_disk,
        routes::delete_disk,
        routes::get_nic,
        routes::update_nic,
        routes::delete_nic,
        routes::power_vm,
        routes::initialize_vm,
    ),
    components(schemas(
        Problem,
        FieldProblem,
        docs::Accepted,
        docs::Values,
        docs::StepDoc,
        docs::JobError,
        docs::ApprovalDoc,
        docs::JobRow,
        docs::JobDoc,
        docs::JobList,
        docs::DiskDoc,
        docs::NicDoc,
        docs::VmDoc,
        docs::QueuedJob,
        docs::HostDoc,
        docs::HostList,
        docs::VmList,
        docs::Inventory,
        docs::Health,
    )),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}
