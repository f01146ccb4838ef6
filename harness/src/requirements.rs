//! Whether this machine can run a model, and if not, why: used by `run` to skip a model
//! with its reason and by `doctor` to say so beforehand. The checks themselves are the
//! models' named needs (`models::needs`).

pub use models::needs::{find_program, kernel_has_filesystem, unmet};
