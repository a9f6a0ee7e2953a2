//! Guest initialization over KVP (reference §5.2), driven from the worker: attach the
//! provisioning ISO, start the VM, announce `waitingforpublickey`, wait for the guest's public
//! key, write the sealed data ([`aetherv_core::kvp::crypto::seal`]), publish
//! `provisioningdatapublished`, wait for `provisioningapplied` / `provisioningfailed`, detach
//! the ISO.
//!
//! Secrets reach the host only as KVP ciphertext: the plaintext guest configuration lives in
//! this process, is zeroized after sealing, and never appears in events, logs or errors. Each
//! wait has its own deadline ([`crate::job::GuestTimeouts`]).

use crate::job::{JobCtx, StepError};
use aetherv_core::kvp::crypto::{seal, GuestPublicKey, KeyFormat};
use aetherv_core::kvp::{data_items, meta};
use aetherv_core::ops::{
    IsoAttachSpec, KvpReadSpec, KvpRemoveSpec, KvpWriteSpec, VmPowerSpec, VmRef,
};
use aetherv_core::AgentOperation;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zeroize::Zeroize as _;

/// Guest state: ready for the AES key.
pub const WAITING_FOR_AES_KEY: &str = "waitingforaeskey";
/// Guest state: configuration applied.
pub const APPLIED: &str = "provisioningapplied";
/// Guest state: configuration failed.
pub const FAILED: &str = "provisioningfailed";

/// Host item naming the job that drives the exchange (guests read only `hlvmm.*` items).
pub const JOB_ITEM: &str = "aetherv.meta.job_id";

/// The VM a guest initialization runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitTarget {
    /// VM id.
    pub vm_id: String,
    /// VM name (the guest host name).
    pub vm_name: String,
    /// `windows` or `linux` (chooses the ISO).
    pub os_family: String,
    /// Power state as `vm.get` reported it.
    pub state: String,
}

impl InitTarget {
    /// Reads a target from a `vm.get` / `vm.create` result.
    pub fn from_view(view: &Value) -> Option<Self> {
        let s = |k: &str| view.get(k).and_then(Value::as_str).map(str::to_string);
        Some(InitTarget {
            vm_id: s("vm_id")?,
            vm_name: s("vm_name")?,
            os_family: s("os_family").unwrap_or_else(|| "windows".into()),
            state: s("state").unwrap_or_else(|| "Off".into()),
        })
    }

    fn vm(&self) -> VmRef {
        VmRef::id(&self.vm_id)
    }
}

async fn read_items(
    ctx: &mut JobCtx<'_>,
    step: &str,
    spec: KvpReadSpec,
) -> Result<Map<String, Value>, StepError> {
    let data = ctx.call(step, AgentOperation::KvpRead, spec, None).await?;
    Ok(match data.get("items") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    })
}

async fn guest_items(
    ctx: &mut JobCtx<'_>,
    step: &str,
    vm: &InitTarget,
) -> Result<Map<String, Value>, StepError> {
    let keys = [meta::GUEST_STATE, meta::GUEST_PUBLIC_KEY, meta::GUEST_ERROR];
    let spec = KvpReadSpec {
        vm: vm.vm(),
        keys: Some(keys.map(String::from).to_vec()),
        source: None,
    };
    read_items(ctx, step, spec).await
}

async fn host_items(
    ctx: &mut JobCtx<'_>,
    step: &str,
    vm: &InitTarget,
) -> Result<Map<String, Value>, StepError> {
    let spec = KvpReadSpec {
        vm: vm.vm(),
        keys: None,
        source: Some("host".into()),
    };
    read_items(ctx, step, spec).await
}

/// Writes host KVP items, keyed `kvp.write:<label>`.
async fn write_items(
    ctx: &mut JobCtx<'_>,
    step: &str,
    vm: &InitTarget,
    items: Map<String, Value>,
    label: &str,
) -> Result<(), StepError> {
    let spec = KvpWriteSpec {
        vm: vm.vm(),
        items: Some(items),
    };
    let key = format!("{}:{label}", AgentOperation::KvpWrite);
    ctx.call(step, AgentOperation::KvpWrite, spec, Some(&key))
        .await
        .map(|_| ())
}

fn item<'a>(items: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    items.get(key).and_then(Value::as_str)
}

fn guest_failed(items: &Map<String, Value>) -> StepError {
    let summary = item(items, meta::GUEST_ERROR).unwrap_or("no error summary");
    StepError::failed(
        "guest_provisioning_failed",
        format!("the guest reported provisioningfailed: {summary}"),
    )
}

/// Polls the guest's items until `done` says it is finished, or `deadline` passes.
async fn wait_for(
    ctx: &mut JobCtx<'_>,
    step: &str,
    vm: &InitTarget,
    deadline: Duration,
    what: &str,
    done: impl Fn(&Map<String, Value>) -> bool,
) -> Result<Map<String, Value>, StepError> {
    let until = Instant::now() + deadline;
    loop {
        let items = guest_items(ctx, step, vm).await?;
        if done(&items) {
            return Ok(items);
        }
        if item(&items, meta::GUEST_STATE) == Some(FAILED) {
            return Err(guest_failed(&items));
        }
        if Instant::now() >= until {
            return Err(StepError::failed(
                "guest_timeout",
                format!(
                    "the guest of VM '{}' did not {what} within {}s",
                    vm.vm_name,
                    deadline.as_secs()
                ),
            ));
        }
        ctx.sleep(ctx.opts.guest.poll).await?;
    }
}

