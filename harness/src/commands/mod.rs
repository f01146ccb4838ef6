//! One module per subcommand.

pub mod archive;
pub mod compare;
pub mod doctor;
pub mod list;
pub mod plot;
pub mod report;
pub mod run;
pub mod sweep;
