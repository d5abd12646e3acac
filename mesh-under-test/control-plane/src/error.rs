//! The one error enum of the control plane. Messages name the object and field at fault.

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// An object of the snapshot cannot be translated (a field missing or out of range, a
    /// value the profile refuses); the message names the object, the field and what to use.
    #[error("{0}")]
    InvalidObject(String),
}