/// Runs the whole exchange for `vm` with the guest configuration `config` (field ids →
/// plaintext, from [`aetherv_core::kvp::guest_config`]). `config` is zeroized before this
/// returns. Returns the step's result data (no secrets).
pub async fn initialize(
    ctx: &mut JobCtx<'_>,
    step: &str,
    vm: &InitTarget,
    mut config: BTreeMap<String, String>,
) -> Result<Value, StepError> {
    let res = exchange(ctx, step, vm, &config).await;
    for v in config.values_mut() {
        v.zeroize();
    }
    res
}

async fn exchange(
    ctx: &mut JobCtx<'_>,
    step: &str,
    vm: &InitTarget,
    config: &BTreeMap<String, String>,
) -> Result<Value, StepError> {
    // A resumed job may find its own exchange already finished. Items of an earlier exchange
    // (another job) are removed first, so the guest never reads stale data.
    let host = host_items(ctx, step, vm).await?;
    let ours = item(&host, JOB_ITEM) == Some(ctx.job.job_id.to_string().as_str());
    if ours {
        let current = guest_items(ctx, step, vm).await?;
        if item(&current, meta::GUEST_STATE) == Some(APPLIED) {
            ctx.narrate(format!(
                "guest of '{}' already applied this job's configuration",
                vm.vm_name
            ));
            detach(ctx, step, vm).await?;
            return Ok(result(vm, None, true));
        }
    } else {
        let stale: Vec<&String> = host.keys().filter(|k| k.starts_with("hlvmm.")).collect();
        if !stale.is_empty() {
            ctx.narrate(format!(
                "removing {} KVP item(s) of an earlier exchange",
                stale.len()
            ));
            let spec = KvpRemoveSpec {
                vm: vm.vm(),
                keys: Some(stale.into_iter().cloned().collect()),
            };
            ctx.call(
                step,
                AgentOperation::KvpRemove,
                spec,
                Some("kvp.remove:stale"),
            )
            .await?;
        }
    }
    let attach = IsoAttachSpec {
        vm: vm.vm(),
        os_family: Some(vm.os_family.clone()),
        iso_path: None,
    };
    let iso = ctx
        .call(step, AgentOperation::IsoAttach, attach, Some("iso.attach"))
        .await?;
    if !vm.state.eq_ignore_ascii_case("Running") {
        let start = VmPowerSpec::new(vm.vm(), "start");
        ctx.call(step, AgentOperation::VmPower, start, Some("vm.power:start"))
            .await?;
    }
    let mut announce = Map::new();
    announce.insert(meta::HOST_STATE.into(), json!("waitingforpublickey"));
    announce.insert(JOB_ITEM.into(), json!(ctx.job.job_id.to_string()));
    match iso.get("version").and_then(Value::as_str) {
        Some(v) => {
            announce.insert(meta::VERSION.into(), json!(v));
        }
        None => {
            ctx.narrate("the host did not report its agent version; hlvmm.meta.version not written")
        }
    }
    write_items(ctx, step, vm, announce, "announce").await?;
    ctx.narrate(format!(
        "waiting up to {}s for the guest of '{}' to publish its public key",
        ctx.opts.guest.ready.as_secs(),
        vm.vm_name
    ));
    let ready = wait_for(
        ctx,
        step,
        vm,
        ctx.opts.guest.ready,
        "publish its public key",
        |items| {
            item(items, meta::GUEST_STATE) == Some(WAITING_FOR_AES_KEY)
                && item(items, meta::GUEST_PUBLIC_KEY).is_some()
        },
    )
    .await?;
    let key = GuestPublicKey::from_base64(item(&ready, meta::GUEST_PUBLIC_KEY).unwrap_or(""))
        .map_err(|e| StepError::failed("guest_public_key", e.to_string()))?;
    let mut data = data_items(config);
    let sealed = seal(&key, &data);
    for v in data.values_mut() {
        v.zeroize();
    }
    let sealed = sealed.map_err(|e| StepError::failed("invalid_argument", e.to_string()))?;
    ctx.narrate(format!(
        "publishing {} encrypted item(s) for a {}-bit {} key",
        sealed.len(),
        key.bits(),
        format_name(key.format())
    ));
    let items: Map<String, Value> = sealed.into_iter().map(|(k, v)| (k, json!(v))).collect();
    write_items(ctx, step, vm, items, "data").await?;
    let mut published = Map::new();
    published.insert(meta::HOST_STATE.into(), json!("provisioningdatapublished"));
    write_items(ctx, step, vm, published, "published").await?;
    wait_for(
        ctx,
        step,
        vm,
        ctx.opts.guest.apply,
        "apply its configuration",
        |items| item(items, meta::GUEST_STATE) == Some(APPLIED),
    )
    .await?;
    detach(ctx, step, vm).await?;
    Ok(result(vm, Some(key.format()), false))
}

async fn detach(ctx: &mut JobCtx<'_>, step: &str, vm: &InitTarget) -> Result<(), StepError> {
    ctx.call(step, AgentOperation::IsoDetach, vm.vm(), Some("iso.detach"))
        .await
        .map(|_| ())
}

fn format_name(f: KeyFormat) -> &'static str {
    match f {
        KeyFormat::CapiBlob => "capi",
        KeyFormat::CngBlob => "cng",
        KeyFormat::Pkcs1Der => "pkcs1",
    }
}

fn result(vm: &InitTarget, format: Option<KeyFormat>, resumed: bool) -> Value {
    json!({
        "vm_id": vm.vm_id,
        "vm_name": vm.vm_name,
        "status": "initialized",
        "guest_key_format": format.map(format_name),
        "resumed": resumed,
    })
}
