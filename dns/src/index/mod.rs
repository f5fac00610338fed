//! The served data: record sets in, DNS records out, as pure functions.
//!
//! [`build_index`] reads each record set's `.status.values` (written by the operator), or
//! the slices of a big one, and keeps only what may be served. In five parts:
//! - [`feed`]: where each record set's values come from (its status or its slices);
//! - [`model`]: what is served ([`Index`], [`Node`], [`RrSet`], [`Entry`]) and what was
//!   left out and why ([`Skipped`]);
//! - [`records`]: one status value to one record; [`parsed`]: the records of each object
//!   version (a status, a slice), parsed once and kept for the next builds;
//! - [`policy`]: which record sets are served, and how (ownership, zones, the CNAME rule,
//!   the settings of a group, empty non-terminals, glue names);
//! - [`memo`]: builds that reuse the one before ([`build_index_reusing`]), and why a build
//!   was whole ([`WholeBuild`]).

pub mod feed;
pub mod memo;
pub mod model;
pub mod parsed;
pub mod policy;
pub mod records;

pub use feed::Feeds;
pub use memo::{Built, WholeBuild, build_index, build_index_reusing};
pub use model::{Entry, Index, NameKey, Node, RrSet, Skipped, name_key, next_serial};
pub use records::entry_for;

#[cfg(test)]
mod tests;
