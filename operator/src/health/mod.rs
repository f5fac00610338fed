//! Active health checks of static values, Route 53 style: the pure state machine
//! ([`state`]), the probes ([`probe`]) behind the probe-target policy ([`policy`]), and
//! the task runner that schedules them ([`checker`]).

pub mod checker;
pub mod limits;
pub mod policy;
pub mod probe;
pub mod state;
