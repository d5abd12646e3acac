//! Steps that put apps in the mesh: the guide's fixtures, scaling.

use cucumber::given;

use crate::world::{MeshWorld, StepResult};

#[given(expr = "the guide's apps {string} and {string} are deployed")]
async fn guide_apps(world: &mut MeshWorld, backend: String, client: String) -> StepResult {
    world.deploy_fixtures(&[&backend, &client]).await
}

#[given(expr = "{string} is scaled to {int} replica(s)")]
#[cucumber::when(expr = "{string} is scaled to {int} replica(s)")]
async fn scaled(world: &mut MeshWorld, deployment: String, replicas: u32) -> StepResult {
    let deployment = world.deployment(&deployment);
    world.mesh().await?.scale(&deployment, replicas).await?;
    Ok(())
}
