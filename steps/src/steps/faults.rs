//! Steps that inject and undo faults, as the guide does by hand.

use cucumber::when;
use meshcert_mesh::FaultKind;

use crate::params::Ordinal;
use crate::world::{MeshWorld, StepResult};

#[when(expr = "I block port {int} of the {ordinal} {string} pod with iptables DROP")]
async fn block_drop(
    world: &mut MeshWorld,
    port: u16,
    which: Ordinal,
    deployment: String,
) -> StepResult {
    let pod = world.pod(&deployment, which.0).await?;
    world.inject(pod, FaultKind::IptablesDrop { port }).await
}

#[when(expr = "I block port {int} of the {ordinal} {string} pod with iptables REJECT")]
async fn block_reject(
    world: &mut MeshWorld,
    port: u16,
    which: Ordinal,
    deployment: String,
) -> StepResult {
    let pod = world.pod(&deployment, which.0).await?;
    world.inject(pod, FaultKind::IptablesReject { port }).await
}

#[when("I remove the block with iptables -F")]
async fn unblock(world: &mut MeshWorld) -> StepResult {
    world.undo_network_fault().await
}

#[when(expr = "the {ordinal} {string} pod answers every request with HTTP {int}")]
async fn app_status(
    world: &mut MeshWorld,
    which: Ordinal,
    deployment: String,
    status: u16,
) -> StepResult {
    let pod = world.pod(&deployment, which.0).await?;
    world.inject(pod, FaultKind::HttpStatus { status }).await
}
