//! The managed deployment (`deployment.managed`): VM → disk → NIC → guest initialization →
//! cluster registration (only after initialization, so the VM does not migrate mid-handshake),
//! and the stand-alone guest initialization (`vm.initialize`).
//!
//! The worker never trusts the queue: the spec is validated again against the built-in forms,
//! and a failure fails the job with the field errors (secret values never echoed).
//!
//! Resume: before creating anything a step looks for the job's own resource: a VM of the
//! requested name whose notes carry `aetherv:job=<id>` is reused, one without the tag fails
//! `name_conflict`; disks carry the job id in their file name; NICs of a reused VM on the
//! requested network are reused. Re-sent operations carry the same idempotency keys
//! (`<job_id>:<step>:<operation>`) and replay from the host journal.
//!
//! Rollback (`rollback: true`): on failure, what this job created is deleted in reverse order.
//!
//! Secrets: the secret fields (passwords) arrive sealed in the envelope's age `secrets` field,
//! are opened by the executor ([`crate::executor::open_job_secrets`]), merged into the working
//! copy of the spec here, go into the sealed KVP items only, and are never put into events or
//! logs. A spec that carries them in plaintext is refused before any step runs.

use crate::executor::{job_tag, JobCtx, JobFailure, StepError};
use crate::guestinit::{self, InitTarget};
use aetherv_core::kvp::guest_config;
use aetherv_core::schema::{FormSchema, Forms};
use aetherv_core::validate::{validate, ValidatedRequest, ValidationContext};
use aetherv_core::{AgentOperation, JobEnvelope, JobKind, Target};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// Something this job created, for rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A VM.
    Vm {
        /// VM id.
        vm_id: String,
    },
    /// A disk attached to a VM.
    Disk {
        /// VM id.
        vm_id: String,
        /// Disk id.
        disk_id: String,
    },
    /// A network adapter of a VM.
    Nic {
        /// VM id.
        vm_id: String,
        /// Adapter id.
        nic_id: String,
    },
}

/// The tag disk file names of a job carry (file names cannot hold `:`).
pub fn file_tag(job: &JobEnvelope) -> String {
    format!("aetherv-{}", job.job_id)
}

/// The built-in forms, parsed once.
pub(crate) fn forms() -> Result<&'static Forms, String> {
    static FORMS: OnceLock<Result<Forms, String>> = OnceLock::new();
    FORMS
        .get_or_init(|| Forms::builtin().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

fn form(id: &str) -> Result<&'static FormSchema, String> {
    forms()?
        .get(id)
        .ok_or_else(|| format!("the built-in form {id} is missing"))
}

/// Validates `input` against form `id`; the error lists every field problem, with secret
/// fields named by code only so their values can never be echoed.
pub fn revalidate(id: &str, input: &Map<String, Value>) -> Result<ValidatedRequest, String> {
    let schema = form(id)?;
    validate(
        schema,
        &Value::Object(input.clone()),
        &ValidationContext::default(),
    )
    .map_err(|errors| {
        let secret: Vec<&str> = schema.secret_fields().collect();
        let parts: Vec<String> = errors
            .iter()
            .map(|e| {
                if secret.contains(&e.field.as_str()) {
                    format!("{} ({})", e.field, e.code.as_str())
                } else {
                    format!("{} ({}): {}", e.field, e.code.as_str(), e.message)
                }
            })
            .collect();
        format!("the job spec is invalid: {}", parts.join("; "))
    })
}

/// The managed-deployment spec with the job's target filled in when the spec names none.
pub fn managed_input(job: &JobEnvelope) -> Map<String, Value> {
    let mut spec = job.spec.clone();
    let has = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    if !has("target_host") && !has("target_cluster") {
        let (k, v) = match &job.target {
            Target::Host(h) => ("target_host", h),
            Target::Cluster(c) => ("target_cluster", c),
        };
        spec.insert(k.into(), Value::String(v.clone()));
    }
    spec
}

fn invalid(message: String) -> JobFailure {
    JobFailure::Failed {
        step: None,
        code: "invalid_request".into(),
        message,
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The step names of a managed deployment, in order.
pub fn managed_steps(clustered: bool) -> Vec<&'static str> {
    let mut s = vec!["vm.create", "disk.create", "nic.create", "guest.initialize"];
    if clustered {
        s.push("cluster.add");
    }
    s
}

struct Deployment<'r> {
    req: &'r ValidatedRequest,
    created: Vec<Created>,
    vm: Option<Value>,
    vm_resumed: bool,
}

