//! The managed deployment (`deployment.managed`): VM → disk → NIC → guest initialization →
//! cluster registration (only after initialization, so the VM does not migrate mid-handshake),
//! and the stand-alone guest initialization (`vm.initialize`).
//!
//! The worker never trusts the queue: the spec is validated again against the built-in forms,
//! and a failure fails the job with the field errors (secret values never echoed). The steps
//! are the core plan ([`aetherv_core::ops::plan`]); each builds its agent specs from the typed
//! [`ManagedDeploymentSpec`].
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
//! are opened by the executor ([`aetherv_core::JobEnvelope::open_secrets`]), merged into the working
//! copy of the spec here, go into the sealed KVP items only, and are never put into events or
//! logs. A spec that carries them in plaintext is refused before any step runs.

use crate::guestinit::{self, InitTarget};
use crate::job::{file_tag, job_tag, JobCtx, JobFailure, StepError};
use aetherv_core::kvp::guest_config;
use aetherv_core::ops::{
    plan, DiskCreateSpec, DiskDeleteSpec, ManagedDeploymentSpec, NicCreateSpec, NicDeleteSpec,
    Spec, StepName, VmCreateSpec, VmDeleteSpec, VmFields, VmRef,
};
use aetherv_core::schema::{FormSchema, Forms};
use aetherv_core::validate::{validate, ValidatedRequest, ValidationContext};
use aetherv_core::{AgentOperation, JobEnvelope, JobKind, Target};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The deployment's first step: its VM.
const VM_STEP: StepName = StepName::Op(AgentOperation::VmCreate);
/// The disk step.
const DISK_STEP: StepName = StepName::Op(AgentOperation::DiskCreate);
/// The network adapter step.
const NIC_STEP: StepName = StepName::Op(AgentOperation::NicCreate);
/// The cluster registration step.
const CLUSTER_STEP: StepName = StepName::Op(AgentOperation::ClusterAdd);
/// The step part of the idempotency keys of rollback operations.
const ROLLBACK_KEY: &str = "rollback";

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

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

struct Deployment<'r> {
    req: &'r ValidatedRequest,
    spec: ManagedDeploymentSpec,
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
}

