//! One module per subcommand.

pub mod archive;
pub mod compare;
pub mod doctor;
pub mod hook_costs;
pub mod list;
pub mod plot;
pub mod recover;
pub mod report;
pub mod run;
pub mod sweep;