impl Deployment<'_> {
    fn vm_id(&self) -> String {
        self.vm
            .as_ref()
            .map(|v| text(v, "vm_id"))
            .unwrap_or_default()
    }

    fn copy(&self, into: &mut Map<String, Value>, keys: &[&str]) {
        for k in keys {
            if let Some(v) = self.req.get(k) {
                into.insert((*k).to_string(), v.clone());
            }
        }
    }
}

/// Runs a `deployment.managed` job's steps.
pub(crate) async fn run_managed(ctx: &mut JobCtx<'_>) -> Result<Value, JobFailure> {
    let mut input = managed_input(ctx.job);
    input.extend(ctx.secrets.0.clone());
    let req = revalidate("managed-deployment", &input).map_err(invalid)?;
    let clustered = req.get("vm_clustered").and_then(Value::as_bool) == Some(true);
    let rollback = req.get("rollback").and_then(Value::as_bool) == Some(true);
    let steps = managed_steps(clustered);
    let total = steps.len() as u32;
    let mut d = Deployment {
        req: &req,
        created: Vec::new(),
        vm: None,
        vm_resumed: false,
    };
    let mut results = Map::new();
    for (i, name) in steps.iter().enumerate() {
        if let Err(cancelled) = ctx.boundary() {
            if rollback && !d.created.is_empty() {
                let undone = roll_back(ctx, &d.created).await?;
                ctx.narrate(format!("cancelled; rolled back: {}", undone.join(", ")));
            }
            return Err(cancelled);
        }
        let started = ctx.begin_step(name, i as u32 + 1, total).await?;
        let res = match *name {
            "vm.create" => step_vm(ctx, &mut d).await,
            "disk.create" => step_disk(ctx, &mut d).await,
            "nic.create" => step_nic(ctx, &mut d).await,
            "guest.initialize" => step_init(ctx, &d).await,
            _ => step_cluster(ctx, &d).await,
        };
        match ctx.end_step(name, started, res).await {
            Ok(data) => {
                results.insert((*name).to_string(), data);
            }
            Err(e) => {
                let mut failure = JobFailure::at(name, e);
                if let (true, JobFailure::Failed { message, .. }) = (rollback, &mut failure) {
                    let undone = roll_back(ctx, &d.created).await?;
                    message.push_str(&format!("; rolled back: {}", undone.join(", ")));
                }
                return Err(failure);
            }
        }
    }
    Ok(Value::Object(results))
}

async fn step_vm(ctx: &mut JobCtx<'_>, d: &mut Deployment<'_>) -> Result<(Value, bool), StepError> {
    let name = d.req.str("vm_name").unwrap_or_default().to_string();
    let tag = job_tag(ctx.job);
    match ctx
        .op(
            "vm.create",
            AgentOperation::VmGet,
            obj(json!({"vm_name": name})),
            None,
        )
        .await
    {
        Ok(view) => {
            if !text(&view, "notes").contains(&tag) {
                return Err(StepError::failed(
                    "name_conflict",
                    format!(
                        "a VM named '{name}' already exists on {} and was not created by this job",
                        ctx.agent.host
                    ),
                ));
            }
            ctx.narrate(format!(
                "VM '{name}' was created by an earlier attempt of this job; reusing it"
            ));
            d.created.push(Created::Vm {
                vm_id: text(&view, "vm_id"),
            });
            d.vm = Some(view.clone());
            d.vm_resumed = true;
            return Ok((view, true));
        }
        Err(StepError::Failed { code, .. }) if code == "not_found" => {}
        Err(e) => return Err(e),
    }
    let mut spec = Map::new();
    d.copy(
        &mut spec,
        &["vm_name", "gb_ram", "cpu_cores", "storage_class"],
    );
    spec.insert("os_family".into(), json!(d.req.os_family().as_str()));
    spec.insert("notes".into(), json!(tag));
    let data = ctx
        .op(
            "vm.create",
            AgentOperation::VmCreate,
            spec,
            Some("vm.create"),
        )
        .await?;
    d.created.push(Created::Vm {
        vm_id: text(&data, "vm_id"),
    });
    d.vm = Some(data.clone());
    Ok((data, false))
}

/// A fresh view of the deployment's VM (only needed when it was reused).
async fn current_vm(ctx: &mut JobCtx<'_>, step: &str, vm_id: &str) -> Result<Value, StepError> {
    ctx.op(
        step,
        AgentOperation::VmGet,
        obj(json!({"vm_id": vm_id})),
        None,
    )
    .await
}

