//! Steps that inject and undo faults, as the guide does by hand.

use cucumber::when;
use meshcert_mesh::FaultKind;

use crate::params::{Ordinal, TakeDown};
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

#[when(expr = "I take down the {ordinal} {string} pod by {fault}")]
async fn take_down(
    world: &mut MeshWorld,
    which: Ordinal,
    deployment: String,
    fault: TakeDown,
) -> StepResult {
    let pod = world.pod(&deployment, which.0).await?;
    world.inject(pod, fault.0).await
}

#[when("I remove the block with iptables -F")]
#[when("the fault is removed")]
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
