//! Test doubles for the steps and the runner, behind `cfg(test)` or the `testing` feature: an
//! in-memory mesh (a deterministic fake cluster, no root and no network) and a `MeshSource`
//! that hands each scenario a fresh copy of it.

mod mesh;

use std::sync::atomic::{AtomicUsize, Ordering};

use meshcert_mesh::{MeshError, MeshUnderTest};

pub use mesh::{InMemoryMesh, Picker};

use crate::world::MeshSource;

/// Gives every scenario a copy of one scripted `InMemoryMesh`, and counts how many it gave.
#[derive(Debug)]
pub struct InMemorySource {
    template: InMemoryMesh,
    made: AtomicUsize,
}

impl InMemorySource {
    pub fn new(template: InMemoryMesh) -> Self {
        Self {
            template,
            made: AtomicUsize::new(0),
        }
    }

    /// Meshes made so far.
    pub fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl MeshSource for InMemorySource {
    async fn make_mesh(&self) -> Result<Box<dyn MeshUnderTest>, MeshError> {
        self.made.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(self.template.clone()))
    }
}