async fn step_disk(
    ctx: &mut JobCtx<'_>,
    d: &mut Deployment<'_>,
) -> Result<(Value, bool), StepError> {
    let vm_id = d.vm_id();
    let tag = file_tag(ctx.job);
    if d.vm_resumed {
        let view = current_vm(ctx, "disk.create", &vm_id).await?;
        let own = view
            .get("disks")
            .and_then(Value::as_array)
            .and_then(|ds| ds.iter().find(|x| text(x, "disk_path").contains(&tag)));
        if let Some(disk) = own {
            d.created.push(Created::Disk {
                vm_id: vm_id.clone(),
                disk_id: text(disk, "disk_id"),
            });
            return Ok((disk.clone(), true));
        }
    }
    let mut spec = obj(json!({"vm_id": vm_id, "file_tag": tag}));
    d.copy(&mut spec, &["image_name", "disk_type", "controller_type"]);
    // For a clone the size is a minimum: the agent keeps the image's size when it is larger.
    d.copy(&mut spec, &["disk_size_gb"]);
    let data = ctx
        .op(
            "disk.create",
            AgentOperation::DiskCreate,
            spec,
            Some("disk.create"),
        )
        .await?;
    d.created.push(Created::Disk {
        vm_id,
        disk_id: text(&data, "disk_id"),
    });
    Ok((data, false))
}

async fn step_nic(
    ctx: &mut JobCtx<'_>,
    d: &mut Deployment<'_>,
) -> Result<(Value, bool), StepError> {
    let vm_id = d.vm_id();
    let network = d.req.str("network").unwrap_or_default().to_string();
    if d.vm_resumed {
        let view = current_vm(ctx, "nic.create", &vm_id).await?;
        let wanted_name = d.req.str("adapter_name");
        let own = view.get("nics").and_then(Value::as_array).and_then(|ns| {
            ns.iter().find(|n| {
                text(n, "network").eq_ignore_ascii_case(&network)
                    && wanted_name.is_none_or(|w| text(n, "adapter_name") == w)
            })
        });
        if let Some(nic) = own {
            d.created.push(Created::Nic {
                vm_id: vm_id.clone(),
                nic_id: text(nic, "nic_id"),
            });
            return Ok((nic.clone(), true));
        }
    }
    let mut spec = obj(json!({"vm_id": vm_id}));
    d.copy(&mut spec, &["network", "adapter_name", "vlan_id"]);
    let data = ctx
        .op(
            "nic.create",
            AgentOperation::NicCreate,
            spec,
            Some("nic.create"),
        )
        .await?;
    d.created.push(Created::Nic {
        vm_id,
        nic_id: text(&data, "nic_id"),
    });
    Ok((data, false))
}

async fn step_init(ctx: &mut JobCtx<'_>, d: &Deployment<'_>) -> Result<(Value, bool), StepError> {
    let view = current_vm(ctx, "guest.initialize", &d.vm_id()).await?;
    let target = InitTarget::from_view(&view)
        .ok_or_else(|| StepError::failed("agent_protocol", "vm.get returned no vm_id/vm_name"))?;
    let config = guest_config(d.req.values());
    let data = guestinit::initialize(ctx, "guest.initialize", &target, config).await?;
    let resumed = data.get("resumed").and_then(Value::as_bool) == Some(true);
    Ok((data, resumed))
}

async fn step_cluster(
    ctx: &mut JobCtx<'_>,
    d: &Deployment<'_>,
) -> Result<(Value, bool), StepError> {
    let data = ctx
        .op(
            "cluster.add",
            AgentOperation::ClusterAdd,
            obj(json!({"vm_id": d.vm_id()})),
            Some("cluster.add"),
        )
        .await?;
    Ok((data, false))
}

/// Deletes what the job created, newest first. Failures are logged and skipped; returns what
/// was removed. Only a lost broker stops it.
async fn roll_back(
    ctx: &mut JobCtx<'_>,
    created: &[Created],
) -> Result<Vec<String>, aetherv_broker::PublishError> {
    let mut undone = Vec::new();
    for c in created.iter().rev() {
        let (op, spec, what) = match c {
            Created::Nic { vm_id, nic_id } => (
                AgentOperation::NicDelete,
                json!({"vm_id": vm_id, "resource_id": nic_id}),
                format!("nic {nic_id}"),
            ),
            Created::Disk { vm_id, disk_id } => (
                AgentOperation::DiskDelete,
                json!({"vm_id": vm_id, "resource_id": disk_id}),
                format!("disk {disk_id}"),
            ),
            Created::Vm { vm_id } => (
                AgentOperation::VmDelete,
                json!({"vm_id": vm_id, "force": true, "delete_disks": true}),
                format!("vm {vm_id}"),
            ),
        };
        ctx.narrate(format!("rollback: {op} ({what})"));
        let key = format!("{op}:{what}");
        match ctx.op("rollback", op, obj(spec), Some(&key)).await {
            Ok(_) => undone.push(what),
            Err(StepError::Publish(e)) => return Err(e),
            Err(StepError::Interrupted) => break,
            Err(StepError::Failed { code, message }) => {
                ctx.narrate(format!("rollback of {what} failed ({code}): {message}"));
            }
        }
    }
    ctx.flush().await?;
    if undone.is_empty() {
        undone.push("nothing".into());
    }
    Ok(undone)
}

