//! The API's Terraform-shaped flows over real HTTP against the full stack (RabbitMQ, the bot,
//! a worker, simulated hosts over WinRM): component by component, the managed deployment,
//! delete cascades, 404/409/422, and a retried POST with the same `Idempotency-Key`.

use crate::api::{ApiSite, ADMIN};
use serde_json::{json, Value};

const PASSWORD: &str = "Api-S3cret-Passw0rd!";

fn nic_of<'a>(vm: &'a Value, id: &str) -> Option<&'a Value> {
    vm["nics"].as_array()?.iter().find(|n| n["nic_id"] == id)
}

fn disk_of<'a>(vm: &'a Value, id: &str) -> Option<&'a Value> {
    vm["disks"].as_array()?.iter().find(|d| d["disk_id"] == id)
}

#[tokio::test(flavor = "multi_thread")]
async fn api_component_by_component_then_delete_cascades() {
    let site = ApiSite::start(1).await;
    // VM.
    let job = site
        .accepted(
            "/api/v1/resources/vms",
            json!({"values": {"vm_name": "comp-01", "gb_ram": 4, "cpu_cores": 2, "target_host": "hv01"}}),
        )
        .await;
    // Followed live from right after the 202: the stream ends with the job's last event.
    let live = site
        .get(&format!("/api/v1/jobs/{job}/events"), Some(ADMIN))
        .await;
    let ids: Vec<u64> = live
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("id: ")?.parse().ok())
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    let last_event = live
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .next_back();
    assert_eq!(last_event, Some("job.succeeded"), "{}", live.text);
    let doc = site.finished(&job, "succeeded").await;
    let vm_id = doc["result"]["vm_id"].as_str().expect("vm_id").to_string();
    assert_eq!(doc["kind"], "vm.create");
    assert_eq!(doc["steps"][0]["name"], "vm.create");
    assert_eq!(doc["steps"][0]["state"], "succeeded");
    assert!(!doc["log"].as_array().expect("log").is_empty());
    let vm = site
        .until_status(&format!("/api/v1/resources/vms/{vm_id}"), 200)
        .await
        .json();
    assert_eq!(
        (
            vm["name"].clone(),
            vm["memory_gb"].clone(),
            vm["cpu_cores"].clone()
        ),
        (json!("comp-01"), json!(4), json!(2))
    );
    let host_vm = site.sim_vm("hv01", "comp-01").expect("VM on the host");
    assert_eq!(host_vm["vm_id"], vm_id.as_str());
    assert_eq!(
        (host_vm["memory_gb"].clone(), host_vm["cpu_cores"].clone()),
        (json!(4), json!(2))
    );

    // Disk with vm_id.
    let job = site
        .accepted(
            "/api/v1/resources/disks",
            json!({"values": {"vm_id": vm_id, "disk_size_gb": 40}}),
        )
        .await;
    let doc = site.finished(&job, "succeeded").await;
    let disk_id = doc["result"]["disk_id"]
        .as_str()
        .expect("disk_id")
        .to_string();
    let disk = site
        .until_status(&format!("/api/v1/resources/disks/{disk_id}"), 200)
        .await
        .json();
    assert_eq!(disk["vm_id"], vm_id.as_str());
    assert_eq!(disk["size_gb"], 40);
    let host_vm = site.sim_vm("hv01", "comp-01").expect("VM");
    assert_eq!(
        disk_of(&host_vm, &disk_id).expect("disk on the host")["size_gb"],
        40
    );

    // NIC with vm_id.
    let job = site
        .accepted(
            "/api/v1/resources/nics",
            json!({"values": {"vm_id": vm_id, "network": "dev"}}),
        )
        .await;
    let doc = site.finished(&job, "succeeded").await;
    let nic_id = doc["result"]["nic_id"]
        .as_str()
        .expect("nic_id")
        .to_string();
    let nic = site
        .until_status(&format!("/api/v1/resources/nics/{nic_id}"), 200)
        .await
        .json();
    assert_eq!(nic["network"], "dev");
    let host_vm = site.sim_vm("hv01", "comp-01").expect("VM");
    assert_eq!(
        nic_of(&host_vm, &nic_id).expect("nic on the host")["network"],
        "dev"
    );

    // Expand the disk (PATCH), then guest initialization.
    let r = site
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/resources/disks/{disk_id}"),
            Some(ADMIN),
            Some(&json!({"values": {"disk_size_gb": 60}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    site.finished(r.json()["job_id"].as_str().expect("job"), "succeeded")
        .await;
    let host_vm = site.sim_vm("hv01", "comp-01").expect("VM");
    assert_eq!(disk_of(&host_vm, &disk_id).expect("disk")["size_gb"], 60);
    let job = site
        .accepted(
            &format!("/api/v1/resources/vms/{vm_id}/initialize"),
            json!({"values": {"os_family": "windows", "guest_la_uid": "admin", "guest_la_pw": PASSWORD}}),
        )
        .await;
    let doc = site.finished(&job, "succeeded").await;
    // The password was sealed for the workers: not in the job's request.
    assert!(doc["request"].get("guest_la_pw").is_none(), "{doc:#}");
    assert_eq!(doc["request"]["guest_la_uid"], "admin");
    let host_vm = site.sim_vm("hv01", "comp-01").expect("VM");
    assert_eq!(host_vm["applied_config"]["guest_la_uid"], "admin");
    assert!(!host_vm.to_string().contains(PASSWORD));

    // Delete cascades: the VM and its disk files go; reads answer 404.
    let r = site
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/resources/vms/{vm_id}"),
            Some(ADMIN),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    site.finished(r.json()["job_id"].as_str().expect("job"), "succeeded")
        .await;
    assert!(
        site.sim_vm("hv01", "comp-01").is_none(),
        "the VM is gone from the host"
    );
    site.until_status(&format!("/api/v1/resources/vms/{vm_id}"), 404)
        .await;
    site.until_status(&format!("/api/v1/resources/disks/{disk_id}"), 404)
        .await;
    site.until_status(&format!("/api/v1/resources/nics/{nic_id}"), 404)
        .await;
    let state = site.host_state("hv01").to_string();
    assert!(
        !state.contains(&disk_id),
        "the disk is gone from the host: {state}"
    );
    let bodies = site.bodies.lock().map(|b| b.join("\n")).unwrap_or_default();
    assert!(
        !bodies.contains(PASSWORD),
        "a response carried the password"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_managed_deployment_matches_the_host_and_a_retry_makes_one_vm() {
    let site = ApiSite::start(1).await;
    let body = json!({"values": {
        "vm_name": "web-01", "gb_ram": 8, "cpu_cores": 4, "target_host": "hv01",
        "image_name": "Windows Server 2022", "network": "prod",
        "guest_la_uid": "admin", "guest_la_pw": PASSWORD,
    }});
    let key = [("idempotency-key", "deploy-web-01")];
    let first = site
        .call(
            reqwest::Method::POST,
            "/api/v1/managed-deployments",
            Some(ADMIN),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(first.status, 202, "{}", first.text);
    let job = first.json()["job_id"].as_str().expect("job").to_string();
    // The retry (a client that lost the answer) gets the same job.
    let again = site
        .call(
            reqwest::Method::POST,
            "/api/v1/managed-deployments",
            Some(ADMIN),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(again.json()["job_id"], job.as_str());
    assert_eq!(again.json()["replayed"], true);
    let doc = site.finished(&job, "succeeded").await;
    let again = site
        .call(
            reqwest::Method::POST,
            "/api/v1/managed-deployments",
            Some(ADMIN),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(again.json()["job_id"], job.as_str(), "{}", again.text);
    // The same key with another body is refused.
    let mut other = body.clone();
    other["values"]["vm_name"] = json!("web-02");
    let reused = site
        .call(
            reqwest::Method::POST,
            "/api/v1/managed-deployments",
            Some(ADMIN),
            Some(&other),
            &key,
        )
        .await;
    assert_eq!(reused.status, 422, "{}", reused.text);
    assert_eq!(reused.content_type, "application/problem+json");

    let state = site.host_state("hv01");
    let vms = state["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 1, "one VM: {state:#}");
    let vm = &vms[0];
    assert_eq!(vm["vm_name"], "web-01");
    assert_eq!(
        (vm["memory_gb"].clone(), vm["cpu_cores"].clone()),
        (json!(8), json!(4))
    );
    assert_eq!(vm["disks"][0]["image_name"], "Windows Server 2022");
    assert_eq!(vm["nics"][0]["network"], "prod");
    assert_eq!(vm["applied_config"]["guest_la_uid"], "admin");
    assert_eq!(vm["applied_config"]["guest_host_name"], "web-01");
    let vm_id = doc["result"]["vm_id"].as_str().expect("vm_id");
    assert_eq!(vm["vm_id"], vm_id);
    let read = site
        .until_status(&format!("/api/v1/resources/vms/{vm_id}"), 200)
        .await
        .json();
    assert_eq!(read["disks"].as_array().map(Vec::len), Some(1), "{read:#}");
    assert_eq!(read["nics"][0]["network"], "prod");

    // The job's events over SSE end with job.succeeded; resumed after id 2 they start at 3.
    let sse = site
        .get(&format!("/api/v1/jobs/{job}/events"), Some(ADMIN))
        .await;
    assert_eq!(sse.status, 200);
    assert!(
        sse.content_type.starts_with("text/event-stream"),
        "{}",
        sse.content_type
    );
    assert!(sse.text.contains("event: job.succeeded"), "{}", sse.text);
    let resumed = site
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{job}/events"),
            Some(ADMIN),
            None,
            &[("last-event-id", "2")],
        )
        .await;
    let first_id = resumed
        .text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .map(str::to_string);
    assert_eq!(first_id.as_deref(), Some("3"), "{}", resumed.text);

    // Secrets: never in a response body, the job's events or the process's log.
    let bodies = site.bodies.lock().map(|b| b.join("\n")).unwrap_or_default();
    assert!(
        !bodies.contains(PASSWORD),
        "a response carried the password"
    );
    assert!(
        !site.out.text().contains(PASSWORD),
        "the log carried the password"
    );
    let events = site.stream_text().await;
    assert!(events.contains("job.succeeded"), "the stream was read");
    assert!(!events.contains(PASSWORD), "an event carried the password");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_answers_404_409_and_422_as_problems() {
    let site = ApiSite::start(1).await;
    let unknown = "0f8fad5b-d9cb-469f-a165-70867728950e";
    for path in [
        format!("/api/v1/resources/vms/{unknown}"),
        format!("/api/v1/resources/disks/{unknown}"),
        format!("/api/v1/resources/nics/{unknown}"),
        format!("/api/v1/jobs/{unknown}"),
        format!("/api/v1/jobs/{unknown}/events"),
        "/api/v1/schema/no-such-form".to_string(),
        "/api/v1/no-such-route".to_string(),
    ] {
        let r = site.get(&path, Some(ADMIN)).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.content_type, "application/problem+json", "{path}");
        assert_eq!(r.json()["status"], 404);
    }
    let r = site
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/resources/vms/{unknown}"),
            Some(ADMIN),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // 422: every field error of the form at once.
    let r = site
        .post(
            "/api/v1/resources/vms",
            json!({"values": {"gb_ram": 0, "target_host": "hv01"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let fields: Vec<String> = r.json()["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str().map(String::from))
        .collect();
    assert!(fields.contains(&"vm_name".to_string()), "{fields:?}");
    assert!(fields.contains(&"gb_ram".to_string()), "{fields:?}");
    // A value of the wrong type is named by its field and never repeated.
    let typed = "Typed-Pa55word-here";
    let r = site
        .post(
            "/api/v1/resources/vms",
            json!({"values": {"target_host": "hv01", "vm_name": "typed01", "gb_ram": typed, "cpu_cores": 2}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(!r.text.contains(typed), "the value is echoed: {}", r.text);
    assert_eq!(r.json()["errors"][0]["field"], "gb_ram", "{}", r.text);
    let r = site
        .post(
            "/api/v1/resources/disks",
            json!({"values": {"vm_id": unknown, "disk_size_gb": 10}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["errors"][0]["field"], "vm_id");
    let r = site
        .post("/api/v1/resources/vms", json!({"vm_name": "x"}))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = site
        .call(
            reqwest::Method::POST,
            "/api/v1/resources/vms",
            Some(ADMIN),
            None,
            &[],
        )
        .await;
    assert_eq!(
        r.status, 422,
        "an empty body has every required field missing: {}",
        r.text
    );
    let bad = site.http_raw("/api/v1/resources/vms", "{not json").await;
    assert_eq!(bad, 400);
    // 409: the name is in use on the host.
    let vm = json!({"values": {"vm_name": "dup-01", "gb_ram": 2, "cpu_cores": 1, "target_host": "hv01"}});
    let job = site.accepted("/api/v1/resources/vms", vm.clone()).await;
    site.finished(&job, "succeeded").await;
    let r = site.post("/api/v1/resources/vms", vm).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["errors"][0]["code"], "name_in_use");
    let r = site.get("/api/v1/jobs?state=bogus", Some(ADMIN)).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = site.get("/api/v1/jobs?limit=lots", Some(ADMIN)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = site
        .get(
            "/api/v1/jobs?host=hv01&state=succeeded&limit=1",
            Some(ADMIN),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["jobs"][0]["job_id"], job.as_str());
    site.stop().await;
}
