//! The mvdns operator (built in the operator issue).