/// Runs a `vm.initialize` job: the guest-initialization steps alone, on an existing VM named
/// by `vm_id` or `vm_name`; the other spec fields are validated against the guest form.
pub(crate) async fn run_initialize(ctx: &mut JobCtx<'_>) -> Result<Value, JobFailure> {
    debug_assert_eq!(ctx.job.kind, JobKind::VmInitialize);
    let mut input = ctx.job.spec.clone();
    input.extend(ctx.secrets.0.clone());
    let vm_id = input.remove("vm_id");
    let vm_name = input.remove("vm_name");
    let mut locator = Map::new();
    for (k, v) in [("vm_id", vm_id), ("vm_name", vm_name)] {
        if let Some(v @ Value::String(_)) = v {
            locator.insert(k.into(), v);
        }
    }
    if locator.is_empty() {
        return Err(invalid(
            "the job spec is invalid: vm_id or vm_name is required".into(),
        ));
    }
    let req = revalidate("guest", &input).map_err(invalid)?;
    let step = "guest.initialize";
    let started = ctx.begin_step(step, 1, 1).await?;
    let res = async {
        let view = ctx.op(step, AgentOperation::VmGet, locator, None).await?;
        let target = InitTarget::from_view(&view).ok_or_else(|| {
            StepError::failed("agent_protocol", "vm.get returned no vm_id/vm_name")
        })?;
        let mut values = req.values().clone();
        values.insert("vm_name".into(), json!(target.vm_name));
        let config = guest_config(&values);
        let data = guestinit::initialize(ctx, step, &target, config).await?;
        let resumed = data.get("resumed").and_then(Value::as_bool) == Some(true);
        Ok((data, resumed))
    }
    .await;
    let data = ctx
        .end_step(step, started, res)
        .await
        .map_err(|e| JobFailure::at(step, e))?;
    Ok(json!({ step: data }))
}

#[cfg(test)]
mod flow_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_core::{JobId, Platform, Requester};

    fn job(spec: Value) -> JobEnvelope {
        JobEnvelope {
            v: 1,
            job_id: JobId::new(),
            kind: JobKind::DeploymentManaged,
            target: Target::Host("hv01".into()),
            spec: obj(spec),
            secrets: None,
            requested_by: Requester {
                platform: Platform::Amqp,
                user_id: "t".into(),
            },
            origin: None,
            created_at: chrono::Utc::now(),
            approval: None,
        }
    }

    #[test]
    fn the_target_is_filled_in_from_the_envelope() {
        let j = job(json!({"vm_name": "a"}));
        assert_eq!(managed_input(&j)["target_host"], "hv01");
        let j = job(json!({"vm_name": "a", "target_cluster": "c1"}));
        assert!(!managed_input(&j).contains_key("target_host"));
    }

    #[test]
    fn invalid_specs_list_field_errors_without_secret_values() {
        let j = job(json!({
            "vm_name": "web-01", "gb_ram": 0, "network": "prod",
            "guest_la_uid": "admin", "guest_la_pw": "x".repeat(300),
        }));
        let e = revalidate("managed-deployment", &managed_input(&j)).expect_err("invalid");
        assert!(e.contains("gb_ram (out_of_range)"), "{e}");
        assert!(e.contains("guest_la_pw (too_long)"), "{e}");
        assert!(!e.contains("xxx"), "{e}");
    }

    #[test]
    fn a_valid_spec_passes_and_clustering_adds_the_last_step() {
        let j = job(json!({
            "vm_name": "web-01", "gb_ram": 4, "cpu_cores": 2, "network": "prod",
            "guest_la_uid": "admin", "guest_la_pw": "pw", "vm_clustered": true,
        }));
        let req = revalidate("managed-deployment", &managed_input(&j)).expect("valid");
        assert_eq!(req.get("rollback"), Some(&json!(false)));
        assert_eq!(
            managed_steps(true),
            [
                "vm.create",
                "disk.create",
                "nic.create",
                "guest.initialize",
                "cluster.add"
            ]
        );
        assert_eq!(managed_steps(false).len(), 4);
        assert!(file_tag(&j).starts_with("aetherv-") && !file_tag(&j).contains(':'));
    }
}