/// Runs a `deployment.managed` job's steps.
pub(crate) async fn run_managed(ctx: &mut JobCtx<'_>) -> Result<Value, JobFailure> {
    let mut input = managed_input(ctx.job);
    input.extend(ctx.secrets.0.clone());
    let req = revalidate("managed-deployment", &input).map_err(invalid)?;
    let spec =
        ManagedDeploymentSpec::from_spec(req.values()).map_err(|e| invalid(e.to_string()))?;
    crate::preflight::preflight(ctx, &aetherv_core::JobSpec::DeploymentManaged(spec.clone()))
        .await?;
    let rollback = spec.rollback == Some(true);
    let steps = plan(
        JobKind::DeploymentManaged,
        spec.vm.vm_clustered == Some(true),
    );
    let total = steps.len() as u32;
    let mut d = Deployment {
        req: &req,
        spec,
        created: Vec::new(),
        vm: None,
        vm_resumed: false,
    };
    let mut results = Map::new();
    for (i, step) in steps.into_iter().enumerate() {
        if let Err(cancelled) = ctx.boundary() {
            if rollback && !d.created.is_empty() {
                let undone = roll_back(ctx, &d.created).await?;
                ctx.narrate(format!("cancelled; rolled back: {}", undone.join(", ")));
            }
            return Err(cancelled);
        }
        let started = ctx.begin_step(step, i as u32 + 1, total).await?;
        let res = match step {
            VM_STEP => step_vm(ctx, &mut d).await,
            DISK_STEP => step_disk(ctx, &mut d).await,
            NIC_STEP => step_nic(ctx, &mut d).await,
            StepName::GuestInitialize => step_init(ctx, &d).await,
            CLUSTER_STEP => step_cluster(ctx, &d).await,
            StepName::Op(op) => Err(StepError::failed(
                "unsupported_kind",
                format!("{op} is not a step of a managed deployment"),
            )),
        };
        match ctx.end_step(step, started, res).await {
            Ok(data) => {
                results.insert(step.to_string(), data);
            }
            Err(e) => {
                let mut failure = JobFailure::at(step, e);
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

/// Runs the creating operation of `step` (keyed by the operation's name).
async fn create(
    ctx: &mut JobCtx<'_>,
    step: StepName,
    op: AgentOperation,
    spec: impl Spec,
) -> Result<Value, StepError> {
    ctx.call(step.as_str(), op, spec, Some(op.as_str())).await
}

async fn step_vm(ctx: &mut JobCtx<'_>, d: &mut Deployment<'_>) -> Result<(Value, bool), StepError> {
    let name = d.spec.vm.vm_name.clone().unwrap_or_default();
    let tag = job_tag(ctx.job);
    let by_name = VmRef {
        vm_name: Some(name.clone()),
        vm_id: None,
    };
    match ctx
        .call(VM_STEP.as_str(), AgentOperation::VmGet, by_name, None)
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
    let vm = &d.spec.vm;
    let spec = VmCreateSpec {
        form: VmFields {
            vm_name: vm.vm_name.clone(),
            gb_ram: vm.gb_ram,
            cpu_cores: vm.cpu_cores,
            storage_class: vm.storage_class.clone(),
            os_family: Some(d.req.os_family().as_str().to_string()),
            ..VmFields::default()
        },
        notes: Some(tag),
        ..VmCreateSpec::default()
    };
    let data = create(ctx, VM_STEP, AgentOperation::VmCreate, spec).await?;
    d.created.push(Created::Vm {
        vm_id: text(&data, "vm_id"),
    });
    d.vm = Some(data.clone());
    Ok((data, false))
}

/// A fresh view of the deployment's VM (only needed when it was reused).
async fn current_vm(ctx: &mut JobCtx<'_>, step: StepName, vm_id: &str) -> Result<Value, StepError> {
    ctx.call(step.as_str(), AgentOperation::VmGet, VmRef::id(vm_id), None)
        .await
}

/// A disk or adapter of the deployment's VM: on a VM reused from an earlier attempt, the
/// first entry of the VM view's `list` that `is_own` is reused; otherwise `op` creates it.
async fn component(
    ctx: &mut JobCtx<'_>,
    d: &mut Deployment<'_>,
    step: StepName,
    (op, spec): (AgentOperation, impl Spec),
    (list, is_own): (&str, &(dyn Fn(&Value) -> bool + Sync)),
    record: fn(String, &Value) -> Created,
) -> Result<(Value, bool), StepError> {
    let vm_id = d.vm_id();
    if d.vm_resumed {
        let view = current_vm(ctx, step, &vm_id).await?;
        let own = view
            .get(list)
            .and_then(Value::as_array)
            .and_then(|xs| xs.iter().find(|x| is_own(x)));
        if let Some(own) = own {
            d.created.push(record(vm_id, own));
            return Ok((own.clone(), true));
        }
    }
    let data = create(ctx, step, op, spec).await?;
    d.created.push(record(vm_id, &data));
    Ok((data, false))
}

async fn step_disk(
    ctx: &mut JobCtx<'_>,
    d: &mut Deployment<'_>,
) -> Result<(Value, bool), StepError> {
    let tag = file_tag(ctx.job);
    // For a clone the size is a minimum: the agent keeps the image's size when it is larger.
    let spec = DiskCreateSpec {
        vm: VmRef::id(d.vm_id()),
        disk: d.spec.disk.clone(),
        file_tag: Some(tag.clone()),
        ..DiskCreateSpec::default()
    };
    let is_own = |x: &Value| text(x, "disk_path").contains(&tag);
    let record = |vm_id, x: &Value| Created::Disk {
        vm_id,
        disk_id: text(x, "disk_id"),
    };
    let op = (AgentOperation::DiskCreate, spec);
    component(ctx, d, DISK_STEP, op, ("disks", &is_own), record).await
}

async fn step_nic(
    ctx: &mut JobCtx<'_>,
    d: &mut Deployment<'_>,
) -> Result<(Value, bool), StepError> {
    let nic = d.spec.nic.clone();
    let network = nic.network.clone().unwrap_or_default();
    let wanted_name = nic.adapter_name.clone();
    let spec = NicCreateSpec {
        vm: VmRef::id(d.vm_id()),
        nic,
    };
    let is_own = |n: &Value| {
        text(n, "network").eq_ignore_ascii_case(&network)
            && wanted_name
                .as_deref()
                .is_none_or(|w| text(n, "adapter_name") == w)
    };
    let record = |vm_id, x: &Value| Created::Nic {
        vm_id,
        nic_id: text(x, "nic_id"),
    };
    let op = (AgentOperation::NicCreate, spec);
    component(ctx, d, NIC_STEP, op, ("nics", &is_own), record).await
}

async fn step_init(ctx: &mut JobCtx<'_>, d: &Deployment<'_>) -> Result<(Value, bool), StepError> {
    let view = current_vm(ctx, StepName::GuestInitialize, &d.vm_id()).await?;
    initialize(ctx, &init_target(&view)?, d.req.values()).await
}

fn init_target(view: &Value) -> Result<InitTarget, StepError> {
    InitTarget::from_view(view)
        .ok_or_else(|| StepError::failed("agent_protocol", "vm.get returned no vm_id/vm_name"))
}

/// The guest initialization of `target` with the request `values`.
async fn initialize(
    ctx: &mut JobCtx<'_>,
    target: &InitTarget,
    values: &Map<String, Value>,
) -> Result<(Value, bool), StepError> {
    let config = guest_config(values);
    let step = StepName::GuestInitialize.as_str();
    let data = guestinit::initialize(ctx, step, target, config).await?;
    let resumed = data.get("resumed").and_then(Value::as_bool) == Some(true);
    Ok((data, resumed))
}

async fn step_cluster(
    ctx: &mut JobCtx<'_>,
    d: &Deployment<'_>,
) -> Result<(Value, bool), StepError> {
    let data = create(
        ctx,
        CLUSTER_STEP,
        AgentOperation::ClusterAdd,
        VmRef::id(d.vm_id()),
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
                NicDeleteSpec::new(VmRef::id(vm_id), nic_id).into_spec(),
                format!("nic {nic_id}"),
            ),
            Created::Disk { vm_id, disk_id } => (
                AgentOperation::DiskDelete,
                DiskDeleteSpec::new(VmRef::id(vm_id), disk_id).into_spec(),
                format!("disk {disk_id}"),
            ),
            Created::Vm { vm_id } => (
                AgentOperation::VmDelete,
                VmDeleteSpec::new(VmRef::id(vm_id), true, true).into_spec(),
                format!("vm {vm_id}"),
            ),
        };
        ctx.narrate(format!("rollback: {op} ({what})"));
        let key = format!("{op}:{what}");
        match ctx.op(ROLLBACK_KEY, op, spec, Some(&key)).await {
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
    let text_of = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let locator = VmRef {
        vm_id: text_of(input.remove("vm_id")),
        vm_name: text_of(input.remove("vm_name")),
    };
    if locator == VmRef::default() {
        return Err(invalid(
            "the job spec is invalid: vm_id or vm_name is required".into(),
        ));
    }
    let req = revalidate("guest", &input).map_err(invalid)?;
    let [step] = plan(JobKind::VmInitialize, false)[..] else {
        return Err(invalid("vm.initialize plans one step".into()));
    };
    let checked = aetherv_core::ops::VmInitializeSpec {
        vm: locator.clone(),
        ..Default::default()
    };
    crate::preflight::preflight(ctx, &aetherv_core::JobSpec::VmInitialize(checked)).await?;
    let started = ctx.begin_step(step, 1, 1).await?;
    let res = async {
        let view = ctx
            .call(step.as_str(), AgentOperation::VmGet, locator, None)
            .await?;
        let target = init_target(&view)?;
        let mut values = req.values().clone();
        values.insert("vm_name".into(), json!(target.vm_name));
        initialize(ctx, &target, &values).await
    }
    .await;
    let data = ctx
        .end_step(step, started, res)
        .await
        .map_err(|e| JobFailure::at(step, e))?;
    Ok(json!({ step.as_str(): data }))
}

#[cfg(test)]
mod flow_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> JobEnvelope {
        crate::job::test_job(JobKind::DeploymentManaged, spec)
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
        let clustered = plan(JobKind::DeploymentManaged, true);
        let names: Vec<&str> = clustered.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "vm.create",
                "disk.create",
                "nic.create",
                "guest.initialize",
                "cluster.add"
            ]
        );
        assert_eq!(plan(JobKind::DeploymentManaged, false).len(), 4);
        assert!(file_tag(&j).starts_with("aetherv-") && !file_tag(&j).contains(':'));
    }
}
