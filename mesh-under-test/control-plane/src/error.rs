//! The one error enum of the control plane. Messages name the object and field at fault.

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// An object of the snapshot cannot be translated (a field missing or out of range, a
    /// value the profile refuses): the object, the field and what is wrong with it (what to
    /// use instead).
    #[error("{object}: field `{field}` {problem}")]
    Refused {
        object: String,
        field: String,
        problem: String,
    },
}
